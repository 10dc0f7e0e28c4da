// Workload: a synthetic, seeded stream of alloc, free and migrate events that looks like a busy
// kernel: deep stacks with a skewed popularity, orders mostly 0, memory kept near a fill level.
// Used by `pageowner load`, the benchmarks and the tests. It only generates events; whoever
// applies them (in process or over the wire) reports each outcome back with Observe.
#ifndef PAGEOWNER_CORE_WORKLOAD_H_
#define PAGEOWNER_CORE_WORKLOAD_H_

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "core/machine.h"
#include "core/types.h"

namespace pageowner {

struct WorkloadOptions {
  uint64_t pages = 1 << 20;  // the machine's size
  uint32_t stacks = 10000;   // distinct allocation stacks
  int depth = 16;            // frames a stack
  double fill = 0.7;         // fraction of memory to keep allocated
  double migrate_ratio = 0.05;
  uint32_t tasks = 64;
  uint64_t seed = 1;
  // The seed of the stacks' frames alone, when not 0: workloads with different `seed`s and one
  // `stack_seed` run different events over the same stacks (one kernel's call sites).
  uint64_t stack_seed = 0;
};

enum class WorkloadKind : uint8_t { kAlloc, kFree, kMigrate };

struct WorkloadEvent {
  WorkloadKind kind = WorkloadKind::kAlloc;
  Order order;
  Pfn pfn;  // free and migrate: the block's head
  uint32_t gfp_mask = 0;
  uint32_t stack = 0;  // index into stacks(); the free stacks follow the allocation stacks
  uint32_t task = 0;   // index into tasks()
  uint64_t ts_ns = 0;
  MigrateReason reason = MigrateReason::kNone;
};

struct WorkloadTask {
  int32_t pid;
  int32_t tgid;
  std::string comm;
};

// Invariants: a block is handed out for a free or a migration at most once until its outcome
// is observed, so a generated free never names a block another pending event also names.
// Thread-safety: none; one thread generates and observes.
class Workload {
 public:
  explicit Workload(const WorkloadOptions& options);

  // The next event. Allocations let the allocator choose the pfn.
  WorkloadEvent Next();
  // Reports what became of an event from Next: for an alloc the pfn it got, for a migration the
  // target pfn; `ok` false when it failed (the block then stays where it was).
  void Observe(const WorkloadEvent& e, bool ok, Pfn result_pfn);

  // All stacks: the allocation stacks (0..options.stacks-1) then a few free stacks.
  uint32_t num_stacks() const { return static_cast<uint32_t>(stacks_.size()); }
  absl::Span<const uint64_t> frames(uint32_t stack) const { return stacks_[stack]; }
  const std::vector<WorkloadTask>& tasks() const { return tasks_; }
  // The %pS name of a frame address this workload made up ("func_17+0x1a/0x80").
  static std::string SymbolName(uint64_t ip);

  // The event as the Machine takes it (its spans point into this workload and `e`).
  Event ToMachineEvent(const WorkloadEvent& e) const;
  // Takes a block allocated before this workload began (another load, a replay) as one of its
  // own: it counts towards the fill level and may be freed or migrated, so that the level
  // converges to `fill` from above as well as from below.
  void Adopt(Pfn head, Order order);
  // The blocks it knows to be allocated (observed, not being freed or migrated), and forgets
  // them: a caller that frees them all leaves the machine as the workload found it.
  std::vector<std::pair<Pfn, Order>> TakeLive();

  // Pages allocated by observed allocations, plus allocations and migrations still pending;
  // a pending free counts as done, so that the events in flight on a stream (thousands, a large
  // share of a small machine) do not hold the level above `fill`.
  uint64_t allocated_pages() const { return live_pages_ + pending_pages_ - pending_free_pages_; }
  // Above the fill level's band with no block known to be allocated (every one it knew is being
  // freed, and its new blocks are not observed yet): Next would allocate, pushing memory further
  // up. A caller whose results arrive late should wait for them instead.
  bool StarvedAboveFill() const {
    return live_.empty() && static_cast<double>(allocated_pages()) >
                                (options_.fill + band()) * static_cast<double>(options_.pages);
  }
  // Below fill - band allocations dominate, above fill + band frees do; within it they balance.
  // 0.05 of memory, or a quarter of the fill when that is less: many streams each keeping a
  // small share (64 streams at 0.011) must not each wander 0.05 above it.
  double band() const { return std::min(0.05, options_.fill / 4); }

 private:
  struct Live {
    uint64_t pfn;
    uint8_t order;
  };

  WorkloadOptions options_;
  std::mt19937_64 rng_;
  std::discrete_distribution<uint32_t> popularity_;
  std::vector<std::vector<uint64_t>> stacks_;
  std::vector<WorkloadTask> tasks_;
  std::vector<Live> live_;  // observed allocated blocks not handed out for free/migrate
  uint64_t live_pages_ = 0;
  uint64_t pending_pages_ = 0;
  uint64_t pending_free_pages_ = 0;  // the part of pending_pages_ that frees are freeing
  uint64_t ts_ = 1000000000;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_WORKLOAD_H_
