// Google Benchmark figures for the core: depot saves, alloc + free with tracking, record lookup,
// and the whole Machine on the synthetic workload. `build/bin/core_bench`.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/machine.h"
#include "core/stack_depot.h"
#include "core/workload.h"

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
    held.push_back(m.Alloc({.order = Order(0), .gfp_mask = 0xcc0, .frames = stacks[i % 1000]})->pfn);
  }
  size_t i = 0;
  for (auto _ : state) {
    const Pfn p = m.Alloc({.order = Order(0), .gfp_mask = 0xcc0, .frames = stacks[i % 1000],
                           .pid = 1, .tgid = 1, .comm = "bench", .ts_ns = i})
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

// Machine::Apply on the synthetic workload (10,000 stacks of 16 frames, 70% full 4 GiB).
void BM_MachineApplyWorkload(benchmark::State& state) {
  WorkloadOptions wo;
  Workload w(wo);
  Machine m(MachineOptions{});
  constexpr int kEvents = 1 << 16;
  // Warm up to the fill level, so the figure is the steady state.
  for (int i = 0; i < 1500000; ++i) {
    const WorkloadEvent e = w.Next();
    const EventResult r = m.Apply(w.ToMachineEvent(e));
    w.Observe(e, r.status.ok(), r.pfn);
  }
  std::vector<WorkloadEvent> events;
  for (auto _ : state) {
    for (int i = 0; i < kEvents; ++i) {
      const WorkloadEvent e = w.Next();
      const EventResult r = m.Apply(w.ToMachineEvent(e));
      w.Observe(e, r.status.ok(), r.pfn);
    }
  }
  state.SetItemsProcessed(state.iterations() * kEvents);
}
BENCHMARK(BM_MachineApplyWorkload)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace pageowner
