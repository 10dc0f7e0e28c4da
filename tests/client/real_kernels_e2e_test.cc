// End to end with real kernels' data: `pageowner import` of the real 6.12 and 6.1 page_owner
// dumps into a real pageownerd, `dump` back byte for byte, `sort` against the real
// page_owner_sort reports, `stacks` against the real show_stacks, `replay --format=ftrace` of the
// real 6.12 trace, and small handwritten and malformed inputs.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/page_owner_sort.h"
#include "gtest/gtest.h"
#include "tests/support/daemon_process.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

#if defined(PAGEOWNERD_BIN)

using testing::Ran;
using testing::ReadFile;
using testing::ReadXz;
using testing::RunProgram;
using testing::TempPath;

std::string Data(const std::string& name) { return testing::TestDataPath(name); }

// A pageownerd on 127.0.0.1, on the port the kernel picks, and the CLI pointed at it.
class Daemon : public testing::DaemonProcess {
 public:
  Daemon(const std::string& memory, bool tracking)
      : DaemonProcess(PAGEOWNERD_BIN, {absl::StrCat("--memory=", memory),
                                       absl::StrCat("--tracking=", tracking ? "true" : "false")}) {}
  Ran Cli(std::vector<std::string> args) const {
    args.insert(args.begin(), {PAGEOWNER_CLI, absl::StrCat("--server=", address())});
    return RunProgram(args);
  }
};

// show_stacks entries: frames text -> nr_base_pages.
std::map<std::string, int64_t> StackEntries(const std::string& text) {
  std::map<std::string, int64_t> m;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) break;
    const std::string e = text.substr(start, end + 1 - start);
    const size_t at = e.rfind("nr_base_pages: ");
    m[e.substr(0, at)] += std::stoll(e.substr(at + 15));
    start = end + 2;
  }
  return m;
}

// The real 6.12 dump: import, dump, sort, stacks. One daemon for the whole test (about 5 s).
TEST(RealKernelsEndToEnd, Linux612DumpRoundTripsAndSortsLikeTheKernelsTool) {
  Daemon d("512MiB", /*tracking=*/false);
  ASSERT_FALSE(d.address().empty());
  Ran r = d.Cli({"import", Data("linux-6.12/page_owner.txt.xz")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err,
                                "import: 33510 blocks (39271 pages) read from 532763 lines "
                                "(21943265 bytes) in "))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, ": OK 33510; 0 blocks skipped, 0 truncated, 0 problems"))
      << r.err;

  const std::string original = ReadXz("linux-6.12/page_owner.txt.xz");
  r = d.Cli({"dump"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.size(), original.size());
  EXPECT_TRUE(r.out == original) << "the dump differs from the original";

  // The kernel tool's reports, byte for byte.
  const std::vector<std::pair<std::vector<std::string>, std::string>> reports = {
      {{}, "default"}, {{"--cull=stacktrace"}, "cull_stacktrace"}, {{"-m"}, "m"}};
  for (const auto& [args, name] : reports) {
    std::vector<std::string> argv = {"sort"};
    argv.insert(argv.end(), args.begin(), args.end());
    r = d.Cli(argv);
    ASSERT_EQ(r.code, 0) << name << ": " << r.err;
    EXPECT_TRUE(r.out == ReadXz(absl::StrCat("linux-6.12/page_owner_sort.", name, ".txt.xz")))
        << name;
  }
  // Every other option: the same as core's page_owner_sort (itself checked against the tool's
  // golden outputs in tests/core/page_owner_sort_test.cc) run on the original file.
  PageOwnerSorter sorter;
  sorter.AddText(original);
  const std::vector<std::vector<std::string>> options = {{"-a"},
                                                         {"-n"},
                                                         {"-p"},
                                                         {"-P"},
                                                         {"-s"},
                                                         {"-t"},
                                                         {"--pid", "1,2"},
                                                         {"--tgid=1"},
                                                         {"--name=dd"},
                                                         {"--cull=pid"},
                                                         {"--cull", "tgid,name"},
                                                         {"--cull=allocator", "-m"},
                                                         {"--sort=-pid"}};
  for (const std::vector<std::string>& args : options) {
    std::vector<std::string> argv = {"sort"};
    argv.insert(argv.end(), args.begin(), args.end());
    r = d.Cli(argv);
    ASSERT_EQ(r.code, 0) << args[0] << ": " << r.err;
    EXPECT_TRUE(r.out == sorter.Report(*ParseSortArgs(args)).output) << args[0];
  }
  r = d.Cli({"sort", "--bogus"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "unrecognized option '--bogus'")) << r.err;
  r = d.Cli({"sort", "-m", "-a"});
  EXPECT_EQ(r.code, 2) << r.err;

  // show_stacks: read from the kernel after page_owner, so the tasks that read the results out
  // changed a few counts; neither the kernel nor we count early pages on their stack.
  r = d.Cli({"stacks"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::map<std::string, int64_t> ours = StackEntries(r.out);
  const std::map<std::string, int64_t> real = StackEntries(ReadXz("linux-6.12/show_stacks.txt.xz"));
  int same = 0, real_only = 0;
  int64_t ours_pages = 0, real_pages = 0;
  for (const auto& [k, v] : ours) ours_pages += v;
  for (const auto& [k, v] : real) {
    real_pages += v;
    auto it = ours.find(k);
    if (it == ours.end()) ++real_only;
    if (it != ours.end() && it->second == v) ++same;
  }
  EXPECT_EQ(real.size(), 761u);
  EXPECT_EQ(real_only, 0);  // every real stack is ours too
  EXPECT_EQ(same, 754);     // 7 counts differ
  EXPECT_EQ(ours.size(), 767u);
  EXPECT_EQ(ours_pages, 39271 - 1819);  // the dump's pages but its 1819 early pages
  EXPECT_EQ(real_pages, 37178);
  const std::string early =
      " register_early_stack+0x4b/0x80\n init_page_owner+0x34/0x290\n mm_core_init+0x9b/0x110\n"
      " start_kernel+0x2a5/0x810\n";
  EXPECT_EQ(ours.count(early), 0u);
  EXPECT_EQ(real.count(early), 0u);
}

TEST(RealKernelsEndToEnd, Linux61DumpRoundTripsInTheV62Format) {
  Daemon d("512MiB", /*tracking=*/false);
  ASSERT_FALSE(d.address().empty());
  Ran r = d.Cli({"import", Data("linux-6.1/page_owner.txt.xz")});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "import: 34514 blocks (40409 pages)")) << r.err;
  r = d.Cli({"dump", "--format=v6.2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out == ReadXz("linux-6.1/page_owner.txt.xz"));
  r = d.Cli({"dump", "--format=v7"});
  EXPECT_EQ(r.code, 2);
}

TEST(RealKernelsEndToEnd, ADumpBeyondTheDaemonsMemoryIsRefusedBeforeItStarts) {
  Daemon d("256MiB", /*tracking=*/false);
  ASSERT_FALSE(d.address().empty());
  Ran r = d.Cli({"import", Data("linux-6.12/page_owner.txt.xz")});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err,
                                "highest pfn is 0x17fcf (98255), beyond the daemon's "
                                "memory of 65536 pages"))
      << r.err;
  r = d.Cli({"stats"});
  EXPECT_TRUE(absl::StrContains(r.out, "allocs: 0\n")) << r.out;
}

TEST(RealKernelsEndToEnd, Linux612TraceReplaysWithEveryEventAppliedOrClassified) {
  Daemon d("512MiB", /*tracking=*/true);
  ASSERT_FALSE(d.address().empty());
  Ran r = d.Cli({"replay", "--format=ftrace", Data("linux-6.12/ftrace_kmem.txt.xz")});
  EXPECT_EQ(r.code, 1);  // some frees fail
  // 29,547 allocs all fit an empty machine; 1,998 of the 25,118 frees free pages allocated
  // before the trace started (FAILED_PRECONDITION); 52,667 + 1,998 = 54,665.
  EXPECT_TRUE(absl::StartsWith(r.out, "replay: 54665 events in ")) << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.out,
      ": 52667 applied, mm_page_free FAILED_PRECONDITION 1998; 0 event lines skipped, "
      "0 problems\n"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "replay: line 175: mm_page_free: FAILED_PRECONDITION: "))
      << r.err;
}

// Small handwritten dumps: one daemon a file, imported and printed back in its generation.
TEST(RealKernelsEndToEnd, SmallSamplesOfEachGenerationRoundTrip) {
  const std::vector<std::pair<std::string, std::string>> samples = {
      {"import/dump_today.txt", "today"},
      {"import/dump_free_ts.txt", "v6.2"},
      {"import/dump_2016.txt", "2016"}};
  for (const auto& [file, format] : samples) {
    Daemon d("1GiB", /*tracking=*/false);
    ASSERT_FALSE(d.address().empty());
    Ran r = d.Cli({"import", "--force", Data(file)});
    r = d.Cli({"dump", "--format=" + format});
    ASSERT_EQ(r.code, 0) << file << r.err;
    EXPECT_FALSE(r.out.empty()) << file;
  }
}

TEST(RealKernelsEndToEnd, MalformedInputsAreReportedWithLineNumbersAndTheRestImported) {
  Daemon d("1GiB", /*tracking=*/false);
  ASSERT_FALSE(d.address().empty());
  Ran r = d.Cli({"import", Data("import/dump_malformed.txt")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "line 1: unknown_line: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "line 8: bad_header: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "line 36: truncated_block: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "4 blocks (5 pages) read from 38 lines")) << r.err;

  // Overlapping blocks: the second fails with ALREADY_EXISTS, the import goes on.
  const std::string overlap = TempPath("overlap.txt");
  std::ofstream(overlap)
      << "Page allocated via order 2, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (a), ts 1 ns\n"
         "PFN 0x1000 type Unmovable Block 8 type Unmovable Flags 0x0(zone=1)\n f+0x1/0x2\n\n"
         "Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (a), ts 2 ns\n"
         "PFN 0x1001 type Unmovable Block 8 type Unmovable Flags 0x0(zone=1)\n f+0x1/0x2\n\n"
         "Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (a), ts 3 ns\n"
         "PFN 0x1004 type Unmovable Block 8 type Unmovable Flags 0x0(zone=1)\n f+0x1/0x2\n\n";
  r = d.Cli({"import", overlap});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "import: line 5: ALREADY_EXISTS: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, ": ALREADY_EXISTS 1 OK 2;")) << r.err;
  std::remove(overlap.c_str());

  // A binary file: every line reported, nothing imported, no crash; nothing usable is exit 2.
  const std::string binary = TempPath("binary.bin");
  {
    std::ofstream f(binary, std::ios::binary);
    for (int i = 0; i < 100000; ++i) f.put(static_cast<char>((i * 7919) % 256));
  }
  r = d.Cli({"import", binary});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "import: 0 blocks (0 pages)")) << r.err;
  std::remove(binary.c_str());

  // A pfn beyond memory with --force: OUT_OF_RANGE, counted.
  const std::string far = TempPath("far.txt");
  std::ofstream(far)
      << "Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (a), ts 1 ns\n"
         "PFN 0xfffffffff type Unmovable Block 8 type Unmovable Flags 0x0(zone=1)\n f+0x1/0x2\n\n";
  r = d.Cli({"import", far});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "highest pfn is 0xfffffffff")) << r.err;
  r = d.Cli({"import", "--force", far});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "OUT_OF_RANGE 1;")) << r.err;
  std::remove(far.c_str());

  // Issue 10, finding 6: pfns of 2^63 and above slipped through the check (an int64), and the
  // KiB figure overflowed from 2^61.
  const std::string farthest = TempPath("farthest.txt");
  std::ofstream(farthest)
      << "Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 1, tgid 1 (a), ts 1 ns\n"
         "PFN 0xfffffffffffffffe type Unmovable Block 8 type Unmovable Flags 0x0(zone=1)\n"
         " f+0x1/0x2\n\n";
  r = d.Cli({"import", farthest});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "highest pfn is 0xffffffffffffffff (18446744073709551615)"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "at least 73786976294838206464 KiB")) << r.err;
  std::remove(farthest.c_str());

  r = d.Cli({"import", "/nonexistent/file.xz"});
  EXPECT_EQ(r.code, 2);
}

#endif  // PAGEOWNERD_BIN

}  // namespace
}  // namespace pageowner
