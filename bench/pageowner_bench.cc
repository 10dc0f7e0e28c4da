// pageowner-bench: figures that need more than a micro-benchmark (see BENCHMARKS.md), one file
// each over bench_util.h and streams.h.
//   pageowner-bench memory [--gib N] [--events N] [--stacks N]
//       the seed patch's memory table side by side with ours, in process.
//   pageowner-bench ingest [--events N] [--memory 4GiB] [--streams K] [--batch B] [--repeat R]
//                          [--live]
//       a real pageownerd against a do-nothing sink, the same client messages to each.
//   pageowner-bench getpage [--events N] [--memory 4GiB]
//       GetPage latency over loopback while an ingest stream runs, and idle.
//   pageowner-bench liststacks [--events N] [--queries Q]
//       ListStacks top 100 on a 1 GiB and a 64 GiB daemon after the same workload.
//   pageowner-bench dump [--memory 4GiB] [--runs R]
//       `pageowner dump` of a machine filled with order-0 allocations: MB of text a second.
//   pageowner-bench rss [--memory 64GiB] [--fill 0.9] [--order N] [--events N] [--time]
//       the daemon's RSS a page after `pageowner load --fill` (or an --order N fill).
//   pageowner-bench soak [--seconds 600] [--streams 64] [--overload_seconds 60] ...
//       64 streams flat out plus queries, then 10x the daemon's limits: RSS, GetPage, refusals.
//   pageowner-bench durability [--events N] [--streams 64] [--seconds 10] [--dir DIR] ...
//       the write-ahead log's cost: --fsync=always against in memory, and group commit.
#include <iostream>
#include <string_view>
#include <utility>

#include "bench/bench_util.h"

namespace pageowner::bench {

int Usage() {
  std::cerr
      << "usage: pageowner-bench memory|ingest|getpage|liststacks|dump|rss|soak|durability "
         "[flags]\n"
         "  memory     [--gib N] [--events N] [--stacks N]\n"
         "  ingest     [--events N] [--memory 4GiB] [--streams K] [--batch B] [--repeat R]\n"
         "  getpage    [--events N] [--memory 4GiB] [--batch B]\n"
         "  liststacks [--events N] [--queries Q]\n"
         "  dump       [--memory 4GiB] [--runs R]\n"
         "  rss        [--memory 64GiB] [--fill 0.9] [--order N] [--events N] [--time]\n"
         "  soak       [--seconds 600] [--streams 64] [--memory 4GiB] [--overload_seconds 60]\n"
         "             [--rss_cap_mib 1536]\n"
         "  durability [--events N] [--memory 4GiB] [--batch B] [--repeat R] [--streams K]\n"
         "             [--seconds S] [--dir DIR]\n";
  return 2;
}

}  // namespace pageowner::bench

int main(int argc, char** argv) {
  namespace bench = pageowner::bench;
  if (argc < 2) return bench::Usage();
  const std::string_view mode = argv[1];
  if (mode == "memory") return bench::MemoryBench(argc - 2, argv + 2);
  bench::Flags flags(argc - 2, argv + 2);
  if (mode == "ingest") return bench::IngestBench(std::move(flags));
  if (mode == "getpage") return bench::GetPageBench(std::move(flags));
  if (mode == "liststacks") return bench::ListStacksBench(std::move(flags));
  if (mode == "dump") return bench::DumpBench(std::move(flags));
  if (mode == "rss") return bench::RssBench(std::move(flags));
  if (mode == "soak") return bench::SoakBench(std::move(flags));
  if (mode == "durability") return bench::DurabilityBench(std::move(flags));
  return bench::Usage();
}
