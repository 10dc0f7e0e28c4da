// SharedMachine: the daemon's one Machine behind a reader-writer lock, so that several Ingest
// streams and queries can run at once while the Machine itself stays single-writer.
#ifndef PAGEOWNER_SERVER_SHARED_MACHINE_H_
#define PAGEOWNER_SERVER_SHARED_MACHINE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/machine.h"
#include "core/symbols.h"
#include "core/types.h"

namespace pageowner::server {

// Owns the Machine and the lock around it.
//
// Locking: writers (ApplyBatch, Write) hold mu_ exclusively; readers (Read) hold it shared, so a
// query sees the state between two events, never half of one. ApplyBatch releases the lock
// every kEventsPerHold events so that a query waits for at most that many events, not for a
// whole batch of up to --max_batch_events; the events of a batch are still applied in order and
// by one writer at a time (the caller serializes batches).
//
// The symbol table and the stack depot are thread-safe on their own (core/symbols.h,
// core/stack_depot.h): symbols() may be used without the lock, e.g. to name the frames of a
// stack definition before its batch is applied.
//
// Thread-safety: every method may be called from any thread.
class SharedMachine {
 public:
  // Events applied a lock hold.
  static constexpr size_t kEventsPerHold = 256;
  static constexpr size_t kPrefetchDistance = 8;

  // REQUIRES: Machine::ValidateOptions(options).ok().
  explicit SharedMachine(const MachineOptions& options);
  SharedMachine(const SharedMachine&) = delete;
  SharedMachine& operator=(const SharedMachine&) = delete;

  // Applies events[i] for each i whose prechecked[i] is OK, in order, and stores its result in
  // (*results)[i]; an event whose precheck failed is not applied and its result carries that
  // status. hints[i], when not null, caches the handle of event i's stack: it becomes the
  // event's stack_hint just before the event is applied (so later events of the same batch
  // profit too), and an alloc or free stores the handle it got back into it.
  // REQUIRES: events, prechecked and hints (when not empty) have the same size.
  void ApplyBatch(absl::Span<Event> events, absl::Span<const absl::Status> prechecked,
                  absl::Span<std::atomic<uint32_t>* const> hints, std::vector<EventResult>* results)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Runs fn(const Machine&) under the reader lock and returns what it returns.
  template <typename Fn>
  decltype(auto) Read(Fn&& fn) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::ReaderMutexLock lock(&mu_);
    return std::forward<Fn>(fn)(static_cast<const Machine&>(*machine_));
  }

  // Runs fn(Machine&) under the writer lock and returns what it returns.
  template <typename Fn>
  decltype(auto) Write(Fn&& fn) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::WriterMutexLock lock(&mu_);
    return std::forward<Fn>(fn)(*machine_);
  }

  // Replaces the machine by an empty one of the same options, under the writer lock. The old
  // one is kept (not destroyed) until this object is: a stream or a query may still hold its
  // symbol table or depot frames without the lock. Returns what the old one held.
  struct ResetResult {
    PageCount allocated_pages;        // before
    size_t depot_stacks;              // before
    PageCount allocated_pages_after;  // the new machine's (the depot's first pool)
  };
  ResetResult Reset() ABSL_LOCKS_EXCLUDED(mu_);

  // Runs fn(const Machine&) without the lock, for the one writer between two of its own
  // mutations (the ingest writer's thread, which a snapshot forks from): nothing else changes
  // the machine then, and readers only read, so waiting for them (a long ListPages slice) would
  // only pause ingest longer. REQUIRES: called on the thread that serializes every mutation.
  template <typename Fn>
  decltype(auto) ReadAsWriter(Fn&& fn) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return std::forward<Fn>(fn)(static_cast<const Machine&>(*machine_));
  }

  // Puts `machine` (of the same options; recovered from a snapshot) in place of the current
  // one, which is kept as Reset keeps it. For start-up, before anything is served.
  void Replace(std::unique_ptr<Machine> machine) ABSL_LOCKS_EXCLUDED(mu_);

  // The machine's symbol table; thread-safe without the lock. After a Reset, the new machine's.
  SymbolTable& symbols() { return *symbols_.load(std::memory_order_acquire); }
  const SymbolTable& symbols() const { return *symbols_.load(std::memory_order_acquire); }
  // The machine's size; constant.
  PageCount total_pages() const { return total_pages_; }

 private:
  mutable absl::Mutex mu_;
  const MachineOptions options_;
  std::unique_ptr<Machine> machine_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Machine>> retired_ ABSL_GUARDED_BY(mu_);  // by Reset
  std::atomic<SymbolTable*> symbols_;
  const PageCount total_pages_;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_SHARED_MACHINE_H_
