// MemoryMap: physical memory as cells of equal size (a page, a pageblock, any power of two of
// pages), each holding one value that says who or what owns most of its pages, for the daemon's
// web page. Also which pageblocks are mixed (an allocation whose mask's migratetype differs
// from the pageblock's, as /proc/pagetypeinfo's "Number of mixed blocks" counts them).
//
// Thread-safety: MemoryMapScan reads the Machine; hold its reader lock for one Step. Between
// Steps ingest may go on: each block is seen once, as it is when the scan reaches it.
#ifndef PAGEOWNER_CORE_MEMORY_MAP_H_
#define PAGEOWNER_CORE_MEMORY_MAP_H_

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/machine.h"
#include "core/types.h"

namespace pageowner {

// What a cell's value is.
enum class MapColoring : uint32_t {
  kStack = 0,        // the stack handle that owns the pages
  kMigrateType = 1,  // 1 + the migratetype of the owner's gfp mask
  kOrder = 2,        // 1 + the order of the block
  kTask = 3,         // 1 + the owner's pid
  kAge = 4,          // 1 + the allocation's ts_ns >> kAgeShift (about milliseconds)
};
inline constexpr int kAgeShift = 20;
// The value of a free page (and of an allocated page page_owner does not hold, which only
// happens while tracking is off), whatever the coloring.
inline constexpr uint32_t kFreeCell = 0;

// "stack", "migratetype", "order", "task", "age"; nullopt-like kInvalidArgument otherwise.
absl::StatusOr<MapColoring> ParseMapColoring(std::string_view name);

struct MapRequest {
  Pfn start{};
  Pfn end{};                    // exclusive; REQUIRES end > start (Create checks)
  uint64_t pages_per_cell = 1;  // a power of two, 1..2^20
  MapColoring coloring = MapColoring::kStack;
};

struct MemoryMap {
  MapRequest request;
  // One value a cell: the value that covers most of the cell's pages (free pages count as
  // kFreeCell; on a tie the smaller value). The last cell may cover fewer pages.
  std::vector<uint32_t> cells;
  // Pageblock numbers (pfn >> kPageblockOrder) in the range that are mixed, ascending.
  std::vector<uint64_t> mixed_pageblocks;
};

class MemoryMapScan {
 public:
  static constexpr uint64_t kMaxCells = 1 << 22;

  // Errors: kOutOfRange for a start at or beyond memory; kInvalidArgument for an end not above
  // start, pages_per_cell not a power of two up to 2^20, or more than kMaxCells cells. An end
  // beyond memory is cut to the end of memory.
  static absl::StatusOr<MemoryMapScan> Create(PageCount total_pages, MapRequest request);

  // Visits at most `budget` allocated blocks from where the last Step stopped.
  void Step(const Machine& m, uint64_t budget);
  bool done() const { return done_; }
  // REQUIRES: done().
  MemoryMap Finish();

 private:
  explicit MemoryMapScan(MapRequest request);
  uint32_t ValueOf(const PageOwner& p) const;
  // Adds `pages` pages of `value` from pfn on, cell by cell.
  void AddPages(uint64_t pfn, uint64_t pages, uint32_t value);
  // Closes every cell before `cell`.
  void CloseCellsBefore(uint64_t cell);

  MapRequest request_;
  uint64_t next_ = 0;
  bool done_ = false;
  std::vector<uint32_t> cells_;
  uint64_t open_cell_ = 0;                           // cells before it are closed
  std::vector<std::pair<uint32_t, uint64_t>> open_;  // (value, pages) in the open cell
  std::vector<uint64_t> mixed_;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_MEMORY_MAP_H_
