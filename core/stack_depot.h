// StackDepot: deduplicated call stacks behind 32-bit handles, as lib/stackdepot.c keeps them.
#ifndef PAGEOWNER_CORE_STACK_DEPOT_H_
#define PAGEOWNER_CORE_STACK_DEPOT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/snapshot.h"
#include "core/types.h"

namespace pageowner {

// The defaults, defined once: the kernel's PAGE_OWNER_STACK_DEPTH and stack_depot_max_pools.
inline constexpr int kDefaultStackDepth = 16;
inline constexpr uint32_t kDefaultDepotMaxPools = 8192;

struct StackDepotOptions {
  // Frames kept a stack; deeper stacks are cut to this many (the innermost ones kept) and the
  // cut is counted. 1..kMaxStackDepth.
  int max_depth = kDefaultStackDepth;
  // Pools of kPoolBytes each; a save that needs a pool beyond this fails (the kernel's
  // stack_depot_max_pools, default 8192 = 128 MiB). 1..kMaxPoolsLimit.
  uint32_t max_pools = kDefaultDepotMaxPools;
  // Simulated memory the depot serves, in pages: one hash bucket per 16 KiB (4K..1M buckets).
  uint64_t memory_pages = 1 << 20;
};

// The kernel's /sys/kernel/debug/stackdepot/stats, plus our own counts.
struct StackDepotStats {
  uint32_t pools = 0;
  uint64_t refcounted_allocations = 0;  // we never evict: always 0
  uint64_t refcounted_frees = 0;        // always 0
  uint64_t refcounted_in_use = 0;       // always 0
  uint64_t freelist_size = 0;           // always 0
  uint64_t persistent_count = 0;        // stacks stored
  uint64_t persistent_bytes = 0;        // bytes of their records
  uint64_t truncated = 0;               // saves whose stack was cut to max_depth
  uint64_t failed = 0;                  // saves that found no pool (limit or out of memory)
};

// A stored stack and its usage counters, as GetStack and show_stacks report them.
struct StackUsage {
  StackHandle handle;
  absl::Span<const uint64_t> frames;  // valid for the depot's lifetime
  int64_t pages = 0;                  // base pages owned now (nr_base_pages)
  uint64_t allocations = 0;           // allocations ever charged to it
};

// Deduplicates stacks (arrays of return addresses) and hands out 32-bit handles in the kernel's
// encoding: pool index + 1 (17 bits), offset in 16-byte units (10 bits), 5 spare bits.
//
// Invariants:
//  1. Handle 0 names nothing; Save never returns it for a stored stack.
//  2. A stored stack never moves and is never freed before the depot: its handle stays valid and
//     the frames Fetch returns stay readable for the depot's lifetime.
//  3. Equal frame arrays (after the cut to max_depth) get the same handle.
//  4. Pools come from the PoolAllocator, one 16 KiB (order-2) block each, at most max_pools.
//
// Thread-safety: every method may be called from any thread. Saving or fetching a stack that
// is already stored takes no lock (an acquire walk of the bucket chain); inserting a new stack
// re-checks and links under mu_; a new pool is obtained under pool_mu_, outside mu_, because
// obtaining it may re-enter the page allocator (the seed's recursion).
class StackDepot {
 public:
  static constexpr size_t kPoolBytes = 16 * 1024;
  static constexpr int kMaxStackDepth = 64;
  static constexpr uint32_t kMaxPoolsLimit = (1u << 17) - 1;
  static constexpr uint32_t kHashSeed = 0x9747b28c;

  // Called for each new pool (its index); returns false when no pool can be had (the simulated
  // allocator is out of memory). May be empty: pools then cost nothing but their limit.
  using PoolAllocator = std::function<bool(uint32_t pool_index)>;

  // REQUIRES: 1 <= options.max_depth <= kMaxStackDepth, 1 <= options.max_pools <= kMaxPoolsLimit.
  StackDepot(const StackDepotOptions& options, PoolAllocator pool_allocator);
  ~StackDepot();
  StackDepot(const StackDepot&) = delete;
  StackDepot& operator=(const StackDepot&) = delete;

  // Stores `frames` (cut to max_depth) once and returns its handle; an empty stack and a save
  // that needs a pool it cannot get return the invalid handle (the caller uses its failure
  // handle, as page_owner does).
  StackHandle Save(absl::Span<const uint64_t> frames);
  // Looks a stack up without storing it; the invalid handle when it is not stored.
  StackHandle Find(absl::Span<const uint64_t> frames) const;

  // The frames of `handle`; empty when the handle names no stored stack.
  absl::Span<const uint64_t> Fetch(StackHandle handle) const;
  bool Contains(StackHandle handle) const { return Lookup(handle) != nullptr; }

  // Per-stack counters. REQUIRES: Contains(handle).
  // Adds `delta` base pages to what the stack owns now.
  void AddPages(StackHandle handle, int64_t delta);
  // Counts one allocation; the first one puts the stack on the owner list (like the kernel's
  // stack_list, which show_stacks walks newest first).
  void CountAllocation(StackHandle handle);

  // AddPages(pages) and CountAllocation in one lookup: an allocation of `pages` pages.
  void Charge(StackHandle handle, int64_t pages);
  // Counts a save whose stack was cut without going through Save (a caller's cached handle).
  void CountTruncation() { truncated_.fetch_add(1, std::memory_order_relaxed); }

  // Usage of one stack; its handle is invalid when `handle` names no stored stack.
  StackUsage Usage(StackHandle handle) const;

  // Visits the stacks that were ever charged an allocation, newest first (show_stacks' order).
  void ForEachOwnerStack(absl::FunctionRef<void(const StackUsage&)> visit) const;
  // Visits every stored stack in the order it was stored.
  void ForEachStack(absl::FunctionRef<void(const StackUsage&)> visit) const;

  StackDepotStats stats() const;
  int max_depth() const { return max_depth_; }
  uint32_t max_pools() const { return max_pools_; }
  // Heap bytes held: pools, pool table, hash table, owner list.
  size_t MemoryBytes() const;

  // Snapshots (core/snapshot.h). SaveState writes every stored stack in the order it was stored
  // (handle, frames, pages, allocations), the owner list, the counters and whether a spare pool
  // is held. REQUIRES: no Save or Charge runs meanwhile. It reads without taking mu_, so that the
  // forked child of a thread that held the locks (WithLocksHeld) can call it.
  void SaveState(SnapshotWriter& w) const ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Reads that into this depot, which must be freshly constructed with the same options and
  // hold nothing. The PoolAllocator is not called (the pools were paid for when first taken):
  // each stack is placed as Save placed it, and must land at its saved handle. kDataLoss naming
  // the first problem.
  absl::Status LoadState(SnapshotReader& r) ABSL_LOCKS_EXCLUDED(mu_, pool_mu_);
  // Runs fn with pool_mu_ and mu_ held: a fork() in fn copies a depot that no thread is changing.
  void WithLocksHeld(absl::FunctionRef<void()> fn) const ABSL_LOCKS_EXCLUDED(mu_, pool_mu_);

 private:
  struct Record;
  struct Pool;

  static uint32_t Hash(absl::Span<const uint64_t> frames);
  const Record* Lookup(StackHandle handle) const;
  Record* MutableLookup(StackHandle handle) const;
  const Record* FindInBucket(uint32_t bucket, uint32_t hash,
                             absl::Span<const uint64_t> frames) const;
  // Ensures a spare pool is ready when the current one cannot hold `bytes` more.
  void RefillSpare(size_t bytes) ABSL_LOCKS_EXCLUDED(mu_, pool_mu_);
  StackUsage UsageOf(StackHandle handle, const Record& r) const;

  const int max_depth_;
  const uint32_t max_pools_;
  const uint32_t bucket_mask_;
  PoolAllocator pool_allocator_;

  std::unique_ptr<std::atomic<uint32_t>[]> buckets_;  // head handle of each chain
  std::unique_ptr<std::atomic<Pool*>[]> pools_;       // max_pools_ slots, published with release
  std::atomic<uint32_t> pools_in_use_{0};

  // Serializes pool allocation; taken before mu_, never while holding it.
  mutable absl::Mutex pool_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  Pool* spare_ ABSL_GUARDED_BY(mu_) = nullptr;    // a pool obtained but not yet in use
  size_t current_used_ ABSL_GUARDED_BY(mu_) = 0;  // bytes used in the newest pool
  std::vector<StackHandle> stored_ ABSL_GUARDED_BY(mu_);
  std::vector<StackHandle> owner_list_ ABSL_GUARDED_BY(mu_);
  uint64_t persistent_bytes_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<uint64_t> truncated_{0};
  std::atomic<uint64_t> failed_{0};
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_STACK_DEPOT_H_
