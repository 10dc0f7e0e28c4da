#include "core/reports.h"

#include <sstream>
#include <string>
#include <vector>

#include "core/kernel_flags.h"
#include "gtest/gtest.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

using ::pageowner::testing::ReadTestFile;

// The frame lines (" name") of a kernel text, registered as synthetic addresses.
std::vector<uint64_t> FramesOf(const std::string& text, SymbolTable& symbols) {
  std::vector<uint64_t> frames;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && line[0] == ' ')
      frames.push_back(symbols.SyntheticAddress(line.substr(1)));
  }
  return frames;
}

TEST(ReportsTest, PageOwnerBlockMatchesARealSixTwelveBlock) {
  const std::string real = ReadTestFile("page_owner_6.12_block_0x1068.txt");
  SymbolTable symbols;
  const std::vector<uint64_t> frames = FramesOf(real, symbols);
  ASSERT_EQ(frames.size(), 13u);
  PageOwner p;
  p.pfn = Pfn(0x1068);
  p.order = Order(3);
  p.gfp_mask = 0xd20c0;
  p.pid = 77;
  p.tgid = 77;
  p.comm = "cat";
  p.ts_ns = 6549647543;
  p.pageblock_migratetype = MigrateType::kUnmovable;
  p.page_flags = SimulatedPageFlags(p.pfn, p.order, p.gfp_mask);
  std::string out;
  AppendPageOwnerBlock(p, frames, symbols, DumpFormat::kToday, &out);
  EXPECT_EQ(out, real);
}

TEST(ReportsTest, ShowStacksEntryMatchesARealSixTwelveEntry) {
  const std::string real = ReadTestFile("show_stacks_6.12_first_entry.txt");
  SymbolTable symbols;
  const std::vector<uint64_t> frames = FramesOf(real, symbols);
  ASSERT_EQ(frames.size(), 16u);
  std::string out;
  AppendStackEntry(StackUsage{StackHandle(77), frames, 12, 40}, symbols, StacksView::kStacks, &out);
  EXPECT_EQ(out, real);
}

TEST(ReportsTest, StackDepotStatsMatchTheRealFile) {
  StackDepotStats s;
  s.pools = 9;
  s.persistent_count = 940;
  s.persistent_bytes = 138960;
  EXPECT_EQ(StackDepotStatsText(s), ReadTestFile("stackdepot_stats_6.12.txt"));
}

TEST(ReportsTest, MixedBlocksMatchTheRealPagetypeinfoTable) {
  const std::string real = ReadTestFile("pagetypeinfo_6.12.txt");
  const std::string table = real.substr(real.find("Number of mixed blocks"));
  ZoneMixedBlocks dma{.zone = "DMA"};
  ZoneMixedBlocks dma32{.zone = "DMA32"};
  dma32.count[static_cast<int>(MigrateType::kMovable)] = 1;
  EXPECT_EQ(MixedBlocksText({dma, dma32}), table);
}

// A small machine with named frames, for golden texts of our own events.
class ReportsMachineTest : public ::testing::Test {
 protected:
  static MachineOptions Options() {
    MachineOptions o;
    o.pages = PageCount(0x1000 + 2048);  // DMA and 2048 pages of DMA32
    o.boot_ts_ns = 100;
    return o;
  }
  ReportsMachineTest() : m_(Options()) {
    a_ = {0xffffffff81234560, 0xffffffff81234800, 0xffffffffc0012345};
    m_.symbols().Register(a_[0], "get_page_from_freelist+0x121a/0x13b0");
    m_.symbols().Register(a_[1], "__alloc_pages_noprof+0x198/0x1060");
    // a_[2] has no name: it prints as a bare address.
    b_ = {0xffffffff81234560, 0xffffffff81300000};
    m_.symbols().Register(b_[1], "shmem_alloc_folio+0x9c/0xb0");
    f_ = {0xffffffff81400000};
    m_.symbols().Register(f_[0], "free_unref_page+0x1f/0x2c0");
  }
  Machine m_;
  std::vector<uint64_t> a_, b_, f_;
};

TEST_F(ReportsMachineTest, DumpTodayAndTwentySixteen) {
  ASSERT_TRUE(m_.Alloc({.order = Order(0),
                        .gfp_mask = 0xd2cc0,
                        .frames = a_,
                        .pid = 1234,
                        .tgid = 1230,
                        .comm = "kworker/0:1",
                        .ts_ns = 5000000000,
                        .pfn = Pfn(0x1000)})
                  .ok());
  ASSERT_TRUE(m_.Alloc({.order = Order(3),
                        .gfp_mask = 0x140dca,
                        .frames = b_,
                        .pid = 77,
                        .tgid = 77,
                        .comm = "dd",
                        .ts_ns = 6000000000,
                        .pfn = Pfn(0x1008)})
                  .ok());
  ASSERT_TRUE(
      m_.Migrate({.pfn = Pfn(0x1008), .reason = MigrateReason::kCompaction, .target = Pfn(0x1010)})
          .ok());
  EXPECT_EQ(
      PageOwnerText(m_, DumpFormat::kToday, Pfn(0x1000)),
      "Page allocated via order 0, mask "
      "0xd2cc0(GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC), pid 1234, "
      "tgid 1230 (kworker/0:1), ts 5000000000 ns\n"
      "PFN 0x1000 type Unmovable Block 8 type Movable Flags 0x100000000000000(node=0|zone=1)\n"
      " get_page_from_freelist+0x121a/0x13b0\n"
      " __alloc_pages_noprof+0x198/0x1060\n"
      " 0xffffffffc0012345\n"
      "\n"
      "Page allocated via order 3, mask 0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP), "
      "pid 77, tgid 77 (dd), ts 6000000000 ns\n"
      "PFN 0x1010 type Movable Block 8 type Movable Flags "
      "0x100000000000040(head|node=0|zone=1)\n"
      " get_page_from_freelist+0x121a/0x13b0\n"
      " shmem_alloc_folio+0x9c/0xb0\n"
      "Page has been migrated, last migrate reason: compaction\n"
      "\n");
  EXPECT_EQ(
      PageOwnerText(m_, DumpFormat::k2016, Pfn(0x1001)),
      "Page allocated via order 3, mask 0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP)\n"
      "PFN 4112 type Movable Block 8 type Movable Flags 0x100000000000040(head)\n"
      " [<ffffffff81234560>] get_page_from_freelist+0x121a/0x13b0\n"
      " [<ffffffff81300000>] shmem_alloc_folio+0x9c/0xb0\n"
      "Page has been migrated, last_migrate_reason: compaction\n"
      "\n");
  // The file resumes at any pfn: from the second block on, only it prints.
  EXPECT_EQ(PageOwnerText(m_, DumpFormat::kToday, Pfn(0x1011)), "");
}

TEST_F(ReportsMachineTest, DumpPageOwnerForAllocatedFreedAndNeverSetPages) {
  ASSERT_TRUE(m_.Alloc({.order = Order(1),
                        .gfp_mask = 0xcc0,
                        .frames = a_,
                        .pid = 10,
                        .tgid = 9,
                        .comm = "bash",
                        .ts_ns = 42,
                        .pfn = Pfn(0x1100)})
                  .ok());
  EXPECT_EQ(*DumpPageOwner(m_, Pfn(0x1101)),
            "page_owner tracks the page as allocated\n"
            "page last allocated via order 1, migratetype Unmovable, gfp_mask 0xcc0(GFP_KERNEL), "
            "pid 10, tgid 9 (bash), ts 42, free_ts 0\n"
            " get_page_from_freelist+0x121a/0x13b0\n"
            " __alloc_pages_noprof+0x198/0x1060\n"
            " 0xffffffffc0012345\n"
            "page_owner free stack trace missing\n");
  ASSERT_TRUE(m_.Free({.pfn = Pfn(0x1100),
                       .order = Order(1),
                       .frames = f_,
                       .pid = 11,
                       .tgid = 12,
                       .ts_ns = 99})
                  .ok());
  ASSERT_TRUE(m_.Alloc({.order = Order(0), .frames = b_, .pfn = Pfn(0x1102)}).ok());
  ASSERT_TRUE(
      m_.Migrate({.pfn = Pfn(0x1102), .reason = MigrateReason::kLongtermPin, .target = Pfn(0x1100)})
          .ok());
  EXPECT_EQ(*DumpPageOwner(m_, Pfn(0x1101)),
            "page_owner tracks the page as freed\n"
            "page last allocated via order 1, migratetype Unmovable, gfp_mask 0xcc0(GFP_KERNEL), "
            "pid 10, tgid 9 (bash), ts 42, free_ts 99\n"
            " get_page_from_freelist+0x121a/0x13b0\n"
            " __alloc_pages_noprof+0x198/0x1060\n"
            " 0xffffffffc0012345\n"
            "page last free pid 11 tgid 12 stack trace:\n"
            " free_unref_page+0x1f/0x2c0\n");
  EXPECT_EQ(*DumpPageOwner(m_, Pfn(0x1100)),
            "page_owner tracks the page as allocated\n"
            "page last allocated via order 0, migratetype Unmovable, gfp_mask 0x0(), pid 0, tgid 0 "
            "(), ts 0, free_ts 0\n"
            " get_page_from_freelist+0x121a/0x13b0\n"
            " shmem_alloc_folio+0x9c/0xb0\n"
            "page_owner free stack trace missing\n"
            "page has been migrated, last migrate reason: longterm_pin\n");
  EXPECT_EQ(*DumpPageOwner(m_, Pfn(0x1500)), "page_owner info is not present (never set?)\n");
  EXPECT_EQ(DumpPageOwner(m_, Pfn(0x1800)).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(ReportsMachineTest, ShowStacksThresholdAndHandleViews) {
  ASSERT_TRUE(m_.Alloc({.order = Order(2), .frames = a_, .pfn = Pfn(0x1000)}).ok());
  ASSERT_TRUE(m_.Alloc({.order = Order(0), .frames = b_, .pfn = Pfn(0x1004)}).ok());
  ASSERT_TRUE(m_.Alloc({.order = Order(0), .frames = f_, .pfn = Pfn(0x1005)}).ok());
  ASSERT_TRUE(m_.Free({.pfn = Pfn(0x1005), .order = Order(0)}).ok());
  const uint32_t ha = m_.depot().Find(a_).raw();
  const uint32_t hb = m_.depot().Find(b_).raw();
  // Newest first; the stack of f_ owns nothing now and is not shown, nor are the early pages
  // (the kernel never counts them on their stack).
  EXPECT_EQ(ShowStacksText(m_, 0, StacksView::kStacks),
            " get_page_from_freelist+0x121a/0x13b0\n"
            " shmem_alloc_folio+0x9c/0xb0\n"
            "nr_base_pages: 1\n"
            "\n"
            " get_page_from_freelist+0x121a/0x13b0\n"
            " __alloc_pages_noprof+0x198/0x1060\n"
            " 0xffffffffc0012345\n"
            "nr_base_pages: 4\n"
            "\n");
  EXPECT_EQ(ShowStacksText(m_, 2, StacksView::kHandles),
            "handle: " + std::to_string(ha) + "\nnr_base_pages: 4\n\n");
  EXPECT_EQ(ShowStacksText(m_, 5, StacksView::kHandles), "");
  const std::string first_entry =
      " get_page_from_freelist+0x121a/0x13b0\n shmem_alloc_folio+0x9c/0xb0\nhandle: " +
      std::to_string(hb) + "\n\n";
  EXPECT_EQ(ShowStacksText(m_, 1, StacksView::kStacksHandles).substr(0, first_entry.size()),
            first_entry);
}

TEST_F(ReportsMachineTest, ImportedBlocksPrintWhatTheirKernelPrinted) {
  PrintedExtras extras;
  extras.page_flags = 0x100000000000240;                            // workingset|head
  extras.gfp_names = "GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO";  // 6.12's order of names
  extras.slab_cache = true;
  extras.memcg = "Charged (via objcg) to offline memcg cache";
  ASSERT_TRUE(m_.Import({.pfn = Pfn(0x1060),
                         .order = Order(2),
                         .gfp_mask = 0x140dca,
                         .frames = b_,
                         .pid = 5,
                         .tgid = 6,
                         .comm = "sh",
                         .ts_ns = 77,
                         .free_ts_ns = 55,
                         .last_migrate_reason = MigrateReason::kCompaction,
                         .pageblock_migratetype = MigrateType::kUnmovable,
                         .extras = &extras})
                  .ok());
  const std::string frames_and_trailers =
      " get_page_from_freelist+0x121a/0x13b0\n"
      " shmem_alloc_folio+0x9c/0xb0\n"
      "Page has been migrated, last migrate reason: compaction\n"
      "Slab cache page\n"
      "Charged (via objcg) to offline memcg cache\n"
      "\n";
  EXPECT_EQ(
      PageOwnerText(m_, DumpFormat::kToday, Pfn(0x1000)),
      "Page allocated via order 2, mask 0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), "
      "pid 5, tgid 6 (sh), ts 77 ns\n"
      "PFN 0x1060 type Movable Block 8 type Unmovable Flags "
      "0x100000000000240(workingset|head|node=0|zone=1)\n" +
          frames_and_trailers);
  EXPECT_EQ(
      PageOwnerText(m_, DumpFormat::kFreeTs, Pfn(0x1000)),
      "Page allocated via order 2, mask 0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), "
      "pid 5, tgid 6 (sh), ts 77 ns, free_ts 55 ns\n"
      "PFN 4192 type Movable Block 8 type Unmovable Flags "
      "0x100000000000240(workingset|head|node=0|zone=1)\n" +
          frames_and_trailers);
  // The extras go with the block when it migrates, and away when it is freed.
  const EventResult moved = *m_.Migrate({.pfn = Pfn(0x1060), .target = Pfn(0x1100)});
  EXPECT_EQ(m_.BlockOwner(moved.pfn)->page_flags, 0x100000000000240u);
  ASSERT_TRUE(m_.Free({.pfn = moved.pfn, .order = Order(2)}).ok());
  EXPECT_EQ(m_.PageRecord(moved.pfn)->extras, nullptr);
  // A pageblock type the allocator does not simulate is refused.
  EXPECT_EQ(m_.Import({.pfn = Pfn(0x1200),
                       .order = Order(0),
                       .frames = b_,
                       .pageblock_migratetype = MigrateType::kCma})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ReportsMachineTest, MixedBlocksFollowTheKernelsRule) {
  // Pageblocks start Movable. An Unmovable page placed in pageblock 8 mixes it; Movable pages
  // in pageblock 9 do not.
  ASSERT_TRUE(
      m_.Alloc({.order = Order(0), .gfp_mask = 0xcc0, .frames = a_, .pfn = Pfn(0x1001)}).ok());
  ASSERT_TRUE(
      m_.Alloc({.order = Order(0), .gfp_mask = 0x140cca, .frames = a_, .pfn = Pfn(0x1200)}).ok());
  const std::vector<ZoneMixedBlocks> mixed = m_.MixedBlocks();
  ASSERT_EQ(mixed.size(), 2u);
  EXPECT_EQ(mixed[0].zone, "DMA");
  EXPECT_EQ(mixed[1].zone, "DMA32");
  EXPECT_EQ(mixed[1].count[static_cast<int>(MigrateType::kMovable)], 1u);
  EXPECT_EQ(mixed[1].count[static_cast<int>(MigrateType::kUnmovable)], 0u);
}

}  // namespace
}  // namespace pageowner
