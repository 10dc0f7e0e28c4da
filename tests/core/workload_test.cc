#include "core/workload.h"

#include "gtest/gtest.h"

namespace pageowner {
namespace {

TEST(WorkloadTest, AppliedToAMachineEveryEventSucceedsAndFillIsKept) {
  WorkloadOptions wo;
  wo.pages = 1 << 16;
  wo.stacks = 500;
  wo.fill = 0.6;
  Workload w(wo);
  MachineOptions mo;
  mo.pages = PageCount(wo.pages);
  Machine m(mo);
  uint64_t kinds[3] = {};
  for (int i = 0; i < 200000; ++i) {
    const WorkloadEvent e = w.Next();
    const EventResult r = m.Apply(w.ToMachineEvent(e));
    ASSERT_TRUE(r.status.ok()) << r.status << " at event " << i;
    w.Observe(e, true, r.pfn);
    ++kinds[static_cast<int>(e.kind)];
  }
  const double used = static_cast<double>(m.allocator().allocated_pages().raw()) / wo.pages;
  EXPECT_GT(used, 0.5);
  EXPECT_LT(used, 0.7);
  EXPECT_GT(kinds[1], 50000u);  // frees
  EXPECT_GT(kinds[2], 5000u);   // migrations
  // The rest is the depot's pools.
  EXPECT_EQ(w.allocated_pages() + 4 * m.depot_pool_pfns().size(),
            m.allocator().allocated_pages().raw());
}

TEST(WorkloadTest, SameSeedSameEvents) {
  WorkloadOptions wo;
  wo.pages = 1 << 14;
  wo.stacks = 100;
  Workload a(wo), b(wo);
  for (int i = 0; i < 1000; ++i) {
    const WorkloadEvent x = a.Next(), y = b.Next();
    ASSERT_EQ(x.kind, y.kind);
    ASSERT_EQ(x.stack, y.stack);
    ASSERT_EQ(x.ts_ns, y.ts_ns);
    a.Observe(x, true, Pfn(i * 8));
    b.Observe(y, true, Pfn(i * 8));
  }
}

TEST(WorkloadTest, StacksHaveTheRequestedDepthAndNames) {
  WorkloadOptions wo;
  wo.stacks = 10;
  wo.depth = 16;
  Workload w(wo);
  EXPECT_EQ(w.frames(3).size(), 16u);
  EXPECT_EQ(Workload::SymbolName(0xffffffff81000000ULL + 0x400 * 5 + 0x1a), "func_5+0x1a/0x400");
}

}  // namespace
}  // namespace pageowner
