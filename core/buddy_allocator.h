// The simulated machine's page allocator: a binary buddy allocator with per-migratetype free
// lists and the kernel's fallback stealing, so that pfns and mixed pageblocks come out as they do
// in mm/page_alloc.c.
#ifndef PAGEOWNER_CORE_BUDDY_ALLOCATOR_H_
#define PAGEOWNER_CORE_BUDDY_ALLOCATOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/snapshot.h"
#include "core/types.h"

namespace pageowner {

// An allocated buddy block: 2^order pages starting at head.
struct AllocatedBlock {
  Pfn head;
  Order order;
  friend bool operator==(const AllocatedBlock&, const AllocatedBlock&) = default;
};

// A buddy allocator over total_pages() 4 KiB pages (any count >= 1; the part past the last
// multiple of 1024 is covered by smaller aligned blocks). It tracks, for every page, whether it
// heads a free block, heads an allocated block or lies inside a block (with the block's order and,
// for an allocated block, the migratetype it was requested for); the migratetype of every
// pageblock (2^kPageblockOrder pages, all kMovable at construction, as at boot); and the free
// lists of the three types Unmovable, Movable and Reclaimable at orders 0..kMaxOrder.
//
// Memory: one byte a page of state, one byte a pageblock, and per order one bitmap over the block
// positions (total_pages >> order bits, ~0.25 byte a page over all orders) with 64-ary summaries
// per migratetype: about 1.27 bytes a page. The free lists hold no per-page links: a free block is
// on the list of its head's pageblock migratetype (invariant 4), so its bitmap bit plus that
// pageblock byte say which list it is on. Finding the lowest block of a list costs one word a
// summary level plus a scan of one bitmap word; removing a given block (a buddy being merged)
// costs a bitmap word scan plus at most one word a level. The per-page state and the bitmaps come
// zeroed from calloc, and zero reads as the boot layout, so building even a 1 TiB machine writes
// almost none of them (the OS backs their pages as they are first written).
//
// Invariants:
//  1. The blocks, free and allocated, tile [0, total_pages()): a block of order k starts at a
//     pfn aligned to 2^k and ends at or before total_pages().
//  2. A block's state lives in its head's byte; every other page of the block reads "inside".
//  3. Two free buddies of the same order below kMaxOrder never coexist (freeing coalesces), so a
//     wholly free aligned range of order k lies inside one free block of order >= k.
//  4. A free block is on the free list of the migratetype of the pageblock holding its head.
//     Blocks of order 10 span two pageblocks; merging across pageblocks of different types is
//     allowed (all three types are mergeable, as in the kernel) and the first pageblock decides.
//     Changing a pageblock's type moves the free blocks headed in it.
//  5. free_pages() + allocated_pages() == total_pages(), and free_pages() equals the sum over
//     the lists of FreeBlockCount(order, mt) * 2^order; allocated_pages() equals the sum of
//     AllocatedBlockCount(order, mt) * 2^order.
//
// Allocation policy (deterministic): the smallest order >= the request that has a block on the
// requested type's list, and the lowest-addressed block on that list; the block is split and the
// allocation keeps its lowest part. When every list of the requested type at orders >= the request
// is empty, the fallback of Linux 6.10-6.14 (__rmqueue_fallback and steal_suitable_fallback) runs:
//  - fallback types: Unmovable -> Reclaimable, Movable; Movable -> Reclaimable, Unmovable;
//    Reclaimable -> Unmovable, Movable; at each order the first type with a block is used;
//  - orders are searched from kMaxOrder down to the request;
//  - a block of order >= kPageblockOrder is claimed whole: its pageblocks change type;
//  - a smaller block may claim its pageblock when the requester may claim at that order (order >=
//    kPageblockOrder / 2, or the requester is Unmovable or Reclaimable), the pageblock lies wholly
//    inside memory, and at least half its pages are free or compatible (for a Movable requester:
//    allocated Movable pages; for the others, from a Movable pageblock: allocated non-Movable
//    pages; otherwise none). Its free blocks then move to the requester's lists and the request is
//    served from those lists (smallest order first);
//  - otherwise the block is taken without changing its pageblock's type (which makes that
//    pageblock mixed), and a Movable requester that may not claim takes the smallest fallback block
//    instead of the largest.
// Split remainders and freed blocks go on the list of their pageblock's type.
//
// Thread-safety: not thread-safe. One writer calls the mutators; the const methods are safe to
// call concurrently with each other only while no writer runs.
class BuddyAllocator {
 public:
  // REQUIRES: pages.raw() >= 1.
  explicit BuddyAllocator(PageCount pages);

  BuddyAllocator(const BuddyAllocator&) = delete;
  BuddyAllocator& operator=(const BuddyAllocator&) = delete;
  BuddyAllocator(BuddyAllocator&&) = default;
  BuddyAllocator& operator=(BuddyAllocator&&) = default;

  PageCount total_pages() const { return PageCount(pages_); }
  PageCount free_pages() const { return PageCount(free_pages_); }
  PageCount allocated_pages() const { return PageCount(pages_ - free_pages_); }

  // Takes a free block of `order` for `mt` and returns its head.
  // Errors: kInvalidArgument when order > kMaxOrder or mt is not Unmovable, Movable or
  // Reclaimable; kResourceExhausted when no free block of order >= `order` exists.
  absl::StatusOr<Pfn> Allocate(Order order, MigrateType mt);

  // Takes exactly [pfn, pfn + 2^order) for `mt`, splitting the free block that holds it, so that a
  // replayed trace gets the pfns the real machine handed out. The pageblock's type is left as is.
  // Errors, checked in this order: kInvalidArgument when order > kMaxOrder, mt is not one of the
  // three, or pfn is not aligned to 2^order; kOutOfRange when the range passes the end of memory;
  // kAlreadyExists when any page of the range is allocated.
  absl::Status AllocateAt(Pfn pfn, Order order, MigrateType mt);

  // Frees the allocated block headed by pfn, coalescing it with free buddies.
  // Errors, checked in this order: kInvalidArgument when order > kMaxOrder; kOutOfRange when pfn
  // is beyond memory; kFailedPrecondition when the page is free (double free), when pfn lies inside
  // an allocated block without being its head, or when the block's order is not `order` (the
  // message says which, and names the block).
  absl::Status Free(Pfn pfn, Order order);

  // The allocated block that contains pfn; nullopt when the page is free or beyond memory.
  std::optional<AllocatedBlock> BlockContaining(Pfn pfn) const;
  bool IsAllocated(Pfn pfn) const { return BlockContaining(pfn).has_value(); }
  // The migratetype the block containing pfn was allocated for (what the kernel derives from the
  // gfp mask); nullopt when the page is free or beyond memory. When it differs from the
  // pageblock's type, the pageblock is mixed.
  std::optional<MigrateType> AllocationMigrateType(Pfn pfn) const;

  // The migratetype of pageblock `pageblock` (pfn >> kPageblockOrder), as
  // get_pageblock_migratetype. REQUIRES: pageblock < num_pageblocks().
  MigrateType PageblockMigrateType(uint64_t pageblock) const;
  // Sets a pageblock's migratetype, as set_pageblock_migratetype does (for imported machines),
  // moving its free blocks to the new type's lists. kInvalidArgument for a type without free
  // lists here (HighAtomic, CMA, Isolate); kOutOfRange beyond the last pageblock.
  absl::Status SetPageblockMigrateType(uint64_t pageblock, MigrateType mt);
  // Pageblocks covering memory; the last one may be partial.
  uint64_t num_pageblocks() const { return pageblock_mt_.size(); }

  // Number of free blocks of `order` on the free list of `mt` (a cell of /proc/pagetypeinfo);
  // 0 for an invalid order or a type without free lists.
  uint64_t FreeBlockCount(Order order, MigrateType mt) const;
  // Number of allocated blocks of `order` requested for `mt` (kept by Allocate, AllocateAt and
  // Free, no scan); 0 for an invalid order or a type without free lists.
  uint64_t AllocatedBlockCount(Order order, MigrateType mt) const;

  // Calls visit for each allocated block whose head is >= start, in pfn order, until visit
  // returns false.
  void ForEachAllocatedBlock(Pfn start, absl::FunctionRef<bool(AllocatedBlock)> visit) const;

  // How many times a fallback claimed pageblocks for the requester (one per claim, whether it
  // took one pageblock or two).
  uint64_t fallback_steals() const { return steals_; }

  // Heap bytes held by this allocator (reserved; the per-page arrays come from calloc, and the
  // OS backs their pages as they are first written).
  size_t MemoryBytes() const;

  // Checks every invariant above by a full scan, O(total_pages()); for tests. Returns kInternal
  // naming the first violation.
  absl::Status CheckInvariants() const;

  // Snapshots (core/snapshot.h). SaveState writes the per-page bytes (sparse: untouched runs cost
  // a byte), the pageblock types and the fallback count; the free lists and counters follow
  // from them. LoadState reads that into this allocator, which must be freshly constructed with
  // the same page count, and rebuilds the lists: the result equals the saved allocator, and
  // behaves the same from then on. kDataLoss naming the first problem when the bytes do not
  // describe a valid allocator (invariants 1-4).
  void SaveState(SnapshotWriter& w) const;
  absl::Status LoadState(SnapshotReader& r);

 private:
  // A zero-filled array from calloc: the OS backs its pages only once they are written, so a
  // 1 TiB machine is built without faulting in its per-page state.
  template <typename T>
  class ZeroedArray {
   public:
    ZeroedArray() = default;
    explicit ZeroedArray(size_t n);
    T& operator[](size_t i) { return data_[i]; }
    const T& operator[](size_t i) const { return data_[i]; }
    const T* data() const { return data_.get(); }
    size_t size() const { return size_; }

   private:
    struct FreeDeleter {
      void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T[], FreeDeleter> data_;
    size_t size_ = 0;
  };

  // The free blocks of one order, over all three lists.
  struct FreeArea {
    // Bit p of word p / 64 is set when a free block of this order has its head at p << order.
    ZeroedArray<uint64_t> bits;
    // summary[mt][0] has a bit per word of `bits`, set when that word holds a block on mt's list;
    // summary[mt][l] has a bit per word of summary[mt][l - 1], set when that word is non-zero.
    // The last level is a single word.
    std::array<std::vector<std::vector<uint64_t>>, kNumFreeListTypes> summary;
  };

  // The block containing a page.
  struct Block {
    uint64_t head;
    unsigned order;
    bool free;
  };

  // A page's state byte (layout in buddy_allocator.cc) and its setter.
  uint8_t State(uint64_t pfn) const;
  void SetState(uint64_t pfn, uint8_t s);
  // REQUIRES: pfn < pages_.
  Block FindBlock(uint64_t pfn) const;
  // The free-list index of the block headed at `head`: its pageblock's type.
  int ListOf(uint64_t head) const { return pageblock_mt_[head >> kPageblockOrder]; }
  // True when word `word` of order `order`'s bitmap holds a block on list `mt`.
  bool WordHasList(unsigned order, uint64_t word, int mt) const;
  void SummarySet(FreeArea& area, int mt, uint64_t word);
  void SummaryClear(FreeArea& area, int mt, uint64_t word);
  void RefreshSummary(unsigned order, uint64_t word, int mt);

  // Puts the block (head, order) on its list and marks its head free.
  void AddFree(uint64_t head, unsigned order);
  // Takes the free block (head, order) off its list; the caller rewrites its head byte.
  void RemoveFree(uint64_t head, unsigned order);
  // The lowest-addressed block on list (mt, order), if any.
  std::optional<uint64_t> FindFirstFree(unsigned order, int mt) const;
  // Splits the block (head, block_order), already off its list, down to (pfn, order), putting
  // the other pieces on their lists, and marks (pfn, order) allocated for mt.
  void SplitAndMark(uint64_t head, unsigned block_order, uint64_t pfn, unsigned order, int mt);
  // Changes a pageblock's type, moving the free blocks headed in it to the new type's lists.
  void SetPageblockType(uint64_t pageblock, int mt);

  // __rmqueue_smallest: serves (order, mt) from mt's own lists.
  std::optional<uint64_t> AllocateSmallest(unsigned order, int mt);
  // __rmqueue_fallback: serves (order, mt) from the other types' lists.
  std::optional<uint64_t> AllocateFallback(unsigned order, int mt);
  // steal_suitable_fallback for the free block (head, block_order) on another type's list.
  uint64_t StealFallbackBlock(uint64_t head, unsigned block_order, unsigned order, int mt,
                              bool may_claim);

  uint64_t pages_;
  uint64_t free_pages_ = 0;
  uint64_t steals_ = 0;
  ZeroedArray<uint8_t> state_;         // one byte a page, read through State()
  std::vector<uint8_t> pageblock_mt_;  // MigrateType of each pageblock, always < 3
  std::array<FreeArea, kMaxOrder + 1> areas_;
  // free_count_[mt][order]: blocks on list (mt, order).
  std::array<std::array<uint64_t, kMaxOrder + 1>, kNumFreeListTypes> free_count_{};
  // alloc_count_[mt][order]: allocated blocks requested for mt.
  std::array<std::array<uint64_t, kMaxOrder + 1>, kNumFreeListTypes> alloc_count_{};
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_BUDDY_ALLOCATOR_H_
