#include "core/memory_map.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/kernel_flags.h"
#include "core/strings.h"

namespace pageowner {

absl::StatusOr<MapColoring> ParseMapColoring(std::string_view name) {
  if (name == "stack") return MapColoring::kStack;
  if (name == "migratetype") return MapColoring::kMigrateType;
  if (name == "order") return MapColoring::kOrder;
  if (name == "task") return MapColoring::kTask;
  if (name == "age") return MapColoring::kAge;
  return absl::InvalidArgumentError(
      absl::StrCat("no coloring ", Sv(name), " (stack, migratetype, order, task or age)"));
}

absl::StatusOr<MemoryMapScan> MemoryMapScan::Create(PageCount total_pages, MapRequest request) {
  if (request.start.raw() >= total_pages.raw()) {
    return absl::OutOfRangeError(absl::StrCat("start pfn ", request.start.raw(),
                                              " is beyond memory (", total_pages.raw(), " pages)"));
  }
  request.end = Pfn(std::min(request.end.raw(), total_pages.raw()));
  if (request.end <= request.start) {
    return absl::InvalidArgumentError("the end pfn must be above the start pfn");
  }
  const uint64_t ppc = request.pages_per_cell;
  if (ppc == 0 || ppc > (uint64_t{1} << 20) || (ppc & (ppc - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pages per cell must be a power of two up to 2^20, not ", ppc));
  }
  const uint64_t cells = (request.end.raw() - request.start.raw() + ppc - 1) / ppc;
  if (cells > kMaxCells) {
    return absl::InvalidArgumentError(
        absl::StrCat(cells, " cells asked, at most ", kMaxCells, " a map"));
  }
  return MemoryMapScan(request);
}

MemoryMapScan::MemoryMapScan(MapRequest request) : request_(request), next_(request.start.raw()) {
  const uint64_t ppc = request.pages_per_cell;
  cells_.reserve((request.end.raw() - request.start.raw() + ppc - 1) / ppc);
}

uint32_t MemoryMapScan::ValueOf(const PageOwner& p) const {
  switch (request_.coloring) {
    case MapColoring::kStack:
      return p.handle.raw();
    case MapColoring::kMigrateType:
      return 1 + static_cast<uint32_t>(GfpMigrateType(p.gfp_mask));
    case MapColoring::kOrder:
      return 1 + p.order.raw();
    case MapColoring::kTask:
      return 1 + static_cast<uint32_t>(p.pid);
    case MapColoring::kAge:
      return 1 +
             static_cast<uint32_t>(std::min<uint64_t>(p.ts_ns >> kAgeShift, uint64_t{0xfffffffd}));
  }
  return kFreeCell;
}

void MemoryMapScan::CloseCellsBefore(uint64_t cell) {
  const uint64_t ppc = request_.pages_per_cell;
  const uint64_t start = request_.start.raw();
  const uint64_t end = request_.end.raw();
  while (open_cell_ < cell) {
    const uint64_t cell_start = start + open_cell_ * ppc;
    const uint64_t cell_pages = std::min(ppc, end - cell_start);
    uint64_t owned = 0;
    for (const auto& [v, n] : open_) owned += n;
    open_.emplace_back(kFreeCell, cell_pages - owned);
    uint32_t best = kFreeCell;
    uint64_t best_pages = 0;
    for (const auto& [v, n] : open_) {
      if (n > best_pages || (n == best_pages && v < best)) {
        best = v;
        best_pages = n;
      }
    }
    cells_.push_back(best);
    open_.clear();
    ++open_cell_;
  }
}

void MemoryMapScan::AddPages(uint64_t pfn, uint64_t pages, uint32_t value) {
  const uint64_t ppc = request_.pages_per_cell;
  const uint64_t start = request_.start.raw();
  uint64_t from = std::max(pfn, start);
  const uint64_t to = std::min(pfn + pages, request_.end.raw());
  while (from < to) {
    const uint64_t cell = (from - start) / ppc;
    CloseCellsBefore(cell);
    const uint64_t cell_end = start + (cell + 1) * ppc;
    const uint64_t n = std::min(to, cell_end) - from;
    auto it = std::find_if(open_.begin(), open_.end(),
                           [value](const auto& e) { return e.first == value; });
    if (it == open_.end()) {
      open_.emplace_back(value, n);
    } else {
      it->second += n;
    }
    from += n;
  }
}

void MemoryMapScan::Step(const Machine& m, uint64_t budget) {
  if (done_) return;
  const uint64_t end = request_.end.raw();
  uint64_t visited = 0;
  bool stopped = false;
  const BuddyAllocator& buddy = m.allocator();
  m.ForEachOwnedBlock(Pfn(next_), [&](const PageOwner& p) {
    stopped = true;
    if (p.pfn.raw() >= end) {
      done_ = true;
      return false;
    }
    if (visited >= budget) {
      next_ = p.pfn.raw();
      return false;
    }
    ++visited;
    next_ = p.pfn.raw() + 1;
    const uint64_t pages = p.order.pages().raw();
    AddPages(p.pfn.raw(), pages, ValueOf(p));
    // Mixed: this allocation's migratetype differs from a pageblock it lies in.
    const MigrateType want = GfpMigrateType(p.gfp_mask);
    const uint64_t first_pb = std::max(p.pfn.raw(), request_.start.raw()) >> kPageblockOrder;
    const uint64_t last_pb = (std::min(p.pfn.raw() + pages, end) - 1) >> kPageblockOrder;
    for (uint64_t pb = first_pb; pb <= last_pb; ++pb) {
      if (!mixed_.empty() && mixed_.back() == pb) continue;
      if (buddy.PageblockMigrateType(pb) != want) mixed_.push_back(pb);
    }
    return true;
  });
  if (!stopped) done_ = true;
}

MemoryMap MemoryMapScan::Finish() {
  const uint64_t ppc = request_.pages_per_cell;
  CloseCellsBefore((request_.end.raw() - request_.start.raw() + ppc - 1) / ppc);
  MemoryMap out;
  out.request = request_;
  out.cells = std::move(cells_);
  out.mixed_pageblocks = std::move(mixed_);
  return out;
}

}  // namespace pageowner
