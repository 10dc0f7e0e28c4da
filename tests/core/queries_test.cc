#include "core/queries.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pageowner {
namespace {

constexpr uint64_t kPages = 4096;

class QueriesTest : public ::testing::Test {
 protected:
  QueriesTest() : m_(Options()) {}
  static MachineOptions Options() {
    MachineOptions o;
    o.pages = PageCount(kPages);
    o.tracking = true;
    return o;
  }
  // An allocation at `pfn` by `pid`/`comm`; returns its handle.
  StackHandle AllocAt(uint64_t pfn, unsigned order, int32_t pid, const char* comm,
                      const std::vector<uint64_t>& frames) {
    EventResult r = m_.Apply(AllocEvent{.order = Order(order),
                                        .frames = frames,
                                        .pid = pid,
                                        .tgid = pid,
                                        .comm = comm,
                                        .pfn = Pfn(pfn)});
    EXPECT_TRUE(r.status.ok()) << r.status;
    return r.handle;
  }
  void FreeAt(uint64_t pfn, unsigned order) {
    EventResult r = m_.Apply(FreeEvent{.pfn = Pfn(pfn), .order = Order(order)});
    EXPECT_TRUE(r.status.ok()) << r.status;
  }
  // Every record a scan emits, in budgets of `budget`, pausing after each `per_pause` records.
  std::vector<uint64_t> ScanAll(const PageScanRequest& req, uint64_t budget, int per_pause) {
    absl::StatusOr<PageScan> scan = PageScan::Create(m_.total_pages(), req);
    EXPECT_TRUE(scan.ok()) << scan.status();
    std::vector<uint64_t> out;
    int steps = 0;
    while (!scan->done() && ++steps < 100000) {
      int n = 0;
      scan->Step(m_, budget, [&](const PageOwner& p) {
        out.push_back(p.pfn.raw());
        return ++n < per_pause;
      });
    }
    return out;
  }

  const std::vector<uint64_t> a_ = {0x1000, 0x2000};
  const std::vector<uint64_t> b_ = {0x3000, 0x4000};
  Machine m_;
};

TEST_F(QueriesTest, ScanListsAllocatedHeadsInPfnOrderWhateverTheBudgetAndPauses) {
  AllocAt(3000, 0, 1, "a", a_);
  AllocAt(3008, 3, 2, "b", b_);
  AllocAt(3100, 1, 1, "a", a_);
  PageScanRequest req;
  req.start = Pfn(2048);
  const std::vector<uint64_t> want = {3000, 3008, 3100};
  EXPECT_EQ(ScanAll(req, 1, 100), want);
  EXPECT_EQ(ScanAll(req, 1000, 1), want);
  req.filter.pid = 2;
  EXPECT_EQ(ScanAll(req, 2, 100), std::vector<uint64_t>{3008});
  req.filter.pid.reset();
  req.filter.order = Order(1);
  EXPECT_EQ(ScanAll(req, 2, 100), std::vector<uint64_t>{3100});
  req.filter.order.reset();
  req.limit = 2;
  EXPECT_EQ(ScanAll(req, 1, 1), (std::vector<uint64_t>{3000, 3008}));
  req.limit = 0;
  req.end = Pfn(3100);
  EXPECT_EQ(ScanAll(req, 1, 100), (std::vector<uint64_t>{3000, 3008}));
}

TEST_F(QueriesTest, ScanOfFreedRecordsWalksPagesAndResumesAfterThePause) {
  AllocAt(3000, 0, 1, "a", a_);
  AllocAt(3008, 3, 2, "b", b_);
  FreeAt(3008, 3);
  PageScanRequest req;
  req.start = Pfn(2900);
  req.end = Pfn(3200);
  req.filter.state = PageState::kFreed;
  EXPECT_EQ(ScanAll(req, 7, 100), std::vector<uint64_t>{3008});
  req.filter.state = PageState::kAny;
  EXPECT_EQ(ScanAll(req, 7, 1), (std::vector<uint64_t>{3000, 3008}));
  req.filter.comm = "b";
  EXPECT_EQ(ScanAll(req, 300, 100), std::vector<uint64_t>{3008});

  absl::StatusOr<PageScan> scan = PageScan::Create(m_.total_pages(), req);
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->Step(m_, 50, [](const PageOwner&) { return true; }), 50u);
  EXPECT_EQ(scan->next(), Pfn(2950));
  EXPECT_FALSE(scan->done());
}

TEST_F(QueriesTest, ScanRefusesBadRanges) {
  PageScanRequest req;
  req.start = Pfn(kPages + 1);
  EXPECT_EQ(PageScan::Create(m_.total_pages(), req).status().code(), absl::StatusCode::kOutOfRange);
  req.start = Pfn(10);
  req.end = Pfn(5);
  EXPECT_EQ(PageScan::Create(m_.total_pages(), req).status().message(),
            "end_pfn 5 is below start_pfn 10");
  req.end.reset();
  req.filter.order = Order(11);
  EXPECT_EQ(PageScan::Create(m_.total_pages(), req).status().code(),
            absl::StatusCode::kInvalidArgument);
  req.filter.order.reset();
  req.start = Pfn(kPages);  // the end of memory: empty, not an error
  absl::StatusOr<PageScan> scan = PageScan::Create(m_.total_pages(), req);
  ASSERT_TRUE(scan.ok());
  int n = 0;
  scan->Step(m_, 10, [&](const PageOwner&) { return ++n > 0; });
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(scan->done());
}

TEST_F(QueriesTest, StacksOwningAndTheirOrders) {
  const StackHandle ha = AllocAt(3000, 0, 1, "a", a_);
  AllocAt(3001, 0, 1, "a", a_);
  AllocAt(3002, 0, 1, "a", a_);
  FreeAt(3001, 0);
  FreeAt(3002, 0);
  const StackHandle hb = AllocAt(3008, 3, 2, "b", b_);
  // a: 1 page, 3 allocations; b: 8 pages, 1 allocation (the boot/early stacks own pages too).
  std::vector<StackUsage> s = StacksOwning(m_.depot(), 2);
  for (const StackUsage& u : s) EXPECT_GE(u.pages, 2);
  bool has_a = false;
  for (const StackUsage& u : StacksOwning(m_.depot(), 0)) has_a |= u.handle == ha;
  EXPECT_TRUE(has_a);  // threshold 0 means 1

  std::vector<StackUsage> two = {m_.depot().Usage(ha), m_.depot().Usage(hb)};
  OrderStacks(StackOrder::kPages, 0, &two);
  EXPECT_EQ(two[0].handle, hb);
  OrderStacks(StackOrder::kAllocations, 0, &two);
  EXPECT_EQ(two[0].handle, ha);
  EXPECT_EQ(two[0].allocations, 3u);
  OrderStacks(StackOrder::kPages, 1, &two);
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].handle, hb);
}

// Issue 10, finding 8: stacks that own no pages (free stacks) could not be listed.
TEST_F(QueriesTest, AllStacksListsFreeOnlyStacksNewestFirst) {
  const StackHandle ha = AllocAt(3000, 0, 1, "a", a_);
  EventResult r = m_.Apply(FreeEvent{.pfn = Pfn(3000), .order = Order(0), .frames = b_});
  ASSERT_TRUE(r.status.ok());
  const StackHandle free_stack = r.handle;
  ASSERT_TRUE(free_stack.valid());
  bool owning_has_free = false;
  for (const StackUsage& u : StacksOwning(m_.depot(), 0)) owning_has_free |= u.handle == free_stack;
  EXPECT_FALSE(owning_has_free);
  const std::vector<StackUsage> all = AllStacks(m_.depot());
  ASSERT_GE(all.size(), 2u);
  EXPECT_EQ(all[0].handle, free_stack);  // newest first
  EXPECT_EQ(all[0].pages, 0);
  EXPECT_EQ(all[1].handle, ha);
  EXPECT_EQ(all[1].pages, 0);
  EXPECT_EQ(all[1].allocations, 1u);
  EXPECT_EQ(all.size(), m_.depot().stats().persistent_count);
}

TEST_F(QueriesTest, QueryPageOfATailPageNamesTheBlock) {
  const StackHandle hb = AllocAt(3008, 3, 2, "b", b_);
  absl::StatusOr<PageReport> r = QueryPage(m_, Pfn(3010));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->block_head, Pfn(3008));
  EXPECT_EQ(r->block_order, Order(3));
  EXPECT_EQ(r->owner.pfn, Pfn(3008));
  ASSERT_TRUE(r->alloc_stack.has_value());
  EXPECT_EQ(r->alloc_stack->handle, hb);
  EXPECT_FALSE(r->free_stack.has_value());
  EXPECT_EQ(
      r->page_owner_text.rfind("Page allocated via order 3, mask 0x0(), pid 2, tgid 2 (b)", 0), 0u)
      << r->page_owner_text;
  EXPECT_EQ(QueryPage(m_, Pfn(kPages)).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(QueriesTest, RenderOwnedBlocksInSlicesEqualsTheWholeDump) {
  for (uint64_t pfn = 3000; pfn < 3040; pfn += 2) AllocAt(pfn, 1, 7, "r", a_);
  const std::string whole = PageOwnerText(m_, DumpFormat::kToday);
  std::string sliced;
  Pfn next(0);
  int slices = 0;
  while (!RenderOwnedBlocks(m_, DumpFormat::kToday, 3, &next, &sliced)) ++slices;
  EXPECT_EQ(sliced, whole);
  EXPECT_GT(slices, 5);
}

}  // namespace
}  // namespace pageowner
