// pageowner-bench dump [--memory 4GiB] [--runs R]: `pageowner dump` of a machine filled with
// order-0 allocations: MB of text a second.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "tests/support/daemon_process.h"

namespace pageowner::bench {
namespace {

// Bytes `args` writes on stdout.
uint64_t CountOutput(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  uint64_t n = 0;
  std::thread reader([&] {
    char buf[1 << 16];
    for (ssize_t r; (r = read(fds[0], buf, sizeof(buf))) > 0;) n += static_cast<uint64_t>(r);
  });
  testing::RunProgramTo(args, fds[1]);
  close(fds[1]);
  reader.join();
  close(fds[0]);
  return n;
}

}  // namespace

int DumpBench(Flags flags) {
  const std::string memory = flags.String("memory", "4GiB");
  const uint64_t runs = flags.Int("runs", 5);
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  Daemon d(memory);
  const StreamOutcome fill = FillOrder(d.address(), pages, 0, 1.0);
  absl::PrintF(
      "pageowner-bench dump: %s machine filled with %s order-0 allocations in %.2f s "
      "(%s failed); load average %s\n",
      memory, Commas(fill.events), fill.seconds, Commas(fill.failed), LoadAverage());
  const std::vector<std::string> cmd = {BinDir() + "/pageowner", "--server=" + d.address(), "dump"};
  const uint64_t bytes = CountOutput(cmd);
  const int devnull = open("/dev/null", O_WRONLY);
  std::vector<double> secs;
  for (uint64_t i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    const int rc = testing::RunProgramTo(cmd, devnull);
    secs.push_back(Since(t0));
    if (rc != 0) std::cerr << "pageowner dump exited " << rc << "\n";
  }
  close(devnull);
  const double med = Median(secs);
  absl::PrintF(
      "pageowner dump > /dev/null: %s bytes of text, %d runs, median %.3f s, min %.3f s "
      "(daemon RSS %.0f MiB)\n",
      Commas(bytes), runs, med, *std::min_element(secs.begin(), secs.end()),
      static_cast<double>(d.rss()) / (1 << 20));
  absl::PrintF("dump: %.1f MB/s (%.1f MB in %.3f s)\n", static_cast<double>(bytes) / 1e6 / med,
               static_cast<double>(bytes) / 1e6, med);
  if (testing::RunProgramTo({"sh", "-c", "command -v hyperfine >/dev/null"}, -1) == 0) {
    testing::RunProgramTo({"hyperfine", "--warmup", "1", "--runs", std::to_string(runs), "-N",
                           BinDir() + "/pageowner --server=" + d.address() + " dump"},
                          -1);
  }
  return 0;
}

}  // namespace pageowner::bench
