#include "server/shared_machine.h"

#include <algorithm>
#include <cassert>
#include <memory>
#include <utility>
#include <variant>

namespace pageowner::server {

// The symbol table and the size are taken before any other thread can see the object, so the
// lock-free accessors read members that never change afterwards.
SharedMachine::SharedMachine(const MachineOptions& options)
    : options_(options),
      machine_(std::make_unique<Machine>(options)),
      symbols_(&machine_->symbols()),
      total_pages_(machine_->total_pages()) {}

SharedMachine::ResetResult SharedMachine::Reset() {
  // Built outside the lock: a large machine takes a while to set up.
  auto fresh = std::make_unique<Machine>(options_);
  absl::WriterMutexLock lock(&mu_);
  const ResetResult before{machine_->allocator().allocated_pages(),
                           machine_->depot().stats().persistent_count,
                           fresh->allocator().allocated_pages()};
  symbols_.store(&fresh->symbols(), std::memory_order_release);
  retired_.push_back(std::exchange(machine_, std::move(fresh)));
  return before;
}

void SharedMachine::Replace(std::unique_ptr<Machine> machine) {
  assert(machine->total_pages() == total_pages_);
  absl::WriterMutexLock lock(&mu_);
  symbols_.store(&machine->symbols(), std::memory_order_release);
  retired_.push_back(std::exchange(machine_, std::move(machine)));
}

void SharedMachine::ApplyBatch(absl::Span<Event> events, absl::Span<const absl::Status> prechecked,
                               absl::Span<std::atomic<uint32_t>* const> hints,
                               std::vector<EventResult>* results) {
  assert(events.size() == prechecked.size());
  assert(hints.empty() || hints.size() == events.size());
  const size_t n = events.size();
  results->resize(n);
  for (size_t i = 0; i < n;) {
    const size_t end = std::min(n, i + kEventsPerHold);
    absl::WriterMutexLock lock(&mu_);
    for (; i < end; ++i) {
      // Records of frees and migrations a few events ahead: their cache misses overlap.
      if (i + kPrefetchDistance < n) machine_->Prefetch(events[i + kPrefetchDistance]);
      if (!prechecked[i].ok()) {
        (*results)[i] = EventResult{prechecked[i], Pfn(), StackHandle()};
        continue;
      }
      std::atomic<uint32_t>* hint = hints.empty() ? nullptr : hints[i];
      if (hint != nullptr) {
        const StackHandle h(hint->load(std::memory_order_relaxed));
        std::visit([h](auto& e) { e.stack_hint = h; }, events[i]);
      }
      const EventResult& r = (*results)[i] = machine_->Apply(events[i]);
      // A migration answers with the owner's handle, not its own stack's.
      if (hint != nullptr && r.status.ok() && r.handle.valid() &&
          !std::holds_alternative<MigrateEvent>(events[i])) {
        hint->store(r.handle.raw(), std::memory_order_relaxed);
      }
    }
  }
}

}  // namespace pageowner::server
