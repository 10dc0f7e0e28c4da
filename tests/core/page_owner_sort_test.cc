#include "core/page_owner_sort.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

using Version = PageOwnerSortVersion;

using ::pageowner::testing::ReadTestFile;
using ::pageowner::testing::ReadXz;

SortOptions Parse(const std::vector<std::string>& args, Version version = Version::k6_12) {
  absl::StatusOr<SortOptions> o = ParseSortArgs(args, version);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *o : SortOptions();
}

std::string SortText(std::string_view dump, const std::vector<std::string>& args,
                     Version version = Version::k6_12) {
  return SortPageOwnerDump(dump, Parse(args, version)).output;
}

// ---------------------------------------------------------------------------------------------
// The real dumps and the reports the kernel's own tool wrote for them.

struct RealData {
  std::string dump;
  PageOwnerSorter sorter;
};

const RealData& Real(Version version) {
  static std::map<Version, RealData>* cache = new std::map<Version, RealData>();
  auto it = cache->find(version);
  if (it == cache->end()) {
    RealData d;
    d.dump = ReadXz(version == Version::k6_12 ? "linux-6.12/page_owner.txt.xz"
                                              : "linux-6.1/page_owner.txt.xz");
    d.sorter.AddText(d.dump);
    it = cache->emplace(version, std::move(d)).first;
  }
  return it->second;
}

std::string ExpectedStdout(int loaded) {
  std::string s;
  for (int i = 1000; i <= loaded; i += 1000) s += "loaded " + std::to_string(i) + "\r";
  return s + "loaded " + std::to_string(loaded) + "\nsorting ....\nculling\n";
}

TEST(PageOwnerSortRealTest, Linux612Default) {
  const RealData& d = Real(Version::k6_12);
  EXPECT_EQ(d.sorter.blocks(), 33510);
  SortReport r = d.sorter.Report(Parse({}));
  EXPECT_EQ(r.output, ReadXz("linux-6.12/page_owner_sort.default.txt.xz"));
  EXPECT_EQ(r.loaded, 33510);
  EXPECT_EQ(r.records, 896);
  EXPECT_EQ(r.stdout_text, ExpectedStdout(33510));
  EXPECT_EQ(r.stderr_text, "");
  EXPECT_TRUE(r.completed);
}

TEST(PageOwnerSortRealTest, Linux612CullStacktrace) {
  SortReport r = Real(Version::k6_12).sorter.Report(Parse({"--cull=stacktrace"}));
  EXPECT_EQ(r.output, ReadXz("linux-6.12/page_owner_sort.cull_stacktrace.txt.xz"));
  EXPECT_EQ(r.records, 784);
}

TEST(PageOwnerSortRealTest, Linux612TotalPages) {
  SortReport r = Real(Version::k6_12).sorter.Report(Parse({"-m"}));
  EXPECT_EQ(r.output, ReadXz("linux-6.12/page_owner_sort.m.txt.xz"));
  EXPECT_EQ(r.records, 896);
}

TEST(PageOwnerSortRealTest, Linux612AllocTimeKeepsTs) {
  SortReport r = Real(Version::k6_12).sorter.Report(Parse({"-a"}));
  // 33,158 distinct block texts (PFN lines left out): pages split from one allocation share it.
  EXPECT_EQ(r.records, 33158);
  EXPECT_EQ(r.output.find("ts  ns"), std::string::npos);
  // The first record is the earliest allocation.
  EXPECT_EQ(r.output.substr(0, r.output.find('\n', r.output.find('\n') + 1)),
            "1 times, 1 pages, allocated by OTHERS :\nPage allocated via order 0, mask 0x0(), pid "
            "0, tgid 0 (swapper), ts 144184548 ns");
}

TEST(PageOwnerSortRealTest, Linux612BlockByBlockAndInPiecesGiveTheSameReport) {
  const RealData& d = Real(Version::k6_12);
  const std::string expected = ReadXz("linux-6.12/page_owner_sort.default.txt.xz");
  PageOwnerSorter by_block;
  size_t at = 0;
  for (size_t end; (end = d.dump.find("\n\n", at)) != std::string::npos; at = end + 2) {
    by_block.AddBlock(std::string_view(d.dump).substr(at, end - at));
  }
  EXPECT_EQ(at, d.dump.size());
  EXPECT_EQ(by_block.input_bytes(), static_cast<int64_t>(d.dump.size()));
  EXPECT_EQ(by_block.Report(Parse({})).output, expected);

  PageOwnerSorter in_pieces;
  for (size_t i = 0; i < d.dump.size(); i += 4093) {
    in_pieces.AddText(std::string_view(d.dump).substr(i, 4093));
  }
  EXPECT_EQ(in_pieces.Report(Parse({})).output, expected);
}

TEST(PageOwnerSortRealTest, Linux61Reports) {
  const RealData& d = Real(Version::k6_1);
  EXPECT_EQ(d.sorter.blocks(), 34514);
  SortReport r = d.sorter.Report(Parse({}, Version::k6_1));
  EXPECT_EQ(r.output, ReadXz("linux-6.1/page_owner_sort.default.txt.xz"));
  EXPECT_EQ(r.loaded, 34033);  // consecutive equal blocks merged while reading
  EXPECT_EQ(r.records, 34006);
  EXPECT_EQ(r.stdout_text, ExpectedStdout(34033));
  EXPECT_EQ(d.sorter.Report(Parse({"-m"}, Version::k6_1)).output,
            ReadXz("linux-6.1/page_owner_sort.m.txt.xz"));
  r = d.sorter.Report(Parse({"--cull=stacktrace"}, Version::k6_1));
  EXPECT_EQ(r.output, ReadXz("linux-6.1/page_owner_sort.cull_stacktrace.txt.xz"));
  EXPECT_EQ(r.records, 713);
}

// ---------------------------------------------------------------------------------------------
// Small dumps written by hand (tests/data/sort/dump_*.txt) and the reports worked out by hand from
// the tool's source (tests/data/sort/<version>_<case>.txt).

struct GoldenCase {
  Version version;
  std::vector<std::string> args;
  std::string expected;
};

void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << (c.version == Version::k6_12 ? "6.12 " : "6.1 ") << ::testing::PrintToString(c.args)
      << " -> " << c.expected;
}

class PageOwnerSortGoldenTest : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(PageOwnerSortGoldenTest, MatchesHandWrittenReport) {
  const GoldenCase& c = GetParam();
  const std::string dump =
      ReadTestFile(c.version == Version::k6_12 ? "sort/dump_6.12.txt" : "sort/dump_6.1.txt");
  EXPECT_EQ(SortText(dump, c.args, c.version), ReadTestFile("sort/" + c.expected));
}

const GoldenCase kGoldenCases[] = {
    {Version::k6_12, {}, "6.12_default.txt"},
    {Version::k6_12, {"-t"}, "6.12_default.txt"},
    {Version::k6_12, {"-m"}, "6.12_m.txt"},
    {Version::k6_12, {"-p"}, "6.12_p.txt"},
    {Version::k6_12, {"-P"}, "6.12_P.txt"},
    {Version::k6_12, {"-n"}, "6.12_n.txt"},
    {Version::k6_12, {"-s"}, "6.12_s.txt"},
    {Version::k6_12, {"-a"}, "6.12_a.txt"},
    {Version::k6_12, {"--pid", "20,40"}, "6.12_pid_20_40.txt"},
    {Version::k6_12, {"--tgid=10"}, "6.12_tgid_10.txt"},
    {Version::k6_12, {"--name", "alpha,gamma"}, "6.12_name_alpha_gamma.txt"},
    {Version::k6_12, {"--cull", "pid"}, "6.12_cull_pid.txt"},
    {Version::k6_12, {"--cull=p"}, "6.12_cull_pid.txt"},
    {Version::k6_12, {"--cull=pid", "-m"}, "6.12_cull_pid_m.txt"},
    {Version::k6_12, {"--cull", "tgid"}, "6.12_cull_tgid.txt"},
    {Version::k6_12, {"--cull", "name"}, "6.12_cull_name.txt"},
    {Version::k6_12, {"--cull", "stacktrace"}, "6.12_cull_stacktrace.txt"},
    {Version::k6_12, {"--cull", "allocator"}, "6.12_cull_allocator.txt"},
    // The keys are compared in the tool's fixed order, whatever the list's order.
    {Version::k6_12, {"--cull", "pid,stacktrace"}, "6.12_cull_pid_stacktrace.txt"},
    {Version::k6_12, {"--cull", "st,p"}, "6.12_cull_pid_stacktrace.txt"},
    {Version::k6_12, {"--cull", "ator,n"}, "6.12_cull_name_allocator.txt"},
    {Version::k6_12, {"--cull", "st", "--pid", "20,40"}, "6.12_cull_stacktrace_pid_20_40.txt"},
    // 6.12 checks --sort and then replaces it with the single key of -a..-t (default -t).
    {Version::k6_12, {"--sort=-pid,+name"}, "6.12_default.txt"},
    {Version::k6_12, {"--sort", "at,-T,+st,tg,ator"}, "6.12_default.txt"},
    {Version::k6_12, {"--sort=pid", "-m"}, "6.12_m.txt"},
    {Version::k6_1, {}, "6.1_default.txt"},
    {Version::k6_1, {"-f"}, "6.1_f.txt"},
    {Version::k6_1, {"-r"}, "6.1_r.txt"},
    {Version::k6_1, {"--sort=-pid"}, "6.1_sort_-pid.txt"},
    {Version::k6_1, {"--cull=f"}, "6.1_cull_f.txt"},
};

INSTANTIATE_TEST_SUITE_P(All, PageOwnerSortGoldenTest, ::testing::ValuesIn(kGoldenCases),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           std::string name =
                               "case" + std::to_string(info.index) + "_" +
                               info.param.expected.substr(0, info.param.expected.size() - 4);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(PageOwnerSortTest, HandWrittenDumpDropsItsUnterminatedLastBlock) {
  SortReport r = SortPageOwnerDump(ReadTestFile("sort/dump_6.12.txt"), SortOptions());
  EXPECT_EQ(r.loaded, 8);
  EXPECT_EQ(r.records, 6);
  EXPECT_EQ(r.stdout_text, "loaded 8\nsorting ....\nculling\n");
  EXPECT_EQ(r.output.find("delta"), std::string::npos);
}

TEST(PageOwnerSortTest, ReportCanBeRepeatedWithOtherOptions) {
  PageOwnerSorter s;
  s.AddText(ReadTestFile("sort/dump_6.12.txt"));
  EXPECT_EQ(s.Report(Parse({"-m"})).output, ReadTestFile("sort/6.12_m.txt"));
  EXPECT_EQ(s.Report(Parse({"-a"})).output, ReadTestFile("sort/6.12_a.txt"));
  EXPECT_EQ(s.Report(Parse({})).output, ReadTestFile("sort/6.12_default.txt"));
}

// ---------------------------------------------------------------------------------------------
// The reader's and the extractors' quirks.

const std::string kStack =
    " get_page_from_freelist+0x121a/0x13b0\n __alloc_pages_noprof+0x198/0x1060\n"
    " alloc_pages_mpol_noprof+0x8f/0x1e0\n";

std::string Header(int order, std::string_view pid, std::string_view comm, int ts) {
  return "Page allocated via order " + std::to_string(order) + ", mask 0xcc0(GFP_KERNEL), pid " +
         std::string(pid) + ", tgid " + std::string(pid) + " (" + std::string(comm) + "), ts " +
         std::to_string(ts) + " ns\n";
}
std::string Pfn(int pfn) {
  return "PFN " + std::to_string(pfn) + " type Movable Block 8 type Movable Flags 0x0(zone=1)\n";
}
std::string Strip(std::string header) {
  size_t ts = header.rfind("ts ");
  return header.substr(0, ts + 3) + header.substr(header.rfind(" ns"));
}

TEST(PageOwnerSortTest, BlankLinesMakeEmptyRecords) {
  const std::string h = Header(0, "7", "init", 5);
  const std::string dump = h + Pfn(1) + kStack + "\n\n" + Header(0, "7", "init", 6) + kStack + "\n";
  EXPECT_EQ(SortText(dump, {}), "2 times, 2 pages, allocated by OTHERS :\n" + Strip(h) + kStack +
                                    "\n1 times, 0 pages, allocated by OTHERS :\n\n");
  EXPECT_EQ(SortText(dump, {"--cull=pid"}), "2 times, 2 pages, PID 7\n1 times, 0 pages, PID -1\n");
}

TEST(PageOwnerSortTest, ANulCutsItsLine) {
  const std::string h = Header(0, "7", "init", 5);
  std::string dump = h + " foo";
  dump += '\0';
  dump += "bar\n baz\n" + kStack + "\n";
  EXPECT_EQ(SortText(dump, {}),
            "1 times, 1 pages, allocated by OTHERS :\n" + Strip(h) + " foo baz\n" + kStack + "\n");
}

TEST(PageOwnerSortTest, MoreRecordsThanTheInputSizeOver100StopsTheTool) {
  const std::string block =
      "Page allocated via order 0, mask 0x0(), pid 1, tgid 1 (a), ts 1 ns\n\n";
  ASSERT_LT(2 * block.size(), 200u);
  SortReport r = SortPageOwnerDump(block + block, SortOptions());
  EXPECT_FALSE(r.completed);
  EXPECT_EQ(r.output, "");
  EXPECT_EQ(r.stdout_text, "");
  EXPECT_EQ(r.stderr_text, "max_size too small??\n");
  // Filtered blocks are not records: the second block then fits.
  r = SortPageOwnerDump(block + block, Parse({"--pid=2"}));
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.loaded, 0);
  EXPECT_EQ(r.output, "");
  // And one record needs 100 bytes of input.
  EXPECT_FALSE(SortPageOwnerDump(block, SortOptions()).completed);
  EXPECT_TRUE(SortPageOwnerDump("", SortOptions()).completed);
}

TEST(PageOwnerSortTest, ABlockThatFillsTheBufferEndsTheInput) {
  const std::string first = Header(0, "1", "a", 1) + kStack + "\n";
  const std::string huge = Header(0, "2", "b", 2) + " " + std::string(140000, 'x') + "\n\n";
  const std::string last = Header(0, "3", "c", 3) + kStack + "\n";
  SortReport r = SortPageOwnerDump(first + huge + last, Parse({"--cull=pid"}));
  EXPECT_EQ(r.loaded, 1);
  EXPECT_EQ(r.output, "1 times, 1 pages, PID 1\n");
}

TEST(PageOwnerSortTest, APfnLineLongerThanTheBufferLeavesItsNewlineAsABlankLine) {
  const std::string h = Header(0, "1", "a", 1);
  // fgets takes the PFN line without its '\n' (the buffer's last bytes); the '\n' comes next.
  const std::string pfn = "PFN " + std::string(128 * 1024 - 1 - h.size() - 4, 'x') + "\n";
  const std::string dump = h + pfn + kStack + "\n";
  EXPECT_EQ(SortText(dump, {}), "1 times, 0 pages, allocated by OTHERS :\n" + kStack +
                                    "\n1 times, 1 pages, allocated by OTHERS :\n" + Strip(h) +
                                    "\n");
}

TEST(PageOwnerSortTest, ABlockWithoutPfnLineKeepsThePreviousOne) {
  const std::string cma =
      "PFN 4096 type Movable Block 8 type CMA Flags 0x0(zone=1)\n";  // "CMA" anywhere in it
  const std::string slab = "PFN 4097 type Unmovable Block 8 type Unmovable Flags 0x200(slab)\n";
  const std::string dump = Header(0, "1", "a", 1) + cma + kStack + "\n" + Header(0, "2", "b", 2) +
                           kStack + "\n" + Header(0, "3", "c", 3) + slab + kStack + "\n";
  EXPECT_EQ(SortText(dump, {"--cull=pid,allocator"}),
            "1 times, 1 pages, PID 1, allocated by CMA \n"
            "1 times, 1 pages, PID 2, allocated by CMA \n"
            "1 times, 1 pages, PID 3, allocated by SLAB \n");
}

TEST(PageOwnerSortTest, VmallocNeedsAllocPagesInTheLineBefore) {
  const std::string h = Header(0, "1", "a", 1);
  const std::string vmalloc =
      " get_page_from_freelist+0x1/0x2\n alloc_pages_bulk_noprof+0x1/0x2\n"
      " __vmalloc_node_range_noprof+0x1/0x2\n";
  const std::string not_vmalloc =
      " alloc_pages_bulk_noprof+0x1/0x2\n get_page_from_freelist+0x1/0x2\n"
      " __vmalloc_node_range_noprof+0x1/0x2\n";
  EXPECT_EQ(SortText(h + vmalloc + "\n" + Header(0, "2", "b", 1) + not_vmalloc + "\n",
                     {"--cull=pid,ator"}),
            "1 times, 1 pages, PID 1, allocated by VMALLOC \n"
            "1 times, 1 pages, PID 2, allocated by OTHERS \n");
}

TEST(PageOwnerSortTest, OrderAndPidAreCInts) {
  // order 31: 1 << 31 in an int; 40: x86 shifts by 40 % 32; 65: above 64, no pages.
  // pid 4294967297: strtol's long in a pid_t.
  const std::string dump = Header(31, "1", "a", 1) + kStack + "\n" + Header(40, "2", "b", 2) +
                           kStack + "\n" + Header(65, "4294967299", "c", 3) + kStack + "\n";
  EXPECT_EQ(SortText(dump, {"--cull=pid"}),
            "1 times, -2147483648 pages, PID 1\n1 times, 256 pages, PID 2\n"
            "1 times, 0 pages, PID 3\n");
  // The sum of pages wraps like an int too.
  EXPECT_EQ(SortText(dump + Header(31, "1", "a", 4) + kStack + "\n", {"--cull=pid"}),
            "2 times, 0 pages, PID 1\n1 times, 256 pages, PID 2\n1 times, 0 pages, PID 3\n");
}

TEST(PageOwnerSortTest, CommIsTheLongestMatchAndTsTheFirst) {
  // "tgid\s*[0-9]*\s*\((.*)\),\s*ts" runs to the last "), ts"; the first "ts N ns" is the ts.
  const std::string h =
      "Page allocated via order 0, mask 0x0(), pid 5, tgid 5 (a), ts b), ts 77 ns\n";
  const std::string dump = h + kStack + "\n";
  EXPECT_EQ(SortText(dump, {"--cull=name"}), "1 times, 1 pages, task_comm_name: a), ts b\n");
  EXPECT_EQ(SortText(dump, {}),
            "1 times, 1 pages, allocated by OTHERS :\nPage allocated via order 0, mask 0x0(), pid "
            "5, tgid 5 (a), ts b), ts  ns\n" +
                kStack + "\n");
  // No pid, tgid or comm (a 2016-style header): -1, -1 and "".
  const std::string old = "Page allocated via order 0, mask 0x24200ca()\n" + kStack + "\n";
  EXPECT_EQ(SortText(old, {"--cull=pid,tgid,name"}),
            "1 times, 1 pages, PID -1, TGID -1, task_comm_name: \n");
}

TEST(PageOwnerSortTest, PathologicalLine) {
  // That it stays linear is BM_PageOwnerSortPathologicalLine (bench/core_bench.cc).
  // A header without pid, tgid or comm, then a 120 KB line of starts that never complete.
  std::string line;
  while (line.size() < 120000) line += "tgid (ts pid order ";
  const std::string dump = "Page allocated via order 0, mask 0x0()\n" + line + "\n" + kStack + "\n";
  EXPECT_EQ(SortText(dump, {"--cull=pid,name"}), "1 times, 1 pages, PID -1, task_comm_name: \n");
}

TEST(PageOwnerSortTest, DebugPrintsTheToolsMessages) {
  const std::string text = "Page allocated via order 0, mask 0x0(), ts 5 ns\n" + kStack;
  const std::string buf = text + "\n";
  const std::string no_match = "no matching pattern in " + buf + "\n";
  SortReport r = SortPageOwnerDump(text + "\n", Parse({"-d"}));
  EXPECT_EQ(r.stderr_text, no_match + no_match + "wrong/invalid pid in follow buf:\n" + buf + "\n" +
                               no_match + "wrong/invalid tgid in follow buf:\n" + buf + "\n" +
                               no_match);
  EXPECT_EQ(SortPageOwnerDump(text + "\n", Parse({})).stderr_text, "");
}

TEST(PageOwnerSortTest, AddBlockTakesBlocksWithOrWithoutTheirNewline) {
  const std::string a = Header(0, "1", "a", 1) + Pfn(1) + kStack;
  const std::string b = Header(0, "1", "a", 2) + Pfn(2) + kStack;
  PageOwnerSorter s;
  s.AddBlock(a);
  s.AddBlock(b.substr(0, b.size() - 1));
  EXPECT_EQ(s.blocks(), 2);
  EXPECT_EQ(s.Report(SortOptions()).output, SortPageOwnerDump(a + "\n" + b + "\n", {}).output);
}

// ---------------------------------------------------------------------------------------------
// The command line.

TEST(ParseSortArgsTest, Defaults) {
  SortOptions o = Parse({});
  EXPECT_EQ(o.version, Version::k6_12);
  EXPECT_EQ(o.sort, (std::vector<SortField>{{SortKey::kTimes, true}}));
  EXPECT_FALSE(o.pids || o.tgids || o.names);
  EXPECT_FALSE(o.cull.any());
  EXPECT_FALSE(o.debug);
  EXPECT_EQ(o, SortOptions());
}

TEST(ParseSortArgsTest, SortFlags) {
  const std::pair<std::string, SortField> cases[] = {
      {"-a", {SortKey::kAllocTs, false}}, {"-m", {SortKey::kPages, true}},
      {"-n", {SortKey::kName, false}},    {"-p", {SortKey::kPid, false}},
      {"-P", {SortKey::kTgid, false}},    {"-s", {SortKey::kStacktrace, false}},
      {"-t", {SortKey::kTimes, true}},
  };
  for (const auto& [flag, field] : cases) {
    EXPECT_EQ(Parse({flag}).sort, std::vector<SortField>{field}) << flag;
    EXPECT_EQ(Parse({flag, flag}).sort, std::vector<SortField>{field}) << flag;
  }
  SortOptions o = Parse({"-dm"});
  EXPECT_TRUE(o.debug);
  EXPECT_EQ(o.sort, (std::vector<SortField>{{SortKey::kPages, true}}));
}

TEST(ParseSortArgsTest, FiltersAndCull) {
  SortOptions o = Parse({"--pid", " 1,+2,-3", "--tgid=4294967297", "--name", "a,,b c"});
  EXPECT_EQ(o.pids, (std::vector<int32_t>{1, 2, -3}));
  EXPECT_EQ(o.tgids, (std::vector<int32_t>{1}));
  EXPECT_EQ(o.names, (std::vector<std::string>{"a", "", "b c"}));
  EXPECT_EQ(Parse({"--pid=9223372036854775807"}).pids, (std::vector<int32_t>{-1}));
  EXPECT_EQ(Parse({"--pid=-9223372036854775808"}).pids, (std::vector<int32_t>{0}));
  EXPECT_EQ(Parse({"--tgid=1", "--tgid=2"}).tgids, (std::vector<int32_t>{2}));  // the last one

  CullKeys all;
  all.pid = all.tgid = all.name = all.stacktrace = all.allocator = true;
  EXPECT_EQ(Parse({"--cull=p,tg,n,st,ator"}).cull, all);
  EXPECT_EQ(Parse({"--cull", "pid,tgid", "--cull=name,stacktrace,allocator"}).cull, all);
  EXPECT_EQ(Parse({"--cull=p,tg,n,st,ator"}).sort, SortOptions().sort);
}

TEST(ParseSortArgsTest, SortListIsCheckedButIgnoredIn612) {
  EXPECT_EQ(Parse({"--sort=-pid,+name,T,st,at,tg,ator"}).sort, SortOptions().sort);
  EXPECT_EQ(Parse({"--sort=at"}).sort, SortOptions().sort);
  EXPECT_EQ(Parse({"--sort", "pid", "-n"}).sort, (std::vector<SortField>{{SortKey::kName, false}}));
}

TEST(ParseSortArgsTest, OperandsAndLongOptionSpellings) {
  SortOptions o = Parse({"in.txt", "-m", "out.txt", "--", "-n", "--pid=1"});
  EXPECT_EQ(o.operands, (std::vector<std::string>{"in.txt", "out.txt", "-n", "--pid=1"}));
  EXPECT_EQ(o.sort, (std::vector<SortField>{{SortKey::kPages, true}}));
  EXPECT_FALSE(o.pids);
  EXPECT_EQ(Parse({"-"}).operands, std::vector<std::string>{"-"});
  EXPECT_EQ(Parse({"--p=5"}).pids, (std::vector<int32_t>{5}));
  EXPECT_EQ(Parse({"--t", "6"}).tgids, (std::vector<int32_t>{6}));
  EXPECT_EQ(Parse({"--na", "x"}).names, (std::vector<std::string>{"x"}));
  EXPECT_TRUE(Parse({"--cu=st"}).cull.stacktrace);
  EXPECT_TRUE(Parse({"--s", "pid"}).operands.empty());
  EXPECT_EQ(Parse({"--pid", "-5"}).pids, (std::vector<int32_t>{-5}));  // an argument, not a flag
}

void ExpectError(const std::vector<std::string>& args, const std::string& message,
                 Version version = Version::k6_12) {
  absl::StatusOr<SortOptions> o = ParseSortArgs(args, version);
  ASSERT_FALSE(o.ok()) << ::testing::PrintToString(args);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(o.status().message(), message) << ::testing::PrintToString(args);
}

TEST(ParseSortArgsTest, BadArguments) {
  ExpectError({"-x"}, "page_owner_sort: invalid option -- 'x'");
  ExpectError({"-mx"}, "page_owner_sort: invalid option -- 'x'");
  ExpectError({"-h"}, "page_owner_sort: invalid option -- 'h'");
  ExpectError({"-f"}, "page_owner_sort: invalid option -- 'f'");  // 6.1 only
  ExpectError({"-r"}, "page_owner_sort: invalid option -- 'r'");
  ExpectError({"--pid"}, "page_owner_sort: option '--pid' requires an argument");
  ExpectError({"--s"}, "page_owner_sort: option '--sort' requires an argument");
  ExpectError({"--foo=1"}, "page_owner_sort: unrecognized option '--foo=1'");
  ExpectError({"--pids=1"}, "page_owner_sort: unrecognized option '--pids=1'");
  ExpectError({"--=1"},
              "page_owner_sort: option '--=1' is ambiguous; possibilities: '--pid' '--tgid' "
              "'--name' '--cull' '--sort'");
  for (const char* bad : {"abc", "", "1,", ",1", "1,,2", "1 ", "0x10", "1.5", "9223372036854775808",
                          "99999999999999999999"}) {
    ExpectError({std::string("--pid=") + bad},
                std::string("wrong/invalid pid in from the command line:") + bad);
  }
  ExpectError({"--tgid", "1;2"}, "wrong/invalid tgid in from the command line:1;2");
  for (const char* bad :
       {"bogus", "", "pid,", "txt", "T", "at", "alloc_ts", "free", "-pid", "PID"}) {
    ExpectError({std::string("--cull=") + bad},
                std::string("wrong argument after --cull option:") + bad);
  }
  for (const char* bad :
       {"bogus", "", "-", "+-pid", "pid,,name", "pid,", "free_ts", "ft", "f", "times", "m"}) {
    ExpectError({std::string("--sort=") + bad},
                std::string("wrong argument after --sort option:") + bad);
  }
  const std::string many =
      "page_owner_sort: only one of -a, -m, -n, -p, -P, -s, -t may be given (the tool prints its "
      "usage)";
  ExpectError({"-m", "-n"}, many);
  ExpectError({"-at"}, many);
  ExpectError({"-t", "-s"}, many);
  // The first bad option wins; the flags are only checked after all options.
  ExpectError({"--pid=x", "--sort=bad"}, "wrong/invalid pid in from the command line:x");
  ExpectError({"-m", "-n", "--sort=bad"}, "wrong argument after --sort option:bad");
}

TEST(ParseSortArgsTest, Version61) {
  SortOptions o = Parse({}, Version::k6_1);
  EXPECT_EQ(o.version, Version::k6_1);
  EXPECT_TRUE(o.sort.empty());  // no comparator: records stay in cull order
  EXPECT_TRUE(Parse({"-f"}, Version::k6_1).filter_released);
  EXPECT_EQ(Parse({"-r"}, Version::k6_1).sort, (std::vector<SortField>{{SortKey::kFreeTs, false}}));
  o = Parse({"--cull=f"}, Version::k6_1);
  EXPECT_TRUE(o.cull.released);
  EXPECT_EQ(o.sort, (std::vector<SortField>{{SortKey::kTimes, true}}));
  EXPECT_EQ(Parse({"--sort=pid", "--cull=pid"}, Version::k6_1).sort,
            (std::vector<SortField>{{SortKey::kPid, false}}));
  EXPECT_EQ(Parse({"--sort=ft,-at,+T"}, Version::k6_1).sort,
            (std::vector<SortField>{
                {SortKey::kFreeTs, false}, {SortKey::kAllocTs, true}, {SortKey::kText, false}}));
  // The last sort option wins, and several flags are fine.
  EXPECT_EQ(Parse({"--sort=-pid", "-m"}, Version::k6_1).sort,
            (std::vector<SortField>{{SortKey::kPages, true}}));
  EXPECT_EQ(Parse({"-m", "--sort=-pid"}, Version::k6_1).sort,
            (std::vector<SortField>{{SortKey::kPid, true}}));
  EXPECT_EQ(Parse({"-m", "-n"}, Version::k6_1).sort,
            (std::vector<SortField>{{SortKey::kName, false}}));
  ExpectError({"--sort=f"}, "wrong argument after --sort option:f", Version::k6_1);
  ExpectError({"-x"}, "page_owner_sort: invalid option -- 'x'", Version::k6_1);
}

TEST(ParseSortArgsTest, Usage) {
  EXPECT_EQ(PageOwnerSortUsage().substr(0, 52),
            "Usage: ./page_owner_sort [OPTIONS] <input> <output>\n");
  EXPECT_NE(PageOwnerSortUsage().find("--sort <order>\t\tSpecify sort order as: "
                                      "[+|-]key[,[+|-]key[,...]]\n"),
            std::string_view::npos);
}

}  // namespace
}  // namespace pageowner
