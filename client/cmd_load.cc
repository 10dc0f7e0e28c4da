// `pageowner load --events N ...`: a synthetic workload (core/workload.h) on one ingest stream,
// ending with its events per second.
#include <signal.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/command.h"
#include "client/commands.h"
#include "core/workload.h"

namespace pageowner::cli {
namespace {

using client::Session;

// Set by SIGINT while a load runs: the loop stops sending, waits for the answers of what it sent
// and prints the summary.
volatile std::sig_atomic_t interrupted = 0;
extern "C" void OnInterrupt(int /*signal*/) { interrupted = 1; }

// SIGINT goes to OnInterrupt while this lives; the previous action comes back after.
class InterruptScope {
 public:
  InterruptScope() {
    interrupted = 0;
    struct sigaction action = {};
    action.sa_handler = OnInterrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptScope() { sigaction(SIGINT, &previous_, nullptr); }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction previous_ = {};
};

// The daemon's allocated blocks that a workload may free: all but the depot's own pools (the
// dummy handle) and the early pages (one record a page of a block allocated untracked). Returns
// the pages adopted; the rest of the daemon's allocated pages stay as they are.
absl::StatusOr<uint64_t> AdoptAllocatedBlocks(client::Client& client, Workload* workload) {
  absl::flat_hash_set<uint32_t> special;  // handles of register_dummy_stack, register_early_stack
  uint64_t adopted = 0;
  v1::ListPagesRequest request;
  request.set_state(v1::PAGE_STATE_ALLOCATED);
  absl::Status status = client.ListPages(request, [&](const v1::ListPagesResponse& chunk) {
    for (const v1::Stack& s : chunk.stacks()) {
      if (s.frames_size() > 0 && (absl::StartsWith(s.frames(0).symbol(), "register_dummy_stack") ||
                                  absl::StartsWith(s.frames(0).symbol(), "register_early_stack"))) {
        special.insert(s.handle());
      }
    }
    for (const v1::PageRecord& p : chunk.pages()) {
      if (special.contains(p.handle()) || p.order() > 10) continue;
      workload->Adopt(Pfn(p.pfn()), Order(static_cast<int>(p.order())));
      adopted += uint64_t{1} << p.order();
    }
    return true;
  });
  if (!status.ok()) return status;
  return adopted;
}

absl::StatusOr<LoadOptions> ParseLoad(const CommandLine& line) {
  LoadOptions o;
  if (!HasFlag(line, "events")) return absl::InvalidArgumentError("load: --events N is required");
  absl::StatusOr<uint64_t> events =
      NumberArg(line.command, "--events", Flag(line, "events", ""), UINT64_MAX);
  if (!events.ok()) return events.status();
  o.events = *events;
  if (HasFlag(line, "stacks")) {
    absl::StatusOr<uint64_t> n =
        NumberArg(line.command, "--stacks", Flag(line, "stacks", ""), 1 << 24);
    if (!n.ok()) return n.status();
    if (*n == 0) return absl::InvalidArgumentError("load: bad --stacks: must be at least 1");
    o.stacks = static_cast<uint32_t>(*n);
  }
  if (HasFlag(line, "fill")) {
    const std::string text = Flag(line, "fill", "");
    double f;
    if (!absl::SimpleAtod(text, &f) || !(f > 0 && f <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("load: bad --fill '", text, "': a fraction in (0, 1]"));
    }
    o.fill = f;
  }
  if (HasFlag(line, "seed")) {
    absl::StatusOr<uint64_t> seed =
        NumberArg(line.command, "--seed", Flag(line, "seed", ""), UINT64_MAX);
    if (!seed.ok()) return seed.status();
    o.seed = *seed;
  }
  absl::StatusOr<size_t> batch = BatchFlag(line, o.batch);
  if (!batch.ok()) return batch.status();
  o.batch = *batch;
  return o;
}

}  // namespace

const Command& LoadCommand() {
  static const auto* const kCommand = new Command{
      .name = "load",
      .synopsis = "load --events N [--stacks S] [--fill F] [--seed X] [--batch N]",
      .summary =
          "a synthetic workload: N events over S distinct 16-frame stacks (default 10000), memory\n"
          "brought to and kept near the fraction F full (default 0.7; the daemon's allocated\n"
          "blocks count and may be freed), seed X (default 1); prints events/s. Ctrl-C: stops,\n"
          "prints what was sent and applied, exits 130",
      .min_positional = 0,
      .max_positional = 0,
      .flags =
          {{"events", true}, {"stacks", true}, {"fill", true}, {"seed", true}, {"batch", true}},
      .parse = Steps(ParseLoad, RunLoad),
  };
  return *kCommand;
}

int RunLoad(client::Client& client, const LoadOptions& options, Io io) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return ServerError(io, stats.status());

  WorkloadOptions wo;
  wo.pages = stats->total_pages();
  wo.stacks = options.stacks;
  wo.fill = options.fill;
  wo.seed = options.seed;
  Workload workload(wo);
  // Pages a previous load, replay or import left allocated count towards the fill level: the
  // workload takes their blocks as its own, so it frees them when memory is above F.
  if (stats->allocated_pages() > 0) {
    absl::StatusOr<uint64_t> adopted = AdoptAllocatedBlocks(client, &workload);
    if (!adopted.ok()) return ServerError(io, adopted.status());
  }

  client::SessionOptions session_options;
  session_options.batch_events = BatchWithinLimit("load", options.batch, &*stats, io);
  std::unique_ptr<Session> session = client.StartSession(std::move(session_options));
  // Every stack and task once, with the names of its frames; each is sent with its first use.
  std::vector<client::StackId> stack_ids(workload.num_stacks());
  std::vector<client::Frame> frames;
  for (uint32_t s = 0; s < workload.num_stacks(); ++s) {
    frames.clear();
    for (uint64_t ip : workload.frames(s)) frames.push_back({ip, Workload::SymbolName(ip)});
    stack_ids[s] = session->InternStack(frames);
  }
  std::vector<client::TaskId> task_ids;
  for (const WorkloadTask& t : workload.tasks()) {
    task_ids.push_back(session->InternTask({t.pid, t.tgid, t.comm}));
  }

  std::deque<WorkloadEvent> pending;  // events sent, in seq order, not yet observed
  CodeCounts counts;
  std::vector<client::IngestResult> results;
  auto observe = [&] {
    results.clear();
    session->Poll(&results);
    for (const client::IngestResult& r : results) {
      counts.Add(r.code);
      workload.Observe(pending.front(), r.ok(), r.pfn);
      pending.pop_front();
    }
  };

  const absl::Time start = absl::Now();
  Progress progress;
  InterruptScope interrupt_scope;
  uint64_t sent = 0;
  for (uint64_t i = 0; i < options.events && !interrupted; ++i) {
    // Results arrive a batch or more after the events: above the fill level with every known
    // block already on its way out, wait for them rather than allocate (which ratcheted memory
    // up: 0.9 then --fill 0.1 ended at 0.41, and repeated 0.5 runs crept up).
    while (workload.StarvedAboveFill() && !pending.empty() && !interrupted) {
      session->Flush();
      observe();
      if (workload.StarvedAboveFill()) absl::SleepFor(absl::Microseconds(100));
    }
    const WorkloadEvent e = workload.Next();
    pending.push_back(e);
    const client::StackId stack = stack_ids[e.stack];
    const client::TaskId task = task_ids[e.task];
    client::AddWorkloadEvent(session.get(), e, stack, task);
    ++sent;
    if ((i & 1023) == 1023) {
      observe();
      if (progress.Due()) {
        const double secs = absl::ToDoubleSeconds(absl::Now() - start);
        io.err << "load: " << i + 1 << " events, " << FormatRate(static_cast<double>(i + 1) / secs)
               << " events/s\n";
      }
    }
  }
  const absl::Status status = session->Finish();
  observe();
  const double secs = std::max(absl::ToDoubleSeconds(absl::Now() - start), 1e-9);
  io.out << "load: results: " << counts.Summary() << "\n";
  io.out << "load: " << sent << " events in " << absl::StrFormat("%.2f", secs) << " s, "
         << FormatRate(static_cast<double>(sent) / secs) << " events/s\n";
  if (interrupted) {
    io.out << "load: interrupted after " << sent << " of " << options.events
           << " events: " << counts.Get(absl::StatusCode::kOk) << " applied, "
           << sent - counts.Get(absl::StatusCode::kOk) << " not\n";
    if (!status.ok()) ServerError(io, status);
    return kExitInterrupted;
  }
  if (!status.ok()) return ServerError(io, status);
  const uint64_t refused = sent - counts.Get(absl::StatusCode::kOk);
  if (refused > 0) {
    io.err << "pageowner: load: the daemon refused " << refused << " of " << sent << " events\n";
    return kExitServerError;
  }
  return kExitOk;
}

}  // namespace pageowner::cli
