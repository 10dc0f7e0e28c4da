// `pageowner record -- CMD`: see cmd_app_record.h and app_record.h.
#include "client/cmd_app_record.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/app_record.h"
#include "client/command.h"
#include "client/commands.h"

namespace pageowner::cli {
namespace {

struct AppRecordCliOptions {
  client::AppRecordOptions record;
  bool verbose = false;
};

int RunAppRecord(client::Client& client, const AppRecordCliOptions& o, Io io) {
  client::AppRecordOptions options = o.record;
  if (o.verbose) {
    options.recorder.trace = [&io](const std::string& line) {
      io.err << "record: " << line << "\n";
    };
  }
  std::unique_ptr<client::Session> session = client.StartSession();
  const client::AppRecordResult r = client::RecordApp(session.get(), options);
  const client::AppRecorderStats& s = r.stats;
  io.err << "record: " << options.argv[0] << " exited " << r.exit_code << "; " << s.processes
         << (s.processes == 1 ? " process, " : " processes, ") << r.ring_records << " records, "
         << r.ring_drops << " dropped (ring full)";
  if (r.ring_unpublished > 0) io.err << ", " << r.ring_unpublished << " torn";
  io.err << "\nrecord: events: " << s.allocs << " allocs, " << s.frees << " frees, " << s.moves
         << " blocks moved, " << s.failed << " refused";
  for (const auto& [code, n] : s.failures) io.err << " (" << code << " " << n << ")";
  io.err << "; " << s.leaked_pages << " pages kept at exit; heap (brk) growth "
         << s.brk_growth_bytes / 1024 << " KiB, not sent\n";
  if (!r.status.ok()) {
    io.err << "pageowner: record: " << absl::StatusCodeToString(r.status.code()) << ": "
           << r.status.message() << "\n";
  }
  io.err.flush();
  return r.exit_code;  // the program's, whatever happened to the recording
}

}  // namespace

absl::StatusOr<Runner> ParseAppRecord(const CommandLine& line) {
  AppRecordCliOptions o;
  if (line.positional.empty()) {
    return absl::InvalidArgumentError("record: give the program after --: record -- CMD ARGS...");
  }
  o.record.argv = line.positional;
  const std::string leaks = Flag(line, "leaks-at-exit", "keep");
  if (leaks != "keep" && leaks != "free") {
    return absl::InvalidArgumentError(
        absl::StrCat("record: bad --leaks-at-exit '", leaks, "': keep or free"));
  }
  o.record.recorder.free_at_exit = leaks == "free";
  if (HasFlag(line, "ring-slots")) {
    absl::StatusOr<uint64_t> n =
        NumberArg(line.command, "--ring-slots", Flag(line, "ring-slots", ""), uint64_t{1} << 24);
    if (!n.ok()) return n.status();
    if (*n < 2 || (*n & (*n - 1)) != 0) {
      return absl::InvalidArgumentError("record: bad --ring-slots: a power of two >= 2");
    }
    o.record.ring_slots = *n;
  }
  o.verbose = HasFlag(line, "verbose");
  return Runner([o = std::move(o)](client::Client& c, Io io) { return RunAppRecord(c, o, io); });
}

const Command& AppRecordCommand() {
  static const auto* const kCommand = new Command{
      .name = "record",
      .synopsis = "record [--leaks-at-exit=keep|free] [--ring-slots N] [--verbose] -- CMD ARGS...",
      .summary =
          "runs CMD with libpageowner_preload.so and streams its pages (mmap, munmap, mremap,\n"
          "madvise, malloc blocks >= 4 KiB) with their stacks; at exit its pages are kept as\n"
          "leaked (default) or freed; exits with CMD's code",
      .min_positional = 0,
      .max_positional = SIZE_MAX,
      .flags = {{"leaks-at-exit", true}, {"ring-slots", true}, {"verbose", false}},
      .parse = ParseAppRecord,
  };
  return *kCommand;
}

}  // namespace pageowner::cli
