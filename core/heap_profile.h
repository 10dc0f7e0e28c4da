// HeapProfile: who owns the machine's pages, grouped the way a heap profiler groups memory, so
// that a pprof writer outside core (server/pprof.h) can turn it into profile.proto.
//
// Two kinds of figures:
//  - in use: the allocated blocks now, from the page records (exact). One sample a distinct
//    (stack, pid, comm, gfp mask, order): the blocks and the base pages they span.
//  - ever: the depot keeps only a count of allocations a stack (StackUsage::allocations), not
//    their sizes, tasks or masks. So "ever" samples are one a stack, carry no task labels, and
//    their pages are reconstructed: allocations x 2^order, where order is the order most of the
//    stack's allocated blocks have now (the smaller on a tie). A stack that owns no block now
//    counts one page an allocation (a lower bound).
//
// Thread-safety: HeapProfileScan reads the Machine; hold its reader lock for one Step (and for
// Finish); between Steps the lock may be released (ingest goes on, and the scan sees each block
// of the range once, as it is when the scan reaches it).
#ifndef PAGEOWNER_CORE_HEAP_PROFILE_H_
#define PAGEOWNER_CORE_HEAP_PROFILE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/machine.h"
#include "core/queries.h"
#include "core/types.h"

namespace pageowner {

// One group of allocated blocks now.
struct InUseSample {
  StackHandle handle;
  int32_t pid = 0;
  std::string comm;
  uint32_t gfp_mask = 0;
  Order order;
  uint64_t blocks = 0;
  PageCount pages;
};

// One stack's allocations ever (see the file comment for what "pages" reconstructs).
struct EverSample {
  StackHandle handle;
  uint64_t allocations = 0;
  Order order;  // the order each allocation is counted at
  PageCount pages;
};

// A stack named by the samples, with its frames (innermost first) and content id.
struct ProfileStack {
  StackHandle handle;
  uint64_t content_id = 0;
  std::vector<uint64_t> frames;
};

struct HeapProfile {
  std::vector<InUseSample> in_use;   // by handle, then pid, comm, mask, order
  std::vector<EverSample> ever;      // by handle
  std::vector<ProfileStack> stacks;  // every handle above, by handle
  PageCount total_pages;             // of the machine
};

// Builds a HeapProfile over the allocated blocks that match `filter` (its state is ignored:
// allocated blocks only). With a filter, "ever" samples cover the stacks that own a matching
// block now, each with all of its allocations.
class HeapProfileScan {
 public:
  explicit HeapProfileScan(PageFilter filter);

  // Visits at most `budget` allocated blocks from where the last Step stopped.
  void Step(const Machine& m, uint64_t budget);
  bool done() const { return done_; }
  // The profile; reads the depot and the symbols. REQUIRES: done().
  HeapProfile Finish(const Machine& m) const;

 private:
  struct Key {
    uint32_t handle;
    int32_t pid;
    std::string comm;
    uint32_t gfp_mask;
    unsigned order;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.handle, k.pid, k.comm, k.gfp_mask, k.order);
    }
  };

  PageFilter filter_;
  uint64_t next_ = 0;
  bool done_ = false;
  absl::flat_hash_map<Key, uint64_t> blocks_;  // blocks a group
  // Blocks a stack by order, for the order "ever" samples are counted at.
  absl::flat_hash_map<uint32_t, std::array<uint64_t, kMaxOrder + 1>> orders_;
};

// The whole profile in one call (tests, and callers that hold the lock anyway).
HeapProfile BuildHeapProfile(const Machine& m, const PageFilter& filter);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_HEAP_PROFILE_H_
