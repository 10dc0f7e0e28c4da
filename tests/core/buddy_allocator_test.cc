#include "core/buddy_allocator.h"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace pageowner {

// Readable failure messages (found by argument-dependent lookup).
void PrintTo(MigrateType mt, std::ostream* os) { *os << MigrateTypeName(mt); }
void PrintTo(const AllocatedBlock& b, std::ostream* os) {
  *os << "{head " << b.head.raw() << ", order " << b.order.raw() << "}";
}

namespace {

constexpr MigrateType kU = MigrateType::kUnmovable;
constexpr MigrateType kM = MigrateType::kMovable;
constexpr MigrateType kR = MigrateType::kReclaimable;
constexpr std::array<MigrateType, 3> kListTypes = {kU, kM, kR};

// Everything observable about an allocator, to show that a failed call changed nothing.
struct Snapshot {
  uint64_t free_pages = 0;
  uint64_t allocated_pages = 0;
  uint64_t steals = 0;
  std::array<std::array<uint64_t, kMaxOrder + 1>, 3> counts{};
  std::vector<MigrateType> pageblocks;
  std::vector<std::pair<AllocatedBlock, MigrateType>> blocks;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

// A Snapshot without its blocks: O(lists + pageblocks), cheap enough to take around every call.
Snapshot TakeCounts(const BuddyAllocator& a) {
  Snapshot s;
  s.free_pages = a.free_pages().raw();
  s.allocated_pages = a.allocated_pages().raw();
  s.steals = a.fallback_steals();
  for (int mt = 0; mt < 3; ++mt) {
    for (unsigned k = 0; k <= kMaxOrder; ++k) {
      s.counts[mt][k] = a.FreeBlockCount(Order(k), kListTypes[mt]);
    }
  }
  for (uint64_t pb = 0; pb < a.num_pageblocks(); ++pb) {
    s.pageblocks.push_back(a.PageblockMigrateType(pb));
  }
  return s;
}

// Everything, the allocated blocks included: O(pages).
Snapshot Take(const BuddyAllocator& a) {
  Snapshot s = TakeCounts(a);
  a.ForEachAllocatedBlock(Pfn(0), [&](AllocatedBlock b) {
    s.blocks.emplace_back(b, *a.AllocationMigrateType(b.head));
    return true;
  });
  return s;
}

// The free-list table of one type, orders 0..10.
std::array<uint64_t, kMaxOrder + 1> Counts(const BuddyAllocator& a, MigrateType mt) {
  std::array<uint64_t, kMaxOrder + 1> c{};
  for (unsigned k = 0; k <= kMaxOrder; ++k) c[k] = a.FreeBlockCount(Order(k), mt);
  return c;
}

uint64_t MustAllocate(BuddyAllocator& a, unsigned order, MigrateType mt) {
  absl::StatusOr<Pfn> pfn = a.Allocate(Order(order), mt);
  EXPECT_TRUE(pfn.ok()) << pfn.status();
  return pfn.ok() ? pfn->raw() : ~uint64_t{0};
}

std::optional<AllocatedBlock> Blk(uint64_t head, unsigned order) {
  return AllocatedBlock{Pfn(head), Order(order)};
}

using Table = std::array<uint64_t, kMaxOrder + 1>;

TEST(BuddyAllocatorTest, BootStateIsMaxOrderMovableBlocks) {
  BuddyAllocator a(PageCount(2048));
  EXPECT_EQ(a.total_pages().raw(), 2048u);
  EXPECT_EQ(a.free_pages().raw(), 2048u);
  EXPECT_EQ(a.allocated_pages().raw(), 0u);
  EXPECT_EQ(a.num_pageblocks(), 4u);
  for (uint64_t pb = 0; pb < 4; ++pb) EXPECT_EQ(a.PageblockMigrateType(pb), kM);
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}));
  EXPECT_EQ(Counts(a, kU), Table{});
  EXPECT_EQ(Counts(a, kR), Table{});
  EXPECT_EQ(a.FreeBlockCount(Order(11), kM), 0u);
  EXPECT_EQ(a.FreeBlockCount(Order(10), MigrateType::kCma), 0u);
  EXPECT_EQ(a.fallback_steals(), 0u);
  EXPECT_FALSE(a.IsAllocated(Pfn(0)));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, SplitAndCoalesceOrderZero) {
  BuddyAllocator a(PageCount(1024));
  EXPECT_EQ(MustAllocate(a, 0, kM), 0u);
  EXPECT_EQ(Counts(a, kM), (Table{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(a.free_pages().raw(), 1023u);
  EXPECT_EQ(a.allocated_pages().raw(), 1u);
  EXPECT_EQ(a.BlockContaining(Pfn(0)), Blk(0, 0));
  EXPECT_EQ(a.BlockContaining(Pfn(1)), std::nullopt);
  EXPECT_EQ(a.AllocationMigrateType(Pfn(0)), kM);
  EXPECT_EQ(a.AllocationMigrateType(Pfn(1)), std::nullopt);
  EXPECT_TRUE(a.CheckInvariants().ok());

  ASSERT_TRUE(a.Free(Pfn(0), Order(0)).ok());
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(a.free_pages().raw(), 1024u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, CoalescesInAnyFreeOrder) {
  BuddyAllocator a(PageCount(1024));
  std::vector<uint64_t> pfns;
  for (int i = 0; i < 8; ++i) pfns.push_back(MustAllocate(a, 0, kM));
  EXPECT_EQ(pfns, (std::vector<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0}));
  for (uint64_t p : {5, 0, 7, 2, 6, 1}) ASSERT_TRUE(a.Free(Pfn(p), Order(0)).ok());
  // 0-1 merged to order 1, 6-7 to order 1; 3 and 4 still hold 2 and 5 apart.
  EXPECT_EQ(Counts(a, kM), (Table{2, 2, 0, 1, 1, 1, 1, 1, 1, 1, 0}));
  ASSERT_TRUE(a.Free(Pfn(3), Order(0)).ok());
  ASSERT_TRUE(a.Free(Pfn(4), Order(0)).ok());
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, TakesSmallestOrderThenLowestAddress) {
  BuddyAllocator a(PageCount(1024));
  for (int i = 0; i < 16; ++i) MustAllocate(a, 0, kM);
  ASSERT_TRUE(a.Free(Pfn(9), Order(0)).ok());
  ASSERT_TRUE(a.Free(Pfn(2), Order(0)).ok());
  // Order-0 holes at 2 and 9 come before the split of the order-4 block at 16.
  EXPECT_EQ(MustAllocate(a, 0, kM), 2u);
  EXPECT_EQ(MustAllocate(a, 0, kM), 9u);
  EXPECT_EQ(MustAllocate(a, 0, kM), 16u);
  EXPECT_EQ(MustAllocate(a, 1, kM), 18u);
  EXPECT_EQ(MustAllocate(a, 3, kM), 24u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, OddSize1000HasTailBlocks) {
  BuddyAllocator a(PageCount(1000));  // 512 + 256 + 128 + 64 + 32 + 8
  EXPECT_EQ(a.num_pageblocks(), 2u);
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
  EXPECT_EQ(a.Allocate(Order(10), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MustAllocate(a, 9, kM), 0u);
  EXPECT_EQ(MustAllocate(a, 3, kM), 992u);
  EXPECT_EQ(MustAllocate(a, 3, kM), 960u);
  ASSERT_TRUE(a.Free(Pfn(992), Order(3)).ok());
  ASSERT_TRUE(a.Free(Pfn(960), Order(3)).ok());
  ASSERT_TRUE(a.Free(Pfn(0), Order(9)).ok());
  // Blocks whose buddy passes the end stay apart.
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(a.free_pages().raw(), 1000u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, OddSizeOnePage) {
  BuddyAllocator a(PageCount(1));
  EXPECT_EQ(a.num_pageblocks(), 1u);
  EXPECT_EQ(Counts(a, kM), (Table{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(a.Allocate(Order(1), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MustAllocate(a, 0, kU), 0u);
  EXPECT_EQ(a.Allocate(Order(0), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.PageblockMigrateType(0), kM);  // a partial pageblock is never claimed
  EXPECT_EQ(a.AllocationMigrateType(Pfn(0)), kU);
  ASSERT_TRUE(a.Free(Pfn(0), Order(0)).ok());
  EXPECT_EQ(Counts(a, kM), (Table{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, OddSize1537) {
  BuddyAllocator a(PageCount(1537));  // 1024 + 512 + 1
  EXPECT_EQ(a.num_pageblocks(), 4u);
  EXPECT_EQ(Counts(a, kM), (Table{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}));
  ASSERT_TRUE(a.AllocateAt(Pfn(1536), Order(0), kM).ok());
  EXPECT_EQ(a.AllocateAt(Pfn(1536), Order(1), kM).code(), absl::StatusCode::kOutOfRange);
  ASSERT_TRUE(a.Free(Pfn(1536), Order(0)).ok());
  // 1536's buddy 1537 is beyond memory: no merge.
  EXPECT_EQ(Counts(a, kM), (Table{1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}));
  std::vector<uint64_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(MustAllocate(a, 9, kM));
  EXPECT_EQ(got, (std::vector<uint64_t>{1024, 0, 512}));
  EXPECT_EQ(a.Allocate(Order(9), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.free_pages().raw(), 1u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, AllocateAtSplitsAroundTarget) {
  BuddyAllocator a(PageCount(1024));
  ASSERT_TRUE(a.AllocateAt(Pfn(5), Order(0), kU).ok());
  // Free: 4 (o0), 6 (o1), 0 (o2), 8 (o3), ..., 512 (o9).
  EXPECT_EQ(Counts(a, kM), (Table{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(a.BlockContaining(Pfn(5)), Blk(5, 0));
  EXPECT_EQ(a.BlockContaining(Pfn(4)), std::nullopt);
  EXPECT_EQ(a.PageblockMigrateType(0), kM);  // left as is
  EXPECT_EQ(a.AllocationMigrateType(Pfn(5)), kU);
  EXPECT_EQ(a.fallback_steals(), 0u);
  ASSERT_TRUE(a.AllocateAt(Pfn(8), Order(3), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(4), Order(0), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(640), Order(7), kM).ok());
  EXPECT_EQ(a.BlockContaining(Pfn(700)), Blk(640, 7));
  EXPECT_EQ(Counts(a, kM), (Table{0, 1, 1, 0, 1, 1, 1, 2, 2, 0, 0}));
  EXPECT_EQ(a.allocated_pages().raw(), 1u + 8 + 1 + 128);
  EXPECT_TRUE(a.CheckInvariants().ok());
  for (auto [p, k] : std::vector<std::pair<uint64_t, unsigned>>{{5, 0}, {8, 3}, {4, 0}, {640, 7}}) {
    ASSERT_TRUE(a.Free(Pfn(p), Order(k)).ok());
  }
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
}

TEST(BuddyAllocatorTest, AllocateAtErrorsChangeNothing) {
  BuddyAllocator a(PageCount(1000));
  ASSERT_TRUE(a.AllocateAt(Pfn(5), Order(0), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(16), Order(4), kM).ok());
  const Snapshot before = Take(a);
  struct Case {
    uint64_t pfn;
    unsigned order;
    MigrateType mt;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {0, 11, kM, absl::StatusCode::kInvalidArgument},
      {0, 0, MigrateType::kHighAtomic, absl::StatusCode::kInvalidArgument},
      {0, 0, MigrateType::kIsolate, absl::StatusCode::kInvalidArgument},
      {3, 1, kM, absl::StatusCode::kInvalidArgument},      // misaligned
      {1016, 4, kM, absl::StatusCode::kInvalidArgument},   // misaligned and past the end
      {1000, 0, kM, absl::StatusCode::kOutOfRange},        // first page beyond memory
      {992, 4, kM, absl::StatusCode::kOutOfRange},         // range passes the end
      {1ull << 40, 0, kM, absl::StatusCode::kOutOfRange},  // far beyond
      {5, 0, kM, absl::StatusCode::kAlreadyExists},        // the same page
      {4, 1, kM, absl::StatusCode::kAlreadyExists},        // covers 5
      {0, 3, kM, absl::StatusCode::kAlreadyExists},        // covers 5, free part is smaller
      {0, 9, kM, absl::StatusCode::kAlreadyExists},        // covers both
      {20, 2, kM, absl::StatusCode::kAlreadyExists},       // inside the order-4 block
      {16, 4, kU, absl::StatusCode::kAlreadyExists},       // exactly the order-4 block
  };
  for (const Case& c : cases) {
    const absl::Status s = a.AllocateAt(Pfn(c.pfn), Order(c.order), c.mt);
    EXPECT_EQ(s.code(), c.code) << "pfn " << c.pfn << " order " << c.order << ": " << s;
    EXPECT_EQ(Take(a), before) << "pfn " << c.pfn << " order " << c.order;
  }
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, AllocateErrorsChangeNothing) {
  BuddyAllocator a(PageCount(1024));
  MustAllocate(a, 3, kM);
  const Snapshot before = Take(a);
  EXPECT_EQ(a.Allocate(Order(11), kM).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(Order(0), MigrateType::kCma).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.Allocate(Order(10), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.Allocate(Order(10), kU).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Take(a), before);
}

TEST(BuddyAllocatorTest, FreeErrorsChangeNothing) {
  BuddyAllocator a(PageCount(1024));
  ASSERT_TRUE(a.AllocateAt(Pfn(64), Order(4), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(3), Order(0), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(3), Order(0), kM).code() == absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(a.Free(Pfn(3), Order(0)).ok());
  const Snapshot before = Take(a);
  struct Case {
    uint64_t pfn;
    unsigned order;
    absl::StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {3, 0, absl::StatusCode::kFailedPrecondition, "double free"},
      {500, 0, absl::StatusCode::kFailedPrecondition, "double free"},  // never allocated
      {64, 3, absl::StatusCode::kFailedPrecondition, "order mismatch"},
      {64, 5, absl::StatusCode::kFailedPrecondition, "order mismatch"},
      {65, 0, absl::StatusCode::kFailedPrecondition, "not the head"},
      {72, 3, absl::StatusCode::kFailedPrecondition, "not the head"},
      {1024, 0, absl::StatusCode::kOutOfRange, "beyond"},
      {~uint64_t{0}, 0, absl::StatusCode::kOutOfRange, "beyond"},
      {64, 11, absl::StatusCode::kInvalidArgument, "order 11"},
  };
  for (const Case& c : cases) {
    const absl::Status s = a.Free(Pfn(c.pfn), Order(c.order));
    EXPECT_EQ(s.code(), c.code) << "pfn " << c.pfn << ": " << s;
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s;
    EXPECT_EQ(Take(a), before) << "pfn " << c.pfn;
  }
  ASSERT_TRUE(a.Free(Pfn(64), Order(4)).ok());
  EXPECT_EQ(a.Free(Pfn(64), Order(4)).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
}

TEST(BuddyAllocatorTest, ExhaustionThenFreeSucceeds) {
  BuddyAllocator a(PageCount(1024));
  for (uint64_t i = 0; i < 1024; ++i) ASSERT_EQ(MustAllocate(a, 0, kM), i);
  EXPECT_EQ(a.free_pages().raw(), 0u);
  const Snapshot full = Take(a);
  for (MigrateType mt : kListTypes) {
    EXPECT_EQ(a.Allocate(Order(0), mt).status().code(), absl::StatusCode::kResourceExhausted);
  }
  EXPECT_EQ(Take(a), full);
  ASSERT_TRUE(a.Free(Pfn(700), Order(0)).ok());
  EXPECT_EQ(a.Allocate(Order(1), kM).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MustAllocate(a, 0, kM), 700u);
  ASSERT_TRUE(a.Free(Pfn(600), Order(0)).ok());
  ASSERT_TRUE(a.Free(Pfn(601), Order(0)).ok());
  EXPECT_EQ(MustAllocate(a, 1, kU), 600u);  // an Unmovable request falls back to Movable
  EXPECT_EQ(a.free_pages().raw(), 0u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackClaimsPageblocksOfAMaxOrderBlock) {
  BuddyAllocator a(PageCount(2048));
  EXPECT_EQ(MustAllocate(a, 0, kU), 0u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  EXPECT_EQ(a.PageblockMigrateType(1), kU);
  EXPECT_EQ(a.PageblockMigrateType(2), kM);
  EXPECT_EQ(a.PageblockMigrateType(3), kM);
  EXPECT_EQ(Counts(a, kU), (Table{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}));
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  // Served from its own lists now.
  EXPECT_EQ(MustAllocate(a, 0, kU), 1u);
  EXPECT_EQ(MustAllocate(a, 9, kU), 512u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  // Movable has its own order-10 block and never looks at Unmovable's.
  EXPECT_EQ(MustAllocate(a, 0, kM), 1024u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackClaimsPageblockWhenHalfIsFree) {
  BuddyAllocator a(PageCount(512));
  EXPECT_EQ(MustAllocate(a, 0, kM), 0u);
  // Largest Movable block is order 8 at 256; 511 of 512 pages are free: claim.
  EXPECT_EQ(MustAllocate(a, 0, kU), 1u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  EXPECT_EQ(Counts(a, kM), Table{});
  EXPECT_EQ(Counts(a, kU), (Table{0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
  // The Movable page at 0 now sits in an Unmovable pageblock.
  EXPECT_EQ(a.AllocationMigrateType(Pfn(0)), kM);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackWithoutClaimLeavesMixedPageblock) {
  BuddyAllocator a(PageCount(512));
  ASSERT_TRUE(a.AllocateAt(Pfn(0), Order(8), kM).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(256), Order(7), kM).ok());
  // Only 128 pages free and the rest Movable: an Unmovable request may not claim the block.
  EXPECT_EQ(MustAllocate(a, 0, kU), 384u);
  EXPECT_EQ(a.fallback_steals(), 0u);
  EXPECT_EQ(a.PageblockMigrateType(0), kM);
  EXPECT_EQ(a.AllocationMigrateType(Pfn(384)), kU);
  EXPECT_EQ(a.BlockContaining(Pfn(384)), Blk(384, 0));
  // Remainders stay on the pageblock's (Movable) lists.
  EXPECT_EQ(Counts(a, kM), (Table{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(Counts(a, kU), Table{});
  // Freeing it returns the page to the Movable lists, whole again.
  ASSERT_TRUE(a.Free(Pfn(384), Order(0)).ok());
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackClaimCountsCompatibleAllocatedPages) {
  BuddyAllocator a(PageCount(512));
  ASSERT_TRUE(a.AllocateAt(Pfn(0), Order(8), kR).ok());
  ASSERT_TRUE(a.AllocateAt(Pfn(256), Order(7), kM).ok());
  // 128 free + 256 non-movable pages in a Movable pageblock: an Unmovable request claims it.
  EXPECT_EQ(MustAllocate(a, 0, kU), 384u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  EXPECT_EQ(Counts(a, kU), (Table{1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, PartialPageblockIsNeverClaimed) {
  BuddyAllocator a(PageCount(88));  // 64 + 16 + 8, one partial pageblock
  EXPECT_EQ(MustAllocate(a, 0, kU), 0u);
  EXPECT_EQ(a.fallback_steals(), 0u);
  EXPECT_EQ(a.PageblockMigrateType(0), kM);
  EXPECT_EQ(Counts(a, kM), (Table{1, 1, 1, 2, 2, 1, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, MovableFallbackTakesSmallestBlock) {
  BuddyAllocator a(PageCount(512));
  EXPECT_EQ(MustAllocate(a, 0, kU), 0u);  // claims the pageblock
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  for (auto [p, k] : std::vector<std::pair<uint64_t, unsigned>>{
           {2, 1}, {8, 3}, {16, 4}, {32, 5}, {64, 6}, {128, 7}, {256, 8}}) {
    ASSERT_TRUE(a.AllocateAt(Pfn(p), Order(k), kU).ok());
  }
  EXPECT_EQ(Counts(a, kU), (Table{1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  // The largest fallback block is order 2 (< pageblock_order / 2): Movable may not claim and
  // takes the smallest block instead, leaving the order-2 block whole.
  EXPECT_EQ(MustAllocate(a, 0, kM), 1u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  EXPECT_EQ(Counts(a, kU), (Table{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(MustAllocate(a, 0, kM), 4u);
  EXPECT_EQ(a.AllocationMigrateType(Pfn(4)), kM);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, MovableFallbackClaimsAtHalfPageblockOrder) {
  BuddyAllocator a(PageCount(512));
  EXPECT_EQ(MustAllocate(a, 0, kU), 0u);
  // Free blocks: 1 (o0), 2 (o1), 4 (o2), ..., 256 (o8). Allocate Unmovable except 16 (o4).
  for (auto [p, k] : std::vector<std::pair<uint64_t, unsigned>>{
           {1, 0}, {2, 1}, {4, 2}, {8, 3}, {32, 5}, {64, 6}, {128, 7}, {256, 8}}) {
    ASSERT_TRUE(a.AllocateAt(Pfn(p), Order(k), kU).ok());
  }
  // Order 4 lets Movable claim, but 16 free pages and no Movable ones are not half: it takes the
  // block without claiming.
  EXPECT_EQ(MustAllocate(a, 0, kM), 16u);
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(a.PageblockMigrateType(0), kU);
  EXPECT_EQ(Counts(a, kU), (Table{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackPrefersFirstFallbackTypeAtAnOrder) {
  BuddyAllocator a(PageCount(1536));      // 1024 at 0, 512 at 1024
  EXPECT_EQ(MustAllocate(a, 9, kR), 0u);  // claims pageblocks 0 and 1
  EXPECT_EQ(a.fallback_steals(), 1u);
  EXPECT_EQ(Counts(a, kR), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
  // Both Reclaimable (512) and Movable (1024) have an order-9 block: Unmovable tries
  // Reclaimable first.
  EXPECT_EQ(MustAllocate(a, 0, kU), 512u);
  EXPECT_EQ(a.fallback_steals(), 2u);
  EXPECT_EQ(a.PageblockMigrateType(1), kU);
  EXPECT_EQ(a.PageblockMigrateType(2), kM);
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, FallbackSearchesLargestOrderFirst) {
  BuddyAllocator a(PageCount(1024));
  // Movable has order-0..9 blocks after this; Unmovable takes the order-9 one at 512.
  ASSERT_TRUE(a.AllocateAt(Pfn(0), Order(0), kM).ok());
  EXPECT_EQ(MustAllocate(a, 0, kU), 512u);
  EXPECT_EQ(a.PageblockMigrateType(0), kM);
  EXPECT_EQ(a.PageblockMigrateType(1), kU);
  EXPECT_EQ(a.fallback_steals(), 1u);
}

TEST(BuddyAllocatorTest, MergeAcrossPageblockTypesFollowsFirstPageblock) {
  BuddyAllocator a(PageCount(1024));
  ASSERT_TRUE(a.AllocateAt(Pfn(0), Order(9), kM).ok());
  EXPECT_EQ(MustAllocate(a, 0, kU), 512u);  // claims pageblock 1
  EXPECT_EQ(a.PageblockMigrateType(1), kU);
  ASSERT_TRUE(a.Free(Pfn(512), Order(0)).ok());
  EXPECT_EQ(Counts(a, kU), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
  ASSERT_TRUE(a.Free(Pfn(0), Order(9)).ok());
  // The order-10 block goes on the list of pageblock 0's type; pageblock 1 stays Unmovable.
  EXPECT_EQ(Counts(a, kM), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
  EXPECT_EQ(Counts(a, kU), Table{});
  EXPECT_EQ(a.PageblockMigrateType(1), kU);
  EXPECT_TRUE(a.CheckInvariants().ok());
  // Splitting it again puts the upper half back on pageblock 1's list.
  EXPECT_EQ(MustAllocate(a, 0, kM), 0u);
  EXPECT_EQ(Counts(a, kU), (Table{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}));
  EXPECT_EQ(Counts(a, kM), (Table{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, ForEachAllocatedBlockVisitsInOrderAndStops) {
  BuddyAllocator a(PageCount(4096));
  for (auto [p, k] : std::vector<std::pair<uint64_t, unsigned>>{
           {3000, 2}, {5, 0}, {64, 6}, {1024, 10}, {2050, 1}}) {
    ASSERT_TRUE(a.AllocateAt(Pfn(p), Order(k), kM).ok());
  }
  std::vector<AllocatedBlock> seen;
  a.ForEachAllocatedBlock(Pfn(0), [&](AllocatedBlock b) {
    seen.push_back(b);
    return true;
  });
  EXPECT_EQ(seen, (std::vector<AllocatedBlock>{{Pfn(5), Order(0)},
                                               {Pfn(64), Order(6)},
                                               {Pfn(1024), Order(10)},
                                               {Pfn(2050), Order(1)},
                                               {Pfn(3000), Order(2)}}));
  seen.clear();
  a.ForEachAllocatedBlock(Pfn(65), [&](AllocatedBlock b) {  // starts inside the block at 64
    seen.push_back(b);
    return seen.size() < 2;
  });
  EXPECT_EQ(seen, (std::vector<AllocatedBlock>{{Pfn(1024), Order(10)}, {Pfn(2050), Order(1)}}));
  seen.clear();
  a.ForEachAllocatedBlock(Pfn(3001), [&](AllocatedBlock b) {
    seen.push_back(b);
    return true;
  });
  EXPECT_TRUE(seen.empty());
  a.ForEachAllocatedBlock(Pfn(1 << 20), [&](AllocatedBlock b) {
    seen.push_back(b);
    return true;
  });
  EXPECT_TRUE(seen.empty());
}

TEST(BuddyAllocatorTest, MemoryUnderBudgetAt4GiB) {
  constexpr uint64_t kPages = uint64_t{1} << 20;
  BuddyAllocator a{PageCount(kPages)};
  const double per_page = static_cast<double>(a.MemoryBytes()) / kPages;
  EXPECT_GT(per_page, 1.25);
  EXPECT_LT(per_page, 1.3);
  EXPECT_EQ(MustAllocate(a, 0, kM), 0u);
  EXPECT_EQ(MustAllocate(a, 10, kU), 1024u);
  EXPECT_EQ(a.FreeBlockCount(Order(10), kM), 1022u);
  EXPECT_TRUE(a.CheckInvariants().ok());
}

TEST(BuddyAllocatorTest, TerabyteMachines) {
  for (const uint64_t pages : {uint64_t{1} << 28, (uint64_t{1} << 28) - 1}) {
    SCOPED_TRACE(pages);
    BuddyAllocator a{PageCount(pages)};
    const uint64_t full = pages >> kMaxOrder;
    EXPECT_EQ(a.FreeBlockCount(Order(10), kM), full);
    EXPECT_EQ(a.num_pageblocks(), (pages + 511) / 512);
    EXPECT_EQ(a.PageblockMigrateType(a.num_pageblocks() - 1), kM);
    EXPECT_EQ(MustAllocate(a, 0, kU), 0u);
    EXPECT_EQ(a.FreeBlockCount(Order(10), kM), full - 1);
    const uint64_t last = pages - 1;
    ASSERT_TRUE(a.AllocateAt(Pfn(last), Order(0), kM).ok());
    EXPECT_EQ(a.BlockContaining(Pfn(last)), Blk(last, 0));
    EXPECT_EQ(a.BlockContaining(Pfn(last - 1)), std::nullopt);
    EXPECT_EQ(a.free_pages().raw(), pages - 2);
    ASSERT_TRUE(a.Free(Pfn(last), Order(0)).ok());
    ASSERT_TRUE(a.Free(Pfn(0), Order(0)).ok());
    EXPECT_EQ(a.free_pages().raw(), pages);
    EXPECT_EQ(a.FreeBlockCount(Order(10), kU), 1u);  // pageblocks 0 and 1 stay claimed
    EXPECT_EQ(a.FreeBlockCount(Order(10), kM), full - 1);
  }
}

// The randomized run: every step's status code is checked exactly against a plain model of the
// allocated blocks, the whole allocator against the model every 100 steps and at the end.
struct RandomParam {
  const char* name;
  uint64_t pages;
};
void PrintTo(const RandomParam& p, std::ostream* os) { *os << p.name; }

class BuddyAllocatorRandomTest : public testing::TestWithParam<RandomParam> {};

class Model {
 public:
  explicit Model(uint64_t pages) : owner_(pages, -1) {}
  uint64_t pages() const { return owner_.size(); }
  uint64_t allocated() const { return allocated_; }
  int64_t owner(uint64_t pfn) const { return owner_[pfn]; }
  const std::map<uint64_t, std::pair<unsigned, MigrateType>>& blocks() const { return blocks_; }

  bool RangeFree(uint64_t pfn, unsigned order) const {
    for (uint64_t q = pfn; q < pfn + (uint64_t{1} << order); ++q) {
      if (owner_[q] >= 0) return false;
    }
    return true;
  }
  // True when some aligned range of `order` is wholly free.
  bool HasFreeRange(unsigned order) const {
    const uint64_t n = uint64_t{1} << order;
    if (pages() - allocated_ < n) return false;
    for (uint64_t p = 0; p + n <= pages(); p += n) {
      if (RangeFree(p, order)) return true;
    }
    return false;
  }
  void Add(uint64_t pfn, unsigned order, MigrateType mt) {
    for (uint64_t q = pfn; q < pfn + (uint64_t{1} << order); ++q) owner_[q] = pfn;
    blocks_[pfn] = {order, mt};
    allocated_ += uint64_t{1} << order;
  }
  void Remove(uint64_t pfn) {
    const unsigned order = blocks_.at(pfn).first;
    for (uint64_t q = pfn; q < pfn + (uint64_t{1} << order); ++q) owner_[q] = -1;
    blocks_.erase(pfn);
    allocated_ -= uint64_t{1} << order;
  }

 private:
  std::vector<int64_t> owner_;
  std::map<uint64_t, std::pair<unsigned, MigrateType>> blocks_;
  uint64_t allocated_ = 0;
};

TEST_P(BuddyAllocatorRandomTest, MatchesModel) {
  const uint64_t pages = GetParam().pages;
  BuddyAllocator a{PageCount(pages)};
  Model model(pages);
  std::mt19937_64 rng(20240601);
  const auto uniform = [&](uint64_t n) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng);
  };
  const auto random_order = [&]() -> unsigned {
    const uint64_t r = uniform(100);
    if (r < 2) return 11;  // invalid
    if (r < 55) return 0;
    if (r < 70) return 1;
    if (r < 82) return 2 + uniform(2);
    if (r < 95) return 4 + uniform(5);
    return 9 + uniform(2);
  };
  const auto random_mt = [&]() {
    return uniform(100) == 0 ? MigrateType::kHighAtomic : kListTypes[uniform(3)];
  };
  std::map<absl::StatusCode, uint64_t> codes[3];  // per operation kind
  uint64_t mixed_seen = 0;

  constexpr int kSteps = 100000;
  constexpr int kFullCheckEvery = 100;
  for (int step = 0; step < kSteps; ++step) {
    SCOPED_TRACE(testing::Message() << "step " << step);
    const Snapshot before = TakeCounts(a);
    const bool alloc_phase = (step / 5000) % 2 == 0;
    const uint64_t op = uniform(100);
    absl::StatusCode expected;
    absl::StatusCode got;
    int kind;
    if (op < (alloc_phase ? 45u : 25u)) {
      kind = 0;
      const unsigned order = random_order();
      const MigrateType mt = random_mt();
      if (order > kMaxOrder || mt == MigrateType::kHighAtomic) {
        expected = absl::StatusCode::kInvalidArgument;
      } else {
        expected = model.HasFreeRange(order) ? absl::StatusCode::kOk
                                             : absl::StatusCode::kResourceExhausted;
      }
      absl::StatusOr<Pfn> r = a.Allocate(Order(order), mt);
      got = r.status().code();
      if (r.ok()) {
        const uint64_t p = r->raw();
        ASSERT_TRUE(r->aligned_to(Order(order))) << p;
        ASSERT_LE(p + (uint64_t{1} << order), pages);
        ASSERT_TRUE(model.RangeFree(p, order)) << "pfn " << p << " order " << order;
        model.Add(p, order, mt);
      }
    } else if (op < (alloc_phase ? 60u : 35u)) {
      kind = 1;
      const unsigned order = random_order();
      const MigrateType mt = random_mt();
      uint64_t p = uniform(pages + 64);
      if (order <= kMaxOrder && uniform(10) != 0) p &= ~((uint64_t{1} << order) - 1);
      if (order > kMaxOrder || mt == MigrateType::kHighAtomic || !Pfn(p).aligned_to(Order(order))) {
        expected = absl::StatusCode::kInvalidArgument;
      } else if (p >= pages || pages - p < (uint64_t{1} << order)) {
        expected = absl::StatusCode::kOutOfRange;
      } else if (!model.RangeFree(p, order)) {
        expected = absl::StatusCode::kAlreadyExists;
      } else {
        expected = absl::StatusCode::kOk;
      }
      got = a.AllocateAt(Pfn(p), Order(order), mt).code();
      if (got == absl::StatusCode::kOk && expected == absl::StatusCode::kOk)
        model.Add(p, order, mt);
    } else {
      kind = 2;
      uint64_t p = uniform(pages);
      unsigned order = 0;
      const uint64_t r = uniform(100);
      if (model.owner(p) >= 0) {
        const uint64_t head = model.owner(p);
        order = model.blocks().at(head).first;
        if (r < 70) {
          p = head;  // a good free
        } else if (r < 85) {
          p = head;
          order = (order + 1 + uniform(kMaxOrder)) % (kMaxOrder + 1);  // wrong order
        }  // else: p is as drawn, maybe a tail page
      }
      if (r >= 94 && r < 97) p = pages + uniform(1000);
      if (r >= 97) order = 11 + uniform(5);
      if (order > kMaxOrder) {
        expected = absl::StatusCode::kInvalidArgument;
      } else if (p >= pages) {
        expected = absl::StatusCode::kOutOfRange;
      } else if (model.owner(p) != static_cast<int64_t>(p) || model.blocks().at(p).first != order) {
        expected = absl::StatusCode::kFailedPrecondition;
      } else {
        expected = absl::StatusCode::kOk;
      }
      got = a.Free(Pfn(p), Order(order)).code();
      if (got == absl::StatusCode::kOk && expected == absl::StatusCode::kOk) model.Remove(p);
    }
    ASSERT_EQ(got, expected) << "operation " << kind;
    ++codes[kind][got];

    // Every step: the exact code, the counters unchanged by a failed call, and lookups. The
    // O(pages) comparison with the model runs every kFullCheckEvery steps and after the last:
    // run after every step it was most of the suite's time, and a failed call that changed
    // blocks without changing any counter still shows there, as a difference from the model.
    if (got != absl::StatusCode::kOk) {
      ASSERT_EQ(TakeCounts(a), before) << "a failed call changed state";
    }
    for (int i = 0; i < 8; ++i) {
      const uint64_t q = uniform(pages + 8);
      const std::optional<AllocatedBlock> b = a.BlockContaining(Pfn(q));
      if (q >= pages || model.owner(q) < 0) {
        ASSERT_EQ(b, std::nullopt) << "pfn " << q;
      } else {
        const uint64_t head = model.owner(q);
        ASSERT_EQ(b, Blk(head, model.blocks().at(head).first)) << "pfn " << q;
      }
    }
    if (step % kFullCheckEvery != kFullCheckEvery - 1 && step != kSteps - 1) continue;

    const Snapshot after = Take(a);
    // The allocator's blocks are the model's: none overlaps, none is missing.
    ASSERT_EQ(after.blocks.size(), model.blocks().size());
    auto it = model.blocks().begin();
    for (const auto& [block, mt] : after.blocks) {
      ASSERT_EQ(block.head.raw(), it->first);
      ASSERT_EQ(block.order.raw(), it->second.first);
      ASSERT_EQ(mt, it->second.second);
      ++it;
    }
    ASSERT_EQ(after.allocated_pages, model.allocated());
    ASSERT_EQ(after.free_pages + after.allocated_pages, pages);
    uint64_t listed = 0;
    for (const auto& row : after.counts) {
      for (unsigned k = 0; k <= kMaxOrder; ++k) listed += row[k] << k;
    }
    ASSERT_EQ(listed, after.free_pages);
    if (step % 1000 == 999) {
      ASSERT_TRUE(a.CheckInvariants().ok()) << a.CheckInvariants();
      for (uint64_t q = 0; q < pages; ++q) {
        ASSERT_EQ(a.IsAllocated(Pfn(q)), model.owner(q) >= 0) << "pfn " << q;
      }
      for (const auto& [block, mt] : after.blocks) {
        if (a.PageblockMigrateType(block.head.pageblock()) != mt) ++mixed_seen;
      }
    }
  }
  // The run went through every path.
  EXPECT_GT(codes[0][absl::StatusCode::kOk], 10000u);
  EXPECT_GT(codes[1][absl::StatusCode::kOk], 1000u);
  EXPECT_GT(codes[2][absl::StatusCode::kOk], 10000u);
  EXPECT_GT(codes[0][absl::StatusCode::kResourceExhausted], 100u);
  EXPECT_GT(codes[0][absl::StatusCode::kInvalidArgument], 100u);
  EXPECT_GT(codes[1][absl::StatusCode::kAlreadyExists], 1000u);
  EXPECT_GT(codes[1][absl::StatusCode::kOutOfRange], 10u);
  EXPECT_GT(codes[1][absl::StatusCode::kInvalidArgument], 100u);
  EXPECT_GT(codes[2][absl::StatusCode::kFailedPrecondition], 1000u);
  EXPECT_GT(codes[2][absl::StatusCode::kOutOfRange], 100u);
  EXPECT_GT(codes[2][absl::StatusCode::kInvalidArgument], 100u);
  EXPECT_GT(a.fallback_steals(), 10u);
  EXPECT_GT(mixed_seen, 0u);
}

INSTANTIATE_TEST_SUITE_P(Sizes, BuddyAllocatorRandomTest,
                         testing::Values(RandomParam{"Pages4096", 4096},
                                         RandomParam{"Pages3001", 3001}),
                         [](const testing::TestParamInfo<RandomParam>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace pageowner
