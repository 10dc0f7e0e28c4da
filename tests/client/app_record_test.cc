// `record -- CMD` end to end: the real preload library in a real program (app_record_target.c,
// and python3), the real pageownerd, the recorder in-process (exact events) and through the CLI.
// The ring's overload test needs no daemon: the reader never drains.
#include "client/app_record.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/support/daemon_process.h"

namespace pageowner {
namespace {

using client::AppRecordOptions;
using client::AppRecordResult;
using client::AppRing;
using testing::Ran;
using testing::RunProgram;

// The blocks of a dump charged to `comm`, each as its text.
std::vector<std::string> BlocksOf(const std::string& dump, const std::string& comm) {
  std::vector<std::string> out;
  for (absl::string_view block : absl::StrSplit(dump, "\n\n", absl::SkipEmpty())) {
    if (absl::StrContains(block, absl::StrCat(" (", comm, "), ts "))) {
      out.emplace_back(block);
    }
  }
  return out;
}

unsigned OrderOf(const std::string& block) {
  unsigned order = 99;
  sscanf(block.c_str(), "Page allocated via order %u,", &order);
  return order;
}

// The first frame line of a block (after the PFN line).
std::string FirstFrame(const std::string& block) {
  std::vector<std::string> lines = absl::StrSplit(block, '\n');
  return lines.size() > 2 ? lines[2] : "";
}

#if defined(PAGEOWNERD_BIN)

class AppRecordTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(daemon_.address().empty()) << daemon_.startup_log(); }
  void TearDown() override { EXPECT_EQ(daemon_.Stop(), 0); }

  Ran Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {PAGEOWNER_CLI, absl::StrCat("--server=", daemon_.address())});
    return RunProgram(args);
  }

  testing::DaemonProcess daemon_{PAGEOWNERD_BIN, {"--memory=1GiB"}};
};

// Every call of the target becomes exactly the events the header of app_record.h promises, and
// the daemon ends up holding exactly the blocks the process kept, with its functions' frames.
TEST_F(AppRecordTest, KnownCallsGiveExactEventsAndBlocks) {
  client::Client c(daemon_.address());
  std::unique_ptr<client::Session> session = c.StartSession();
  AppRecordOptions o;
  o.argv = {APP_RECORD_TARGET};
  o.preload_path = PRELOAD_LIBRARY;
  std::vector<std::string> trace;
  o.recorder.trace = [&trace](const std::string& line) { trace.push_back(line); };
  const AppRecordResult r = client::RecordApp(session.get(), o);
  EXPECT_EQ(r.exit_code, 3);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.ring_drops, 0u);
  EXPECT_EQ(r.ring_unpublished, 0u);
  EXPECT_EQ(r.stats.failed, 0u);
  EXPECT_EQ(r.stats.processes, 1u);

  // Malloc addresses and pids vary: name them.
  std::vector<std::string> mallocs;
  for (const std::string& line : trace) {
    if (absl::EndsWith(line, " (malloc)") && line.find(" order 0 ") == std::string::npos) {
      mallocs.push_back(std::vector<std::string>(absl::StrSplit(line, ' '))[1]);
    }
  }
  ASSERT_EQ(mallocs.size(), 2u) << absl::StrJoin(trace, "\n");
  uint64_t m1 = 0;
  ASSERT_TRUE(absl::SimpleHexAtoi(mallocs[0], &m1));
  std::string text = absl::StrJoin(trace, "\n");
  // The leak may reuse big_malloc's address: name it by its line.
  text = std::regex_replace(text, std::regex("alloc 0x[0-9a-f]+ order 1 \\(malloc\\)"),
                            "alloc M2 order 1 (malloc)");
  text = absl::StrReplaceAll(text,
                             {{absl::StrFormat("0x%x", m1 + 0x4000), "M1+4"}, {mallocs[0], "M1"}});
  text = std::regex_replace(text, std::regex("pid \\d+ exec, parent \\d+"), "pid P exec");
  text = std::regex_replace(text, std::regex("pid \\d+"), "pid P");
  EXPECT_EQ(text,
            "start pid P exec comm app_record_targ\n"
            "alloc 0x200000000000 order 4 (mmap)\n"            // map_sixteen
            "free 0x200000000000 order 4 (munmap)\n"           // unmap_middle: pages 4..7
            "alloc 0x200000000000 order 2 at +0 (survivor)\n"  //   0..3 at the old pfns
            "alloc 0x200000008000 order 3 at +8 (survivor)\n"  //   8..15
            "alloc 0x200000100000 order 3 (mmap)\n"            // map_eight
            "move 0x200000100000 order 3 to 0x200000200000\n"  // move_eight: no event
            "alloc 0x200000208000 order 3 (mremap grow)\n"     // grow_eight
            "free 0x200000000000 order 2 (madvise)\n"          // drop_page: page 0
            "alloc 0x200000001000 order 0 at +1 (survivor)\n"  //   1
            "alloc 0x200000002000 order 1 at +2 (survivor)\n"  //   2..3
            "alloc M1 order 2 (malloc)\n"                      // big_malloc: 5 pages
            "alloc M1+4 order 0 (malloc)\n"                    //
            "free M1 order 2 (free)\n"                         // big_free
            "free M1+4 order 0 (free)\n"                       //
            "alloc M2 order 1 (malloc)\n"                      // leaky_malloc
            "exit pid P, 29 pages kept");                      // 1+2+8 + 8+8 + 2
  EXPECT_EQ(r.stats.allocs, 10u);                              // the trace's allocs
  EXPECT_EQ(r.stats.frees, 4u);
  EXPECT_EQ(r.stats.moves, 1u);
  EXPECT_EQ(r.stats.leaked_pages, 29u);

  // The daemon holds those blocks, each with the frames of the function that made it.
  const Ran dump = Cli({"dump"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  std::multimap<unsigned, std::string> got;
  for (const std::string& block : BlocksOf(dump.out, "app_record_targ")) {
    const std::string frame = FirstFrame(block);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(frame, m, std::regex(" (\\w+)\\+0x[0-9a-f]+/0x[0-9a-f]+")))
        << block;
    got.emplace(OrderOf(block), m[1].str());
    EXPECT_TRUE(absl::StrContains(block, "\n main+0x")) << block;
    EXPECT_TRUE(std::regex_search(block, std::regex("\n __libc_start_call_main\\+0x[0-9a-f]+/"
                                                    "0x[0-9a-f]+ \\[libc\\.so\\.6\\]\n")))
        << block;
    EXPECT_TRUE(absl::StrContains(block, "mask 0x100dca(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)"))
        << block;
  }
  const std::multimap<unsigned, std::string> want = {{0, "map_sixteen"}, {1, "map_sixteen"},
                                                     {3, "map_sixteen"}, {3, "map_eight"},
                                                     {3, "grow_eight"},  {1, "leaky_malloc"}};
  EXPECT_EQ(got, want) << dump.out;
}

// A program not ours, through the CLI: its output and exit code unchanged, its 64 MiB buffer
// recorded as 16 blocks of order 10 (and a page) from malloc, nothing dropped or refused.
TEST_F(AppRecordTest, Python3EndToEndThroughTheCli) {
  const std::string script =
      "import sys\nb = bytearray(64 << 20)\nprint(len(b), sum(b[::4096]))\nsys.exit(5)\n";
  const Ran plain = RunProgram({"/usr/bin/python3", "-c", script});
  ASSERT_EQ(plain.code, 5) << plain.err;
  const Ran r = Cli({"record", "--verbose", "--", "/usr/bin/python3", "-c", script});
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_EQ(r.out, plain.out);
  EXPECT_EQ(r.out, "67108864 0\n");
  EXPECT_TRUE(absl::StrContains(r.err, " records, 0 dropped (ring full)\n")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, " blocks moved, 0 refused;")) << r.err;
  int big = 0;
  for (absl::string_view line : absl::StrSplit(r.err, '\n')) {
    if (absl::StartsWith(line, "record: alloc ") && absl::EndsWith(line, " order 10 (malloc)")) {
      ++big;
    }
  }
  EXPECT_EQ(big, 16) << r.err;
  const Ran dump = Cli({"dump"});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_FALSE(BlocksOf(dump.out, "python3").empty()) << dump.out;
}

#endif  // PAGEOWNERD_BIN

// Nobody drains a ring of 64 slots: the program still runs to its end in bounded time, 64
// records are published and every other one is counted as dropped.
TEST(AppRingTest, FullRingDropsEveryRecordAndNeverBlocks) {
  absl::StatusOr<std::unique_ptr<AppRing>> ring = AppRing::Create(64, absl::Seconds(30));
  ASSERT_TRUE(ring.ok()) << ring.status();
  const int pairs = 100000;
  const std::string env_ring = absl::StrCat("PAGEOWNER_RING=", (*ring)->EnvValue());
  const std::string env_preload = absl::StrCat("LD_PRELOAD=", PRELOAD_LIBRARY);
  const std::string count = std::to_string(pairs);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    fcntl((*ring)->fd(), F_SETFD, 0);
    char* const argv[] = {const_cast<char*>(APP_RECORD_TARGET), const_cast<char*>("stress"),
                          const_cast<char*>(count.c_str()), nullptr};
    char* const envp[] = {const_cast<char*>(env_ring.c_str()),
                          const_cast<char*>(env_preload.c_str()), nullptr};
    execve(argv[0], argv, envp);
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // 200000 calls at a few hundred ns each, and no exit wait (the exit record was dropped too).
  EXPECT_LT(secs, 10.0);
  EXPECT_EQ((*ring)->written(), 64u);
  EXPECT_EQ((*ring)->drops(), 2u * pairs + 2 - 64);  // + the start and exit records
  // What was published is the start, then mmap and munmap alternately.
  std::vector<po_record> records;
  EXPECT_EQ((*ring)->Drain(&records, 1000), 64u);
  ASSERT_EQ(records.size(), 64u);
  EXPECT_EQ(records[0].kind, static_cast<uint32_t>(PO_START));
  EXPECT_EQ(records[0].pid, pid);
  for (size_t i = 1; i < records.size(); ++i) {
    EXPECT_EQ(records[i].kind, static_cast<uint32_t>(i % 2 == 1 ? PO_MMAP : PO_MUNMAP)) << i;
    EXPECT_EQ(records[i].len, 4096u);
    EXPECT_GT(records[i].nr_ips, 1u);
  }
}

}  // namespace
}  // namespace pageowner
