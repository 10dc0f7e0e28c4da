#include "bench/streams.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>
#include <utility>

#include "bench/bench_util.h"
#include "core/machine.h"

namespace pageowner::bench {
namespace {

// Every stack (with the %pS names of its frames) and task of `w`, interned in `s`.
void InternAll(const Workload& w, client::Session* s, std::vector<client::StackId>* stacks,
               std::vector<client::TaskId>* tasks) {
  std::vector<client::Frame> frames;
  for (uint32_t i = 0; i < w.num_stacks(); ++i) {
    frames.clear();
    for (uint64_t ip : w.frames(i)) frames.push_back({ip, Workload::SymbolName(ip)});
    stacks->push_back(s->InternStack(frames));
  }
  for (const WorkloadTask& t : w.tasks()) tasks->push_back(s->InternTask({t.pid, t.tgid, t.comm}));
}

}  // namespace

grpc::ChannelArguments BenchChannelArgs() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // A channel of its own, so that runs share no connection.
  args.SetInt("bench_channel_id", std::rand());
  return args;
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), BenchChannelArgs());
}

WorkloadOptions BenchWorkload(uint64_t pages, uint64_t seed) {
  WorkloadOptions wo;
  wo.pages = pages;
  wo.stacks = 10000;
  wo.depth = 16;
  wo.fill = 0.7;  // the workload wanders around it: 50 to 90% full
  wo.seed = seed;
  return wo;
}

Recorded Pregenerate(uint64_t pages, uint64_t events, uint64_t seed) {
  const auto t0 = Clock::now();
  Recorded r;
  r.workload = std::make_unique<Workload>(BenchWorkload(pages, seed));
  MachineOptions mo;
  mo.pages = PageCount(pages);
  Machine twin(mo);
  r.events.reserve(events);
  r.result_pfn.reserve(events);
  for (uint64_t i = 0; i < events; ++i) {
    const WorkloadEvent e = r.workload->Next();
    const EventResult res = twin.Apply(r.workload->ToMachineEvent(e));
    r.workload->Observe(e, res.status.ok(), res.pfn);
    r.events.push_back(e);
    r.result_pfn.push_back(res.status.ok() ? res.pfn.raw() : 0);
    r.failed += !res.status.ok();
  }
  r.seconds = Since(t0);
  return r;
}

StreamOutcome StreamRecorded(const std::shared_ptr<grpc::Channel>& channel, const Recorded& rec,
                             size_t batch) {
  StreamOutcome out;
  std::atomic<uint64_t> failed{0}, mismatched{0};
  client::SessionOptions so;
  so.batch_events = batch;
  so.on_results = [&](absl::Span<const client::IngestResult> results) {
    uint64_t f = 0, m = 0;
    for (const client::IngestResult& r : results) {
      f += !r.ok();
      m += (r.ok() ? r.pfn.raw() : 0) != rec.result_pfn[r.seq];
    }
    failed += f;
    mismatched += m;
  };
  client::Session session(channel, so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(*rec.workload, &session, &stacks, &tasks);
  const auto t0 = Clock::now();
  for (const WorkloadEvent& e : rec.events)
    client::AddWorkloadEvent(&session, e, stacks[e.stack], tasks[e.task]);
  const absl::Status st = session.Finish();
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: ingest stream: " << st << "\n";
  out.events = rec.events.size();
  out.failed = failed;
  out.mismatched = mismatched;
  return out;
}

StreamOutcome StreamLive(const std::shared_ptr<grpc::Channel>& channel, uint64_t pages, double fill,
                         uint64_t events, uint64_t seed, size_t batch, bool free_at_end,
                         uint64_t stack_seed) {
  StreamOutcome out;
  WorkloadOptions wo = BenchWorkload(pages, seed);
  wo.fill = fill;
  wo.stack_seed = stack_seed;
  Workload w(wo);
  client::SessionOptions so;
  so.batch_events = batch;
  client::Session session(channel, so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(w, &session, &stacks, &tasks);
  std::vector<WorkloadEvent> pending;  // sent, not yet observed, in seq order
  size_t pending_head = 0;
  std::vector<client::IngestResult> results;
  auto observe = [&] {
    results.clear();
    session.Poll(&results);
    for (const client::IngestResult& r : results) {
      out.failed += !r.ok();
      w.Observe(pending[pending_head++], r.ok(), r.pfn);
    }
    if (pending_head > (1 << 16) && pending_head * 2 > pending.size()) {
      pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(pending_head));
      pending_head = 0;
    }
  };
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < events; ++i) {
    // As `pageowner load`: above the fill level with every known block on its way out, wait for
    // answers rather than allocate (a small share and a deep in-flight window filled memory).
    while (w.StarvedAboveFill() && pending_head < pending.size()) {
      session.Flush();
      observe();
      if (w.StarvedAboveFill()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    const WorkloadEvent e = w.Next();
    pending.push_back(e);
    client::AddWorkloadEvent(&session, e, stacks[e.stack], tasks[e.task]);
    if ((i & 1023) == 1023) observe();
  }
  uint64_t frees = 0;
  if (free_at_end) {
    session.Flush();
    while (pending_head < pending.size()) {
      observe();
      if (pending_head < pending.size())
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    for (const auto& [pfn, order] : w.TakeLive()) {
      session.Free({.pfn = pfn, .order = order, .stack = {}, .task = {}});
      ++frees;
    }
  }
  const absl::Status st = session.Finish();
  if (free_at_end) {  // the frees' results: the workload has nothing left to observe
    results.clear();
    session.Poll(&results);
    for (const client::IngestResult& r : results) out.failed += !r.ok();
  } else {
    observe();
  }
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: ingest stream: " << st << "\n";
  out.events = events + frees;
  return out;
}

StreamOutcome FillOrder(const std::string& address, uint64_t pages, int order, double fill) {
  StreamOutcome out;
  Workload w(BenchWorkload(pages, 1));
  std::atomic<uint64_t> failed{0};
  client::SessionOptions so;
  so.batch_events = 4096;
  so.on_results = [&](absl::Span<const client::IngestResult> results) {
    uint64_t f = 0;
    for (const client::IngestResult& r : results) f += !r.ok();
    failed += f;
  };
  client::Session session(Channel(address), so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(w, &session, &stacks, &tasks);
  const uint64_t n = static_cast<uint64_t>(fill * static_cast<double>(pages)) >> order;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    session.Alloc({.order = Order(order),
                   .gfp_mask = 0x140cca,
                   .stack = stacks[(i * 7919) % 10000],
                   .task = tasks[i % tasks.size()],
                   .ts_ns = 1000000000 + i * 100,
                   .pfn = std::nullopt});
  }
  const absl::Status st = session.Finish();
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: fill stream: " << st << "\n";
  out.events = n;
  out.failed = failed;
  return out;
}

}  // namespace pageowner::bench
