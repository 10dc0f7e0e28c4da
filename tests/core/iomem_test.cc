#include "core/iomem.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pageowner {
namespace {

std::string DataPath(const std::string& name) {
  return std::string(PAGEOWNER_TEST_DATA_DIR) + "/" + name;
}

// This machine's /proc/iomem (6.18.44, 24 GiB guest), read as root.
TEST(IomemTest, RealMachine) {
  absl::StatusOr<std::vector<PfnRange>> r = ReadIomemSystemRam(DataPath("iomem_6.18.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  // 00001000-0009fbff: the partial last page (0x9f000-0x9fbff) is dropped.
  EXPECT_EQ(*r, (std::vector<PfnRange>{{Pfn(0x1), PageCount(0x9e)},
                                       {Pfn(0x100), PageCount(0xc0000 - 0x100)},
                                       {Pfn(0x100000), PageCount(0x640000 - 0x100000)}}));
  EXPECT_EQ(HighestPfn(*r), Pfn(0x63ffff));
  EXPECT_EQ(DaemonMemoryBytes(*r), uint64_t{25} << 30);
  EXPECT_EQ(MemoryFlagValue(DaemonMemoryBytes(*r)), "25GiB");
}

TEST(IomemTest, RamGapsAreEverythingElseUpToTheDaemonsEnd) {
  absl::StatusOr<std::vector<PfnRange>> r = ReadIomemSystemRam(DataPath("iomem_6.18.txt"));
  ASSERT_TRUE(r.ok()) << r.status();
  // A 26 GiB daemon: pfn 0, the legacy hole 0x9f-0xff, the PCI hole below 4 GiB and past the
  // end of RAM (25 GiB) up to 26 GiB.
  EXPECT_EQ(RamGaps(*r, PageCount(0x680000)),
            (std::vector<PfnRange>{{Pfn(0), PageCount(1)},
                                   {Pfn(0x9f), PageCount(0x61)},
                                   {Pfn(0xc0000), PageCount(0x100000 - 0xc0000)},
                                   {Pfn(0x640000), PageCount(0x40000)}}));
  // A daemon that ends inside RAM: nothing past its end; ranges in any order.
  EXPECT_EQ(RamGaps({{Pfn(0x100), PageCount(0x100)}, {Pfn(0), PageCount(0x80)}}, PageCount(0x180)),
            (std::vector<PfnRange>{{Pfn(0x80), PageCount(0x80)}}));
  EXPECT_TRUE(RamGaps({{Pfn(0), PageCount(0x100)}}, PageCount(0x100)).empty());
}

TEST(IomemTest, RoundingAndUnits) {
  absl::StatusOr<std::vector<PfnRange>> r = ParseIomemSystemRam(
      "00000800-00001fff : System RAM\n"  // pages 1 only (0x800 rounds up to pfn 1)
      "00002000-00002ffe : System RAM\n"  // no whole page
      "  00001000-00001fff : Kernel code\n"
      "00100000-00100fff : Reserved\n"
      "00200000-00380fff : System RAM\n");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (std::vector<PfnRange>{{Pfn(1), PageCount(1)}, {Pfn(0x200), PageCount(0x181)}}));
  EXPECT_EQ(HighestPfn(*r), Pfn(0x380));
  // 0x381 pages = 3,590,144 bytes, rounded up to 4 MiB.
  EXPECT_EQ(DaemonMemoryBytes(*r), uint64_t{4} << 20);
  EXPECT_EQ(MemoryFlagValue(uint64_t{4} << 20), "4MiB");
  EXPECT_EQ(MemoryFlagValue(uint64_t{3} << 40), "3TiB");
  EXPECT_EQ(MemoryFlagValue(uint64_t{1536} << 20), "1536MiB");
  EXPECT_EQ(MemoryFlagValue(12288), "12KiB");
  EXPECT_EQ(MemoryFlagValue(4097), "4097");
}

TEST(IomemTest, Errors) {
  struct Case {
    const char* text;
    absl::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"00000000-00000000 : System RAM\n00000000-00000000 : Reserved\n",
       absl::StatusCode::kPermissionDenied,
       "every /proc/iomem range reads 0-0: the kernel hides physical addresses from readers "
       "without CAP_SYS_ADMIN"},
      {"00000000-00000fff : Reserved\n", absl::StatusCode::kNotFound,
       "no System RAM range holds a whole page"},
      {"", absl::StatusCode::kNotFound, "no System RAM range holds a whole page"},
      {"0000-1000 System RAM\n", absl::StatusCode::kInvalidArgument,
       "line 1: expected \"START-END : NAME\""},
      {"x\n00001000 : System RAM\n", absl::StatusCode::kInvalidArgument,
       "line 1: expected \"START-END : NAME\""},
      {"00001000 : System RAM\n", absl::StatusCode::kInvalidArgument,
       "line 1: expected \"START-END\""},
      {"0000g000-00002000 : System RAM\n", absl::StatusCode::kInvalidArgument,
       "line 1: bad hex address"},
      {"00002000-00001000 : System RAM\n", absl::StatusCode::kInvalidArgument,
       "line 1: END below START"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<PfnRange>> r = ParseIomemSystemRam(c.text);
    EXPECT_EQ(r.status().code(), c.code) << c.text;
    EXPECT_EQ(r.status().message(), c.message) << c.text;
  }
  EXPECT_EQ(ReadIomemSystemRam("/nonexistent/iomem").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pageowner
