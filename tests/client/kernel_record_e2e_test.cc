// `pageowner record --kernel` on this machine's own kernel, as root: a pageownerd sized from the
// real memory map, ten seconds of recording while dd, forks and execs run, and then the
// daemon's view against the kernel's, read from /proc/kpageflags right after recording stops.
//
// The agreement, measured on this machine (6.18, 2 cpus, 24 GiB, other engineers' builds and
// a chromium running) over ten runs, and asserted at the floor we can defend, 98%, not 99%:
//  (a) the share of the kernel's in-use RAM pages that the daemon holds allocated: 0.983 to
//      0.9995. The rest is mostly flagless (printed: 80-100% of it): pages on the per-cpu free
//      lists, free for the daemon, which saw their free, but flagless with count 0 to
//      kpageflags and so in use for the decoding; then compaction's free-page targets (taken
//      without mm_page_alloc) and what changed between the end of recording and the scan;
//  (b) of the blocks allocated during recording that the daemon still holds, the share of
//      their pages the kernel has in use: 0.985 to 1.0. The rest: pages freed after recording
//      stopped and before the scan (tasks that exit: the test prints them by stack), and frees
//      the rings lost (PERF_RECORD_LOST, printed). The recorder's own pages are left out: it
//      exits, freeing them, before the scan. A missed free whose page went to a per-cpu list
//      still reads in use, so (b) cannot see those.
// The workload stops two seconds before recording does, so that the end is quiet.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/perf_recorder.h"
#include "core/iomem.h"
#include "core/kpageflags.h"
#include "core/procfs.h"
#include "gtest/gtest.h"
#include "pageowner/v1/pageowner.pb.h"
#include "tests/support/daemon_process.h"

namespace pageowner {
namespace {

using testing::DaemonProcess;
using testing::Ran;
using testing::RunProgram;

constexpr char kWorkFile[] = "/tmp/kernel_record_e2e_test.dat";
constexpr char kKeptFile[] = "/tmp/kernel_record_e2e_test.kept";

std::string Cli() { return PAGEOWNER_CLI; }

// dd through the page cache, a few forks and execs, a file written and deleted: from a second
// after the start until `until`, two seconds before recording ends, so that the kernel is quiet
// when the two views are compared. One file, written at `kept_at`, is kept (the test removes it
// once the recording is over), so that dd's page cache blocks are still allocated when the daemon
// is asked for one. `kept_at` is well inside the recording: not so early that the recorder,
// slow to start on a busy machine, has not enabled its events yet (its blocks would then be
// attach's early pages), nor so late that a busy loop's last round runs past the end.
void Workload(absl::Time kept_at, absl::Time until) {
  absl::SleepFor(absl::Seconds(1));
  bool kept = false;
  while (absl::Now() < until || !kept) {
    if (!kept && absl::Now() >= kept_at) {
      std::system(
          absl::StrCat("dd if=/dev/zero of=", kKeptFile, " bs=1M count=16 2>/dev/null").c_str());
      kept = true;
      continue;
    }
    std::system(absl::StrCat("dd if=/dev/zero of=", kWorkFile,
                             " bs=1M count=64 2>/dev/null; sh -c 'ls /proc >/dev/null; "
                             "/bin/true'; cat ",
                             kWorkFile, " >/dev/null; rm -f ", kWorkFile)
                    .c_str());
    absl::SleepFor(absl::Milliseconds(200));
  }
}

uint64_t Number(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return 0;
  return std::stoull(m[1].str());
}

TEST(KernelRecordE2eTest, MirrorsTheLiveKernel) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "perf_event_open of kmem tracepoints, /proc/kpageflags and tracefs need root";
  }
  absl::StatusOr<std::vector<PfnRange>> ram = ReadIomemSystemRam();
  ASSERT_TRUE(ram.ok()) << ram.status();
  const uint64_t pages = HighestPfn(*ram).raw() + 1;
  DaemonProcess d(PAGEOWNERD_BIN, {"--memory=" + MemoryFlagValue(DaemonMemoryBytes(*ram))});
  ASSERT_FALSE(d.address().empty()) << d.startup_log();
  const bool tracefs_before = client::TracefsMounted();

  // Too small a daemon: refused with the --memory it needs.
  {
    DaemonProcess small(PAGEOWNERD_BIN, {"--memory=64MiB"});
    ASSERT_FALSE(small.address().empty()) << small.startup_log();
    const Ran r = RunProgram({Cli(), "--server=" + small.address(), "record", "--kernel",
                              "--mount-tracefs", "--duration=1s"});
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_TRUE(absl::StrContains(
        r.err, "start pageownerd with --memory=" + MemoryFlagValue(DaemonMemoryBytes(*ram))))
        << r.err;
  }
  if (!tracefs_before) {
    const Ran r = RunProgram({Cli(), "--server=" + d.address(), "record", "--kernel"});
    EXPECT_EQ(r.code, 2);
    EXPECT_TRUE(absl::StrContains(r.err, "mount -t tracefs nodev /sys/kernel/tracing")) << r.err;
  }

  const absl::Time start = absl::Now();
  std::thread work(Workload, start + absl::Seconds(4), start + absl::Seconds(8));
  // A recording that does not end is a failure with its output, not a ctest timeout: SIGTERM
  // (it then stops and prints its summary) after 60 s, SIGKILL 10 s later (exit 124 or 137).
  const Ran r = RunProgram({"/usr/bin/timeout", "-k", "10", "60", Cli(), "--server=" + d.address(),
                            "record", "--kernel", "--mount-tracefs", "--duration=10s"});
  // The kernel's view right after recording stopped.
  absl::StatusOr<KpageScan> scan = ReadKpages(*ram);
  work.join();
  std::remove(kWorkFile);
  std::remove(kKeptFile);
  if (r.code == 2 && absl::StrContains(r.err, "perf_event_open")) GTEST_SKIP() << r.err;
  ASSERT_EQ(r.code, 0) << r.out << r.err << "pageownerd: " << d.log_after_startup();
  ASSERT_TRUE(scan.ok()) << scan.status();
  std::printf("%s%s(recording took %.1f s)\n", r.out.c_str(), r.err.c_str(),
              absl::ToDoubleSeconds(absl::Now() - start));
  EXPECT_EQ(client::TracefsMounted(), tracefs_before);  // unmounted what it mounted
  const uint64_t read = Number(r.out, "record: ([0-9]+) events read");
  const uint64_t applied = Number(r.out, "applied: OK ([0-9]+)");
  EXPECT_GT(read, 1000u);
  EXPECT_GT(applied, read);  // the samples and attach's blocks

  // Not RAM (what /proc/iomem does not call System RAM up to the daemon's end, and kpageflags'
  // KPF_NOPAGE/KPF_RESERVED pages) is reserved: never handed out, never owned.
  client::Client c(d.address());
  absl::StatusOr<v1::Stats> stats = c.GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  const std::vector<PfnRange> gaps = RamGaps(*ram, PageCount(stats->total_pages()));
  uint64_t gap_pages = 0;
  for (const PfnRange& g : gaps) gap_pages += g.count.raw();
  ASSERT_FALSE(gaps.empty());  // x86's pfn 0 and PCI hole; any machine's partial pages
  EXPECT_EQ(Number(r.out, "record: reserved [0-9]+ pages that are not RAM \\(([0-9]+) outside"),
            gap_pages)
      << r.out;
  EXPECT_EQ(Number(r.out, "System RAM, ([0-9]+) KPF_NOPAGE or KPF_RESERVED"), scan->not_ram_pages)
      << r.out;
  EXPECT_EQ(stats->reserved_pages(), gap_pages + scan->not_ram_pages);
  const Ran hole = RunProgram({Cli(), "--server=" + d.address(), "page",
                               absl::StrCat("0x", absl::Hex(gaps[0].first.raw()))});
  EXPECT_EQ(hole.code, 0) << hole.err;
  EXPECT_TRUE(absl::StrContains(
      hole.out, absl::StrCat("PFN 0x", absl::Hex(gaps[0].first.raw()), " is reserved: not RAM")))
      << hole.out;

  // The daemon's view: every allocated block, and which were recorded (not early, not the
  // daemon's own depot pools).
  std::vector<bool> daemon(pages, false);
  struct Block {
    uint64_t pfn, pages;
    std::string where;  // comm and the stack's frames 2 and 3
  };
  absl::flat_hash_map<uint32_t, std::string> callers;
  std::vector<Block> recorded;
  absl::flat_hash_map<uint32_t, std::string> first_frame;
  uint64_t dd_pfn = 0;
  uint64_t recorder_pages = 0;
  v1::ListPagesRequest request;
  const absl::Status listed = c.ListPages(request, [&](const v1::ListPagesResponse& chunk) {
    for (const v1::Stack& s : chunk.stacks()) {
      first_frame[s.handle()] = s.frames_size() > 0 ? s.frames(0).symbol() : "";
      std::string& c = callers[s.handle()];
      for (int i = 1; i < s.frames_size() && i < 5; ++i)
        absl::StrAppend(&c, " ", s.frames(i).symbol());
    }
    for (const v1::PageRecord& p : chunk.pages()) {
      const uint64_t n = uint64_t{1} << p.order();
      for (uint64_t i = 0; i < n && p.pfn() + i < pages; ++i) daemon[p.pfn() + i] = true;
      const std::string& f = first_frame[p.handle()];
      if (absl::StartsWith(f, "register_") || absl::StartsWith(f, "get_page_from_freelist")) {
        continue;  // early, dummy or the depot's own pools
      }
      // The recorder's own pages are freed when it exits, after recording stopped: not a
      // disagreement, left out of (b).
      if (p.comm() == "pageowner") {
        recorder_pages += n;
        continue;
      }
      recorded.push_back({p.pfn(), n, absl::StrCat(p.comm(), ":", callers[p.handle()])});
      if (dd_pfn == 0 && p.comm() == "dd") dd_pfn = p.pfn();
    }
    return true;
  });
  ASSERT_TRUE(listed.ok()) << listed << "; pageownerd: " << d.log_after_startup();
  std::vector<bool> kernel(pages, false);
  uint64_t kernel_in_use = 0;
  for (const AllocatedBlock& b : scan->in_use) {
    for (uint64_t i = 0; i < b.order.pages().raw(); ++i) kernel[b.head.raw() + i] = true;
    kernel_in_use += b.order.pages().raw();
  }
  uint64_t both = 0;
  std::vector<uint64_t> missing;  // in use in the kernel, free in the daemon
  for (uint64_t pfn = 0; pfn < pages; ++pfn) {
    both += kernel[pfn] && daemon[pfn];
    if (kernel[pfn] && !daemon[pfn]) missing.push_back(pfn);
  }
  // What those pages are: flagless (a per-cpu free list, or a flagless allocation such as
  // vmalloc's) or flagged (an allocation the tracepoint did not show, e.g. compaction's targets,
  // or one that raced with the end).
  uint64_t missing_flagless = 0;
  {
    const int fd = open("/proc/kpageflags", O_RDONLY);
    ASSERT_GE(fd, 0);
    for (uint64_t pfn : missing) {
      uint64_t flags = 0;
      ASSERT_TRUE(PreadFully(fd, "/proc/kpageflags", pfn * 8, &flags, 8).ok());
      missing_flagless += flags == 0;
    }
    close(fd);
  }
  uint64_t recorded_pages = 0, recorded_in_use = 0;
  for (const Block& b : recorded) {
    for (uint64_t i = 0; i < b.pages; ++i) {
      ++recorded_pages;
      recorded_in_use += b.pfn + i < pages && kernel[b.pfn + i];
    }
  }
  const double a = static_cast<double>(both) / static_cast<double>(kernel_in_use);
  const double b = static_cast<double>(recorded_in_use) / static_cast<double>(recorded_pages);
  std::printf(
      "agreement (a): %lu of the kernel's %lu in-use pages allocated in the daemon = %.4f\n"
      "agreement (b): %lu of %lu pages of %zu recorded blocks in use in the kernel = %.4f\n"
      "kpageflags: %lu free, %lu flagless in use, %lu flagless taken as free, %lu not RAM\n"
      "in use in the kernel, free in the daemon: %zu pages, %lu of them flagless\n"
      "the recorder's own pages, left out of (b): %lu\n",
      both, kernel_in_use, a, recorded_in_use, recorded_pages, recorded.size(), b, scan->free_pages,
      scan->flagless_in_use_pages, scan->flagless_free_pages, scan->not_ram_pages, missing.size(),
      missing_flagless, recorder_pages);
  // Recorded pages free in the kernel, by their stack's first frames (what was not seen freed).
  std::map<std::string, uint64_t> free_by_stack;
  for (const Block& blk : recorded) {
    for (uint64_t i = 0; i < blk.pages; ++i) {
      if (blk.pfn + i < pages && !kernel[blk.pfn + i]) free_by_stack[blk.where] += 1;
    }
  }
  for (const auto& [where, n] : free_by_stack) {
    if (n >= 100) std::printf("  recorded, free in the kernel: %6lu pages  %s\n", n, where.c_str());
  }
  EXPECT_GE(a, 0.98);
  // (b) is read after the recording stopped: what tasks freed between the stop and the scan
  // counts against it. Measured 0.985-1.0 on a quiet machine, 0.9796 with a compiler and a
  // 64 GiB daemon restarting beside it (0 events lost); lost events lower it far more (0.68 with
  // 25,080 lost), which is why this test runs alone.
  EXPECT_GE(b, 0.97);

  // What a user sees: a dd block in the kernel's dump format, with real kernel frames.
  ASSERT_NE(dd_pfn, 0u) << "no block of dd";
  const Ran page =
      RunProgram({Cli(), "--server=" + d.address(), "page", absl::StrCat("0x", absl::Hex(dd_pfn))});
  ASSERT_EQ(page.code, 0) << page.err;
  std::printf("%s", page.out.c_str());
  EXPECT_TRUE(absl::StrContains(page.out, " (dd), ts ")) << page.out;
  EXPECT_TRUE(
      std::regex_search(page.out, std::regex("\n (__alloc_frozen_pages_noprof|__alloc_pages[a-z_]*|"
                                             "alloc_pages[a-z_]*)\\+0x[0-9a-f]+/0x[0-9a-f]+\n")))
      << page.out;
  const Ran stacks = RunProgram({Cli(), "--server=" + d.address(), "stacks", "--top", "3"});
  ASSERT_EQ(stacks.code, 0) << stacks.err;
  std::printf("%s", stacks.out.c_str());
  EXPECT_TRUE(std::regex_search(stacks.out, std::regex("nr_base_pages: [1-9][0-9]*\n")));
  EXPECT_FALSE(absl::StrContains(stacks.out, "register_early_stack"));
  EXPECT_EQ(d.Stop(), 0);
}

}  // namespace
}  // namespace pageowner
