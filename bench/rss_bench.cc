// pageowner-bench rss [--memory 64GiB] [--fill 0.9] [--order N] [--events N] [--time]: the
// daemon's RSS a page after `pageowner load --fill` (or an --order N fill).
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "client/client.h"
#include "tests/support/daemon_process.h"

namespace pageowner::bench {

int RssBench(Flags flags) {
  const std::string memory = flags.String("memory", "64GiB");
  const double fill = flags.Double("fill", 0.9);
  const int64_t order = static_cast<int64_t>(flags.Int("order", 1000));
  const uint64_t events = flags.Int("events", 0);
  const bool time_v = flags.Bool("time");
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  absl::PrintF("pageowner-bench rss: %s machine (%s pages), fill %.2f; load average %s\n", memory,
               Commas(pages), fill, LoadAverage());
  Daemon d(memory, time_v);
  absl::PrintF("started: RSS %.1f MiB\n", static_cast<double>(d.rss()) / (1 << 20));
  const auto t0 = Clock::now();
  if (order <= 10) {
    const StreamOutcome o = FillOrder(d.address(), pages, static_cast<int>(order), fill);
    absl::PrintF("filled with %s order-%d allocations in %.2f s (%s events/s, %s failed)\n",
                 Commas(o.events), order, o.seconds,
                 Commas(static_cast<uint64_t>(static_cast<double>(o.events) / o.seconds)),
                 Commas(o.failed));
  } else {
    // The exact CLI command; enough events to reach the fill level with the workload's mix.
    const uint64_t n = events != 0 ? events : static_cast<uint64_t>(fill * pages);
    const std::vector<std::string> cmd = {BinDir() + "/pageowner", "--server=" + d.address(),
                                          "load", absl::StrFormat("--events=%d", n),
                                          absl::StrFormat("--fill=%g", fill)};
    absl::PrintF("running: pageowner load --events=%d --fill=%g\n", n, fill);
    std::fflush(stdout);
    if (testing::RunProgramTo(cmd, -1) != 0) std::cerr << "pageowner load failed\n";
  }
  absl::PrintF("loaded in %.1f s\n", Since(t0));
  client::Client c(Channel(d.address()));
  absl::StatusOr<v1::Stats> st = c.GetStats();
  if (!st.ok()) {
    std::cerr << "GetStats: " << st.status() << "\n";
    return 1;
  }
  std::mt19937_64 rng(3);
  std::vector<double> get_us;
  for (int i = 0; i < 1000; ++i) {
    const auto q0 = Clock::now();
    absl::StatusOr<v1::GetPageResponse> r = c.GetPage(Pfn(rng() % pages));
    get_us.push_back(Since(q0) * 1e6);
    if (!r.ok()) std::cerr << "GetPage: " << r.status() << "\n";
  }
  v1::ListStacksRequest req;
  req.set_top(100);
  std::vector<double> list_us;
  for (int i = 0; i < 20; ++i) {
    const auto q0 = Clock::now();
    absl::StatusOr<v1::ListStacksResponse> r = c.ListStacks(req);
    list_us.push_back(Since(q0) * 1e6);
    if (!r.ok()) std::cerr << "ListStacks: " << r.status() << "\n";
  }
  const uint64_t rss = d.rss(), hwm = d.hwm();
  absl::PrintF(
      "allocated %s of %s pages (%.1f%%), %s stacks; GetPage p50 %.0f us, ListStacks "
      "top 100 p50 %.0f us\n",
      Commas(st->allocated_pages()), Commas(pages),
      100.0 * static_cast<double>(st->allocated_pages()) / static_cast<double>(pages),
      Commas(st->depot_persistent_count()), Percentile(&get_us, 0.5), Percentile(&list_us, 0.5));
  absl::PrintF("daemon's own metadata: %.2f B/page\n", st->metadata_bytes_per_page());
  absl::PrintF(
      "rss: memory=%s pages=%d VmRSS=%.1fMiB VmHWM=%.1fMiB bytes_per_page=%.2f "
      "hwm_bytes_per_page=%.2f\n",
      memory, pages, static_cast<double>(rss) / (1 << 20), static_cast<double>(hwm) / (1 << 20),
      static_cast<double>(rss) / static_cast<double>(pages),
      static_cast<double>(hwm) / static_cast<double>(pages));
  std::fflush(stdout);
  return 0;
}

}  // namespace pageowner::bench
