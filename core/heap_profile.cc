#include "core/heap_profile.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "core/content_id.h"

namespace pageowner {

HeapProfileScan::HeapProfileScan(PageFilter filter) : filter_(std::move(filter)) {}

void HeapProfileScan::Step(const Machine& m, uint64_t budget) {
  if (done_) return;
  uint64_t visited = 0;
  bool stopped = false;
  m.ForEachOwnedBlock(Pfn(next_), [&](const PageOwner& p) {
    if (visited >= budget) {
      next_ = p.pfn.raw();
      stopped = true;
      return false;
    }
    ++visited;
    next_ = p.pfn.raw() + 1;
    if (!filter_.Matches(p)) return true;
    ++blocks_[Key{p.handle.raw(), p.pid, p.comm, p.gfp_mask, p.order.raw()}];
    auto [it, inserted] = orders_.try_emplace(p.handle.raw());
    if (inserted) it->second.fill(0);
    if (p.order.valid()) ++it->second[p.order.raw()];
    return true;
  });
  if (!stopped) done_ = true;
}

HeapProfile HeapProfileScan::Finish(const Machine& m) const {
  HeapProfile out;
  out.total_pages = m.total_pages();
  out.in_use.reserve(blocks_.size());
  for (const auto& [k, blocks] : blocks_) {
    const Order order(k.order);
    out.in_use.push_back(InUseSample{.handle = StackHandle(k.handle),
                                     .pid = k.pid,
                                     .comm = k.comm,
                                     .gfp_mask = k.gfp_mask,
                                     .order = order,
                                     .blocks = blocks,
                                     .pages = PageCount(blocks * order.pages().raw())});
  }
  std::sort(out.in_use.begin(), out.in_use.end(), [](const InUseSample& a, const InUseSample& b) {
    return std::tie(a.handle, a.pid, a.comm, a.gfp_mask, a.order) <
           std::tie(b.handle, b.pid, b.comm, b.gfp_mask, b.order);
  });

  auto add_ever = [&](StackHandle handle, uint64_t allocations) {
    Order order(0);
    if (auto it = orders_.find(handle.raw()); it != orders_.end()) {
      // The most common order now; the smaller one on a tie (max_element keeps the first).
      order = Order(static_cast<unsigned>(std::max_element(it->second.begin(), it->second.end()) -
                                          it->second.begin()));
    }
    out.ever.push_back(EverSample{.handle = handle,
                                  .allocations = allocations,
                                  .order = order,
                                  .pages = PageCount(allocations * order.pages().raw())});
  };
  if (filter_.pid || filter_.tgid || filter_.comm || filter_.handle || filter_.order) {
    for (const auto& [handle, counts] : orders_) {
      add_ever(StackHandle(handle), m.depot().Usage(StackHandle(handle)).allocations);
    }
  } else {
    m.depot().ForEachOwnerStack([&](const StackUsage& s) {
      if (s.allocations > 0 || s.pages > 0) add_ever(s.handle, s.allocations);
    });
  }
  std::sort(out.ever.begin(), out.ever.end(),
            [](const EverSample& a, const EverSample& b) { return a.handle < b.handle; });

  // The stacks the samples name, by handle.
  std::vector<StackHandle> handles;
  for (const InUseSample& s : out.in_use) handles.push_back(s.handle);
  for (const EverSample& s : out.ever) handles.push_back(s.handle);
  std::sort(handles.begin(), handles.end());
  handles.erase(std::unique(handles.begin(), handles.end()), handles.end());
  out.stacks.reserve(handles.size());
  for (StackHandle h : handles) {
    const absl::Span<const uint64_t> frames = m.depot().Fetch(h);
    out.stacks.push_back(ProfileStack{.handle = h,
                                      .content_id = StackContentId(frames, m.symbols()),
                                      .frames = {frames.begin(), frames.end()}});
  }
  return out;
}

HeapProfile BuildHeapProfile(const Machine& m, const PageFilter& filter) {
  HeapProfileScan scan(filter);
  while (!scan.done()) scan.Step(m, ~uint64_t{0});
  return scan.Finish(m);
}

}  // namespace pageowner
