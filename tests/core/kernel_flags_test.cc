#include "core/kernel_flags.h"

#include <cstdint>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

// The lines of a test data file, without blank lines and '#' comments.
std::vector<std::string> ReadDataLines(const std::string& name) {
  std::istringstream in(::pageowner::testing::ReadTestFile(name));
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    lines.push_back(line);
  }
  return lines;
}

uint64_t ParseHex(std::string_view text) {
  uint64_t v = 0;
  EXPECT_TRUE(absl::SimpleHexAtoi(absl::string_view(text.data(), text.size()), &v)) << text;
  return v;
}

std::multiset<std::string> NameSet(std::string_view names) {
  std::multiset<std::string> set;
  if (names.empty()) return set;
  size_t start = 0;
  while (true) {
    const size_t bar = names.find('|', start);
    set.emplace(names.substr(start, bar - start));
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  return set;
}

// ---- gfp masks ----

TEST(GfpConstantsTest, MatchTodaysGfpTypes) {
  EXPECT_EQ(kGfpKernel, 0xcc0u);
  EXPECT_EQ(kGfpKernelAccount, 0x400cc0u);
  EXPECT_EQ(kGfpAtomic, 0x820u);
  EXPECT_EQ(kGfpNowait, 0x2800u);
  EXPECT_EQ(kGfpNoio, 0xc00u);
  EXPECT_EQ(kGfpNofs, 0xc40u);
  EXPECT_EQ(kGfpUser, 0x100cc0u);
  EXPECT_EQ(kGfpHighuser, 0x100cc2u);
  EXPECT_EQ(kGfpHighuserMovable, 0x100ccau);
  EXPECT_EQ(kGfpTranshugeLight, 0x1c20cau);
  EXPECT_EQ(kGfpTranshuge, 0x1c24cau);
  EXPECT_EQ(kGfpComp, 0x40000u);
  EXPECT_EQ(kGfpZero, 0x100u);
  EXPECT_EQ(kGfpMovable, 0x8u);
  EXPECT_EQ(kGfpReclaimable, 0x10u);
  EXPECT_EQ(kGfpZerotags, 0x800000u);
}

TEST(FormatGfpMaskTest, RequiredExamples) {
  EXPECT_EQ(FormatGfpMask(0xd2cc0),
            "0xd2cc0(GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC)");
  EXPECT_EQ(FormatGfpMask(0x140dca), "0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP)");
}

TEST(FormatGfpMaskTest, ZeroPrintsKernelHex) {
  EXPECT_EQ(FormatGfpMask(0), "0x0()");
  EXPECT_EQ(FormatGfpNames(0), "");
}

TEST(FormatGfpNamesTest, CompositesBeforeSingles) {
  EXPECT_EQ(FormatGfpNames(kGfpKernel), "GFP_KERNEL");
  EXPECT_EQ(FormatGfpNames(kGfpKernel | kGfpDma32), "GFP_KERNEL|GFP_DMA32");
  EXPECT_EQ(FormatGfpNames(kGfpAtomic | kGfpNowarn), "GFP_ATOMIC|__GFP_NOWARN");
  EXPECT_EQ(FormatGfpNames(kGfpTranshugeLight | kGfpNoretry | kGfpThisnode),
            "GFP_TRANSHUGE_LIGHT|__GFP_NORETRY|__GFP_THISNODE");
  EXPECT_EQ(FormatGfpNames(kGfpTranshuge), "GFP_TRANSHUGE");
  EXPECT_EQ(FormatGfpNames(kGfpDirectReclaim), "__GFP_DIRECT_RECLAIM");
  EXPECT_EQ(FormatGfpNames(kGfpDma), "GFP_DMA");
  // Today's single-bit order is bit order: __GFP_RECLAIMABLE and __GFP_MOVABLE come early.
  EXPECT_EQ(FormatGfpNames(0x52cd0),
            "GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP");
}

TEST(FormatGfpNamesTest, UnknownBitsAsHexRemainder) {
  EXPECT_EQ(FormatGfpNames(0x200), "0x200");
  EXPECT_EQ(FormatGfpMask(0x200), "0x200(0x200)");
  EXPECT_EQ(FormatGfpNames(0xa20), "GFP_ATOMIC|0x200");
  EXPECT_EQ(FormatGfpNames(0x3000200), "0x3000200");
  EXPECT_EQ(FormatGfpNames(0x1000cc0), "GFP_KERNEL|0x1000000");
  EXPECT_EQ(FormatGfpMask(0xffffffff),
            "0xffffffff(GFP_TRANSHUGE|GFP_ATOMIC|GFP_DMA|GFP_DMA32|__GFP_RECLAIMABLE|"
            "__GFP_ZERO|__GFP_WRITE|__GFP_RETRY_MAYFAIL|__GFP_NOFAIL|__GFP_NORETRY|"
            "__GFP_MEMALLOC|__GFP_THISNODE|__GFP_ACCOUNT|__GFP_ZEROTAGS|0xff000200)");
}

TEST(ParseGfpNamesTest, EmptyAndNone) {
  EXPECT_EQ(ParseGfpNames("").value(), 0u);
  EXPECT_EQ(ParseGfpNames("none").value(), 0u);
  EXPECT_EQ(ParseGfpNames(" GFP_KERNEL\n").value(), kGfpKernel);
}

TEST(ParseGfpNamesTest, AnyOrderAndHexRemainder) {
  EXPECT_EQ(ParseGfpNames("__GFP_COMP|__GFP_ZERO|GFP_HIGHUSER_MOVABLE").value(), 0x140dcau);
  EXPECT_EQ(ParseGfpNames("GFP_ATOMIC|0x200").value(), 0xa20u);
  EXPECT_EQ(ParseGfpNames("0x200").value(), 0x200u);
  EXPECT_EQ(ParseGfpNames("__GFP_DMA|__GFP_DMA32|__GFP_RECLAIM").value(), 0xc05u);
}

TEST(ParseGfpNamesTest, UnknownTokenIsNamed) {
  auto r = ParseGfpNames("GFP_KERNEL|__GFP_BOGUS");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("__GFP_BOGUS"), std::string_view::npos);

  EXPECT_FALSE(ParseGfpNames("GFP_KERNEL||__GFP_COMP").ok());
  EXPECT_FALSE(ParseGfpNames("GFP_KERNEL|").ok());
  EXPECT_FALSE(ParseGfpNames("0x").ok());
  EXPECT_FALSE(ParseGfpNames("0x1g").ok());
  EXPECT_FALSE(ParseGfpNames("0x100000000").ok());
  EXPECT_FALSE(ParseGfpNames("none|GFP_KERNEL").ok());
  EXPECT_FALSE(ParseGfpNames("gfp_kernel").ok());
}

TEST(ParseGfpNamesTest, RoundTripsEveryFormattedMask) {
  for (uint32_t mask : {0u, 0x1u, 0x200u, 0xcc0u, 0x2800u, 0xd2800u, 0x3d20cau, 0x1c24cau, 0xa20u,
                        0xffffffu, 0xffffffffu, 0x12345678u}) {
    auto parsed = ParseGfpNames(FormatGfpNames(mask));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, mask) << FormatGfpNames(mask);
  }
  for (uint32_t bit = 0; bit < 32; ++bit) {
    const uint32_t mask = (uint32_t{1} << bit) | kGfpKernel;
    EXPECT_EQ(ParseGfpNames(FormatGfpNames(mask)).value(), mask);
  }
}

// Every distinct mask of the real 6.12 dump: the names parse back to the value, and today's table
// prints the same set of names (6.12's single-bit order differs from today's).
TEST(GfpRealDataTest, Linux612DumpMasks) {
  const std::vector<std::string> lines = ReadDataLines("gfp_masks_6.12.txt");
  ASSERT_GE(lines.size(), 50u);
  int identical = 0;
  std::vector<std::string> reordered;
  for (const std::string& line : lines) {
    // "0xVALUE NAMES", or just "0x0" for the empty mask.
    const size_t space = line.find(' ');
    const std::string_view hex = std::string_view(line).substr(0, space);
    const std::string_view names =
        space == std::string::npos ? std::string_view() : std::string_view(line).substr(space + 1);
    const uint64_t value = ParseHex(hex);
    ASSERT_LE(value, uint64_t{UINT32_MAX});
    const auto mask = static_cast<uint32_t>(value);

    auto parsed = ParseGfpNames(names);
    ASSERT_TRUE(parsed.ok()) << line << ": " << parsed.status();
    EXPECT_EQ(*parsed, mask) << line;

    const std::string ours = FormatGfpNames(mask);
    EXPECT_EQ(NameSet(ours), NameSet(names)) << line << " vs " << ours;
    if (ours == names) {
      ++identical;
    } else {
      reordered.push_back(std::string(hex) + " 6.12 " + std::string(names) + " today " + ours);
    }
  }
  std::cout << identical << " of " << lines.size()
            << " 6.12 masks print byte-identically with today's table; reordered:\n";
  for (const std::string& r : reordered) std::cout << "  " << r << "\n";
  // 23 of the 61 differ only in the order of single bits (6.12 put __GFP_ZERO after __GFP_COMP
  // and __GFP_RECLAIMABLE/__GFP_MOVABLE last; today's table lists single bits in bit order).
  EXPECT_EQ(identical, 38);
  EXPECT_EQ(reordered.size(), 23u);
}

// 6.1 spellings (its GFP_NOWAIT lacked __GFP_NOWARN, so it prints __GFP_NOWARN after it).
TEST(GfpRealDataTest, Linux61Spellings) {
  EXPECT_EQ(
      ParseGfpNames("GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC").value(),
      0xd2800u);
  EXPECT_EQ(FormatGfpNames(0xd2800), "GFP_NOWAIT|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC");
  EXPECT_EQ(
      ParseGfpNames("GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_RECLAIMABLE").value(),
      0x52810u);
  EXPECT_EQ(ParseGfpNames("GFP_NOWAIT|__GFP_NOWARN|__GFP_NORETRY|__GFP_NOMEMALLOC").value(),
            0x92800u);
  EXPECT_EQ(ParseGfpNames("GFP_KERNEL|__GFP_RETRY_MAYFAIL").value(), 0x4cc0u);
  EXPECT_EQ(ParseGfpNames("__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|"
                          "__GFP_NOMEMALLOC|__GFP_HARDWALL")
                .value(),
            0x1d20c0u);
  EXPECT_EQ(ParseGfpNames("GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_NOWARN|__GFP_ZERO").value(),
            0x402dc2u);
  EXPECT_EQ(ParseGfpNames("GFP_NOFS|__GFP_NOFAIL|__GFP_COMP|__GFP_HARDWALL").value(), 0x148c40u);
  // 6.1's GFP_ATOMIC was 0xa20 (with __GFP_ATOMIC, removed in 6.3); the name reads as today's.
  EXPECT_EQ(ParseGfpNames("GFP_ATOMIC").value(), 0x820u);
}

TEST(GfpMigrateTypeTest, KernelArithmetic) {
  EXPECT_EQ(GfpMigrateType(0), MigrateType::kUnmovable);
  EXPECT_EQ(GfpMigrateType(kGfpKernel), MigrateType::kUnmovable);
  EXPECT_EQ(GfpMigrateType(kGfpHighuserMovable), MigrateType::kMovable);
  EXPECT_EQ(GfpMigrateType(kGfpKernel | kGfpReclaimable), MigrateType::kReclaimable);
  EXPECT_EQ(GfpMigrateType(kGfpMovable | kGfpReclaimable), MigrateType::kHighAtomic);
  EXPECT_EQ(GfpMigrateType(0xffffffe7), MigrateType::kUnmovable);
}

// ---- page flags ----

TEST(FormatPageFlagsTest, Examples) {
  EXPECT_EQ(FormatPageFlags(0x100000000000040), "0x100000000000040(head|node=0|zone=1)");
  EXPECT_EQ(FormatPageFlags(0x100000000000000), "0x100000000000000(node=0|zone=1)");
  EXPECT_EQ(FormatPageFlags(0), "0x0(node=0|zone=0)");
  EXPECT_EQ(FormatPageFlags(0x200000000000000), "0x200000000000000(node=0|zone=2)");
  EXPECT_EQ(FormatPageFlags(0xfd000000000800a0),
            "0xfd000000000800a0(waiters|lru|mlocked|node=63|zone=1)");
  // Bits between the flags and the fields print nowhere, as in the kernel.
  EXPECT_EQ(FormatPageFlags(0x100000000100000), "0x100000000100000(node=0|zone=1)");
  EXPECT_EQ(FormatPageFlags((uint64_t{1} << kNumPageFlags) - 1),
            "0xfffff(locked|waiters|referenced|uptodate|dirty|lru|active|workingset|"
            "owner_priv_1|owner_2|arch_1|reserved|private|private_2|writeback|head|reclaim|"
            "swapbacked|unevictable|mlocked|node=0|zone=0)");
}

// Every distinct `Flags` text of the real 6.12 dump, byte for byte.
TEST(PageFlagsRealDataTest, Linux612DumpFlags) {
  const std::vector<std::string> lines = ReadDataLines("page_flags_6.12.txt");
  ASSERT_GE(lines.size(), 20u);
  for (const std::string& line : lines) {
    const size_t paren = line.find('(');
    ASSERT_NE(paren, std::string::npos) << line;
    const uint64_t flags = ParseHex(std::string_view(line).substr(0, paren));
    EXPECT_EQ(FormatPageFlags(flags), line);
  }
}

TEST(SimulatedPageFlagsTest, ZoneBoundaries) {
  constexpr uint64_t kZone0 = 0;
  constexpr uint64_t kZone1 = uint64_t{1} << 56;
  constexpr uint64_t kZone2 = uint64_t{2} << 56;
  EXPECT_EQ(SimulatedPageFlags(Pfn(0), Order(0), 0), kZone0);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0xfff), Order(0), 0), kZone0);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x1000), Order(0), 0), kZone1);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0xfffff), Order(0), 0), kZone1);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x100000), Order(0), 0), kZone2);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x7fffffff), Order(0), 0), kZone2);
  EXPECT_EQ(FormatPageFlags(SimulatedPageFlags(Pfn(0x1000), Order(0), kGfpKernel)),
            "0x100000000000000(node=0|zone=1)");
  EXPECT_EQ(FormatPageFlags(SimulatedPageFlags(Pfn(0x800), Order(0), 0)), "0x0(node=0|zone=0)");
  EXPECT_EQ(FormatPageFlags(SimulatedPageFlags(Pfn(0x100000), Order(0), 0)),
            "0x200000000000000(node=0|zone=2)");
}

TEST(SimulatedPageFlagsTest, HeadNeedsOrderAndComp) {
  constexpr uint64_t kZone1 = uint64_t{1} << 56;
  constexpr uint64_t kHead = uint64_t{1} << 6;
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x2000), Order(0), kGfpComp), kZone1);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x2000), Order(1), kGfpKernel), kZone1);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x2000), Order(1), kGfpKernel | kGfpComp), kZone1 | kHead);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0x2000), Order(9), kGfpTranshugeLight), kZone1 | kHead);
  EXPECT_EQ(SimulatedPageFlags(Pfn(0), Order(3), kGfpComp), kHead);
  EXPECT_EQ(FormatPageFlags(SimulatedPageFlags(Pfn(0x2000), Order(2), kGfpComp)),
            "0x100000000000040(head|node=0|zone=1)");
}

}  // namespace
}  // namespace pageowner
