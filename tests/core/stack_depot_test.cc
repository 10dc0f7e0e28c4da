#include "core/stack_depot.h"

#include <atomic>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace pageowner {
namespace {

std::vector<uint64_t> MakeStack(uint64_t seed, size_t depth) {
  std::vector<uint64_t> s(depth);
  for (size_t i = 0; i < depth; ++i) s[i] = 0xffffffff81000000ULL + seed * 0x1000 + i * 0x10;
  return s;
}

StackDepotOptions Options(int depth = 16, uint32_t pools = 8192) {
  return StackDepotOptions{.max_depth = depth, .max_pools = pools, .memory_pages = 1 << 18};
}

TEST(StackDepotTest, SameFramesGiveSameHandle) {
  StackDepot depot(Options(), nullptr);
  const auto a = MakeStack(1, 16);
  const StackHandle h1 = depot.Save(a);
  const StackHandle h2 = depot.Save(std::vector<uint64_t>(a));
  ASSERT_TRUE(h1.valid());
  EXPECT_EQ(h1, h2);
  EXPECT_EQ(depot.stats().persistent_count, 1u);
  EXPECT_EQ(depot.Find(a), h1);
}

TEST(StackDepotTest, DifferentFramesGiveDifferentHandles) {
  StackDepot depot(Options(), nullptr);
  const StackHandle h1 = depot.Save(MakeStack(1, 16));
  const StackHandle h2 = depot.Save(MakeStack(2, 16));
  const StackHandle h3 = depot.Save(MakeStack(1, 15));  // a prefix is another stack
  EXPECT_NE(h1, h2);
  EXPECT_NE(h1, h3);
  EXPECT_NE(h2, h3);
  EXPECT_EQ(depot.stats().persistent_count, 3u);
}

TEST(StackDepotTest, EmptyStackIsNotStored) {
  StackDepot depot(Options(), nullptr);
  EXPECT_FALSE(depot.Save({}).valid());
  EXPECT_EQ(depot.stats().persistent_count, 0u);
}

TEST(StackDepotTest, HandleEncodingIsTheKernels) {
  StackDepot depot(Options(), nullptr);
  const StackHandle first = depot.Save(MakeStack(1, 16));
  // pool_index_plus_1 = 1, offset 0: the first record of the first pool.
  EXPECT_EQ(first.raw(), 1u);
  const StackHandle second = depot.Save(MakeStack(2, 16));
  // A 16-frame record is 32 bytes of header and 128 of frames: 10 units of 16 bytes.
  EXPECT_EQ(second.raw(), 1u | (10u << 17));
  EXPECT_EQ(depot.stats().persistent_bytes, 320u);
}

TEST(StackDepotTest, FetchReturnsFramesAndRejectsBadHandles) {
  StackDepot depot(Options(), nullptr);
  const auto a = MakeStack(7, 12);
  const StackHandle h = depot.Save(a);
  const auto got = depot.Fetch(h);
  EXPECT_EQ(std::vector<uint64_t>(got.begin(), got.end()), a);
  EXPECT_TRUE(depot.Fetch(StackHandle()).empty());
  EXPECT_TRUE(depot.Fetch(StackHandle(2)).empty());                // pool 1 not in use
  EXPECT_TRUE(depot.Fetch(StackHandle(1u | (1u << 17))).empty());  // inside a record
  EXPECT_TRUE(depot.Fetch(StackHandle(1u | (1u << 27))).empty());  // extra bits set
  EXPECT_FALSE(depot.Contains(StackHandle(0xffffffff)));
}

TEST(StackDepotTest, HandlesStayValidAndFramesNeverMove) {
  StackDepot depot(Options(), nullptr);
  std::vector<StackHandle> handles;
  std::vector<const uint64_t*> where;
  for (uint64_t i = 0; i < 5000; ++i) {
    handles.push_back(depot.Save(MakeStack(i, 1 + i % 16)));
    where.push_back(depot.Fetch(handles.back()).data());
  }
  for (uint64_t i = 0; i < 5000; ++i) {
    const auto f = depot.Fetch(handles[i]);
    ASSERT_EQ(f.data(), where[i]);
    ASSERT_EQ(std::vector<uint64_t>(f.begin(), f.end()), MakeStack(i, 1 + i % 16));
    ASSERT_EQ(depot.Save(MakeStack(i, 1 + i % 16)), handles[i]);
  }
  EXPECT_GT(depot.stats().pools, 1u);
}

TEST(StackDepotTest, DeepStacksAreCutAndCounted) {
  StackDepot depot(Options(/*depth=*/8), nullptr);
  const auto deep = MakeStack(3, 20);
  const StackHandle h = depot.Save(deep);
  EXPECT_EQ(depot.Fetch(h).size(), 8u);
  EXPECT_EQ(depot.stats().truncated, 1u);
  // The cut stack is the first 8 frames: saving those alone finds it.
  EXPECT_EQ(depot.Save(absl::MakeConstSpan(deep).first(8)), h);
  EXPECT_EQ(depot.stats().truncated, 1u);
}

TEST(StackDepotTest, MaxDepthSixtyFourKeepsSixtyFour) {
  StackDepot depot(Options(/*depth=*/64), nullptr);
  const StackHandle h = depot.Save(MakeStack(3, 64));
  EXPECT_EQ(depot.Fetch(h).size(), 64u);
  EXPECT_EQ(depot.stats().truncated, 0u);
}

TEST(StackDepotTest, PoolLimitMakesSavesFail) {
  StackDepot depot(Options(16, /*pools=*/1), nullptr);
  // 16 KiB holds 102 records of 160 bytes.
  int stored = 0;
  for (uint64_t i = 0; i < 200; ++i) stored += depot.Save(MakeStack(i, 16)).valid() ? 1 : 0;
  EXPECT_EQ(stored, 102);
  EXPECT_EQ(depot.stats().pools, 1u);
  EXPECT_EQ(depot.stats().failed, 98u);
  // What is stored is still found.
  EXPECT_TRUE(depot.Save(MakeStack(5, 16)).valid());
}

TEST(StackDepotTest, PoolAllocatorRefusalMakesSavesFail) {
  int granted = 0;
  bool out_of_memory = false;
  StackDepot depot(Options(), [&](uint32_t index) {
    EXPECT_EQ(index, static_cast<uint32_t>(granted));
    if (out_of_memory) return false;
    ++granted;
    return true;
  });
  EXPECT_TRUE(depot.Save(MakeStack(1, 16)).valid());
  EXPECT_EQ(granted, 1);
  out_of_memory = true;
  int failed = 0;
  for (uint64_t i = 2; i < 300; ++i) failed += depot.Save(MakeStack(i, 16)).valid() ? 0 : 1;
  EXPECT_EQ(failed, 300 - 2 - 101);
  out_of_memory = false;
  EXPECT_TRUE(depot.Save(MakeStack(1000, 16)).valid());
  EXPECT_EQ(granted, 2);
}

TEST(StackDepotTest, CountersAndOwnerListNewestFirst) {
  StackDepot depot(Options(), nullptr);
  const StackHandle a = depot.Save(MakeStack(1, 4));
  const StackHandle b = depot.Save(MakeStack(2, 4));
  const StackHandle c = depot.Save(MakeStack(3, 4));  // never charged
  depot.CountAllocation(a);
  depot.AddPages(a, 4);
  depot.CountAllocation(b);
  depot.AddPages(b, 1);
  depot.CountAllocation(a);
  depot.AddPages(a, 1);
  depot.AddPages(a, -2);
  EXPECT_EQ(depot.Usage(a).pages, 3);
  EXPECT_EQ(depot.Usage(a).allocations, 2u);
  EXPECT_EQ(depot.Usage(c).allocations, 0u);
  std::vector<StackHandle> order;
  depot.ForEachOwnerStack([&](const StackUsage& s) { order.push_back(s.handle); });
  EXPECT_EQ(order, (std::vector<StackHandle>{b, a}));
  order.clear();
  depot.ForEachStack([&](const StackUsage& s) { order.push_back(s.handle); });
  EXPECT_EQ(order, (std::vector<StackHandle>{a, b, c}));
}

TEST(StackDepotTest, ConcurrentSavesAgreeOnHandles) {
  StackDepot depot(Options(), nullptr);
  constexpr int kThreads = 4;
  constexpr uint64_t kStacks = 3000;
  std::vector<std::vector<StackHandle>> got(kThreads, std::vector<StackHandle>(kStacks));
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      // Each thread walks the stacks in its own order, so inserts race with lookups.
      for (uint64_t k = 0; k < kStacks; ++k) {
        const uint64_t i = (t % 2 == 0) ? k : kStacks - 1 - k;
        got[t][i] = depot.Save(MakeStack(i, 1 + i % 16));
        depot.CountAllocation(got[t][i]);
        depot.AddPages(got[t][i], 1);
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  std::set<uint32_t> distinct;
  for (uint64_t i = 0; i < kStacks; ++i) {
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(got[t][i], got[0][i]) << i;
    ASSERT_TRUE(got[0][i].valid());
    distinct.insert(got[0][i].raw());
    ASSERT_EQ(depot.Usage(got[0][i]).pages, kThreads);
    ASSERT_EQ(depot.Usage(got[0][i]).allocations, static_cast<uint64_t>(kThreads));
  }
  EXPECT_EQ(distinct.size(), kStacks);
  EXPECT_EQ(depot.stats().persistent_count, kStacks);
  int listed = 0;
  depot.ForEachOwnerStack([&](const StackUsage&) { ++listed; });
  EXPECT_EQ(listed, static_cast<int>(kStacks));
}

}  // namespace
}  // namespace pageowner
