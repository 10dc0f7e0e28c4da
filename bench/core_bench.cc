// Google Benchmark figures for the core: depot saves, alloc + free with tracking, record lookup,
// the whole Machine on the synthetic workload, and (with the tests built, for their data) the dump
// and ftrace parsers and page_owner_sort on the real 6.12 files. `build/bin/core_bench`.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/dump_parser.h"
#include "core/ftrace_parser.h"
#include "core/machine.h"
#include "core/page_owner_sort.h"
#include "core/stack_depot.h"
#include "core/workload.h"
#ifdef PAGEOWNER_BENCH_TEST_DATA
#include "tests/support/test_data.h"
#endif

namespace pageowner {
namespace {

std::vector<std::vector<uint64_t>> Stacks(int n, int depth) {
  std::vector<std::vector<uint64_t>> s(n, std::vector<uint64_t>(depth));
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < depth; ++k) s[i][k] = 0xffffffff81000000ULL + i * 0x10000ULL + k * 0x40;
  }
  return s;
}

// Saving a stack the depot already holds: the lock-free lookup path.
void BM_DepotSaveExisting(benchmark::State& state) {
  StackDepot depot(StackDepotOptions{}, nullptr);
  const auto stacks = Stacks(10000, 16);
  for (const auto& s : stacks) depot.Save(s);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(depot.Save(stacks[i]));
    if (++i == stacks.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DepotSaveExisting);
BENCHMARK(BM_DepotSaveExisting)->Threads(2);

// Saving stacks never seen: hash, lock, copy into the pool.
void BM_DepotSaveNew(benchmark::State& state) {
  const int kBatch = 50000;
  const auto stacks = Stacks(kBatch, 16);
  for (auto _ : state) {
    state.PauseTiming();
    StackDepot depot(StackDepotOptions{}, nullptr);
    state.ResumeTiming();
    for (const auto& s : stacks) benchmark::DoNotOptimize(depot.Save(s));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_DepotSaveNew)->Unit(benchmark::kMillisecond);

// An order-0 allocation and its free, with page_owner on, on a half-full 4 GiB machine.
void BM_AllocFreeTracking(benchmark::State& state) {
  Machine m(MachineOptions{});
  const auto stacks = Stacks(1000, 16);
  std::vector<Pfn> held;
  for (int i = 0; i < 500000; ++i) {
    held.push_back(
        m.Alloc({.order = Order(0), .gfp_mask = 0xcc0, .frames = stacks[i % 1000]})->pfn);
  }
  size_t i = 0;
  for (auto _ : state) {
    const Pfn p = m.Alloc({.order = Order(0),
                           .gfp_mask = 0xcc0,
                           .frames = stacks[i % 1000],
                           .pid = 1,
                           .tgid = 1,
                           .comm = "bench",
                           .ts_ns = i})
                      ->pfn;
    benchmark::DoNotOptimize(m.Free({.pfn = p, .order = Order(0), .frames = stacks[0]}));
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AllocFreeTracking);

// Reading the owner of the block that holds a pfn.
void BM_BlockOwnerLookup(benchmark::State& state) {
  Machine m(MachineOptions{});
  const auto stacks = Stacks(1000, 16);
  std::vector<Pfn> held;
  for (int i = 0; i < 500000; ++i) {
    held.push_back(m.Alloc({.order = Order(i % 4 == 0 ? 2 : 0), .frames = stacks[i % 1000]})->pfn);
  }
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(m.BlockOwner(held[i]));
    if (++i == held.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BlockOwnerLookup);

// Machine::Apply alone on the synthetic workload (10,000 stacks of 16 frames, orders mostly 0,
// frees and migrations mixed in, a 4 GiB machine kept 70% full). The events are generated and
// recorded first by running the workload against a twin machine: the Machine is deterministic,
// so replaying the same events on a fresh twin gives the same results, and only Apply is timed.
void BM_MachineApplyWorkload(benchmark::State& state) {
  constexpr int kWarmup = 1500000;
  constexpr int kTimed = 2000000;
  WorkloadOptions wo;
  Workload w(wo);
  std::vector<WorkloadEvent> events;
  events.reserve(kWarmup + kTimed);
  {
    Machine recorder{MachineOptions{}};
    for (int i = 0; i < kWarmup + kTimed; ++i) {
      WorkloadEvent e = w.Next();
      const EventResult r = recorder.Apply(w.ToMachineEvent(e));
      w.Observe(e, r.status.ok(), r.pfn);
      events.push_back(e);
    }
  }
  std::vector<Event> machine_events;
  machine_events.reserve(events.size());
  for (const WorkloadEvent& e : events) machine_events.push_back(w.ToMachineEvent(e));
  for (auto _ : state) {
    state.PauseTiming();
    auto m = std::make_unique<Machine>(MachineOptions{});
    for (int i = 0; i < kWarmup; ++i) m->Apply(machine_events[i]);
    state.ResumeTiming();
    uint64_t failed = 0;
    if (state.range(0) == 0) {
      for (int i = kWarmup; i < kWarmup + kTimed; ++i) {
        failed += !m->Apply(machine_events[i]).status.ok();
      }
    } else {
      // As an ingest stream does: remember the handle each stack got and pass it as a hint.
      std::vector<StackHandle> hints(w.num_stacks());
      for (int i = kWarmup; i < kWarmup + kTimed; ++i) {
        const uint32_t stack = events[i].stack;
        std::visit([&](auto& ev) { ev.stack_hint = hints[stack]; }, machine_events[i]);
        const EventResult r = m->Apply(machine_events[i]);
        failed += !r.status.ok();
        hints[stack] = r.handle;
      }
    }
    state.PauseTiming();
    if (failed != 0)
      state.SkipWithError("replayed events failed: the machine is not deterministic");
    m.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kTimed);
}
BENCHMARK(BM_MachineApplyWorkload)
    ->ArgName("stack_hints")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true);

}  // namespace
}  // namespace pageowner

#ifdef PAGEOWNER_BENCH_TEST_DATA
namespace pageowner {
namespace {

// ---- The kernel's text formats, on the real 6.12 files of tests/data ----
// These were wall-clock limits inside the unit tests; here they are figures. The budget
// is a 125 MiB dump imported in under 3 s, of which parsing is one part.

const std::string& RealText(const char* name) {
  static auto* cache = new std::map<std::string, std::string>();
  auto it = cache->find(name);
  if (it == cache->end()) it = cache->emplace(name, testing::ReadXz(name)).first;
  return it->second;
}

// The 6.12 dump (22 MB) in 1 MiB chunks: bytes/s is the parser's share of the import budget.
void BM_DumpParser(benchmark::State& state) {
  const std::string& text = RealText("linux-6.12/page_owner.txt.xz");
  for (auto _ : state) {
    uint64_t blocks = 0;
    DumpParser parser([&](const DumpBlock&) { ++blocks; });
    for (size_t at = 0; at < text.size(); at += 1 << 20) {
      parser.Feed(std::string_view(text).substr(at, 1 << 20));
    }
    parser.Finish();
    if (blocks != 33510 || parser.report().problems_total != 0) {
      state.SkipWithError("the 6.12 dump did not parse cleanly");
    }
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_DumpParser)->Unit(benchmark::kMillisecond);

// The 6.12 kmem trace with stacks, in 64 KiB chunks.
void BM_FtraceParser(benchmark::State& state) {
  const std::string& text = RealText("linux-6.12/ftrace_kmem.txt.xz");
  for (auto _ : state) {
    uint64_t events = 0;
    FtraceParser parser([&](const TraceEvent&) { ++events; });
    for (size_t at = 0; at < text.size(); at += 1 << 16) {
      parser.Feed(std::string_view(text).substr(at, 1 << 16));
    }
    parser.Finish();
    if (events != 54665) state.SkipWithError("the 6.12 trace did not parse cleanly");
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_FtraceParser)->Unit(benchmark::kMillisecond);

// page_owner_sort reading the 6.12 dump (the field regexes of every block).
void BM_PageOwnerSortLoad(benchmark::State& state) {
  const std::string& text = RealText("linux-6.12/page_owner.txt.xz");
  for (auto _ : state) {
    PageOwnerSorter sorter;
    sorter.AddText(text);
    benchmark::DoNotOptimize(sorter.blocks());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_PageOwnerSortLoad)->Unit(benchmark::kMillisecond);

// One report over the loaded 6.12 dump: 0 the default (-t), 1 -m, 2 --cull=stacktrace, 3 -a.
void BM_PageOwnerSortReport(benchmark::State& state) {
  static const std::vector<std::string> kArgs[] = {{}, {"-m"}, {"--cull=stacktrace"}, {"-a"}};
  PageOwnerSorter sorter;
  sorter.AddText(RealText("linux-6.12/page_owner.txt.xz"));
  const SortOptions options = ParseSortArgs(kArgs[state.range(0)]).value();
  for (auto _ : state) benchmark::DoNotOptimize(sorter.Report(options).records);
  state.SetItemsProcessed(state.iterations() * sorter.blocks());
}
BENCHMARK(BM_PageOwnerSortReport)->DenseRange(0, 3)->Unit(benchmark::kMillisecond);

// A block whose second line is N bytes of "tgid (ts pid order " that never complete a match:
// the field regexes must stay linear in N (a backtracking matcher is quadratic here).
void BM_PageOwnerSortPathologicalLine(benchmark::State& state) {
  std::string line;
  while (line.size() < static_cast<size_t>(state.range(0))) line += "tgid (ts pid order ";
  const std::string dump =
      "Page allocated via order 0, mask 0x0()\n" + line + "\n get_page_from_freelist+0x1/0x2\n\n";
  const SortOptions options = ParseSortArgs({"--cull=pid,name"}).value();
  for (auto _ : state) benchmark::DoNotOptimize(SortPageOwnerDump(dump, options).records);
  state.SetComplexityN(state.range(0));
}
BENCHMARK(BM_PageOwnerSortPathologicalLine)
    ->RangeMultiplier(2)
    ->Range(1 << 13, 1 << 16)
    ->Arg(120000)  // the unit test's line; the tool's 128 KiB buffer caps a block
    ->Complexity(benchmark::oN);

}  // namespace
}  // namespace pageowner
#endif  // PAGEOWNER_BENCH_TEST_DATA
