// The page_owner dump parser (all three generations) over any bytes, then Machine::Import of
// what it parsed on a small machine, whose invariants are checked after. Properties: no crash,
// the same blocks whatever the chunking of the input, and a consistent machine.
// GCC 12 reports std::optional<MigrateType>'s payload as maybe-uninitialized here (a known false
// positive of -Wmaybe-uninitialized with optional of small enums at -O2).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dump_parser.h"
#include "core/machine.h"
#include "core/reports.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

// Blocks as counted by a fingerprint, to compare two parses of the same text.
struct Seen {
  uint64_t blocks = 0;
  uint64_t sum = 0;
  void Add(const DumpBlock& b) {
    ++blocks;
    sum = sum * 31 + b.pfn.raw() * 7 + b.order.raw() + b.frames.size() * 131 + b.line;
  }
};

void Run(std::string_view text) {
  Machine m(FuzzMachineOptions(/*tracking=*/false));
  std::vector<uint64_t> frames;
  PrintedExtras extras;
  Seen whole;
  // Small caps (the kernel prints at most 16 frames): the parser reserves a block's worth of
  // buffer up front, and a megabyte a run costs more than the parse.
  const DumpParserOptions options{.max_line_bytes = 512, .max_frames = 32};
  const ParseReport report = ParseDump(
      text,
      [&](const DumpBlock& b) {
        whole.Add(b);
        frames.clear();
        for (const DumpFrame& f : b.frames) {
          frames.push_back(f.address ? *f.address : m.symbols().SyntheticAddress(f.symbol));
        }
        extras.page_flags = b.flags;
        extras.flags_text = std::string(b.flags_text);
        extras.gfp_names = std::string(b.gfp_names);
        extras.slab_cache = b.slab;
        extras.memcg = b.charged ? std::string(b.memcg_name) : std::string();
        // Real dumps' pfns are folded into the small machine, so that their imports land.
        const bool simulated = b.pageblock_migratetype.has_value() &&
                               static_cast<int>(*b.pageblock_migratetype) < kNumFreeListTypes;
        const std::optional<MigrateType> block_mt =
            simulated ? b.pageblock_migratetype : std::optional<MigrateType>();
        m.Apply(ImportEvent{.pfn = Pfn(b.pfn.raw() % kFuzzMachinePages),
                            .order = b.order,
                            .gfp_mask = b.gfp_mask,
                            .frames = frames,
                            .pid = b.pid.value_or(0),
                            .tgid = b.tgid.value_or(0),
                            .comm = b.comm.value_or(""),
                            .ts_ns = b.ts_ns.value_or(0),
                            .free_ts_ns = b.free_ts_ns.value_or(0),
                            .last_migrate_reason = b.migrate_reason,
                            .pageblock_migratetype = block_mt,
                            .extras = &extras});
      },
      options);
  PO_FUZZ_CHECK(report.records == whole.blocks, "records counted differ from blocks delivered");

  // Any chunking gives the same blocks and problems (dump_parser.h).
  Seen chunked;
  DumpParser parser([&](const DumpBlock& b) { chunked.Add(b); }, options);
  const size_t step = 1 + (text.empty() ? 0 : static_cast<uint8_t>(text[0]) % 61);
  for (size_t at = 0; at < text.size(); at += step) parser.Feed(text.substr(at, step));
  parser.Finish();
  PO_FUZZ_CHECK(chunked.blocks == whole.blocks && chunked.sum == whole.sum,
                "chunked parse gave other blocks");
  PO_FUZZ_CHECK(parser.report().problems_total == report.problems_total,
                "chunked parse gave other problems");

  // Tracking on makes every imported block's untracked neighbour (the depot's pools) early
  // pages; the check covers the import and that.
  m.SetTracking(true, 1);
  CheckMachine(m);
  // What the import printed back, in every generation's text.
  (void)PageOwnerText(m, DumpFormat::kToday);
  (void)PageOwnerText(m, DumpFormat::k2016);
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(pageowner::fuzz::AsText(data, size));
  return 0;
}
