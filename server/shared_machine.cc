#include "server/shared_machine.h"

#include <algorithm>
#include <cassert>

namespace pageowner::server {

// The symbol table and the size are taken before any other thread can see the object, so the
// lock-free accessors read members that never change afterwards.
SharedMachine::SharedMachine(const MachineOptions& options)
    : machine_(options), symbols_(&machine_.symbols()), total_pages_(machine_.total_pages()) {}

void SharedMachine::ApplyBatch(absl::Span<const Event> events,
                               absl::Span<const absl::Status> prechecked,
                               std::vector<EventResult>* results) {
  assert(events.size() == prechecked.size());
  const size_t n = events.size();
  results->resize(n);
  for (size_t i = 0; i < n;) {
    const size_t end = std::min(n, i + kEventsPerHold);
    absl::WriterMutexLock lock(&mu_);
    for (; i < end; ++i) {
      (*results)[i] = prechecked[i].ok() ? machine_.Apply(events[i])
                                         : EventResult{prechecked[i], Pfn(), StackHandle()};
    }
  }
}

}  // namespace pageowner::server
