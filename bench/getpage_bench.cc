// pageowner-bench getpage [--events N] [--memory 4GiB] [--batch B]: GetPage latency over loopback
// with a sync stub on random pfns the workload allocated, while one ingest stream runs, and then
// on the idle daemon.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"

namespace pageowner::bench {

int GetPageBench(Flags flags) {
  const uint64_t events = flags.Int("events", 8000000);
  const std::string memory = flags.String("memory", "4GiB");
  const size_t batch = flags.Int("batch", 4096);
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  Recorded rec = Pregenerate(pages, events, 1);
  std::vector<uint64_t> pfns;
  for (uint64_t p : rec.result_pfn) {
    if (p != 0) pfns.push_back(p);
  }
  absl::PrintF(
      "pageowner-bench getpage: %s machine, %s events streamed while querying; load "
      "average %s\n",
      memory, Commas(events), LoadAverage());
  Daemon d(memory);
  auto query_channel = Channel(d.address());
  auto stub = v1::PageOwner::NewStub(query_channel);
  std::mt19937_64 rng(7);
  auto query = [&](std::vector<double>* lat) {
    v1::GetPageRequest req;
    req.set_pfn(pfns[rng() % pfns.size()]);
    v1::GetPageResponse resp;
    grpc::ClientContext ctx;
    const auto t0 = Clock::now();
    const grpc::Status st = stub->GetPage(&ctx, req, &resp);
    lat->push_back(Since(t0) * 1e6);
    if (!st.ok()) std::cerr << "GetPage: " << st.error_message() << "\n";
  };
  for (int i = 0; i < 1000; ++i) {
    std::vector<double> warm;
    query(&warm);
  }
  std::atomic<bool> done{false};
  StreamOutcome ingest;
  std::thread t([&] {
    ingest = StreamRecorded(Channel(d.address()), rec, batch);
    done = true;
  });
  std::vector<double> busy;
  while (!done) query(&busy);
  t.join();
  std::vector<double> idle;
  for (size_t i = 0; i < std::max<size_t>(busy.size(), 20000); ++i) query(&idle);
  const double rate = static_cast<double>(ingest.events) / ingest.seconds;
  absl::PrintF("%-34s %9s %9s %9s %9s %9s\n", "GetPage (us)", "queries", "p50", "p99", "p99.9",
               "max");
  for (auto& [name, v] :
       {std::pair<const char*, std::vector<double>*>{"while ingesting", &busy}, {"idle", &idle}}) {
    const size_t n = v->size();
    absl::PrintF("%-34s %9s %9.1f %9.1f %9.1f %9.1f\n", name, Commas(n), Percentile(v, 0.5),
                 Percentile(v, 0.99), Percentile(v, 0.999), Percentile(v, 1.0));
  }
  absl::PrintF("ingest meanwhile: %s events/s (%s failed)\n", Commas(static_cast<uint64_t>(rate)),
               Commas(ingest.failed));
  absl::PrintF("getpage: p50=%.1fus p99=%.1fus (while ingesting at %.0f events/s)\n",
               Percentile(&busy, 0.5), Percentile(&busy, 0.99), rate);
  return 0;
}

}  // namespace pageowner::bench
