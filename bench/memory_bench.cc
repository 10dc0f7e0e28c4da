// pageowner-bench memory [--gib N] [--events N] [--stacks N]: the seed patch's memory table side
// by side with ours, in process.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "core/machine.h"
#include "core/workload.h"

namespace pageowner::bench {
namespace {

struct MemoryConfig {
  uint64_t gib = 4;
  uint64_t events = 4000000;
  uint32_t stacks = 10000;
};

// Only "--name=value" here; false for anything else.
bool ParseMemoryFlags(int argc, char** argv, MemoryConfig* c) {
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag, auto* out) {
      if (a.rfind(flag, 0) != 0 || a.size() <= flag.size() || a[flag.size()] != '=') return false;
      const std::string v(a.substr(flag.size() + 1));
      if (!absl::SimpleAtoi(v, out)) {
        std::cerr << "pageowner-bench: bad value for " << flag << ": " << v << "\n";
        std::exit(2);
      }
      return true;
    };
    if (!value("--gib", &c->gib) && !value("--events", &c->events) &&
        !value("--stacks", &c->stacks)) {
      return false;
    }
  }
  return true;
}

// Our layout's bytes against the kernel's, for the machine `m` after the workload.
void PrintMemoryTable(Machine& m, uint64_t pages, const MemoryConfig& c, double secs, uint64_t rss0,
                      uint64_t rss1) {
  const uint64_t gib = c.gib, events = c.events;
  const uint32_t stacks = c.stacks;
  const MachineMemory mem = m.MemoryUsage();
  const StackDepotStats ds = m.depot().stats();
  // The kernel's depot for the same stacks: a record is about (frames + 3) x 8 bytes, in 16 KiB
  // pools (the seed's 2016 depot used 16 KiB slabs the same way).
  uint64_t kernel_record_bytes = 0;
  m.depot().ForEachStack(
      [&](const StackUsage& s) { kernel_record_bytes += (s.frames.size() + 3) * 8; });
  const uint64_t kernel_depot = (kernel_record_bytes + 16383) / 16384 * 16384;
  const uint64_t our_depot = uint64_t{ds.pools} * 16384;
  const uint64_t our_static = mem.records + mem.allocator + mem.contexts + mem.symbols;

  absl::PrintF(
      "pageowner-bench memory: %d GiB machine (%s pages), %s events in %.2f s, %d "
      "stacks of 16 frames, %.1f%% of pages allocated, %s stacks stored\n\n",
      gib, Commas(pages), Commas(events), secs, stacks,
      100.0 * m.allocator().allocated_pages().raw() / pages, Commas(ds.persistent_count));
  absl::PrintF("%-40s %8s %16s %14s %16s\n", "layout", "B/page", "per-page bytes", "depot bytes",
               "total bytes");
  auto row = [&](const char* name, double per_page, uint64_t depot) {
    const auto fixed = static_cast<uint64_t>(per_page * static_cast<double>(pages));
    absl::PrintF("%-40s %8.2f %16s %14s %16s\n", name, per_page, Commas(fixed), Commas(depot),
                 Commas(fixed + depot));
  };
  row("2016 inline, 8 frames (before the seed)", 88, 0);
  row("2016 depot handle (the seed)", 24, kernel_depot);
  row("today's kernel (page_owner + page_ext)", 72, kernel_depot);
  row("pageowner: every modern field", static_cast<double>(our_static) / pages, our_depot);
  absl::PrintF(
      "\npageowner parts: records %s (%.2f B/page), allocator %s (%.2f B/page), "
      "contexts %s, symbols %s, depot pools %d (%s bytes of records)\n",
      Commas(mem.records), static_cast<double>(mem.records) / pages, Commas(mem.allocator),
      static_cast<double>(mem.allocator) / pages, Commas(mem.contexts), Commas(mem.symbols),
      ds.pools, Commas(ds.persistent_bytes));
  absl::PrintF("bytes per stored stack: ours %.1f, the kernel's formula (frames + 3) x 8 = %.1f\n",
               static_cast<double>(ds.persistent_bytes) / ds.persistent_count,
               static_cast<double>(kernel_record_bytes) / ds.persistent_count);
  absl::PrintF(
      "process RSS growth: %s bytes (%.2f B/page; includes the workload generator's own "
      "state)\n",
      Commas(rss1 - rss0), static_cast<double>(rss1 - rss0) / pages);
  absl::PrintF("memory: ours=%.2f B/page kernel=72 B/page ratio=%.3f\n",
               static_cast<double>(our_static + our_depot) / pages,
               static_cast<double>(our_static + our_depot) / pages / 72.0);
}

}  // namespace

int MemoryBench(int argc, char** argv) {
  MemoryConfig c;
  if (!ParseMemoryFlags(argc, argv, &c)) return Usage();
  const uint64_t rss0 = RssBytes();
  MachineOptions mo;
  mo.pages = PageCount(c.gib << 18);
  Machine m(mo);
  WorkloadOptions wo;
  wo.pages = mo.pages.raw();
  wo.stacks = c.stacks;
  Workload w(wo);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < c.events; ++i) {
    const WorkloadEvent e = w.Next();
    const EventResult r = m.Apply(w.ToMachineEvent(e));
    w.Observe(e, r.status.ok(), r.pfn);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t rss1 = RssBytes();
  PrintMemoryTable(m, mo.pages.raw(), c, secs, rss0, rss1);
  return 0;
}

}  // namespace pageowner::bench
