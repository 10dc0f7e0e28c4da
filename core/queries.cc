#include "core/queries.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace pageowner {

bool PageFilter::Matches(const PageOwner& p) const {
  return (!pid || p.pid == *pid) && (!tgid || p.tgid == *tgid) && (!comm || p.comm == *comm) &&
         (!handle || p.handle == *handle) && (!order || p.order == *order);
}

absl::StatusOr<PageScan> PageScan::Create(PageCount total_pages, const PageScanRequest& r) {
  const uint64_t total = total_pages.raw();
  if (r.start.raw() > total) {
    return absl::OutOfRangeError(
        absl::StrCat("start_pfn ", r.start.raw(), " is beyond memory (", total, " pages)"));
  }
  if (r.end.has_value() && *r.end < r.start) {
    return absl::InvalidArgumentError(
        absl::StrCat("end_pfn ", r.end->raw(), " is below start_pfn ", r.start.raw()));
  }
  if (r.filter.order.has_value() && r.filter.order->raw() > static_cast<unsigned>(kMaxOrder)) {
    return absl::InvalidArgumentError(
        absl::StrCat("order ", r.filter.order->raw(), " is above the maximum order ", kMaxOrder));
  }
  PageScan scan;
  scan.filter_ = r.filter;
  scan.next_ = r.start.raw();
  scan.end_ = r.end.has_value() ? std::min(r.end->raw(), total) : total;
  scan.limit_ = r.limit;
  return scan;
}

bool PageScan::Emitted() {
  ++emitted_;
  return limit_ != 0 && emitted_ >= limit_;
}

uint64_t PageScan::Step(const Machine& m, uint64_t budget,
                        absl::FunctionRef<bool(const PageOwner&)> emit) {
  if (done_) return 0;
  return filter_.state == PageState::kAllocated ? StepAllocated(m, budget, emit)
                                                : StepPages(m, budget, emit);
}

uint64_t PageScan::StepAllocated(const Machine& m, uint64_t budget,
                                 absl::FunctionRef<bool(const PageOwner&)> emit) {
  uint64_t visited = 0;
  bool stopped = false;
  m.ForEachOwnedBlock(Pfn(next_), [&](const PageOwner& p) {
    stopped = true;
    if (p.pfn.raw() >= end_) {
      done_ = true;
      next_ = end_;
      return false;
    }
    if (visited >= budget) {
      next_ = p.pfn.raw();
      return false;
    }
    ++visited;
    next_ = p.pfn.raw() + 1;
    if (!filter_.Matches(p)) return true;
    const bool more = emit(p);
    if (Emitted()) {
      done_ = true;
      return false;
    }
    return more;
  });
  if (!stopped) {  // no record left from next_ on
    done_ = true;
    next_ = end_;
  }
  return visited;
}

uint64_t PageScan::StepPages(const Machine& m, uint64_t budget,
                             absl::FunctionRef<bool(const PageOwner&)> emit) {
  const uint64_t start = next_;
  const uint64_t slice_end = std::min(end_, start + budget);
  uint64_t pfn = start;
  while (pfn < slice_end) {
    const absl::StatusOr<PageOwner> p = m.PageRecord(Pfn(pfn++));
    if (!p.ok() || !p->owner || !p->pfn.aligned_to(p->order)) continue;
    const bool allocated = p->allocated && p->handle.valid();
    const bool freed = !p->allocated;
    const bool listed = filter_.state == PageState::kAny     ? allocated || freed
                        : filter_.state == PageState::kFreed ? freed
                                                             : allocated;
    if (!listed || !filter_.Matches(*p)) continue;
    const bool more = emit(*p);
    if (Emitted()) {
      done_ = true;
      next_ = pfn;
      return pfn - start;
    }
    if (!more) break;
  }
  next_ = pfn;
  if (pfn >= end_) done_ = true;
  return pfn - start;
}

std::vector<StackUsage> StacksOwning(const StackDepot& depot, int64_t threshold) {
  threshold = std::max<int64_t>(1, threshold);
  std::vector<StackUsage> out;
  depot.ForEachOwnerStack([&](const StackUsage& s) {
    if (s.pages >= threshold) out.push_back(s);
  });
  return out;
}

std::vector<StackUsage> AllStacks(const StackDepot& depot) {
  std::vector<StackUsage> out;
  depot.ForEachStack([&](const StackUsage& s) { out.push_back(s); });
  std::reverse(out.begin(), out.end());
  return out;
}

void OrderStacks(StackOrder order, size_t top, std::vector<StackUsage>* stacks) {
  if (order == StackOrder::kPages) {
    std::stable_sort(stacks->begin(), stacks->end(),
                     [](const StackUsage& a, const StackUsage& b) { return a.pages > b.pages; });
  } else if (order == StackOrder::kAllocations) {
    std::stable_sort(stacks->begin(), stacks->end(), [](const StackUsage& a, const StackUsage& b) {
      return a.allocations > b.allocations;
    });
  }
  if (top != 0 && stacks->size() > top) stacks->resize(top);
}

absl::StatusOr<PageReport> QueryPage(const Machine& m, Pfn pfn) {
  PageReport r;
  PO_ASSIGN_OR_RETURN(r.owner, m.BlockOwner(pfn));
  PO_ASSIGN_OR_RETURN(r.dump_page_owner_text, DumpPageOwner(m, pfn));
  const std::optional<AllocatedBlock> block = m.allocator().BlockContaining(pfn);
  r.block_head = block.has_value() ? block->head : pfn;
  r.block_order = block.has_value() ? block->order : Order(0);
  const PageOwner& o = r.owner;
  if (block.has_value() && o.owner && o.allocated && o.handle.valid()) {
    AppendPageOwnerBlock(o, m.depot().Fetch(o.handle), m.symbols(), DumpFormat::kToday,
                         &r.page_owner_text);
  }
  if (o.handle.valid()) r.alloc_stack = m.depot().Usage(o.handle);
  if (o.free_handle.valid()) r.free_stack = m.depot().Usage(o.free_handle);
  return r;
}

bool RenderOwnedBlocks(const Machine& m, DumpFormat format, int max_blocks, Pfn* next,
                       std::string* out) {
  bool done = true;
  int n = 0;
  m.ForEachOwnedBlock(*next, [&](const PageOwner& p) {
    if (n++ == max_blocks) {
      *next = p.pfn;
      done = false;
      return false;
    }
    AppendPageOwnerBlock(p, m.depot().Fetch(p.handle), m.symbols(), format, out);
    return true;
  });
  return done;
}

}  // namespace pageowner
