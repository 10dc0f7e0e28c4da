// pageowner-bench soak: the daemon under sustained load, then under 10x its configured limits
// (issue 10, finding 9). Phase 1: `--streams` live ingest streams flat out plus a GetPage client,
// for `--seconds`. Phase 2, for `--overload_seconds`: ten times --max_streams streams at once,
// clients that send and never read their answers, and a stream that floods new frame names
// past --max_symbol_bytes, while GetPage goes on. Then the state must pass the invariant checks
// (tracked pages equal allocated pages; the stacks' pages sum to them). Prints RSS (max, sampled
// every 100 ms), GetPage percentiles per phase, refusals by kind; exits 1 when a check fails, the
// daemon died, or RSS passed --rss_cap_mib.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"

namespace pageowner::bench {
namespace {

// GetPage on random pfns until `stop`, latencies in us.
std::vector<double> QueryUntil(const std::string& address, uint64_t pages,
                               const std::atomic<bool>& stop, std::atomic<uint64_t>* errors) {
  auto stub = v1::PageOwner::NewStub(Channel(address));
  std::mt19937_64 rng(11);
  std::vector<double> lat;
  while (!stop.load()) {
    v1::GetPageRequest req;
    req.set_pfn(rng() % pages);
    v1::GetPageResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const auto t0 = Clock::now();
    const grpc::Status st = stub->GetPage(&ctx, req, &resp);
    lat.push_back(Since(t0) * 1e6);
    if (!st.ok()) errors->fetch_add(1);
  }
  return lat;
}

// The daemon's RSS, sampled every 100 ms until `stop`; returns the highest.
uint64_t MaxRssUntil(const Daemon& d, const std::atomic<bool>& stop) {
  uint64_t max = 0;
  while (!stop.load()) {
    max = std::max(max, d.rss());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return max;
}

void PrintLatency(const char* phase, std::vector<double>* v, uint64_t errors) {
  absl::PrintF("GetPage %-10s queries %9s  p50 %8.1f us  p99 %9.1f us  max %9.1f us  errors %s\n",
               phase, Commas(v->size()), Percentile(v, 0.5), Percentile(v, 0.99),
               Percentile(v, 1.0), Commas(errors));
}

struct Overload {
  std::atomic<uint64_t> streams_refused{0};    // RESOURCE_EXHAUSTED at the stream's start
  std::atomic<uint64_t> streams_other{0};      // any other end
  std::atomic<uint64_t> batches_exhausted{0};  // RESOURCE_EXHAUSTED answers (name flood)
  std::atomic<uint64_t> silent_batches{0};     // batches written by clients that never read
};

// Opens a stream, sends one empty batch and waits for its answer or its end; holds it open until
// `stop`. Counts a refusal by its code.
void OneStream(v1::PageOwner::Stub* stub, const std::atomic<bool>& stop, Overload* o) {
  grpc::ClientContext ctx;
  auto rw = stub->Ingest(&ctx);
  v1::EventBatch b;
  rw->Write(b);
  v1::BatchResult r;
  if (rw->Read(&r)) {
    while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    rw->WritesDone();
  }
  const grpc::Status st = rw->Finish();
  if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    o->streams_refused.fetch_add(1);
  } else if (!st.ok()) {
    o->streams_other.fetch_add(1);
  }
}

// Writes batches of 65,536 frees that fail (each answer carries 65,536 codes and messages, ~3 MB)
// and never reads an answer, until `stop` or a write fails.
void SilentClient(v1::PageOwner::Stub* stub, const std::atomic<bool>& stop, Overload* o) {
  grpc::ClientContext ctx;
  auto rw = stub->Ingest(&ctx);
  // The daemon stops reading a client that never reads (flow control), so Write blocks: cancel
  // the call from here once `stop` is set.
  std::thread canceller([&] {
    while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ctx.TryCancel();
  });
  v1::EventBatch b;
  for (uint32_t id = 1; id <= 64; ++id) {
    v1::TaskDef* t = b.add_tasks();
    t->set_id(id);
    t->set_comm(std::string(64, 'q'));
  }
  b.mutable_kind()->Resize(65536, v1::EVENT_KIND_FREE);  // frees of pfn 0: FAILED_PRECONDITION
  while (!stop.load()) {
    if (!rw->Write(b)) break;
    o->silent_batches.fetch_add(1);
  }
  canceller.join();
  rw->Finish();
}

// Defines stacks with new 600-byte names until the daemon answers RESOURCE_EXHAUSTED.
void NameFlood(v1::PageOwner::Stub* stub, const std::atomic<bool>& stop, Overload* o) {
  grpc::ClientContext ctx;
  auto rw = stub->Ingest(&ctx);
  uint64_t n = 0;
  while (!stop.load()) {
    v1::EventBatch b;
    for (int s = 0; s < 256; ++s) {
      v1::StackDef* d = b.add_stacks();
      d->set_id(static_cast<uint32_t>(s + 1));
      v1::Frame* f = d->add_frames();
      f->set_symbol(absl::StrFormat("flood_%020d", n++) + std::string(570, 'f'));
    }
    if (!rw->Write(b)) break;
    v1::BatchResult r;
    if (!rw->Read(&r)) break;
    if (r.code() == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)) {
      o->batches_exhausted.fetch_add(1);
    }
  }
  rw->WritesDone();
  rw->Finish();
}

}  // namespace

int SoakBench(Flags flags) {
  const uint64_t seconds = flags.Int("seconds", 600);
  const uint64_t streams = flags.Int("streams", 64);
  const std::string memory = flags.String("memory", "4GiB");
  const uint64_t overload_seconds = flags.Int("overload_seconds", 60);
  const uint64_t max_streams = flags.Int("max_streams", 64);
  const std::string grpc_memory = flags.String("max_grpc_memory", "256MiB");
  const uint64_t symbol_bytes = flags.Int("max_symbol_bytes", 64 << 20);
  const uint64_t rss_cap = flags.Int("rss_cap_mib", 1536) << 20;
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  Daemon d(memory, false,
           {absl::StrFormat("--max_streams=%d", max_streams), "--max_grpc_memory=" + grpc_memory,
            absl::StrFormat("--max_symbol_bytes=%d", symbol_bytes)});
  absl::PrintF(
      "pageowner-bench soak: %s machine, --max_streams=%d --max_grpc_memory=%s "
      "--max_symbol_bytes=%d; %d streams for %d s, then 10x the limits for %d s; load average %s\n",
      memory, max_streams, grpc_memory, symbol_bytes, streams, seconds, overload_seconds,
      LoadAverage());

  // Phase 1: live streams flat out, each keeping its share of 70% of memory allocated.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> events{0}, failed{0}, query_errors{0};
  uint64_t rss1 = 0;
  std::thread rss_thread([&] { rss1 = MaxRssUntil(d, stop); });
  std::vector<double> lat1;
  std::thread query_thread([&] { lat1 = QueryUntil(d.address(), pages, stop, &query_errors); });
  std::vector<std::thread> workers;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < streams; ++i) {
    workers.emplace_back([&, i] {
      auto channel = Channel(d.address());
      for (uint64_t round = 0; !stop.load(); ++round) {
        // Each round frees what it holds at its end: the next round's stream starts over. All
        // streams share one set of stacks (one kernel's call sites, ~3.5 MB of names): with a
        // set a round they filled --max_symbol_bytes within minutes and every batch after was
        // refused, which measured the refusal path, not a soak.
        const StreamOutcome o = StreamLive(channel, pages, 0.7 / static_cast<double>(streams),
                                           200000, i * 1000003 + round, 4096, true, 1);
        events.fetch_add(o.events);
        failed.fetch_add(o.failed);
      }
    });
  }
  while (Since(t0) < static_cast<double>(seconds) && d.alive()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (std::thread& t : workers) t.join();
  query_thread.join();
  rss_thread.join();
  const double phase1 = Since(t0);
  absl::PrintF("phase 1: %s events in %.0f s (%s events/s; %s not OK), daemon max RSS %s MiB\n",
               Commas(events.load()), phase1,
               Commas(static_cast<uint64_t>(static_cast<double>(events.load()) / phase1)),
               Commas(failed.load()), Commas(rss1 >> 20));
  PrintLatency("phase 1", &lat1, query_errors.load());

  // Phase 2: ten times the limits.
  stop = false;
  query_errors = 0;
  Overload o;
  uint64_t rss2 = 0;
  std::thread rss_thread2([&] { rss2 = MaxRssUntil(d, stop); });
  std::vector<double> lat2;
  std::thread query_thread2([&] { lat2 = QueryUntil(d.address(), pages, stop, &query_errors); });
  std::vector<std::thread> load;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::PageOwner::Stub>> stubs;
  for (int c = 0; c < 16; ++c) {
    channels.push_back(Channel(d.address()));
    stubs.push_back(v1::PageOwner::NewStub(channels.back()));
  }
  // The name flood and the silent clients first, so that they hold streams before the 10x
  // crowd takes every slot left (started after it, they were refused at the door).
  load.emplace_back([&] { NameFlood(stubs[0].get(), stop, &o); });
  for (int i = 0; i < 10; ++i) {
    load.emplace_back([&, i] { SilentClient(stubs[i % stubs.size()].get(), stop, &o); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (uint64_t i = 0; i < 10 * max_streams; ++i) {
    load.emplace_back([&, i] { OneStream(stubs[i % stubs.size()].get(), stop, &o); });
  }
  const auto t1 = Clock::now();
  while (Since(t1) < static_cast<double>(overload_seconds) && d.alive()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (std::thread& t : load) t.join();
  query_thread2.join();
  rss_thread2.join();
  absl::PrintF(
      "phase 2: %s streams asked for (--max_streams=%d): %s refused with RESOURCE_EXHAUSTED, %s "
      "ended otherwise; 10 silent clients wrote %s batches; name flood: %s batches refused with "
      "RESOURCE_EXHAUSTED; daemon max RSS %s MiB\n",
      Commas(10 * max_streams), max_streams, Commas(o.streams_refused.load()),
      Commas(o.streams_other.load()), Commas(o.silent_batches.load()),
      Commas(o.batches_exhausted.load()), Commas(rss2 >> 20));
  PrintLatency("phase 2", &lat2, query_errors.load());

  // The state afterwards.
  bool ok = d.alive();
  auto stub = v1::PageOwner::NewStub(Channel(d.address()));
  v1::Stats stats;
  {
    grpc::ClientContext ctx;
    ok = ok && stub->GetStats(&ctx, v1::GetStatsRequest(), &stats).ok();
  }
  v1::ListStacksResponse all;
  {
    grpc::ClientContext ctx;
    v1::ListStacksRequest req;
    req.set_include_empty(true);
    ok = ok && stub->ListStacks(&ctx, req, &all).ok();
  }
  int64_t stack_pages = 0;
  for (const v1::Stack& s : all.stacks()) stack_pages += s.pages();
  const bool tracked = stats.tracked_pages() == stats.allocated_pages();
  const bool summed = static_cast<uint64_t>(stack_pages) == stats.tracked_pages();
  const bool refused = o.streams_refused.load() > 0 && o.batches_exhausted.load() > 0;
  const bool under_cap = std::max(rss1, rss2) <= rss_cap;
  absl::PrintF(
      "after: daemon %s; allocated %s, tracked %s (%s), stacks' pages %s (%s); refusals seen: %s; "
      "max RSS %s MiB against the cap of %s MiB: %s\n",
      d.alive() ? "alive" : "DEAD", Commas(stats.allocated_pages()), Commas(stats.tracked_pages()),
      tracked ? "equal" : "DIFFER", Commas(static_cast<uint64_t>(stack_pages)),
      summed ? "equal" : "DIFFER", refused ? "yes" : "NO", Commas(std::max(rss1, rss2) >> 20),
      Commas(rss_cap >> 20), under_cap ? "under" : "OVER");
  return ok && tracked && summed && refused && under_cap ? 0 : 1;
}

}  // namespace pageowner::bench
