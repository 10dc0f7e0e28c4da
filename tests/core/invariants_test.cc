// The invariant checkers: quiet on consistent states, and each finds the break it is for.
#include "core/invariants.h"

#include <cstdint>
#include <vector>

#include "core/machine.h"
#include "core/stack_depot.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

MachineOptions Small(bool tracking) {
  return MachineOptions{.pages = PageCount(2048), .depot_max_pools = 4, .tracking = tracking};
}

TEST(CheckMachineInvariants, HoldThroughEveryKindOfEvent) {
  Machine m(Small(/*tracking=*/true));
  EXPECT_TRUE(CheckMachineInvariants(m).ok()) << CheckMachineInvariants(m);
  std::vector<std::vector<uint64_t>> stacks;
  for (uint64_t i = 0; i < 64; ++i) stacks.push_back({0xffffffff81000000 + i * 16, i + 1});
  std::vector<Pfn> live;
  for (size_t i = 0; i < stacks.size(); ++i) {
    absl::StatusOr<EventResult> r = m.Alloc(
        {.order = Order(i % 4), .gfp_mask = 0xcc0, .frames = stacks[i], .pid = 1, .comm = "t"});
    ASSERT_TRUE(r.ok()) << r.status();
    live.push_back(r->pfn);
  }
  ASSERT_TRUE(m.Migrate({.pfn = live[5], .reason = MigrateReason::kCompaction}).ok());
  ASSERT_TRUE(m.Free({.pfn = live[6], .order = Order(2), .frames = stacks[0]}).ok());
  EXPECT_TRUE(CheckMachineInvariants(m).ok()) << CheckMachineInvariants(m);
  m.SetTracking(false, 1);
  ASSERT_TRUE(m.Alloc({.order = Order(3), .frames = stacks[1]}).ok());
  EXPECT_TRUE(CheckMachineInvariants(m).ok()) << CheckMachineInvariants(m);
  m.SetTracking(true, 2);  // the untracked block becomes early pages
  EXPECT_TRUE(CheckMachineInvariants(m).ok()) << CheckMachineInvariants(m);
  // Past the depot's 4 pools: the failure handle, and still consistent.
  for (uint64_t i = 0; i < 4000; ++i) {
    std::vector<uint64_t> f = {0xffffffff82000000 + i, 1, 2, 3, 4, 5, 6, 7};
    if (!m.Alloc({.order = Order(0), .frames = f}).ok()) break;
  }
  EXPECT_GT(m.counters().failure_handle_uses, 0u);
  EXPECT_TRUE(CheckMachineInvariants(m).ok()) << CheckMachineInvariants(m);
}

TEST(CheckMachineInvariants, FindsAStackCountThatDisagreesWithTheRecords) {
  Machine m(Small(/*tracking=*/true));
  const uint64_t frames[] = {0xffffffff81000010};
  absl::StatusOr<EventResult> r = m.Alloc({.order = Order(1), .frames = frames});
  ASSERT_TRUE(r.ok());
  m.depot().AddPages(r->handle, 1);  // a page no record holds
  const absl::Status s = CheckMachineInvariants(m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_NE(s.message().find("pages"), absl::string_view::npos) << s;
}

TEST(CheckDepotInvariants, FindsNegativePagesAndHoldsOtherwise) {
  StackDepot depot(StackDepotOptions{.max_depth = 4, .max_pools = 2}, nullptr);
  const uint64_t a[] = {1, 2, 3, 4, 5, 6};  // cut to 4
  const uint64_t b[] = {7};
  const StackHandle ha = depot.Save(a);
  ASSERT_EQ(depot.Save(b), depot.Save(b));
  depot.Charge(ha, 2);
  EXPECT_TRUE(CheckDepotInvariants(depot).ok()) << CheckDepotInvariants(depot);
  depot.AddPages(ha, -3);
  EXPECT_EQ(CheckDepotInvariants(depot).code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace pageowner
