// `pageowner stats [--json]`: the daemon's counters, stackdepot/stats and mixed pageblocks.
#include "client/command.h"
#include "client/commands.h"
#include "client/render.h"

namespace pageowner::cli {
namespace {

absl::StatusOr<StatsOptions> ParseStats(const CommandLine& line) {
  return StatsOptions{HasFlag(line, "json")};
}

}  // namespace

const Command& StatsCommand() {
  static const auto* const kCommand = new Command{
      .name = "stats",
      .synopsis = "stats [--json]",
      .summary =
          "allocator, depot and ingest counters (name: value), stackdepot/stats, mixed blocks",
      .min_positional = 0,
      .max_positional = 0,
      .flags = {{"json", false}},
      .parse = Steps(ParseStats, RunStats),
  };
  return *kCommand;
}

int RunStats(client::Client& client, const StatsOptions& options, Io io) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return ServerError(io, stats.status());
  if (options.json) return JsonOut(*stats, io);
  io.out << RenderStats(*stats);
  return kExitOk;
}

}  // namespace pageowner::cli
