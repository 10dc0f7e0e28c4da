// `pageowner replay FILE [--batch N] [--format jsonl|ftrace] [--trusted]`: the events of a
// JSON-lines file (replay_format.h) on one ingest stream; --format ftrace is real_kernels.cc's
// RunReplayFtrace.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/commands.h"
#include "client/real_kernels.h"
#include "client/replay_format.h"
#include "wire/status.h"

namespace pageowner::cli {
namespace {

using client::IngestResult;
using client::Session;

struct ReplayCommandOptions {
  ReplayOptions replay;
  bool ftrace = false;
};

absl::StatusOr<ReplayCommandOptions> ParseReplay(const CommandLine& line) {
  ReplayCommandOptions o;
  o.replay.file = line.positional[0];
  absl::StatusOr<size_t> batch = BatchFlag(line, o.replay.batch);
  if (!batch.ok()) return batch.status();
  o.replay.batch = *batch;
  const std::string format = Flag(line, "format", "jsonl");
  if (format != "jsonl" && format != "ftrace") {
    return absl::InvalidArgumentError(
        absl::StrCat("replay: unknown --format '", format, "': jsonl or ftrace"));
  }
  o.ftrace = format == "ftrace";
  o.replay.trusted = HasFlag(line, "trusted");
  return o;
}

int RunReplayCommand(client::Client& client, const ReplayCommandOptions& options, Io io) {
  if (options.ftrace) return RunReplayFtrace(client, options.replay, io);
  return RunReplay(client, options.replay, io);
}

constexpr uint64_t kMaxFailuresShown = 20;

// What came back: counts by code, and the first failures reported with their line.
struct ReplayTally {
  std::vector<uint64_t> line_of;  // by event seq
  CodeCounts counts;
  uint64_t bad_lines = 0;
  uint64_t failed = 0;
  std::vector<IngestResult> results;

  void Take(Session* session, std::ostream& err) {
    results.clear();
    session->Poll(&results);
    for (const IngestResult& r : results) {
      counts.Add(r.code);
      if (r.ok()) continue;
      if (++failed <= kMaxFailuresShown) {
        err << "replay: line " << line_of[r.seq] << ": " << wire::CodeName(r.code) << ": "
            << r.message << "\n";
      }
    }
  }
};

void Send(const ReplayEvent& e, bool trusted, Session* session) {
  const client::Task task{e.pid, e.tgid, e.comm};
  switch (e.kind) {
    case ReplayKind::kAlloc:
      session->Alloc({.order = Order(e.order),
                      .gfp_mask = e.gfp_mask,
                      .stack = e.stack,
                      .task = task,
                      .ts_ns = e.ts_ns,
                      .pfn = e.pfn ? std::optional<Pfn>(Pfn(*e.pfn)) : std::nullopt,
                      .trusted = trusted,
                      .early = false});
      break;
    case ReplayKind::kFree:
      session->Free({.pfn = Pfn(*e.pfn),
                     .order = Order(e.order),
                     .stack = e.stack,
                     .task = task,
                     .ts_ns = e.ts_ns,
                     .trusted = trusted});
      break;
    case ReplayKind::kMigrate:
      session->Migrate(
          {.pfn = Pfn(*e.pfn),
           .reason = e.reason,
           .target = e.target_pfn ? std::optional<Pfn>(Pfn(*e.target_pfn)) : std::nullopt,
           .stack = e.stack,
           .task = task,
           .ts_ns = e.ts_ns});
      break;
  }
}

// Every line of `in` as an event on `session`: blank and '#' lines skipped, bad ones reported
// and counted, results taken every 1024 events with a progress line each second.
void SendLines(std::istream& in, bool trusted, Session* session, ReplayTally* tally, Io io) {
  Progress progress;
  std::string text;
  uint64_t lineno = 0;
  while (std::getline(in, text)) {
    ++lineno;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    const size_t first = text.find_first_not_of(" \t");
    if (first == std::string::npos || text[first] == '#') continue;
    absl::StatusOr<ReplayEvent> e = ParseReplayLine(text);
    if (!e.ok()) {
      ++tally->bad_lines;
      io.err << "replay: line " << lineno << ": " << e.status().message() << "\n";
      continue;
    }
    tally->line_of.push_back(lineno);
    Send(*e, trusted, session);
    if ((tally->line_of.size() & 1023) == 0) {
      tally->Take(session, io.err);
      if (progress.Due()) {
        io.err << "replay: " << tally->line_of.size() << " events sent, "
               << session->stats().results << " answered\n";
      }
    }
  }
}

}  // namespace

const Command& ReplayCommand() {
  static const auto* const kCommand = new Command{
      .name = "replay",
      .synopsis = "replay FILE [--batch N] [--format jsonl|ftrace] [--trusted]",
      .summary =
          "sends the events of a JSON-lines file (- for stdin; format: client/REPLAY_FORMAT.md);\n"
          "bad lines are reported and skipped; prints the results by code. --format ftrace reads\n"
          "a kmem:mm_page_alloc/mm_page_free text trace (.gz, .xz too). --trusted: the events\n"
          "happened on a real machine: allocations over allocated pages free them implicitly,\n"
          "frees of part of a block split it, frees of free pages are ignored (counted in stats)",
      .min_positional = 1,
      .max_positional = 1,
      .flags = {{"batch", true}, {"format", true}, {"trusted", false}},
      .parse = Steps(ParseReplay, RunReplayCommand),
  };
  return *kCommand;
}

int RunReplay(client::Client& client, const ReplayOptions& options, Io io) {
  std::ifstream file;
  std::istream* in = &io.in;
  if (options.file != "-") {
    if (std::filesystem::is_directory(options.file)) {
      return UsageError(io, "replay", absl::StrCat("replay: ", options.file, " is a directory"));
    }
    file.open(options.file);
    if (!file) {
      return UsageError(
          io, "replay",
          absl::StrCat("replay: cannot open ", options.file, ": ", std::strerror(errno)));
    }
    in = &file;
  }
  client::SessionOptions session_options;
  session_options.batch_events = options.batch;
  std::unique_ptr<Session> session = client.StartSession(std::move(session_options));
  ReplayTally tally;
  SendLines(*in, options.trusted, session.get(), &tally, io);
  const absl::Status status = session->Finish();
  tally.Take(session.get(), io.err);
  if (tally.failed > kMaxFailuresShown) {
    io.err << "replay: " << tally.failed - kMaxFailuresShown << " more failed events not shown\n";
  }
  const size_t events = tally.line_of.size();
  io.out << "replay: " << events << (events == 1 ? " event, " : " events, ") << tally.bad_lines
         << (tally.bad_lines == 1 ? " bad line skipped\n" : " bad lines skipped\n");
  io.out << "results: " << tally.counts.Summary() << "\n";
  if (!status.ok()) return ServerError(io, status);
  if (events == 0) {  // nothing usable: an empty file, or no line that is an event
    io.err << "pageowner: replay: no event in " << options.file
           << " (format: client/REPLAY_FORMAT.md; --format ftrace for a kernel trace)\n";
    return kExitUsage;
  }
  if (tally.failed > 0) {
    io.err << "pageowner: replay: the daemon refused " << tally.failed << " of " << events
           << " events\n";
    return kExitServerError;
  }
  return kExitOk;
}

}  // namespace pageowner::cli
