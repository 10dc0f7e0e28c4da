// pageowner-bench: figures that need more than a micro-benchmark.
//   pageowner-bench memory [--gib N] [--events N] [--stacks N]
// prints the seed patch's memory table side by side with ours, for a machine after a mixed
// workload.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "core/machine.h"
#include "core/workload.h"

namespace pageowner {
namespace {

// Resident set size of this process, from /proc/self/status.
uint64_t RssBytes() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

std::string Commas(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

int Usage() {
  std::cerr << "usage: pageowner-bench memory [--gib N] [--events N] [--stacks N]\n";
  return 2;
}

int Memory(int argc, char** argv) {
  uint64_t gib = 4, events = 4000000;
  uint32_t stacks = 10000;
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
    if (!value("--gib", &gib) && !value("--events", &events) && !value("--stacks", &stacks)) {
      return Usage();
    }
  }
  const uint64_t rss0 = RssBytes();
  MachineOptions mo;
  mo.pages = PageCount(gib << 18);
  Machine m(mo);
  WorkloadOptions wo;
  wo.pages = mo.pages.raw();
  wo.stacks = stacks;
  Workload w(wo);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < events; ++i) {
    const WorkloadEvent e = w.Next();
    const EventResult r = m.Apply(w.ToMachineEvent(e));
    w.Observe(e, r.status.ok(), r.pfn);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t rss1 = RssBytes();

  const uint64_t pages = mo.pages.raw();
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
  return 0;
}

}  // namespace
}  // namespace pageowner

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "memory") == 0) {
    return pageowner::Memory(argc - 2, argv + 2);
  }
  return pageowner::Usage();
}
