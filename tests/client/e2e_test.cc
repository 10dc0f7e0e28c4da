// End to end: the real pageownerd on a free loopback port, driven by the real pageowner CLI.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/support/daemon_process.h"

namespace pageowner {
namespace {

using testing::Ran;
using testing::ReadFile;
using testing::RunProgram;
using testing::TempPath;

// The blocks of a page_owner text, each with its blank line.
std::vector<std::string> Blocks(const std::string& text) {
  std::vector<std::string> blocks;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size() - 2;
    blocks.push_back(text.substr(start, end + 2 - start));
    start = end + 2;
  }
  return blocks;
}

// "Page allocated via order 3, ..." -> 3; "PFN 0x1068 type ..." -> 0x1068.
uint64_t BlockOrder(const std::string& block) {
  const std::string prefix = "Page allocated via order ";
  uint64_t order = 0;
  EXPECT_TRUE(absl::StartsWith(block, prefix)) << block;
  const size_t comma = block.find(',');
  EXPECT_TRUE(absl::SimpleAtoi(block.substr(prefix.size(), comma - prefix.size()), &order));
  return order;
}
uint64_t BlockPfn(const std::string& block) {
  const size_t at = block.find("\nPFN 0x");
  EXPECT_NE(at, std::string::npos) << block;
  const size_t end = block.find(' ', at + 5);
  uint64_t pfn = 0;
  EXPECT_TRUE(absl::SimpleHexAtoi(block.substr(at + 7, end - at - 7), &pfn)) << block;
  return pfn;
}

#if defined(PAGEOWNERD_BIN)

// A pageownerd on 127.0.0.1, on the port the kernel picks.
class Daemon : public testing::DaemonProcess {
 public:
  explicit Daemon(const std::string& memory)
      : DaemonProcess(PAGEOWNERD_BIN, {absl::StrCat("--memory=", memory)}) {}
};

class ClientEndToEndTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(daemon_.address().empty()) << daemon_.startup_log();
    ASSERT_TRUE(absl::StartsWith(daemon_.address(), "127.0.0.1:")) << daemon_.address();
    ASSERT_NE(daemon_.address(), "127.0.0.1:0");
  }
  void TearDown() override { EXPECT_EQ(daemon_.Stop(), 0); }

  Ran Cli(std::vector<std::string> args, const std::string& stdin_path = "") {
    args.insert(args.begin(), {PAGEOWNER_CLI, absl::StrCat("--server=", daemon_.address())});
    return RunProgram(args, stdin_path);
  }

  Daemon daemon_{"1GiB"};
};

constexpr char kSample[] = PAGEOWNER_SAMPLES_DIR "/first-session.jsonl";

// The README's first session: replay the sample, then ask for the page of its first alloc.
TEST_F(ClientEndToEndTest, ReplayOfTheSampleThenPagePrintsTheKernelsText) {
  Ran r = Cli({"replay", kSample});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "replay: 12 events, 0 bad lines skipped\nresults: OK 12\n");
  EXPECT_EQ(r.err, "");

  const std::string golden =
      "Page allocated via order 3, mask "
      "0xd20c0(__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC), pid 77, "
      "tgid 77 (cat), ts 6549647543 ns\n"
      "PFN 0x1068 type Unmovable Block 8 type Movable Flags 0x100000000000040(head|node=0|zone=1)\n"
      " get_page_from_freelist+0x121a/0x13b0\n"
      " __alloc_pages_noprof+0x198/0x1060\n"
      " alloc_pages_mpol_noprof+0x8f/0x1e0\n"
      " new_slab+0x3a7/0x4d0\n"
      " ___slab_alloc+0x763/0xb90\n"
      " __kmalloc_node_noprof+0x13c/0x3d0\n"
      " __kvmalloc_node_noprof+0x43/0xd0\n"
      " seq_read_iter+0x183/0x440\n"
      " seq_read+0x12d/0x160\n"
      " vfs_read+0xe7/0x370\n"
      " ksys_read+0x6f/0xf0\n"
      " do_syscall_64+0x9e/0x1c0\n"
      " entry_SYSCALL_64_after_hwframe+0x77/0x7f\n"
      "\n";
  for (const char* pfn : {"0x1068", "4200", "0x106f"}) {  // the head, in decimal, the last page
    r = Cli({"page", pfn});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, golden) << pfn;
  }

  // The migrated page: its owner moved to the target, with the reason.
  r = Cli({"page", "0x4000"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(
      r.out,
      "Page allocated via order 0, mask 0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), pid 1, tgid 1 "
      "(init), ts 57999718293 ns\nPFN 0x4000 type Movable Block 32 type Movable Flags "
      "0x100000000000000(node=0|zone=1)\n get_page_from_freelist+0x121a/0x13b0\n"))
      << r.out;
  EXPECT_TRUE(
      absl::EndsWith(r.out, "\nPage has been migrated, last migrate reason: compaction\n\n"))
      << r.out;
  // The freed page: dump_page_owner's lines, with the free stack.
  r = Cli({"page", "0x5678"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "page_owner tracks the page as freed\n")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out,
                                "page last free pid 394 tgid 394 stack trace:\n"
                                " free_unref_folios+0x44a/0x750\n"))
      << r.out;

  // The same file from stdin is refused where it collides with what is now allocated.
  // Exit 1: the daemon refused some of the events.
  r = Cli({"replay", "-"}, kSample);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "results: OK ")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "ALREADY_EXISTS ")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "replay: line 1: ALREADY_EXISTS: ")) << r.err;
}

TEST_F(ClientEndToEndTest, LoadThenDumpStacksAndPageAgree) {
  Ran r = Cli({"load", "--events", "20000", "--stacks", "500"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\nload: 20000 events in [0-9]+\\.[0-9]+ s, [0-9]+ events/s\n$")))
      << r.out;

  const Ran dump = Cli({"dump"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  const std::vector<std::string> blocks = Blocks(dump.out);
  ASSERT_GT(blocks.size(), 1000u);
  uint64_t dump_pages = 0;
  uint64_t last_pfn = 0;
  for (size_t i = 0; i < blocks.size(); ++i) {
    dump_pages += uint64_t{1} << BlockOrder(blocks[i]);
    const uint64_t pfn = BlockPfn(blocks[i]);
    if (i > 0) {
      EXPECT_GT(pfn, last_pfn);  // pfn order
    }
    last_pfn = pfn;
  }

  const Ran stacks = Cli({"stacks"});
  ASSERT_EQ(stacks.code, 0) << stacks.err;
  uint64_t stack_pages = 0;
  int entries = 0;
  for (absl::string_view line : absl::StrSplit(stacks.out, '\n')) {
    if (absl::ConsumePrefix(&line, "nr_base_pages: ")) {
      uint64_t n = 0;
      ASSERT_TRUE(absl::SimpleAtoi(line, &n)) << line;
      stack_pages += n;
      ++entries;
    }
  }
  EXPECT_GT(entries, 10);

  // The early stack's pages (the depot's first pool) are dumped, but show_stacks does not list
  // the early stack, as in the kernel.
  const Ran stats = Cli({"stats"});
  ASSERT_EQ(stats.code, 0) << stats.err;
  EXPECT_TRUE(absl::StrContains(stats.out, "\nearly_handle_pages: 4\n")) << stats.out;
  EXPECT_EQ(stack_pages + 4, dump_pages);
  EXPECT_TRUE(absl::StrContains(stats.out, absl::StrCat("\ntracked_pages: ", dump_pages, "\n")))
      << stats.out;

  // `page` of any pfn of a block prints exactly that block.
  int tails = 0;
  for (size_t i = 0; i < blocks.size(); i += blocks.size() / 23) {
    const uint64_t head = BlockPfn(blocks[i]);
    const uint64_t last = head + (uint64_t{1} << BlockOrder(blocks[i])) - 1;
    for (uint64_t pfn : {head, last}) {
      r = Cli({"page", absl::StrCat("0x", absl::Hex(pfn))});
      EXPECT_EQ(r.code, 0) << r.err;
      EXPECT_EQ(r.out, blocks[i]) << "pfn " << pfn;
    }
    tails += last != head;
  }
  EXPECT_GT(tails, 0);
  r = Cli({"page", absl::StrCat(BlockPfn(blocks.back()))});
  EXPECT_EQ(r.out, blocks.back());

  // --top and --handles.
  r = Cli({"stacks", "--top", "3", "--handles", "--sort", "allocs"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Blocks(r.out).size(), 3u);
  // handle: H, content_id: 0x..., nr_base_pages: N and allocations: N, three times.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ':'), 12);
  EXPECT_TRUE(absl::StrContains(r.out, "\nhandle: ")) << r.out;
  for (const std::string& block : Blocks(r.out)) {
    EXPECT_TRUE(
        std::regex_search(block, std::regex("\nhandle: [0-9]+\ncontent_id: 0x[0-9a-f]{16}\n"
                                            "nr_base_pages: [0-9]+\nallocations: [0-9]+\n")))
        << block;
  }
}

TEST_F(ClientEndToEndTest, ErrorsAndUsage) {
  Ran r = Cli({"stack", "4000000000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "pageowner: NOT_FOUND: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = Cli({"page", "0x100000000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "pageowner: OUT_OF_RANGE: ")) << r.err;
  r = Cli({"page", "0x12q"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StartsWith(r.err, "pageowner: page: bad PFN: ")) << r.err;
  r = Cli({"frobnicate"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(absl::StrContains(r.err, "\nusage: pageowner ")) << r.err;
  r = Cli({"stats", "--json"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(absl::StrContains(r.out, "\"total_pages\": 262144,")) << r.out;
  r = Cli({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_TRUE(absl::StartsWith(r.out, "usage: pageowner ")) << r.out;
}

#else

TEST(ClientEndToEndTest, NeedsPageownerd) {
  GTEST_SKIP() << "pageownerd is not a target of this build";
}

#endif  // PAGEOWNERD_BIN

TEST(ClientCliTest, NoDaemonIsExitOne) {
  const Ran r = RunProgram({PAGEOWNER_CLI, "--server=127.0.0.1:1", "stacks"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(
      absl::StartsWith(r.err, "pageowner: no pageownerd answers at 127.0.0.1:1 (UNAVAILABLE: "))
      << r.err;
}

}  // namespace
}  // namespace pageowner
