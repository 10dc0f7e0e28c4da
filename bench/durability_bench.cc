// pageowner-bench durability [--events N] [--memory 4GiB] [--batch B] [--repeat R]
// [--streams K] [--seconds S] [--dir DIR]: what the write-ahead log costs (issue 12).
//  1. The same recorded stream of 4,096-event batches into an in-memory daemon and into one
//     with --data_dir and --fsync=always, one after the other in each run: events/s and the ratio.
//  2. Group commit: K streams each sending 1-event batches with one in flight, against one
//     stream alone, both with --fsync=always: acknowledged events/s, the ratio and ack latency.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "pageowner/v1/pageowner.pb.h"

namespace pageowner::bench {
namespace {

// A fresh, empty data dir under `root`, removed at the end of its scope.
class ScratchDir {
 public:
  ScratchDir(const std::string& root, const std::string& name)
      : path_(absl::StrCat(root, "/pageowner-bench-", name, "-", ::getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

double Rate(const StreamOutcome& o) { return static_cast<double>(o.events) / o.seconds; }

// One stream of 1-event batches, one in flight, for `seconds`: an allocation the allocator
// places, then its free, and so on. Returns the events acknowledged OK and appends each ack's
// latency (us) to *latencies.
uint64_t OneEventStream(const std::string& address, double seconds, std::vector<double>* latencies,
                        std::atomic<bool>* failed) {
  auto stub = v1::PageOwner::NewStub(Channel(address));
  grpc::ClientContext ctx;
  auto rw = stub->Ingest(&ctx);
  uint64_t acked = 0, sequence = 0, held = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(seconds);
  v1::BatchResult r;
  while (Clock::now() < end) {
    v1::EventBatch b;
    b.set_sequence(++sequence);
    if (sequence == 1) {
      v1::StackDef* s = b.add_stacks();
      s->set_id(1);
      s->add_frames()->set_ip(0xffffffff81000000ull);
    }
    if (held == 0) {
      b.add_kind(v1::EVENT_KIND_ALLOC);
      b.add_pfn(0);
    } else {
      b.add_kind(v1::EVENT_KIND_FREE);
      b.add_pfn(held);
    }
    b.add_order(0);
    b.add_stack_id(held == 0 ? 1 : 0);
    const auto t0 = Clock::now();
    if (!rw->Write(b) || !rw->Read(&r)) break;
    latencies->push_back(Since(t0) * 1e6);
    if (r.code() != 0 || r.event_code_size() != 1 || r.event_code(0) != 0) {
      failed->store(true);
      break;
    }
    ++acked;
    held = held == 0 ? r.event_pfn(0) : 0;
  }
  rw->WritesDone();
  const grpc::Status s = rw->Finish();
  if (!s.ok()) failed->store(true);
  return acked;
}

struct GroupRun {
  double rate = 0;  // acknowledged events/s over all streams
  double p50 = 0, p99 = 0, max = 0;
  bool failed = false;
};

GroupRun RunGroup(const std::string& address, uint64_t streams, double seconds) {
  std::vector<std::vector<double>> lat(streams);
  std::vector<uint64_t> acked(streams);
  std::atomic<bool> failed{false};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (uint64_t k = 0; k < streams; ++k) {
    threads.emplace_back([&, k] { acked[k] = OneEventStream(address, seconds, &lat[k], &failed); });
  }
  for (auto& t : threads) t.join();
  const double secs = Since(t0);
  GroupRun g;
  uint64_t total = 0;
  std::vector<double> all;
  for (uint64_t k = 0; k < streams; ++k) {
    total += acked[k];
    all.insert(all.end(), lat[k].begin(), lat[k].end());
  }
  g.rate = static_cast<double>(total) / secs;
  if (!all.empty()) {
    g.p50 = Percentile(&all, 0.5);
    g.p99 = Percentile(&all, 0.99);
    g.max = all.back();
  }
  g.failed = failed.load();
  return g;
}

}  // namespace

int DurabilityBench(Flags flags) {
  const uint64_t events = flags.Int("events", 4000000);
  const std::string memory = flags.String("memory", "4GiB");
  const size_t batch = flags.Int("batch", 4096);
  const uint64_t repeat = std::max<uint64_t>(1, flags.Int("repeat", 3));
  const uint64_t streams = std::max<uint64_t>(1, flags.Int("streams", 64));
  const double seconds = flags.Double("seconds", 10);
  const std::string root = flags.String("dir", BinDir() + "/..");
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  absl::PrintF(
      "pageowner-bench durability: %s machine, data dirs under %s; load average %s, %d cpus\n",
      memory, std::filesystem::weakly_canonical(root).string(), LoadAverage(),
      std::thread::hardware_concurrency());

  // 1. The log's cost on a full-speed stream.
  const Recorded rec = Pregenerate(pages, events, 1);
  absl::PrintF("\n1. %s pre-generated events in %d-event batches, one stream\n", Commas(events),
               batch);
  absl::PrintF("%-4s %-22s %12s %9s %14s %10s\n", "run", "daemon", "events", "seconds", "events/s",
               "failed");
  std::vector<double> mem_rates, log_rates, ratios;
  for (uint64_t run = 1; run <= repeat; ++run) {
    StreamOutcome in_memory, logged;
    {
      Daemon d(memory);
      in_memory = StreamRecorded(Channel(d.address()), rec, batch);
    }
    {
      ScratchDir dir(root, "always");
      Daemon d(memory, false, {"--data_dir=" + dir.path(), "--fsync=always"});
      logged = StreamRecorded(Channel(d.address()), rec, batch);
    }
    absl::PrintF("%-4d %-22s %12s %9.3f %14s %10s\n", run, "in memory", Commas(in_memory.events),
                 in_memory.seconds, Commas(static_cast<uint64_t>(Rate(in_memory))),
                 Commas(in_memory.failed));
    absl::PrintF("%-4d %-22s %12s %9.3f %14s %10s\n", run, "--fsync=always", Commas(logged.events),
                 logged.seconds, Commas(static_cast<uint64_t>(Rate(logged))),
                 Commas(logged.failed));
    mem_rates.push_back(Rate(in_memory));
    log_rates.push_back(Rate(logged));
    ratios.push_back(Rate(logged) / Rate(in_memory));
  }
  absl::PrintF(
      "medians of %d runs: in memory %s/s, --fsync=always %s/s, ratio %.3f (target "
      ">= 0.8)\n",
      repeat, Commas(static_cast<uint64_t>(Median(mem_rates))),
      Commas(static_cast<uint64_t>(Median(log_rates))), Median(ratios));

  // 2. Group commit: many one-event writers share each fdatasync.
  absl::PrintF("\n2. 1-event batches, one in flight a stream, %.0f s each, --fsync=always\n",
               seconds);
  absl::PrintF("%-4s %-10s %8s %14s %10s %10s %10s\n", "run", "daemon", "streams", "acked ev/s",
               "p50 us", "p99 us", "max us");
  std::vector<double> group_ratios, p99s, ceiling_ratios;
  bool failed = false;
  for (uint64_t run = 1; run <= repeat; ++run) {
    GroupRun one, many, ceiling;
    {
      ScratchDir dir(root, "group");
      Daemon d(memory, false, {"--data_dir=" + dir.path(), "--fsync=always"});
      one = RunGroup(d.address(), 1, seconds);
      many = RunGroup(d.address(), streams, seconds);
    }
    {
      // The same streams with no log: what the round trips alone allow on this machine.
      Daemon d(memory);
      ceiling = RunGroup(d.address(), streams, seconds);
    }
    const auto row = [&](const char* daemon, uint64_t n, const GroupRun& g) {
      absl::PrintF("%-4d %-10s %8d %14s %10.0f %10.0f %10.0f\n", run, daemon, n,
                   Commas(static_cast<uint64_t>(g.rate)), g.p50, g.p99, g.max);
    };
    row("always", 1, one);
    row("always", streams, many);
    row("in memory", streams, ceiling);
    failed |= one.failed || many.failed || ceiling.failed;
    group_ratios.push_back(many.rate / one.rate);
    ceiling_ratios.push_back(many.rate / ceiling.rate);
    p99s.push_back(many.p99);
  }
  absl::PrintF(
      "medians of %d runs: %d streams acknowledge %.1fx one stream's events/s (target >= 20), "
      "%.2f of the same streams without a log; ack p99 %.0f us (target <= 10,000); load "
      "average now %s\n",
      repeat, streams, Median(group_ratios), Median(ceiling_ratios), Median(p99s), LoadAverage());
  if (failed) {
    absl::PrintF("durability: some batches failed (see above)\n");
    return 1;
  }
  return 0;
}

}  // namespace pageowner::bench
