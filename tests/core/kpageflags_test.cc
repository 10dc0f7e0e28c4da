#include "core/kpageflags.h"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "core/iomem.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

using kpf::Bit;

constexpr uint64_t kHead = Bit(kpf::kCompoundHead);
constexpr uint64_t kTail = Bit(kpf::kCompoundTail);
constexpr uint64_t kBuddy = Bit(kpf::kBuddy);
constexpr uint64_t kLru = uint64_t{1} << 5;

struct Page {
  uint64_t flags;
  uint64_t count;
};

KpageScan Decode(Pfn first, const std::vector<Page>& pages, KpageDecodeOptions o = {},
                 size_t chunk = 0) {
  std::vector<uint64_t> flags, counts;
  for (const Page& p : pages) {
    flags.push_back(p.flags);
    counts.push_back(p.count);
  }
  if (chunk == 0) return DecodeKpages(first, flags, counts, o);
  KpageDecoder d(o);
  d.BeginRange(first);
  for (size_t i = 0; i < flags.size(); i += chunk) {
    const size_t n = std::min(chunk, flags.size() - i);
    d.Feed(absl::MakeConstSpan(flags).subspan(i, n), absl::MakeConstSpan(counts).subspan(i, n));
  }
  return d.Finish();
}

std::vector<AllocatedBlock> Blocks(std::vector<std::pair<uint64_t, unsigned>> v) {
  std::vector<AllocatedBlock> out;
  for (auto [pfn, order] : v) out.push_back(AllocatedBlock{Pfn(pfn), Order(order)});
  return out;
}

void ExpectSame(const KpageScan& a, const KpageScan& b) {
  EXPECT_EQ(a.in_use, b.in_use);
  EXPECT_EQ(a.in_use_pages, b.in_use_pages);
  EXPECT_EQ(a.free_pages, b.free_pages);
  EXPECT_EQ(a.not_ram_pages, b.not_ram_pages);
  EXPECT_EQ(a.not_ram, b.not_ram);
  EXPECT_EQ(a.flagless_in_use_pages, b.flagless_in_use_pages);
  EXPECT_EQ(a.compound_blocks_split, b.compound_blocks_split);
  EXPECT_EQ(a.flagless_free_pages, b.flagless_free_pages);
}

const std::vector<Page> kModern = {
    {Bit(kpf::kNoPage), 0},    // 0x200 hole
    {Bit(kpf::kReserved), 0},  // 0x201 memblock-reserved
    {Bit(kpf::kSlab), 0},      // 0x202 a frozen slab page: map count 0, in use
    {0, 0},                    // 0x203 per-cpu list or flagless kernel page
    {kBuddy, 0},               // 0x204-0x207 a free order-2 block, every page flagged
    {kBuddy, 0},
    {kBuddy, 0},
    {kBuddy, 0},
    {kHead | Bit(kpf::kThp), 1},  // 0x208-0x20f an order-3 THP
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kTail | Bit(kpf::kThp), 1},
    {kHead, 0},  // 0x210-0x212 three pages: 0x210/1 + 0x212/0
    {kTail, 0},
    {kTail, 0},
    {kHead, 0},  // 0x213-0x214 two misaligned pages: 0x213/0 + 0x214/0
    {kTail, 0},
    {kLru | Bit(kpf::kMmap), 1},  // 0x215 a mapped page-cache page
    {kTail, 0},                   // 0x216-0x217 tails whose head is elsewhere: 0x216/1
    {kTail, 0},
};

TEST(KpageflagsTest, ModernKernel) {
  const KpageScan s = Decode(Pfn(0x200), kModern);
  EXPECT_EQ(s.in_use, Blocks({{0x202, 0},
                              {0x203, 0},
                              {0x208, 3},
                              {0x210, 1},
                              {0x212, 0},
                              {0x213, 0},
                              {0x214, 0},
                              {0x215, 0},
                              {0x216, 1}}));
  EXPECT_EQ(s.in_use_pages, 18u);
  EXPECT_EQ(s.free_pages, 4u);
  EXPECT_EQ(s.not_ram_pages, 2u);
  EXPECT_EQ(s.not_ram, (std::vector<PfnRange>{{Pfn(0x200), PageCount(2)}}));  // one run
  EXPECT_EQ(s.flagless_in_use_pages, 1u);
  EXPECT_EQ(s.compound_blocks_split, 3u);
  EXPECT_EQ(s.in_use_pages + s.free_pages + s.not_ram_pages, kModern.size());
  // The same in chunks of 1, 3 and 7 pages: state carries across Feed calls.
  for (size_t chunk : {1, 3, 7}) ExpectSame(Decode(Pfn(0x200), kModern, {}, chunk), s);
}

TEST(KpageflagsTest, NotRamRunsAndAlignedBlocks) {
  const uint64_t hole = Bit(kpf::kNoPage), reserved = Bit(kpf::kReserved);
  const KpageScan s = Decode(Pfn(0x3fe), {{hole, 0},
                                          {reserved, 1},
                                          {reserved, 0},  // 0x3fe-0x400: one run of 3
                                          {kLru, 1},
                                          {hole, 0},  // 0x402: a run of 1
                                          {kBuddy, 0},
                                          {reserved, 0},
                                          {hole, 0}});  // 0x404-0x405
  EXPECT_EQ(s.not_ram, (std::vector<PfnRange>{{Pfn(0x3fe), PageCount(3)},
                                              {Pfn(0x402), PageCount(1)},
                                              {Pfn(0x404), PageCount(2)}}));
  EXPECT_EQ(s.not_ram_pages, 6u);
  // A run is handed to the daemon as the largest aligned blocks, lowest first.
  EXPECT_EQ(AlignedBlocks(Pfn(0x3fe), 3), Blocks({{0x3fe, 1}, {0x400, 0}}));
  EXPECT_EQ(AlignedBlocks(Pfn(0x0), 0x1003),
            Blocks({{0x0, 10}, {0x400, 10}, {0x800, 10}, {0xc00, 10}, {0x1000, 1}, {0x1002, 0}}));
  EXPECT_EQ(AlignedBlocks(Pfn(0x9f), 0x61), Blocks({{0x9f, 0}, {0xa0, 5}, {0xc0, 6}}));
  EXPECT_TRUE(AlignedBlocks(Pfn(5), 0).empty());
}

TEST(KpageflagsTest, CompoundAtRangeEndAndSeveralRanges) {
  KpageDecoder d;
  std::vector<uint64_t> f1 = {kHead, kTail, kTail, kTail}, c1(4, 0);
  d.BeginRange(Pfn(0x400));
  d.Feed(f1, c1);
  // A new range closes the open compound page; a gigantic one is cut at order 10.
  std::vector<uint64_t> f2(2048 + 3, kTail | Bit(kpf::kHuge)), c2(2048 + 3, 0);
  f2[0] = kHead | Bit(kpf::kHuge);
  d.BeginRange(Pfn(0x100000));
  d.Feed(f2, c2);
  const KpageScan s = d.Finish();
  EXPECT_EQ(s.in_use,
            Blocks({{0x400, 2}, {0x100000, 10}, {0x100400, 10}, {0x100800, 1}, {0x100802, 0}}));
  EXPECT_EQ(s.in_use_pages, 4u + 2051u);
  EXPECT_EQ(s.compound_blocks_split, 1u);
}

TEST(KpageflagsTest, FlaglessMaxOrderBlocksAreFree) {
  // 0x3ff-0xc02: 2052 flagless pages; 0x400-0xbff are two whole aligned order-10 blocks.
  const std::vector<Page> pages(2052, Page{0, 0});
  const KpageScan s = Decode(Pfn(0x3ff), pages);
  EXPECT_EQ(s.in_use, Blocks({{0x3ff, 0}, {0xc00, 0}, {0xc01, 0}, {0xc02, 0}}));
  EXPECT_EQ(s.flagless_free_pages, 2048u);
  EXPECT_EQ(s.flagless_in_use_pages, 4u);
  for (size_t chunk : {1, 1000}) ExpectSame(Decode(Pfn(0x3ff), pages, {}, chunk), s);
  const KpageScan t = Decode(Pfn(0x3ff), pages, {.flagless_max_order_blocks_are_free = false});
  EXPECT_EQ(t.in_use.size(), 2052u);
  EXPECT_EQ(t.flagless_free_pages, 0u);
}

// Pages of an older kernel, where only a free block's head is flagged KPF_BUDDY.
const std::vector<Page> kHeadOnly = {
    {kBuddy, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0},  // 0x100-0x106
    {kLru, 1},                                                    // 0x107
    {kBuddy, 0}, {0, 0},                                          // 0x108-0x109
    {kBuddy, 0}, {0, 0}, {0, 0},                                  // 0x10a-0x10c
};

TEST(KpageflagsTest, InferBuddyTails) {
  const KpageScan s = Decode(Pfn(0x100), kHeadOnly, {.infer_buddy_tails = true});
  // 0x100 run of 7 -> free 4 (0x100-0x103), 0x104-0x106 in use; 0x108-0x109 free; 0x10a may
  // hold 2 pages by alignment, so 0x10c is not its tail.
  EXPECT_EQ(s.in_use, Blocks({{0x104, 0}, {0x105, 0}, {0x106, 0}, {0x107, 0}, {0x10c, 0}}));
  EXPECT_EQ(s.free_pages, 8u);
  EXPECT_EQ(s.in_use_pages, 5u);
  EXPECT_EQ(s.flagless_in_use_pages, 4u);
  for (size_t chunk : {1, 2, 5}) {
    ExpectSame(Decode(Pfn(0x100), kHeadOnly, {.infer_buddy_tails = true}, chunk), s);
  }
  // Without inference, flagless pages are in use.
  const KpageScan t = Decode(Pfn(0x100), kHeadOnly);
  EXPECT_EQ(t.free_pages, 3u);
  EXPECT_EQ(t.in_use_pages, 10u);
  EXPECT_EQ(t.flagless_in_use_pages, 9u);
}

TEST(KpageflagsTest, FileErrors) {
  const std::vector<PfnRange> r = {{Pfn(0), PageCount(4)}};
  absl::StatusOr<KpageScan> s = ReadKpages(r, {}, "/nonexistent/kpageflags", "/proc/kpagecount");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.status().message(),
            "open /nonexistent/kpageflags: No such file or directory (this kernel lacks "
            "CONFIG_PROC_PAGE_MONITOR)");
  // A file shorter than the range.
  const std::string path = ::testing::TempDir() + "/kpage_short";
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t words[3] = {0, 0, 0};
    out.write(reinterpret_cast<const char*>(words), sizeof words);
  }
  s = ReadKpages(r, {}, path, path, 2);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.status().message(), path + " ends before pfn 0x3");
}

uint64_t ZoneFreePages() {
  std::ifstream in("/proc/zoneinfo");
  std::string k;
  uint64_t total = 0;
  while (in >> k) {
    if (k == "nr_free_pages") {
      uint64_t v = 0;
      in >> v;
      total += v;
    }
  }
  return total;
}

uint64_t MemInfoKb(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  uint64_t v;
  std::string unit;
  while (in >> k >> v) {
    if (k == key + ":") return v;
    std::getline(in, unit);
  }
  return 0;
}

// This machine's real files (root): totals add up and agree with /proc/meminfo.
TEST(KpageflagsRealTest, ProcFiles) {
  absl::StatusOr<std::vector<PfnRange>> ranges = ReadIomemSystemRam();
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  absl::StatusOr<KpageScan> s = ReadKpages(*ranges);
  if (absl::IsPermissionDenied(s.status()) || absl::IsNotFound(s.status())) {
    GTEST_SKIP() << "the kernel refuses /proc/kpageflags or /proc/kpagecount: " << s.status();
  }
  ASSERT_TRUE(s.ok()) << s.status();
  uint64_t total = 0;
  for (const PfnRange& r : *ranges) total += r.count.raw();
  EXPECT_EQ(s->in_use_pages + s->free_pages + s->flagless_free_pages + s->not_ram_pages, total);
  uint64_t block_pages = 0;
  for (const AllocatedBlock& b : s->in_use) block_pages += b.order.pages().raw();
  EXPECT_EQ(block_pages, s->in_use_pages);
  const uint64_t mem_free_pages = ZoneFreePages();
  const uint64_t mem_total_pages = MemInfoKb("MemTotal") / 4;
  // Buddy pages are the zones' nr_free_pages less what moved while reading; per-cpu list pages
  // are in neither. 2% of RAM is room for a busy machine. (MemFree is no reference here: this
  // 6.18 guest counts 16 GiB the buddy allocator was never given, see flagless_free_pages.)
  const int64_t diff = static_cast<int64_t>(s->free_pages) - static_cast<int64_t>(mem_free_pages);
  EXPECT_LT(std::llabs(diff), static_cast<int64_t>(total / 50))
      << "kpageflags free " << s->free_pages << " MemFree " << mem_free_pages;
  // MemTotal excludes reserved pages: RAM less not-RAM pages is close to it.
  EXPECT_LE(mem_total_pages, total - s->not_ram_pages + total / 100);
  std::printf(
      "ram %lu pages: in use %lu (%lu blocks, %lu flagless, %lu compound split), free %lu, "
      "flagless free %lu, not ram %lu; zones' nr_free_pages %lu, MemTotal %lu pages\n",
      static_cast<unsigned long>(total), static_cast<unsigned long>(s->in_use_pages),
      static_cast<unsigned long>(s->in_use.size()),
      static_cast<unsigned long>(s->flagless_in_use_pages),
      static_cast<unsigned long>(s->compound_blocks_split),
      static_cast<unsigned long>(s->free_pages), static_cast<unsigned long>(s->flagless_free_pages),
      static_cast<unsigned long>(s->not_ram_pages), static_cast<unsigned long>(mem_free_pages),
      static_cast<unsigned long>(mem_total_pages));
}

}  // namespace
}  // namespace pageowner
