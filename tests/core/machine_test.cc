#include "core/machine.h"

#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/invariants.h"
#include "core/kernel_flags.h"
#include "core/queries.h"
#include "core/reports.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

constexpr uint64_t kPages = 16384;  // 64 MiB

std::vector<uint64_t> Stack(uint64_t seed, size_t depth = 8) {
  std::vector<uint64_t> s(depth);
  for (size_t i = 0; i < depth; ++i) s[i] = 0xffffffff81000000ULL + seed * 0x10000 + i * 0x40;
  return s;
}

MachineOptions Small(bool tracking = true, uint32_t pools = 8192, uint64_t pages = kPages) {
  MachineOptions o;
  o.pages = PageCount(pages);
  o.depot_max_pools = pools;
  o.tracking = tracking;
  o.boot_ts_ns = 1000;
  return o;
}

int64_t SumOfStackPages(const Machine& m) {
  int64_t sum = 0;
  m.depot().ForEachStack([&](const StackUsage& s) { sum += s.pages; });
  return sum;
}

// Everything an event could change, to check that a bad one changed nothing.
struct Snapshot {
  uint64_t free_pages, tracked;
  StackDepotStats depot;
  std::string dump;
  int64_t stack_pages;
  uint64_t allocs, frees, migrates;
  bool operator==(const Snapshot& o) const {
    return free_pages == o.free_pages && tracked == o.tracked &&
           depot.persistent_count == o.depot.persistent_count && depot.pools == o.depot.pools &&
           dump == o.dump && stack_pages == o.stack_pages && allocs == o.allocs &&
           frees == o.frees && migrates == o.migrates;
  }
};
Snapshot Take(const Machine& m) {
  return Snapshot{m.allocator().free_pages().raw(),
                  m.tracked_pages().raw(),
                  m.depot().stats(),
                  PageOwnerText(m, DumpFormat::kToday),
                  SumOfStackPages(m),
                  m.counters().allocs,
                  m.counters().frees,
                  m.counters().migrates};
}

TEST(MachineTest, StartRegistersSpecialStacksAndMarksTheDepotPoolEarly) {
  Machine m(Small());
  EXPECT_TRUE(m.dummy_handle().valid());
  EXPECT_TRUE(m.failure_handle().valid());
  EXPECT_TRUE(m.early_handle().valid());
  EXPECT_NE(m.dummy_handle(), m.failure_handle());
  EXPECT_NE(m.failure_handle(), m.early_handle());
  EXPECT_EQ(
      m.FormatStack(m.early_handle()),
      (std::vector<std::string>{"register_early_stack+0x4b/0x80", "init_page_owner+0x34/0x290",
                                "mm_core_init+0x9b/0x110", "start_kernel+0x2a5/0x810"}));
  // The depot's first pool (order 2) was taken before page_owner was on: four early pages.
  EXPECT_EQ(m.allocator().allocated_pages().raw(), 4u);
  EXPECT_EQ(m.tracked_pages().raw(), 4u);
  EXPECT_EQ(m.counters().early_handle_pages, 4u);
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, 4);
  const PageOwner p = *m.PageRecord(Pfn(1));
  EXPECT_EQ(p.handle, m.early_handle());
  EXPECT_EQ(p.order.raw(), 0u);
  EXPECT_EQ(p.gfp_mask, 0u);
  EXPECT_EQ(p.comm, "swapper");
  EXPECT_EQ(p.ts_ns, 1000u);
}

TEST(MachineTest, AllocRecordsEveryField) {
  Machine m(Small());
  const auto frames = Stack(1);
  AllocEvent e{.order = Order(2),
               .gfp_mask = 0x140dca,
               .frames = frames,
               .pid = 42,
               .tgid = 40,
               .comm = "a-very-long-command-name",
               .ts_ns = 123456789};
  const EventResult r = *m.Alloc(e);
  EXPECT_EQ(r.handle, m.depot().Find(frames));
  const PageOwner p = *m.BlockOwner(r.pfn + PageCount(3));
  EXPECT_EQ(p.pfn, r.pfn);
  EXPECT_EQ(p.order.raw(), 2u);
  EXPECT_EQ(p.gfp_mask, 0x140dcau);
  EXPECT_EQ(p.handle, r.handle);
  EXPECT_EQ(p.pid, 42);
  EXPECT_EQ(p.tgid, 40);
  EXPECT_EQ(p.comm, "a-very-long-com");  // TASK_COMM_LEN - 1
  EXPECT_EQ(p.ts_ns, 123456789u);
  EXPECT_EQ(p.last_migrate_reason, MigrateReason::kNone);
  EXPECT_TRUE(p.owner);
  EXPECT_TRUE(p.allocated);
  EXPECT_FALSE(p.free_handle.valid());
  // Every page of the block holds the record, as __set_page_owner_handle writes it.
  EXPECT_EQ(m.PageRecord(r.pfn + PageCount(3))->handle, r.handle);
  EXPECT_EQ(m.depot().Usage(r.handle).pages, 4);
  EXPECT_EQ(m.depot().Usage(r.handle).allocations, 1u);
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
}

TEST(MachineTest, FreedPageKeepsLastOwnerAndGainsFreeInfo) {
  Machine m(Small());
  const auto a = Stack(1), f = Stack(2);
  const EventResult r = *m.Alloc({.order = Order(1),
                                  .gfp_mask = 0xcc0,
                                  .frames = a,
                                  .pid = 7,
                                  .tgid = 7,
                                  .comm = "x",
                                  .ts_ns = 10});
  const EventResult fr =
      *m.Free({.pfn = r.pfn, .order = Order(1), .frames = f, .pid = 9, .tgid = 8, .ts_ns = 20});
  EXPECT_EQ(fr.handle, m.depot().Find(f));
  for (uint64_t i = 0; i < 2; ++i) {
    const PageOwner p = *m.PageRecord(r.pfn + PageCount(i));
    EXPECT_TRUE(p.owner);
    EXPECT_FALSE(p.allocated);
    EXPECT_EQ(p.handle, r.handle);
    EXPECT_EQ(p.pid, 7);
    EXPECT_EQ(p.ts_ns, 10u);
    EXPECT_EQ(p.free_handle, fr.handle);
    EXPECT_EQ(p.free_pid, 9);
    EXPECT_EQ(p.free_tgid, 8);
    EXPECT_EQ(p.free_ts_ns, 20u);
  }
  EXPECT_EQ(m.depot().Usage(r.handle).pages, 0);
  EXPECT_EQ(m.depot().Usage(r.handle).allocations, 1u);
  EXPECT_EQ(SumOfStackPages(m), 4);  // the early pool pages only
}

TEST(MachineTest, AllocErrorsHaveTheirCodesAndChangeNothing) {
  Machine m(Small());
  const auto a = Stack(1);
  const EventResult taken = *m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(100)});
  const Snapshot before = Take(m);
  EXPECT_EQ(m.Alloc({.order = Order(11), .frames = a}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Alloc({.order = Order(0), .frames = {}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(kPages)}).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Alloc({.order = Order(0), .frames = a, .pfn = taken.pfn}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(100)}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(m.Alloc({.order = Order(1), .frames = a, .pfn = Pfn(101)}).status().code(),
            absl::StatusCode::kInvalidArgument);  // misaligned
  EXPECT_TRUE(Take(m) == before);
}

TEST(MachineTest, OutOfMemoryIsResourceExhaustedAndChangesNothing) {
  Machine m(Small(true, 8192, 1024));
  const auto a = Stack(1);
  while (m.Alloc({.order = Order(3), .frames = a}).ok()) {
  }
  const Snapshot before = Take(m);
  EXPECT_EQ(m.Alloc({.order = Order(3), .frames = a}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Take(m) == before);
}

TEST(MachineTest, FreeErrorsHaveTheirCodesAndChangeNothing) {
  Machine m(Small());
  const auto a = Stack(1);
  const EventResult r = *m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(64)});
  ASSERT_TRUE(m.Free({.pfn = Pfn(128), .order = Order(0), .frames = a}).status().code() ==
              absl::StatusCode::kFailedPrecondition);  // never allocated
  const Snapshot before = Take(m);
  EXPECT_EQ(m.Free({.pfn = r.pfn, .order = Order(11)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Free({.pfn = Pfn(kPages + 5), .order = Order(0)}).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Free({.pfn = r.pfn, .order = Order(1)}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // wrong order
  EXPECT_EQ(m.Free({.pfn = r.pfn + PageCount(1), .order = Order(0)}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // tail page
  EXPECT_TRUE(Take(m) == before);
  ASSERT_TRUE(m.Free({.pfn = r.pfn, .order = Order(2), .frames = a}).ok());
  const Snapshot after_free = Take(m);
  EXPECT_EQ(m.Free({.pfn = r.pfn, .order = Order(2), .frames = a}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // double free
  EXPECT_TRUE(Take(m) == after_free);
}

TEST(MachineTest, MigrationCopiesTheOwnerAndRecordsTheReason) {
  Machine m(Small());
  const auto a = Stack(1), f1 = Stack(2), mig = Stack(3);
  // Give the source block an earlier free record so that the copy of free pid/tgid shows.
  const EventResult first = *m.Alloc({.order = Order(1), .frames = a, .pfn = Pfn(512)});
  ASSERT_TRUE(
      m.Free({.pfn = first.pfn, .order = Order(1), .frames = f1, .pid = 3, .tgid = 4, .ts_ns = 50})
          .ok());
  const EventResult r = *m.Alloc({.order = Order(1),
                                  .gfp_mask = 0x140cca,
                                  .frames = a,
                                  .pid = 11,
                                  .tgid = 10,
                                  .comm = "app",
                                  .ts_ns = 100,
                                  .pfn = Pfn(512)});
  const int64_t pages_before = m.depot().Usage(r.handle).pages;
  const EventResult mr = *m.Migrate({.pfn = r.pfn,
                                     .reason = MigrateReason::kCompaction,
                                     .target = Pfn(2048),
                                     .frames = mig,
                                     .pid = 99,
                                     .tgid = 99,
                                     .ts_ns = 200});
  EXPECT_EQ(mr.pfn, Pfn(2048));
  EXPECT_EQ(mr.handle, r.handle);
  const PageOwner t = *m.BlockOwner(Pfn(2049));
  EXPECT_EQ(t.pfn, Pfn(2048));
  EXPECT_EQ(t.handle, r.handle);
  EXPECT_EQ(t.order.raw(), 1u);
  EXPECT_EQ(t.gfp_mask, 0x140ccau);
  EXPECT_EQ(t.pid, 11);
  EXPECT_EQ(t.tgid, 10);
  EXPECT_EQ(t.comm, "app");
  EXPECT_EQ(t.ts_ns, 100u);
  EXPECT_EQ(t.last_migrate_reason, MigrateReason::kCompaction);
  EXPECT_TRUE(t.allocated);
  EXPECT_FALSE(t.free_handle.valid());  // __update_page_owner_free_handle(new, 0, ...)
  EXPECT_EQ(t.free_pid, 3);
  EXPECT_EQ(t.free_tgid, 4);
  EXPECT_EQ(t.free_ts_ns, 50u);
  // The target is allocated with the source's migratetype (Movable from the mask).
  EXPECT_EQ(m.allocator().AllocationMigrateType(Pfn(2048)), MigrateType::kMovable);
  // The source is free and keeps its owner with the migrating task's free record.
  const PageOwner s = *m.PageRecord(Pfn(512));
  EXPECT_FALSE(s.allocated);
  EXPECT_EQ(s.handle, r.handle);
  EXPECT_EQ(s.free_handle, m.depot().Find(mig));
  EXPECT_EQ(s.free_pid, 99);
  EXPECT_EQ(s.free_ts_ns, 200u);
  EXPECT_FALSE(m.allocator().IsAllocated(Pfn(512)));
  EXPECT_EQ(m.depot().Usage(r.handle).pages, pages_before);
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
  // Without a target the allocator picks one.
  const EventResult again = *m.Migrate({.pfn = Pfn(2048), .reason = MigrateReason::kNumaMisplaced});
  EXPECT_NE(again.pfn, Pfn(2048));
  EXPECT_EQ(m.BlockOwner(again.pfn)->last_migrate_reason, MigrateReason::kNumaMisplaced);
}

TEST(MachineTest, MigrateErrorsHaveTheirCodesAndChangeNothing) {
  Machine m(Small());
  const auto a = Stack(1);
  const EventResult r = *m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(64)});
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(300)}).ok());
  const Snapshot before = Take(m);
  EXPECT_EQ(m.Migrate({.pfn = r.pfn, .reason = MigrateReason::kNone}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Migrate({.pfn = r.pfn, .reason = static_cast<MigrateReason>(10)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(m.Migrate({.pfn = Pfn(kPages)}).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Migrate({.pfn = r.pfn, .target = Pfn(kPages)}).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Migrate({.pfn = Pfn(1000)}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // free page
  EXPECT_EQ(m.Migrate({.pfn = r.pfn + PageCount(2)}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // tail page
  EXPECT_EQ(m.Migrate({.pfn = r.pfn, .target = Pfn(298)}).status().code(),
            absl::StatusCode::kInvalidArgument);  // target not aligned to order 2
  EXPECT_TRUE(Take(m) == before);
}

TEST(MachineTest, MigrateToAnOccupiedTargetIsAlreadyExists) {
  Machine m(Small());
  const auto a = Stack(1);
  ASSERT_TRUE(m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(64)}).ok());
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(302)}).ok());
  const Snapshot before = Take(m);
  // 300..303 holds the allocated page 302.
  EXPECT_EQ(m.Migrate({.pfn = Pfn(64), .target = Pfn(300)}).status().code(),
            absl::StatusCode::kAlreadyExists);
  // Onto itself.
  EXPECT_EQ(m.Migrate({.pfn = Pfn(64), .target = Pfn(64)}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Take(m) == before);
}

TEST(MachineTest, DepotPoolAllocationIsRecursionAndGetsTheDummyHandle) {
  Machine m(Small());
  ASSERT_EQ(m.depot().stats().pools, 1u);
  uint64_t seed = 100;
  // Fill the first pool with distinct stacks until the depot takes a second one.
  std::vector<EventResult> results;
  while (m.depot().stats().pools < 2) {
    const auto s = Stack(seed++, 16);
    results.push_back(*m.Alloc({.order = Order(0),
                                .gfp_mask = 0xcc0,
                                .frames = s,
                                .pid = 5,
                                .tgid = 5,
                                .comm = "worker",
                                .ts_ns = seed}));
  }
  EXPECT_EQ(m.counters().dummy_handle_uses, 1u);
  EXPECT_EQ(m.counters().failure_handle_uses, 0u);
  // The allocation that needed the pool still got its own stack.
  EXPECT_NE(results.back().handle, m.dummy_handle());
  // Exactly one order-2 block, the pool, is owned by the dummy stack.
  EXPECT_EQ(m.depot().Usage(m.dummy_handle()).pages, 4);
  int dummy_blocks = 0;
  m.ForEachOwnedBlock(Pfn(0), [&](const PageOwner& p) {
    if (p.handle == m.dummy_handle()) {
      ++dummy_blocks;
      EXPECT_EQ(p.order.raw(), 2u);
      EXPECT_EQ(p.comm, "worker");  // allocated on behalf of the task being recorded
      EXPECT_EQ(GfpMigrateType(p.gfp_mask), MigrateType::kUnmovable);
    }
    return true;
  });
  EXPECT_EQ(dummy_blocks, 1);
  EXPECT_EQ(m.FormatStack(m.dummy_handle())[0], "register_dummy_stack+0x4b/0x80");
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
}

TEST(MachineTest, AStackHoldingSavePageOwnersReturnAddressIsRecursion) {
  Machine m(Small());
  std::vector<uint64_t> s = Stack(1);
  s.insert(s.begin() + 2, m.set_page_owner_ret_ip());
  const EventResult r = *m.Alloc({.order = Order(0), .frames = s});
  EXPECT_EQ(r.handle, m.dummy_handle());
  EXPECT_EQ(m.counters().dummy_handle_uses, 1u);
}

TEST(MachineTest, PoolLimitGivesTheFailureHandle) {
  Machine m(Small(true, /*pools=*/1));
  uint64_t seed = 100;
  while (m.counters().failure_handle_uses == 0) {
    const auto s = Stack(seed++, 16);
    const EventResult r = *m.Alloc({.order = Order(0), .frames = s});
    if (m.counters().failure_handle_uses > 0) {
      EXPECT_EQ(r.handle, m.failure_handle());
    }
  }
  EXPECT_EQ(m.depot().stats().pools, 1u);
  EXPECT_EQ(m.depot().stats().failed, 1u);
  EXPECT_EQ(m.depot().Usage(m.failure_handle()).pages, 1);
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
}

TEST(MachineTest, OutOfMemoryForAPoolGivesTheFailureHandle) {
  Machine m(Small(true, 8192, /*pages=*/256));
  // Fill the first pool with stacks, leaving one free page in memory.
  uint64_t seed = 100;
  const uint64_t room = 256 - 4 - 1;
  for (uint64_t i = 0; i < room; ++i) {
    const auto s = Stack(i < 101 ? seed++ : 100, 16);  // 101 new stacks fill pool 0 (3 special)
    ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = s}).ok());
  }
  ASSERT_EQ(m.depot().stats().pools, 1u);
  ASSERT_EQ(m.allocator().free_pages().raw(), 1u);
  const auto fresh = Stack(5000, 16);
  const EventResult r = *m.Alloc({.order = Order(0), .frames = fresh});
  EXPECT_EQ(r.handle, m.failure_handle());
  EXPECT_EQ(m.counters().failure_handle_uses, 1u);
  EXPECT_FALSE(m.depot().Find(fresh).valid());
}

TEST(MachineTest, PagesAllocatedWhileTrackingWasOffGetTheEarlyHandle) {
  Machine m(Small(/*tracking=*/false));
  EXPECT_EQ(m.tracked_pages().raw(), 0u);
  const auto a = Stack(1);
  const EventResult r = *m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(64)});
  EXPECT_FALSE(r.handle.valid());
  EXPECT_FALSE(m.PageRecord(Pfn(64))->owner);
  m.SetTracking(true, 777);
  // The pool (4 pages) and the block (4 pages): one order-0 record a page.
  EXPECT_EQ(m.tracked_pages().raw(), 8u);
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, 8);
  int printed = 0;
  m.ForEachOwnedBlock(Pfn(64), [&](const PageOwner& p) {
    if (p.pfn.raw() >= 68) return false;
    EXPECT_EQ(p.pfn.raw(), 64u + printed);
    EXPECT_EQ(p.handle, m.early_handle());
    EXPECT_EQ(p.order.raw(), 0u);
    EXPECT_EQ(p.ts_ns, 777u);
    ++printed;
    return true;
  });
  EXPECT_EQ(printed, 4);
  EXPECT_EQ(m.BlockOwner(Pfn(66))->pfn, Pfn(66));
  ASSERT_TRUE(m.Free({.pfn = Pfn(64), .order = Order(2), .frames = a}).ok());
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, 4);
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
}

// Issue 10, finding 7: a page freed while tracked, then allocated while tracking was off, kept
// its stale freed record when tracking came back, and was allocated but untracked.
TEST(MachineTest, AStaleFreedRecordGetsTheEarlyHandleWhenTrackingReturns) {
  Machine m(Small());
  const auto a = Stack(1);
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(100)}).ok());
  ASSERT_TRUE(m.Free({.pfn = Pfn(100), .order = Order(0), .frames = a}).ok());
  const uint64_t early_before = m.counters().early_handle_pages;
  m.SetTracking(false, 0);
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(100)}).ok());
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(101)}).ok());
  m.SetTracking(true, 555);
  EXPECT_EQ(m.counters().early_handle_pages - early_before, 2u);
  EXPECT_EQ(m.tracked_pages().raw(), m.allocator().allocated_pages().raw());
  const PageOwner p = *m.PageRecord(Pfn(100));
  EXPECT_TRUE(p.allocated);
  EXPECT_EQ(p.handle, m.early_handle());
  EXPECT_EQ(p.ts_ns, 555u);
  int listed = 0;
  m.ForEachOwnedBlock(Pfn(100), [&](const PageOwner& o) {
    if (o.pfn.raw() > 101) return false;
    ++listed;
    return true;
  });
  EXPECT_EQ(listed, 2);  // the dump lists pfn 100 again
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.allocator().allocated_pages().raw()));
}

TEST(MachineTest, FreeWhileTrackingIsOffStillTakesPagesOffTheirStack) {
  Machine m(Small());
  const auto a = Stack(1);
  const EventResult r = *m.Alloc({.order = Order(3), .frames = a});
  m.SetTracking(false, 0);
  ASSERT_TRUE(m.Free({.pfn = r.pfn, .order = Order(3), .frames = a}).ok());
  EXPECT_EQ(m.depot().Usage(r.handle).pages, 0);
  const PageOwner p = *m.PageRecord(r.pfn);
  EXPECT_FALSE(p.allocated);
  EXPECT_FALSE(p.free_handle.valid());  // nothing recorded while off
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.tracked_pages().raw()));
}

TEST(MachineTest, StackHintsAreCheckedAgainstTheFrames) {
  Machine m(Small());
  const auto a = Stack(1, 20), b = Stack(2);
  const EventResult first = *m.Alloc({.order = Order(0), .frames = a});
  EXPECT_EQ(m.depot().stats().truncated, 1u);
  // A good hint gives the same handle and still counts the cut.
  const EventResult good = *m.Alloc({.order = Order(0), .frames = a, .stack_hint = first.handle});
  EXPECT_EQ(good.handle, first.handle);
  EXPECT_EQ(m.depot().stats().truncated, 2u);
  // A hint for other frames is ignored: the frames decide.
  const EventResult wrong = *m.Alloc({.order = Order(0), .frames = b, .stack_hint = first.handle});
  EXPECT_EQ(wrong.handle, m.depot().Find(b));
  EXPECT_NE(wrong.handle, first.handle);
  // A hint that names nothing is ignored too.
  const EventResult none =
      *m.Free({.pfn = good.pfn, .order = Order(0), .frames = b, .stack_hint = StackHandle(999999)});
  EXPECT_EQ(none.handle, wrong.handle);
  EXPECT_EQ(m.depot().Usage(first.handle).pages, 1);
  EXPECT_EQ(m.depot().Usage(first.handle).allocations, 2u);
}

TEST(MachineTest, ApplyDispatchesAndCountsRejections) {
  Machine m(Small());
  const auto a = Stack(1);
  EventResult r = m.Apply(AllocEvent{.order = Order(0), .frames = a, .pfn = Pfn(10)});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.pfn, Pfn(10));
  r = m.Apply(MigrateEvent{.pfn = Pfn(10), .target = Pfn(20)});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.pfn, Pfn(20));
  r = m.Apply(FreeEvent{.pfn = Pfn(10), .order = Order(0)});
  EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition);
  r = m.Apply(FreeEvent{.pfn = Pfn(20), .order = Order(0)});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(m.counters().allocs, 1u);
  EXPECT_EQ(m.counters().migrates, 1u);
  EXPECT_EQ(m.counters().frees, 1u);
  EXPECT_EQ(m.counters().rejected, 1u);
}

TEST(MachineTest, ValidateOptionsNamesTheBadOption) {
  MachineOptions o;
  o.pages = PageCount(0);
  EXPECT_EQ(Machine::ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o.pages = PageCount(1024);
  o.stack_depth = 65;
  EXPECT_EQ(Machine::ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o.stack_depth = 64;
  o.depot_max_pools = 0;
  EXPECT_EQ(Machine::ValidateOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o.depot_max_pools = 131071;
  EXPECT_TRUE(Machine::ValidateOptions(o).ok());
}

// ---- Trusted events (the rules T1..T5 and early blocks of core/machine.h) ----

// The blocks the dump prints, as (pfn, record order, handle).
struct Printed {
  uint64_t pfn;
  unsigned order;
  uint32_t handle;
  friend bool operator==(const Printed&, const Printed&) = default;
};
std::vector<Printed> PrintedFrom(const Machine& m, uint64_t from, uint64_t to) {
  std::vector<Printed> out;
  m.ForEachOwnedBlock(Pfn(from), [&](const PageOwner& p) {
    if (p.pfn.raw() >= to) return false;
    out.push_back({p.pfn.raw(), p.order.raw(), p.handle.raw()});
    return true;
  });
  return out;
}
AllocatedBlock BlockAt(const Machine& m, uint64_t pfn) {
  return m.allocator().BlockContaining(Pfn(pfn)).value_or(AllocatedBlock{Pfn(~0ull), Order(99)});
}
AllocatedBlock B(uint64_t head, unsigned order) { return {Pfn(head), Order(order)}; }
bool OnOwnerList(const Machine& m, StackHandle h) {
  bool found = false;
  m.depot().ForEachOwnerStack([&](const StackUsage& s) { found |= s.handle == h; });
  return found;
}
// Invariants 2 and 6: the stacks' pages sum to the tracked pages, every allocated page is
// tracked or reserved; and the full check (every page in exactly one block, per-stack recounts).
void ExpectInvariants(const Machine& m) {
  EXPECT_EQ(SumOfStackPages(m), static_cast<int64_t>(m.tracked_pages().raw()));
  EXPECT_EQ(m.tracked_pages().raw() + m.reserved_pages().raw(),
            m.allocator().allocated_pages().raw());
  const absl::Status s = CheckMachineInvariants(m);
  EXPECT_TRUE(s.ok()) << s;
}

TEST(MachineTrustedTest, AllocOverAnAllocatedBlockFreesItImplicitly) {
  Machine m(Small());
  const auto a = Stack(1), b = Stack(2);
  const StackHandle ha =
      m.Alloc({.order = Order(2), .frames = a, .pid = 5, .ts_ns = 10, .pfn = Pfn(0x1000)})->handle;
  // Strict stays the default: refused, nothing changed.
  EXPECT_EQ(m.Alloc({.order = Order(2), .frames = b, .pfn = Pfn(0x1000)}).status().code(),
            absl::StatusCode::kAlreadyExists);
  const uint64_t allocated = m.allocator().allocated_pages().raw();
  const EventResult r = *m.Alloc(
      {.order = Order(2), .frames = b, .pid = 6, .ts_ns = 20, .pfn = Pfn(0x1000), .trusted = true});
  EXPECT_EQ(r.pfn, Pfn(0x1000));
  EXPECT_EQ(r.handle, m.depot().Find(b));
  EXPECT_EQ(m.counters().repaired_allocs, 1u);
  EXPECT_EQ(m.counters().implied_frees, 1u);
  EXPECT_EQ(m.counters().implied_freed_pages, 4u);
  EXPECT_EQ(m.counters().split_blocks, 0u);
  EXPECT_EQ(m.counters().allocs, 2u);
  EXPECT_EQ(m.allocator().allocated_pages().raw(), allocated);
  EXPECT_EQ(m.depot().Usage(ha).pages, 0);
  EXPECT_EQ(m.depot().Usage(r.handle).pages, 4);
  const PageOwner p = *m.PageRecord(Pfn(0x1003));
  EXPECT_EQ(p.handle, r.handle);
  EXPECT_EQ(p.pid, 6);
  EXPECT_EQ(p.ts_ns, 20u);
  // The implied free: no free stack, pid 0, at the allocation's time.
  EXPECT_FALSE(p.free_handle.valid());
  EXPECT_EQ(p.free_pid, 0);
  EXPECT_EQ(p.free_ts_ns, 20u);
  EXPECT_EQ(BlockAt(m, 0x1001), B(0x1000, 2));
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, AllocOverSeveralSmallerBlocksFreesEach) {
  Machine m(Small());
  const auto a = Stack(1), b = Stack(2);
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(0x1000)}).ok());
  ASSERT_TRUE(m.Alloc({.order = Order(1), .frames = a, .pfn = Pfn(0x1002)}).ok());
  const uint64_t free_before = m.allocator().free_pages().raw();
  ASSERT_TRUE(m.Alloc({.order = Order(2), .frames = b, .pfn = Pfn(0x1000), .trusted = true}).ok());
  EXPECT_EQ(m.counters().repaired_allocs, 1u);
  EXPECT_EQ(m.counters().implied_frees, 2u);
  EXPECT_EQ(m.counters().implied_freed_pages, 3u);
  EXPECT_EQ(m.allocator().free_pages().raw(), free_before - 1);  // page 0x1001 was free
  EXPECT_EQ(m.depot().Usage(m.depot().Find(a)).pages, 0);
  EXPECT_EQ(PrintedFrom(m, 0x1000, 0x1010),
            (std::vector<Printed>{{0x1000, 2, m.depot().Find(b).raw()}}));
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, AllocInsideALargerBlockSplitsItAndKeepsTheRest) {
  Machine m(Small());
  const auto a = Stack(1), b = Stack(2);
  const StackHandle ha =
      m.Alloc({.order = Order(3), .frames = a, .pid = 5, .ts_ns = 10, .pfn = Pfn(0x1000)})->handle;
  const StackHandle hb =
      m.Alloc({.order = Order(0), .frames = b, .ts_ns = 20, .pfn = Pfn(0x1005), .trusted = true})
          ->handle;
  EXPECT_EQ(m.counters().repaired_allocs, 1u);
  EXPECT_EQ(m.counters().implied_frees, 1u);
  EXPECT_EQ(m.counters().implied_freed_pages, 1u);
  EXPECT_EQ(m.counters().split_blocks, 1u);
  // The buddy pieces around 0x1005: [0x1000, 4) order 2, 0x1004 order 0, [0x1006, 2) order 1.
  EXPECT_EQ(BlockAt(m, 0x1003), B(0x1000, 2));
  EXPECT_EQ(BlockAt(m, 0x1004), B(0x1004, 0));
  EXPECT_EQ(BlockAt(m, 0x1005), B(0x1005, 0));
  EXPECT_EQ(BlockAt(m, 0x1007), B(0x1006, 1));
  EXPECT_EQ(PrintedFrom(m, 0x1000, 0x1010), (std::vector<Printed>{{0x1000, 2, ha.raw()},
                                                                  {0x1004, 0, ha.raw()},
                                                                  {0x1005, 0, hb.raw()},
                                                                  {0x1006, 1, ha.raw()}}));
  EXPECT_EQ(m.depot().Usage(ha).pages, 7);
  EXPECT_EQ(m.depot().Usage(ha).allocations, 1u);
  EXPECT_EQ(m.depot().Usage(hb).pages, 1);
  const PageOwner kept = *m.BlockOwner(Pfn(0x1007));
  EXPECT_EQ(kept.pfn, Pfn(0x1006));
  EXPECT_EQ(kept.pid, 5);
  EXPECT_EQ(kept.ts_ns, 10u);
  EXPECT_TRUE(kept.allocated);
  ExpectInvariants(m);
  // The pieces are blocks: a strict free of one is a plain free.
  ASSERT_TRUE(m.Free({.pfn = Pfn(0x1006), .order = Order(1)}).ok());
  EXPECT_EQ(m.depot().Usage(ha).pages, 5);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, EarlyBlocksGetTheEarlyHandleAndStayOffTheOwnerList) {
  Machine m(Small());
  const uint64_t early_before = m.counters().early_handle_pages;
  const int64_t early_pages = m.depot().Usage(m.early_handle()).pages;
  // An early block needs a pfn, and no frames.
  EXPECT_EQ(m.Alloc({.order = Order(3), .early = true}).status().code(),
            absl::StatusCode::kInvalidArgument);
  const EventResult r = *m.Alloc(
      {.order = Order(3), .ts_ns = 77, .pfn = Pfn(0x2000), .trusted = true, .early = true});
  EXPECT_EQ(r.pfn, Pfn(0x2000));
  EXPECT_EQ(r.handle, m.early_handle());
  EXPECT_EQ(m.counters().early_handle_pages - early_before, 8u);
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, early_pages + 8);
  EXPECT_EQ(m.depot().Usage(m.early_handle()).allocations, 0u);
  EXPECT_FALSE(OnOwnerList(m, m.early_handle()));
  for (const StackUsage& s : StacksOwning(m.depot(), 0)) EXPECT_NE(s.handle, m.early_handle());
  EXPECT_EQ(BlockAt(m, 0x2007), B(0x2000, 3));
  const PageOwner p = *m.BlockOwner(Pfn(0x2005));
  EXPECT_EQ(p.pfn, Pfn(0x2005));  // one order-0 record a page
  EXPECT_EQ(p.order.raw(), 0u);
  EXPECT_EQ(p.gfp_mask, 0u);
  EXPECT_EQ(p.pid, 0);
  EXPECT_EQ(p.comm, "swapper");
  EXPECT_EQ(p.ts_ns, 77u);
  EXPECT_EQ(PrintedFrom(m, 0x2000, 0x2010).size(), 8u);
  ExpectInvariants(m);
  // A strict free of the whole block frees it.
  ASSERT_TRUE(m.Free({.pfn = Pfn(0x2000), .order = Order(3)}).ok());
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, early_pages);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, AllocInsideAnEarlyBlockKeepsTheOtherPagesEarly) {
  Machine m(Small());
  const auto b = Stack(2);
  const uint32_t e = m.early_handle().raw();
  ASSERT_TRUE(
      m.Alloc({.order = Order(3), .pfn = Pfn(0x2000), .trusted = true, .early = true}).ok());
  const StackHandle hb =
      m.Alloc({.order = Order(1), .frames = b, .pfn = Pfn(0x2002), .trusted = true})->handle;
  EXPECT_EQ(m.counters().split_blocks, 1u);
  EXPECT_EQ(m.counters().implied_frees, 1u);
  EXPECT_EQ(m.counters().implied_freed_pages, 2u);
  EXPECT_EQ(BlockAt(m, 0x2001), B(0x2000, 1));
  EXPECT_EQ(BlockAt(m, 0x2003), B(0x2002, 1));
  EXPECT_EQ(BlockAt(m, 0x2006), B(0x2004, 2));
  EXPECT_EQ(PrintedFrom(m, 0x2000, 0x2010), (std::vector<Printed>{{0x2000, 0, e},
                                                                  {0x2001, 0, e},
                                                                  {0x2002, 1, hb.raw()},
                                                                  {0x2004, 0, e},
                                                                  {0x2005, 0, e},
                                                                  {0x2006, 0, e},
                                                                  {0x2007, 0, e}}));
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, FreeOfPartOfAnEarlyBlockSplitsItAndFreesThatPart) {
  Machine m(Small());
  const auto f = Stack(3);
  ASSERT_TRUE(
      m.Alloc({.order = Order(2), .pfn = Pfn(0x3000), .trusted = true, .early = true}).ok());
  const int64_t early_pages = m.depot().Usage(m.early_handle()).pages;
  // Strict: not the head of its block.
  EXPECT_EQ(m.Free({.pfn = Pfn(0x3001), .order = Order(0)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  const EventResult r = *m.Free(
      {.pfn = Pfn(0x3001), .order = Order(0), .frames = f, .pid = 7, .ts_ns = 30, .trusted = true});
  EXPECT_EQ(r.pfn, Pfn(0x3001));
  EXPECT_EQ(r.handle, m.depot().Find(f));
  EXPECT_EQ(m.counters().repaired_frees, 1u);
  EXPECT_EQ(m.counters().split_blocks, 1u);
  EXPECT_EQ(m.counters().implied_frees, 0u);
  EXPECT_EQ(m.counters().frees, 1u);
  EXPECT_FALSE(m.allocator().IsAllocated(Pfn(0x3001)));
  EXPECT_EQ(BlockAt(m, 0x3000), B(0x3000, 0));
  EXPECT_EQ(BlockAt(m, 0x3003), B(0x3002, 1));
  const PageOwner p = *m.PageRecord(Pfn(0x3001));
  EXPECT_FALSE(p.allocated);
  EXPECT_TRUE(p.owner);
  EXPECT_EQ(p.handle, m.early_handle());  // a freed page keeps its last owner
  EXPECT_EQ(p.free_handle, r.handle);
  EXPECT_EQ(p.free_pid, 7);
  EXPECT_EQ(p.free_ts_ns, 30u);
  EXPECT_EQ(m.depot().Usage(m.early_handle()).pages, early_pages - 1);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, FreeOfFreePagesIsCountedAndChangesNothing) {
  Machine m(Small());
  const auto f = Stack(3);
  const Snapshot before = Take(m);
  EXPECT_EQ(m.Free({.pfn = Pfn(0x3800), .order = Order(0)}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // strict: a double free
  const EventResult r =
      *m.Free({.pfn = Pfn(0x3800), .order = Order(1), .frames = f, .trusted = true});
  EXPECT_EQ(r.pfn, Pfn(0x3800));
  EXPECT_FALSE(r.handle.valid());
  EXPECT_EQ(m.counters().ignored_frees, 1u);
  EXPECT_EQ(m.counters().repaired_frees, 0u);
  EXPECT_EQ(Take(m), before);
  EXPECT_FALSE(m.depot().Find(f).valid());  // no free stack saved
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, FreeOfAnotherOrderFreesEveryAllocatedPageOfItsRange) {
  Machine m(Small());
  const auto a = Stack(1), f = Stack(3);
  const StackHandle ha = m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(0x3400)})->handle;
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(0x3403)}).ok());
  ASSERT_TRUE(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(0x3404)}).ok());
  // Order 2 at 0x3400: 0x3400 and 0x3403 allocated, 0x3401-2 free; 0x3404 is outside.
  const EventResult r =
      *m.Free({.pfn = Pfn(0x3400), .order = Order(2), .frames = f, .pid = 9, .trusted = true});
  EXPECT_EQ(r.handle, m.depot().Find(f));
  EXPECT_EQ(m.counters().repaired_frees, 1u);
  EXPECT_EQ(m.counters().split_blocks, 0u);
  EXPECT_FALSE(m.allocator().IsAllocated(Pfn(0x3400)));
  EXPECT_FALSE(m.allocator().IsAllocated(Pfn(0x3403)));
  EXPECT_TRUE(m.allocator().IsAllocated(Pfn(0x3404)));
  EXPECT_EQ(m.depot().Usage(ha).pages, 1);
  EXPECT_EQ(m.PageRecord(Pfn(0x3403))->free_pid, 9);
  // An exact block: a plain free (T3), nothing repaired.
  ASSERT_TRUE(m.Free({.pfn = Pfn(0x3404), .order = Order(0), .trusted = true}).ok());
  EXPECT_EQ(m.counters().repaired_frees, 1u);
  EXPECT_EQ(m.counters().frees, 2u);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, FreeInsideALargerOrdinaryBlockSplitsIt) {
  Machine m(Small());
  const auto a = Stack(1);
  const StackHandle ha = m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(0x3600)})->handle;
  ASSERT_TRUE(m.Free({.pfn = Pfn(0x3600), .order = Order(0), .trusted = true}).ok());
  EXPECT_EQ(m.counters().split_blocks, 1u);
  EXPECT_EQ(PrintedFrom(m, 0x3600, 0x3610),
            (std::vector<Printed>{{0x3601, 0, ha.raw()}, {0x3602, 1, ha.raw()}}));
  EXPECT_EQ(m.depot().Usage(ha).pages, 3);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, TheEventsOwnErrorsAreStillRefusedAndChangeNothing) {
  Machine m(Small());
  const auto a = Stack(1);
  ASSERT_TRUE(m.Alloc({.order = Order(2), .frames = a, .pfn = Pfn(0x1000)}).ok());
  const Snapshot before = Take(m);
  const auto code = [](absl::StatusOr<EventResult> r) { return r.status().code(); };
  EXPECT_EQ(code(m.Alloc({.order = Order(11), .frames = a, .pfn = Pfn(0), .trusted = true})),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(m.Alloc({.order = Order(0), .pfn = Pfn(0x1000), .trusted = true})),
            absl::StatusCode::kInvalidArgument);  // no frames
  EXPECT_EQ(code(m.Alloc({.order = Order(1), .frames = a, .pfn = Pfn(0x1001), .trusted = true})),
            absl::StatusCode::kInvalidArgument);  // not aligned
  EXPECT_EQ(code(m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(kPages), .trusted = true})),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(code(m.Free({.pfn = Pfn(0x1001), .order = Order(1), .trusted = true})),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(m.Free({.pfn = Pfn(kPages), .order = Order(0), .trusted = true})),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(code(m.Free({.pfn = Pfn(0), .order = Order(11), .trusted = true})),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Take(m), before);
  EXPECT_EQ(m.counters().repaired_allocs + m.counters().repaired_frees +
                m.counters().ignored_frees + m.counters().implied_frees,
            0u);
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, AnOddSizedMachineRefusesARangePastItsEnd) {
  Machine m(Small(true, 8192, 1030));
  EXPECT_EQ(m.Alloc({.order = Order(3), .pfn = Pfn(1024), .trusted = true, .early = true})
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(m.Free({.pfn = Pfn(1024), .order = Order(3), .trusted = true}).status().code(),
            absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(m.Alloc({.order = Order(2), .pfn = Pfn(1024), .trusted = true, .early = true}).ok());
  ExpectInvariants(m);
}

TEST(MachineTrustedTest, EarlyBlocksWhileTrackingIsOffGetTheEarlyHandleOnceItIsOn) {
  Machine m(Small(false));
  const EventResult r =
      *m.Alloc({.order = Order(1), .pfn = Pfn(0x2000), .trusted = true, .early = true});
  EXPECT_FALSE(r.handle.valid());
  const uint64_t early_before = m.counters().early_handle_pages;
  m.SetTracking(true, 5);
  EXPECT_EQ(m.PageRecord(Pfn(0x2001))->handle, m.early_handle());
  EXPECT_GE(m.counters().early_handle_pages - early_before, 2u);
  EXPECT_FALSE(OnOwnerList(m, m.early_handle()));
  ExpectInvariants(m);
}

// ---- Reserved blocks (not RAM on the mirrored machine) ----

TEST(MachineReservedTest, AReservedBlockIsNeverHandedOutAndHasNoOwner) {
  Machine m(Small(true, 8192, 32));
  ASSERT_EQ(m.depot_pool_pfns().size(), 1u);
  const uint64_t pool = m.depot_pool_pfns()[0].raw();  // order 2, where the allocator chose
  const uint64_t head = pool < 16 ? 16 : 0;            // an order-3 block clear of it
  const uint64_t allocs = m.counters().allocs;
  const uint64_t tracked = m.tracked_pages().raw();
  const std::string dump = PageOwnerText(m, DumpFormat::kToday);
  // Strict, like a client that knows the layout before anything runs.
  const EventResult r = *m.Alloc({.order = Order(3), .pfn = Pfn(head), .reserved = true});
  EXPECT_EQ(r.pfn, Pfn(head));
  EXPECT_FALSE(r.handle.valid());
  EXPECT_EQ(m.reserved_pages().raw(), 8u);
  EXPECT_EQ(m.counters().allocs, allocs);  // not an allocation of page_owner's
  EXPECT_EQ(m.tracked_pages().raw(), tracked);
  EXPECT_EQ(PageOwnerText(m, DumpFormat::kToday), dump);  // never listed
  const PageOwner p = *m.BlockOwner(Pfn(head + 5));
  EXPECT_TRUE(p.reserved);
  EXPECT_FALSE(p.owner);
  EXPECT_FALSE(p.allocated);
  EXPECT_TRUE(m.PageRecord(Pfn(head + 7))->reserved);
  EXPECT_FALSE(m.PageRecord(Pfn(head + 8))->reserved);
  ExpectInvariants(m);
  // The allocator never hands those pages out: 32 - 4 (depot) - 8 = 20 pages are left.
  const auto f = Stack(1);
  for (int i = 0; i < 20; ++i) {
    const absl::StatusOr<EventResult> a = m.Alloc({.order = Order(0), .frames = f});
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_FALSE(a->pfn.raw() >= head && a->pfn.raw() < head + 8) << a->pfn.raw();
  }
  EXPECT_EQ(m.Alloc({.order = Order(0), .frames = f}).status().code(),
            absl::StatusCode::kResourceExhausted);
  ExpectInvariants(m);
}

TEST(MachineReservedTest, StrictEventsOnAReservedPageAreRefusedAndChangeNothing) {
  Machine m(Small());
  ASSERT_TRUE(m.Alloc({.order = Order(2), .pfn = Pfn(0x3000), .reserved = true}).ok());
  ASSERT_TRUE(m.Alloc({.order = Order(2), .frames = Stack(2), .pfn = Pfn(0x100)}).ok());
  const Snapshot before = Take(m);
  const absl::StatusOr<EventResult> alloc =
      m.Alloc({.order = Order(0), .frames = Stack(1), .pfn = Pfn(0x3001)});
  EXPECT_EQ(alloc.status(), absl::AlreadyExistsError("pfn 12289 (0x3001) is reserved (not RAM)"));
  EXPECT_EQ(
      m.Free({.pfn = Pfn(0x3000), .order = Order(2)}).status(),
      absl::FailedPreconditionError("cannot free pfn 12288 (0x3000): it is reserved (not RAM)"));
  EXPECT_EQ(m.Migrate({.pfn = Pfn(0x3000)}).status(),
            absl::FailedPreconditionError("cannot migrate pfn 12288: it is reserved (not RAM)"));
  EXPECT_EQ(m.Migrate({.pfn = Pfn(0x100), .target = Pfn(0x3000)}).status().code(),
            absl::StatusCode::kAlreadyExists);  // no migration onto a reserved block
  // A reserved block needs a pfn, and is not early too.
  EXPECT_EQ(m.Alloc({.order = Order(0), .reserved = true}).status(),
            absl::InvalidArgumentError("a reserved block needs a pfn"));
  EXPECT_EQ(
      m.Alloc({.order = Order(0), .pfn = Pfn(0x3800), .early = true, .reserved = true}).status(),
      absl::InvalidArgumentError("a block cannot be both early and reserved"));
  EXPECT_EQ(m.reserved_pages().raw(), 4u);
  EXPECT_TRUE(Take(m) == before);
  ExpectInvariants(m);
}

TEST(MachineReservedTest, TrackingTurnedOnGivesReservedPagesNoEarlyHandle) {
  Machine m(Small(false));
  ASSERT_TRUE(m.Alloc({.order = Order(4), .pfn = Pfn(0x2800), .reserved = true}).ok());
  ASSERT_TRUE(
      m.Alloc({.order = Order(1), .pfn = Pfn(0x3000), .trusted = true, .early = true}).ok());
  const uint64_t early_before = m.counters().early_handle_pages;
  m.SetTracking(true, 5);
  // The early block's two pages and the depot's pool (taken while tracking was off) get the
  // early handle; the 16 reserved pages do not.
  EXPECT_EQ(m.counters().early_handle_pages - early_before, 2u + 4u);
  for (uint64_t p = 0x2800; p < 0x2810; ++p) {
    const PageOwner r = *m.PageRecord(Pfn(p));
    EXPECT_FALSE(r.owner) << p;
    EXPECT_TRUE(r.reserved) << p;
  }
  ExpectInvariants(m);
}

TEST(MachineReservedTest, TrustedEventsOverReservedPagesMakeThemRam) {
  Machine m(Small());
  const auto a = Stack(1);
  const auto f = Stack(2);
  // A trusted reserved block over an allocated one frees it implicitly first (T2).
  const StackHandle ha = m.Alloc({.order = Order(0), .frames = a, .pfn = Pfn(0x1003)})->handle;
  ASSERT_TRUE(
      m.Alloc({.order = Order(3), .pfn = Pfn(0x1000), .trusted = true, .reserved = true}).ok());
  EXPECT_EQ(m.counters().implied_frees, 1u);
  EXPECT_EQ(m.counters().repaired_allocs, 1u);
  // Said again (a second recording of the machine), trusted: nothing changes, nothing counted.
  EXPECT_EQ(
      m.Alloc({.order = Order(2), .pfn = Pfn(0x1004), .trusted = true, .reserved = true})->pfn,
      Pfn(0x1004));
  EXPECT_EQ(m.counters().repaired_allocs, 1u);
  EXPECT_EQ(m.counters().implied_frees, 1u);
  EXPECT_EQ(BlockAt(m, 0x1004), B(0x1000, 3));
  EXPECT_EQ(m.depot().Usage(ha).pages, 0);
  EXPECT_EQ(m.reserved_pages().raw(), 8u);
  ExpectInvariants(m);
  // The kernel freed part of it into the buddy allocator (free_reserved_area): a trusted free
  // splits the reserved block; the freed part is RAM, the rest stays reserved.
  const EventResult freed =
      *m.Free({.pfn = Pfn(0x1004), .order = Order(2), .frames = f, .trusted = true});
  EXPECT_EQ(freed.pfn, Pfn(0x1004));
  EXPECT_EQ(m.counters().repaired_frees, 1u);
  EXPECT_EQ(m.counters().split_blocks, 1u);
  EXPECT_EQ(m.reserved_pages().raw(), 4u);
  EXPECT_FALSE(m.allocator().IsAllocated(Pfn(0x1005)));
  EXPECT_FALSE(m.PageRecord(Pfn(0x1005))->reserved);
  EXPECT_TRUE(m.PageRecord(Pfn(0x1002))->reserved);
  EXPECT_EQ(BlockAt(m, 0x1001), B(0x1000, 2));
  ExpectInvariants(m);
  // A trusted allocation over the rest takes it as RAM (T2): one implied free of 4 pages.
  const EventResult took =
      *m.Alloc({.order = Order(1), .frames = a, .pfn = Pfn(0x1002), .trusted = true});
  EXPECT_EQ(took.handle, ha);
  EXPECT_EQ(m.counters().repaired_allocs, 2u);
  EXPECT_EQ(m.reserved_pages().raw(), 2u);  // 0x1000 and 0x1001 stay reserved
  EXPECT_TRUE(m.PageRecord(Pfn(0x1001))->reserved);
  EXPECT_FALSE(m.PageRecord(Pfn(0x1003))->reserved);
  EXPECT_EQ(m.depot().Usage(ha).pages, 2);
  ExpectInvariants(m);
  // An exact trusted free of a whole reserved block frees it too (T5, not the strict refusal).
  ASSERT_TRUE(m.Free({.pfn = Pfn(0x1000), .order = Order(1), .trusted = true}).ok());
  EXPECT_EQ(m.reserved_pages().raw(), 0u);
  EXPECT_EQ(m.counters().repaired_frees, 2u);
  ExpectInvariants(m);
}

}  // namespace
}  // namespace pageowner
