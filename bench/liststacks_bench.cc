// pageowner-bench liststacks [--events N] [--queries Q] [--memory 1GiB,64GiB]: ListStacks top
// 100 on a 1 GiB and a 64 GiB daemon after the same workload (same events, stacks and fill
// fraction), Q times each.
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "client/client.h"

namespace pageowner::bench {

int ListStacksBench(Flags flags) {
  const uint64_t events = flags.Int("events", 4000000);
  const uint64_t queries = flags.Int("queries", 200);
  const std::string sizes = flags.String("memory", "1GiB,64GiB");
  flags.CheckAllUsed();
  absl::PrintF(
      "pageowner-bench liststacks: %s events of the workload (10,000 stacks), then %d "
      "ListStacks top 100; load average %s\n",
      Commas(events), queries, LoadAverage());
  absl::PrintF("%-8s %14s %10s %10s %10s %10s %9s\n", "memory", "pages", "stacks", "p50 us",
               "p99 us", "min us", "RSS MiB");
  std::stringstream list(sizes);
  std::vector<std::pair<std::string, double>> medians;
  for (std::string memory; std::getline(list, memory, ',');) {
    const uint64_t pages = ParsePages(memory);
    Daemon d(memory);
    StreamLive(Channel(d.address()), pages, 0.7, events, 1, 4096);
    client::Client c(Channel(d.address()));
    v1::ListStacksRequest req;
    req.set_top(100);
    std::vector<double> lat;
    int n = 0;
    for (uint64_t i = 0; i < queries + 5; ++i) {
      const auto t0 = Clock::now();
      absl::StatusOr<v1::ListStacksResponse> r = c.ListStacks(req);
      const double us = Since(t0) * 1e6;
      if (!r.ok()) {
        std::cerr << "ListStacks: " << r.status() << "\n";
        return 1;
      }
      n = r->stacks_size();
      if (i >= 5) lat.push_back(us);
    }
    absl::StatusOr<v1::Stats> st = c.GetStats();
    const double p50 = Percentile(&lat, 0.5);
    absl::PrintF("%-8s %14s %10d %10.0f %10.0f %10.0f %9.0f\n", memory, Commas(pages), n, p50,
                 Percentile(&lat, 0.99), Percentile(&lat, 0.0),
                 static_cast<double>(d.rss()) / (1 << 20));
    if (st.ok()) {
      absl::PrintF("         (%s stacks in the depot, %.1f%% of pages allocated)\n",
                   Commas(st->depot_persistent_count()),
                   100.0 * static_cast<double>(st->allocated_pages()) / pages);
    }
    medians.emplace_back(memory, p50);
  }
  std::string line = "liststacks:";
  for (auto& [m, p] : medians) line += absl::StrFormat(" %s=%.0fus", m, p);
  absl::PrintF("%s\n", line);
  return 0;
}

}  // namespace pageowner::bench
