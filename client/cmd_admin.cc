// `pageowner reset`, `pageowner tracking on|off` and `pageowner snapshot`: starting over on a
// running daemon, page_owner tracking switched as the kernel's page_owner=on boot parameter
// would, and a snapshot of the daemon's state taken now.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/command.h"
#include "client/commands.h"

namespace pageowner::cli {
namespace {

struct ResetOptions {};

absl::StatusOr<ResetOptions> ParseReset(const CommandLine& /*line*/) { return ResetOptions{}; }

int RunReset(client::Client& client, const ResetOptions& /*options*/, Io io) {
  absl::StatusOr<v1::ResetResponse> r = client.Reset();
  if (!r.ok()) return ServerError(io, r.status());
  io.out << "reset: " << r->allocated_pages() << " allocated pages and " << r->depot_stacks()
         << " stacks dropped; " << r->total_pages() << " pages, " << r->allocated_pages_after()
         << " allocated (the stack depot's first pool)\n";
  return kExitOk;
}

struct TrackingOptions {
  bool on = false;
};

absl::StatusOr<TrackingOptions> ParseTracking(const CommandLine& line) {
  const std::string& v = line.positional[0];
  if (v != "on" && v != "off") {
    return absl::InvalidArgumentError(absl::StrCat("tracking: '", v, "': on or off"));
  }
  return TrackingOptions{v == "on"};
}

int RunTracking(client::Client& client, const TrackingOptions& options, Io io) {
  absl::StatusOr<v1::SetTrackingResponse> r = client.SetTracking(options.on);
  if (!r.ok()) return ServerError(io, r.status());
  io.out << "tracking: " << (r->tracking() ? "on" : "off");
  if (r->early_pages() > 0) io.out << "; " << r->early_pages() << " pages got the early handle";
  io.out << "\n";
  return kExitOk;
}

struct SnapshotOptions {};

absl::StatusOr<SnapshotOptions> ParseSnapshot(const CommandLine& /*line*/) {
  return SnapshotOptions{};
}

int RunSnapshot(client::Client& client, const SnapshotOptions& /*options*/, Io io) {
  absl::StatusOr<v1::SnapshotResponse> r = client.Snapshot();
  if (!r.ok()) return ServerError(io, r.status());
  io.out << "snapshot: " << r->path() << "\n"
         << "  " << r->bytes() << " bytes, log record " << r->log_seq() << ", "
         << absl::StrFormat("%.3f", r->duration_seconds()) << " s (ingest paused "
         << absl::StrFormat("%.1f", r->stall_seconds() * 1e3) << " ms); " << r->segments_deleted()
         << " log segments and " << r->snapshots_deleted() << " older snapshots deleted\n";
  return kExitOk;
}

}  // namespace

const Command& SnapshotCommand() {
  static const auto* const kCommand = new Command{
      .name = "snapshot",
      .synopsis = "snapshot",
      .summary =
          "admin: the daemon writes a snapshot of its state now (--data_dir) and prints its\n"
          "path, size and duration",
      .min_positional = 0,
      .max_positional = 0,
      .flags = {},
      .parse = Steps(ParseSnapshot, RunSnapshot),
  };
  return *kCommand;
}

const Command& ResetCommand() {
  static const auto* const kCommand = new Command{
      .name = "reset",
      .synopsis = "reset",
      .summary =
          "admin: empties the daemon's machine (same size and options, every page free, no\n"
          "stack); refused while ingest streams are open or with a write-ahead log",
      .min_positional = 0,
      .max_positional = 0,
      .flags = {},
      .parse = Steps(ParseReset, RunReset),
  };
  return *kCommand;
}

const Command& TrackingCommand() {
  static const auto* const kCommand = new Command{
      .name = "tracking",
      .synopsis = "tracking on|off",
      .summary =
          "page_owner tracking on or off (SetTracking); on gives every allocated page without an\n"
          "owner the early handle, as booting with page_owner=on does",
      .min_positional = 1,
      .max_positional = 1,
      .flags = {},
      .parse = Steps(ParseTracking, RunTracking),
  };
  return *kCommand;
}

}  // namespace pageowner::cli
