// Round trip of the real dumps through Machine::Import and PageOwnerText.
#include <string>
#include <vector>

#include "core/dump_parser.h"
#include "core/machine.h"
#include "core/reports.h"
#include "gtest/gtest.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

using ::pageowner::testing::ReadXz;

void RoundTrip(const std::string& name, DumpFormat format) {
  const std::string text = ReadXz(name);
  Machine m(MachineOptions{.pages = PageCount(0x20000), .tracking = false});
  std::vector<uint64_t> frames;
  PrintedExtras extras;
  int failed = 0;
  ParseDump(text, [&](const DumpBlock& b) {
    frames.clear();
    for (const DumpFrame& f : b.frames) {
      frames.push_back(f.address ? *f.address : m.symbols().SyntheticAddress(f.symbol));
    }
    extras.page_flags = b.flags;
    extras.flags_text = std::string(b.flags_text);
    extras.gfp_names = std::string(b.gfp_names);
    extras.slab_cache = b.slab;
    extras.memcg.clear();
    if (b.charged) {
      extras.memcg = std::string("Charged ") + (b.memcg_via_objcg ? "(via objcg) " : "") + "to " +
                     (b.memcg_offline ? "offline " : "") + "memcg " + std::string(b.memcg_name);
    }
    absl::StatusOr<EventResult> r = m.Import({.pfn = b.pfn,
                                              .order = b.order,
                                              .gfp_mask = b.gfp_mask,
                                              .frames = frames,
                                              .pid = b.pid.value_or(0),
                                              .tgid = b.tgid.value_or(0),
                                              .comm = b.comm.value_or(""),
                                              .ts_ns = b.ts_ns.value_or(0),
                                              .free_ts_ns = b.free_ts_ns.value_or(0),
                                              .last_migrate_reason = b.migrate_reason,
                                              .pageblock_migratetype = b.pageblock_migratetype,
                                              .extras = &extras});
    if (!r.ok() && failed++ < 10) ADD_FAILURE() << b.line << ": " << r.status();
  });
  const std::string out = PageOwnerText(m, format);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(out.size(), text.size());
  if (out != text) {
    size_t i = 0;
    while (i < out.size() && i < text.size() && out[i] == text[i]) ++i;
    const size_t from = i > 300 ? i - 300 : 0;
    ADD_FAILURE() << "differs at " << i << "\nours:\n"
                  << out.substr(from, 600) << "\ntheirs:\n"
                  << text.substr(from, 600);
  }
}

TEST(ImportRoundTrip, Linux612) { RoundTrip("linux-6.12/page_owner.txt.xz", DumpFormat::kToday); }
TEST(ImportRoundTrip, Linux61) { RoundTrip("linux-6.1/page_owner.txt.xz", DumpFormat::kFreeTs); }

}  // namespace
}  // namespace pageowner
