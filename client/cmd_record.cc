// `pageowner record --kernel [--duration T] [--mount-tracefs] [--no-attach] [--ring-pages N]
// [--batch N]`: the live kernel's page allocations and frees, with their call chains, streamed
// into the daemon (client/kernel_record.h). Without --kernel the line is `record ... -- CMD ARGS`,
// the preload recorder (cmd_app_record.cc), which shares the row.
#include <signal.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/cmd_app_record.h"
#include "client/command.h"
#include "client/commands.h"
#include "client/kernel_record.h"
#include "client/perf_recorder.h"
#include "wire/status.h"

namespace pageowner::cli {
namespace {

constexpr char kTracefs[] = "/sys/kernel/tracing";

struct KernelRecordCommandOptions {
  client::KernelRecordOptions record;
  bool mount_tracefs = false;
};

absl::StatusOr<KernelRecordCommandOptions> ParseKernelRecord(const CommandLine& line) {
  KernelRecordCommandOptions o;
  if (!line.positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("record: --kernel takes no command (unexpected '", line.positional[0], "')"));
  }
  if (HasFlag(line, "duration")) {
    const std::string text = Flag(line, "duration", "");
    absl::Duration d;
    if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration() ||
        d == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("record: bad --duration '", text, "': a positive duration (10s, 2m, 1h)"));
    }
    o.record.duration = d;
  }
  absl::StatusOr<size_t> batch = BatchFlag(line, o.record.batch);
  if (!batch.ok()) return batch.status();
  o.record.batch = *batch;
  // 8 MiB a cpu: at ~250 bytes a sample with its chain, ~30000 samples, enough for the reader
  // to be off the cpu for a tenth of a second under a page-heavy load without losing any.
  o.record.perf.ring_pages = 2048;
  if (HasFlag(line, "ring-pages")) {
    absl::StatusOr<uint64_t> n =
        NumberArg(line.command, "--ring-pages", Flag(line, "ring-pages", ""), uint64_t{1} << 20);
    if (!n.ok()) return n.status();
    if (*n == 0 || (*n & (*n - 1)) != 0) {
      return absl::InvalidArgumentError("record: bad --ring-pages: a power of two (pages a cpu)");
    }
    o.record.perf.ring_pages = *n;
  }
  o.record.attach = !HasFlag(line, "no-attach");
  o.mount_tracefs = HasFlag(line, "mount-tracefs");
  // Every free that mm_page_free_batched reports was reported by mm_page_free already
  // (free_unref_folios calls free_pages_prepare first): sampling both would free twice.
  o.record.perf.free_batched = false;
  o.record.perf.tracefs_root = kTracefs;
  return o;
}

// Environment problems (privilege, tracefs, the daemon's size) are usage errors: exit 2.
bool IsEnvironmentError(absl::StatusCode code) {
  return code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kNotFound ||
         code == absl::StatusCode::kUnimplemented;
}

void OnSignal(int) { client::RequestKernelRecordStop(); }

void PrintSummary(const client::KernelRecordSummary& s, Io io) {
  std::string codes;
  for (const auto& [code, n] : s.codes) {
    absl::StrAppend(&codes, codes.empty() ? "" : ", ", wire::CodeName(code), " ", n);
  }
  io.out << "record: " << s.read << " events read, " << s.sent
         << " sent, applied: " << (codes.empty() ? "none" : codes) << "; lost " << s.perf.lost
         << " (PERF_RECORD_LOST), throttled " << s.perf.throttled << " times; implied frees "
         << s.implied_frees << " (" << s.implied_freed_pages << " pages)\n";
  io.out << "record: attach " << s.attach_blocks << " blocks (" << s.attach_pages << " pages) in "
         << absl::StrFormat("%.1f", s.attach_seconds) << " s; repaired allocs " << s.repaired_allocs
         << ", repaired frees " << s.repaired_frees << ", frees of free pages " << s.ignored_frees
         << ", blocks split " << s.split_blocks << "; out of time order " << s.late
         << ", no call chain " << s.no_chain << "\n";
  io.out << "record: reserved " << s.gap_pages + s.not_ram_pages << " pages that are not RAM ("
         << s.gap_pages << " outside /proc/iomem's System RAM, " << s.not_ram_pages
         << " KPF_NOPAGE or KPF_RESERVED) as " << s.reserved_blocks
         << " blocks: never handed out, never owned\n";
  const double per_event = s.read > 0 ? s.cpu_seconds * 1e6 / static_cast<double>(s.read) : 0;
  io.out << "record: " << absl::StrFormat("%.1f", s.seconds) << " s, "
         << FormatRate(s.seconds > 0 ? static_cast<double>(s.read) / s.seconds : 0)
         << " events/s; cpu " << absl::StrFormat("%.2f", s.cpu_seconds) << " s ("
         << absl::StrFormat("%.2f", per_event) << " us/event); " << s.symbols
         << " addresses symbolized, " << s.chains << " distinct chains\n";
  for (const std::string& e : s.first_errors) io.err << "record: a refused event: " << e << "\n";
}

int RunKernelRecord(client::Client& client, const KernelRecordCommandOptions& o, Io io) {
  bool mounted = false;
  if (!client::TracefsMounted(kTracefs)) {
    if (!o.mount_tracefs) {
      io.err << "pageowner: record: tracefs is not mounted at " << kTracefs
             << " (the tracepoints' ids and formats are read there): mount it with\n"
             << "  mount -t tracefs nodev " << kTracefs << "\n"
             << "or pass --mount-tracefs (then it is unmounted at the end)\n";
      return kExitUsage;
    }
    const absl::Status m = client::MountTracefs(kTracefs);
    if (!m.ok()) {
      io.err << "pageowner: record: cannot mount tracefs: " << m.message() << "\n";
      return kExitUsage;
    }
    mounted = true;
  }
  struct sigaction action = {}, old_int = {}, old_term = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  absl::StatusOr<client::KernelRecordSummary> summary =
      client::RecordKernel(client, o.record, io.err);
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  if (mounted) {
    const absl::Status u = client::UnmountTracefs(kTracefs);
    if (!u.ok()) io.err << "pageowner: record: tracefs stays mounted: " << u.message() << "\n";
  }
  if (!summary.ok()) {
    if (IsEnvironmentError(summary.status().code())) {
      io.err << "pageowner: record: " << summary.status().message() << "\n";
      return kExitUsage;
    }
    return ServerError(io, summary.status());
  }
  PrintSummary(*summary, io);
  return kExitOk;
}

absl::StatusOr<Runner> ParseRecord(const CommandLine& line) {
  if (!HasFlag(line, "kernel")) return ParseAppRecord(line);
  absl::StatusOr<KernelRecordCommandOptions> o = ParseKernelRecord(line);
  if (!o.ok()) return o.status();
  return Runner(
      [o = *std::move(o)](client::Client& c, Io io) { return RunKernelRecord(c, o, io); });
}

}  // namespace

const Command& RecordCommand() {
  static const auto* const kCommand = [] {
    const Command& app = AppRecordCommand();
    std::vector<FlagSpec> flags = {{"kernel", false},        {"duration", true},
                                   {"mount-tracefs", false}, {"no-attach", false},
                                   {"ring-pages", true},     {"batch", true}};
    flags.insert(flags.end(), app.flags.begin(), app.flags.end());
    static const std::string* const kSummary = new std::string(
        "--kernel: this machine's page allocations and frees (kmem:mm_page_alloc and\n"
        "mm_page_free through perf_event_open, with their kernel call chains symbolized from\n"
        "/proc/kallsyms) streamed into the daemon as trusted events, after attaching: every\n"
        "page in use (/proc/kpageflags) gets the early handle, and what is not RAM (not\n"
        "System RAM in /proc/iomem, KPF_NOPAGE/KPF_RESERVED) is reserved, never handed out.\n"
        "Needs root (CAP_PERFMON or\n"
        "CAP_SYS_ADMIN, CAP_SYS_ADMIN for /proc/kpageflags), tracefs at /sys/kernel/tracing\n"
        "(--mount-tracefs mounts it for the run) and a daemon at least as large as the RAM\n"
        "map. Its own pages, and the daemon's, are recorded like any task's. Ends at\n"
        "--duration or SIGINT/SIGTERM with a summary.\n"
        "-- CMD: " +
        std::string(app.summary));
    return new Command{
        .name = "record",
        .synopsis =
            "record --kernel [--duration T] [--mount-tracefs] [--no-attach] [--ring-pages N] "
            "[--batch N] | "
            "record [--leaks-at-exit=keep|free] [--ring-slots N] [--verbose] -- CMD ARGS...",
        .summary = *kSummary,
        .min_positional = 0,
        .max_positional = app.max_positional,
        .flags = std::move(flags),
        .parse = ParseRecord,
    };
  }();
  return *kCommand;
}

}  // namespace pageowner::cli
