#include "core/ftrace_parser.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/kernel_flags.h"
#include "gtest/gtest.h"
#include "tests/support/test_data.h"

namespace pageowner {
namespace {

using ::pageowner::testing::ReadTestFile;
using ::pageowner::testing::ReadXz;

// The '|'-separated names, sorted.
std::vector<std::string> NameSet(std::string_view names) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= names.size()) {
    size_t bar = names.find('|', at);
    if (bar == std::string_view::npos) bar = names.size();
    out.emplace_back(names.substr(at, bar - at));
    at = bar + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<uint64_t, ParseProblemKind>> Problems(const ParseReport& r) {
  std::vector<std::pair<uint64_t, ParseProblemKind>> out;
  for (const ParseProblem& p : r.problems) out.emplace_back(p.line, p.kind);
  return out;
}

// An owned copy of an event.
struct Event {
  uint64_t line = 0;
  TraceEventKind kind = TraceEventKind::kAlloc;
  std::string comm;
  int32_t pid = 0;
  std::optional<int32_t> tgid;
  uint32_t cpu = 0;
  std::string irq_flags;
  uint64_t ts = 0;
  std::string page;
  uint64_t pfn = 0;
  bool pfn_hex = false;
  unsigned order = 0;
  int32_t migratetype = 0;
  uint32_t gfp_mask = 0;
  std::string gfp_names;
  bool gfp_unknown = false;
  bool failed = false;
  bool has_stack = false;
  uint64_t stack_line = 0;
  bool stack_truncated = false;
  std::vector<std::string> frames;

  explicit Event(const TraceEvent& e)
      : line(e.line),
        kind(e.kind),
        comm(e.comm),
        pid(e.pid),
        tgid(e.tgid),
        cpu(e.cpu),
        irq_flags(e.irq_flags),
        ts(e.timestamp_ns),
        page(e.page),
        pfn(e.pfn.raw()),
        pfn_hex(e.pfn_hex),
        order(e.order.raw()),
        migratetype(e.migratetype),
        gfp_mask(e.gfp_mask),
        gfp_names(e.gfp_names),
        gfp_unknown(e.gfp_names_unknown),
        failed(e.failed()),
        has_stack(e.has_stack),
        stack_line(e.stack_line),
        stack_truncated(e.stack_truncated),
        frames(e.frames.begin(), e.frames.end()) {}

  // Everything, for comparing runs.
  std::string Key() const {
    std::ostringstream o;
    o << line << "|" << static_cast<int>(kind) << "|" << comm << "|" << pid << "|"
      << (tgid ? *tgid : -999) << "|" << cpu << "|" << irq_flags << "|" << ts << "|" << page << "|"
      << pfn << "|" << pfn_hex << "|" << order << "|" << migratetype << "|" << gfp_mask << "|"
      << gfp_names << "|" << gfp_unknown << "|" << has_stack << "|" << stack_line << "|"
      << stack_truncated;
    for (const std::string& f : frames) o << "|" << f;
    return o.str();
  }
};

struct Parsed {
  std::vector<Event> events;
  ParseReport report;
  TraceHeader header;
  uint64_t lost = 0;
};

Parsed ParseChunked(std::string_view text, size_t chunk, FtraceParserOptions options = {}) {
  Parsed p;
  FtraceParser parser([&](const TraceEvent& e) { p.events.emplace_back(e); }, options);
  for (size_t i = 0; i < text.size(); i += chunk) parser.Feed(text.substr(i, chunk));
  parser.Finish();
  p.report = parser.report();
  p.header = parser.header();
  p.lost = parser.lost_events();
  return p;
}

// ---- Real traces ----

struct TraceCounts {
  uint64_t events = 0, allocs = 0, frees = 0, with_stack = 0, max_frames = 0;
  uint64_t first_ts = 0, last_ts = 0;
  std::map<unsigned, uint64_t> alloc_orders, free_orders;
  uint64_t out_of_order = 0;       // lines or timestamps going backwards
  uint64_t wrong_first_frame = 0;  // a stack that does not start in the event's tracepoint
  uint64_t failed = 0, unknown_gfp = 0, decimal_pfn = 0;
  uint64_t gfp_other_names = 0;  // FormatGfpNames(mask) has other names than the trace's
  uint64_t gfp_other_order = 0;  // the same names in another order
};

TraceCounts CountTrace(const std::string& name, ParseReport* report, TraceHeader* header) {
  const std::string text = ReadXz(name);
  TraceCounts c;
  uint64_t prev_line = 0;
  FtraceParser parser([&](const TraceEvent& e) {
    if (c.events == 0) c.first_ts = e.timestamp_ns;
    if (e.line < prev_line || e.timestamp_ns < c.last_ts) ++c.out_of_order;
    prev_line = e.line;
    c.last_ts = e.timestamp_ns;
    ++c.events;
    if (e.kind == TraceEventKind::kAlloc) {
      ++c.allocs;
      ++c.alloc_orders[e.order.raw()];
      const std::string ours = FormatGfpNames(e.gfp_mask);
      if (NameSet(ours) != NameSet(e.gfp_names)) {
        ++c.gfp_other_names;
      } else if (ours != e.gfp_names) {
        ++c.gfp_other_order;
      }
    } else {
      ++c.frees;
      ++c.free_orders[e.order.raw()];
    }
    if (e.has_stack) ++c.with_stack;
    c.max_frames = std::max<uint64_t>(c.max_frames, e.frames.size());
    const std::string want =
        "trace_event_raw_event_" + std::string(TraceEventKindName(e.kind)) + "+";
    if (e.frames.empty() || e.frames[0].substr(0, want.size()) != want) ++c.wrong_first_frame;
    if (e.failed()) ++c.failed;
    if (e.gfp_names_unknown) ++c.unknown_gfp;
    if (!e.pfn_hex) ++c.decimal_pfn;
  });
  constexpr size_t kChunk = 1 << 16;
  for (size_t i = 0; i < text.size(); i += kChunk) {
    parser.Feed(std::string_view(text).substr(i, kChunk));
  }
  parser.Finish();
  *report = parser.report();
  *header = parser.header();
  EXPECT_EQ(parser.stacks(), c.with_stack);
  EXPECT_EQ(parser.lost_events(), 0u);
  EXPECT_EQ(report->bytes, text.size());
  return c;
}

TEST(FtraceParserRealTest, Linux612Trace) {
  ParseReport r;
  TraceHeader h;
  const TraceCounts c = CountTrace("linux-6.12/ftrace_kmem.txt.xz", &r, &h);
  EXPECT_EQ(r.problems_total, 0u) << r.Summary();
  EXPECT_EQ(r.count(ParseProblemKind::kUnknownLine), 0u);
  EXPECT_EQ(r.records, 54665u);
  EXPECT_EQ(c.events, 54665u);
  EXPECT_EQ(c.allocs, 29547u);
  EXPECT_EQ(c.frees, 25118u);
  EXPECT_EQ(c.with_stack, c.events);
  EXPECT_EQ(c.alloc_orders,
            (std::map<unsigned, uint64_t>{{0, 28877}, {1, 534}, {2, 74}, {3, 54}, {9, 8}}));
  EXPECT_EQ(c.free_orders, (std::map<unsigned, uint64_t>{{0, 24522}, {1, 513}, {2, 43}, {3, 40}}));
  EXPECT_EQ(c.first_ts, 51809253000u);
  EXPECT_EQ(c.last_ts, 62507006000u);
  EXPECT_EQ(c.max_frames, 31u);
  EXPECT_EQ(c.out_of_order, 0u);
  EXPECT_EQ(c.wrong_first_frame, 0u);
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.unknown_gfp, 0u);
  EXPECT_EQ(c.decimal_pfn, 0u);
  // The mask read back has the same names as the trace printed; 6.12's tracepoint prints them
  // in another order than today's %pGg for most events (e.g. "GFP_KERNEL_ACCOUNT|__GFP_COMP|
  // __GFP_ZERO"), which is why names are kept as printed.
  EXPECT_EQ(c.gfp_other_names, 0u);
  EXPECT_GT(c.gfp_other_order, 0u);
  // Each event and each stack is one ring-buffer entry.
  EXPECT_EQ(h.tracer, "nop");
  EXPECT_EQ(h.entries_in_buffer, 109330u);
  EXPECT_EQ(h.entries_written, 109330u);
  EXPECT_EQ(h.cpus, 2u);
  EXPECT_EQ(c.events + c.with_stack, *h.entries_in_buffer);
}

// 6.1 nests interrupt events between an event and its stack (see ftrace_nested.txt).
TEST(FtraceParserRealTest, Linux61Trace) {
  ParseReport r;
  TraceHeader h;
  const TraceCounts c = CountTrace("linux-6.1/ftrace_kmem.txt.xz", &r, &h);
  EXPECT_EQ(r.problems_total, 0u) << r.Summary();
  EXPECT_EQ(c.events, 52442u);
  EXPECT_EQ(c.allocs, 28026u);
  EXPECT_EQ(c.frees, 24416u);
  EXPECT_EQ(c.with_stack, c.events);
  EXPECT_EQ(c.alloc_orders,
            (std::map<unsigned, uint64_t>{{0, 27376}, {1, 531}, {2, 56}, {3, 55}, {9, 8}}));
  EXPECT_EQ(c.free_orders, (std::map<unsigned, uint64_t>{{0, 23840}, {1, 513}, {2, 23}, {3, 40}}));
  EXPECT_EQ(c.first_ts, 64456027000u);
  EXPECT_EQ(c.last_ts, 74417110000u);
  EXPECT_EQ(c.max_frames, 31u);
  EXPECT_EQ(c.out_of_order, 0u);
  EXPECT_EQ(c.wrong_first_frame, 0u);
  EXPECT_EQ(c.unknown_gfp, 0u);
  // 6.1's GFP_NOWAIT lacked __GFP_NOWARN: "GFP_NOWAIT|__GFP_NOWARN" reads as today's GFP_NOWAIT.
  EXPECT_GT(c.gfp_other_names, 0u);
  EXPECT_EQ(c.events + c.with_stack, *h.entries_in_buffer);
}

// The first events of the 6.12 trace, field by field.
TEST(FtraceParserRealTest, FirstEventFieldByField) {
  const std::string text = ReadXz("linux-6.12/ftrace_kmem.txt.xz");
  const Parsed p = ParseChunked(std::string_view(text).substr(0, 4000), 4000);
  ASSERT_GE(p.events.size(), 2u);
  const Event& e = p.events[0];
  EXPECT_EQ(e.line, 13u);
  EXPECT_EQ(e.kind, TraceEventKind::kAlloc);
  EXPECT_EQ(e.comm, "init");
  EXPECT_EQ(e.pid, 1);
  EXPECT_FALSE(e.tgid);
  EXPECT_EQ(e.cpu, 1u);
  EXPECT_EQ(e.irq_flags, ".....");
  EXPECT_EQ(e.ts, 51809253000u);
  EXPECT_EQ(e.page, "00000000803a4b4c");
  EXPECT_EQ(e.pfn, 0x1214u);
  EXPECT_TRUE(e.pfn_hex);
  EXPECT_EQ(e.order, 1u);
  EXPECT_EQ(e.migratetype, 0);
  EXPECT_EQ(e.gfp_names, "GFP_KERNEL_ACCOUNT|__GFP_ZERO");
  EXPECT_EQ(e.gfp_mask, kGfpKernelAccount | kGfpZero);
  EXPECT_TRUE(e.has_stack);
  EXPECT_EQ(e.stack_line, 14u);
  ASSERT_EQ(e.frames.size(), 12u);
  EXPECT_EQ(e.frames[0], "trace_event_raw_event_mm_page_alloc+0x93/0xd0");
  EXPECT_EQ(e.frames[11], "entry_SYSCALL_64_after_hwframe+0x77/0x7f");
}

// ---- Handwritten traces ----

TEST(FtraceParserSampleTest, NoStacktraceOption) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_nostack.txt"), 1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  EXPECT_EQ(p.header.tracer, "nop");
  EXPECT_EQ(p.header.entries_in_buffer, 4u);
  EXPECT_EQ(p.header.cpus, 2u);
  ASSERT_EQ(p.events.size(), 4u);
  for (const Event& e : p.events) {
    EXPECT_FALSE(e.has_stack);
    EXPECT_FALSE(e.stack_truncated);  // a trace without stacks expects none
    EXPECT_TRUE(e.frames.empty());
  }
  EXPECT_EQ(p.events[0].line, 13u);
  EXPECT_EQ(p.events[1].kind, TraceEventKind::kFree);
  EXPECT_EQ(p.events[1].irq_flags, "...1.");
  EXPECT_EQ(p.events[1].pfn, 0x2a6eu);
  EXPECT_EQ(p.events[1].order, 1u);
  EXPECT_EQ(p.events[2].kind, TraceEventKind::kFreeBatched);
  EXPECT_EQ(p.events[2].comm, "<idle>");
  EXPECT_EQ(p.events[2].pid, 0);
  EXPECT_EQ(p.events[2].order, 0u);
  // A failed allocation: no page, gfp_flags "none".
  EXPECT_TRUE(p.events[3].failed);
  EXPECT_FALSE(p.events[0].failed);
  EXPECT_EQ(p.events[3].gfp_mask, 0u);
  EXPECT_EQ(p.events[3].gfp_names, "none");
  EXPECT_EQ(p.events[3].migratetype, 1);
}

TEST(FtraceParserSampleTest, DecimalPfnOldKernel) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_decimal_pfn.txt"), 1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_FALSE(p.events[0].pfn_hex);
  EXPECT_EQ(p.events[0].pfn, 508771u);
  EXPECT_EQ(p.events[0].page, "ffffea0001f0d8c0");
  EXPECT_EQ(p.events[0].cpu, 2u);
  EXPECT_EQ(p.events[0].irq_flags, "....");
  EXPECT_EQ(p.events[0].ts, 123456789000u);
  EXPECT_EQ(p.events[0].gfp_mask, kGfpHighuserMovable);
  EXPECT_EQ(p.events[0].frames, (std::vector<std::string>{"__alloc_pages_nodemask+0x1b5/0xc20",
                                                          "alloc_pages_vma+0xb1/0x260"}));
  EXPECT_EQ(p.events[1].kind, TraceEventKind::kFree);
  EXPECT_EQ(p.events[1].irq_flags, "d..1");
  EXPECT_EQ(p.events[1].frames, (std::vector<std::string>{"free_hot_cold_page+0x3f/0x170"}));
}

TEST(FtraceParserSampleTest, SymOffsetOff) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_nosymoffset.txt"), 1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_EQ(p.events[0].frames, (std::vector<std::string>{"trace_event_raw_event_mm_page_alloc",
                                                          "__alloc_pages_noprof", "pgd_alloc"}));
  EXPECT_EQ(p.events[1].frames,
            (std::vector<std::string>{"trace_event_raw_event_mm_page_free", "free_unref_page"}));
}

TEST(FtraceParserSampleTest, TaskNamesWithSpacesAndDashesAndTgids) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_tasknames.txt"), 1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  ASSERT_EQ(p.events.size(), 6u);
  const std::vector<std::tuple<std::string, int32_t, std::optional<int32_t>, uint32_t>> want = {
      {"Web Content", 4242, 4240, 0},
      {"kworker/u4:2-ev", 57, std::nullopt, 1},
      {"my-task-name", 99, 99, 0},
      {"<...>", 4321, 4321, 1},
      {"<idle>", 0, 0, 0},
      {"weird: name", 7, 7, 1},
  };
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(p.events[i].comm, std::get<0>(want[i])) << i;
    EXPECT_EQ(p.events[i].pid, std::get<1>(want[i])) << i;
    EXPECT_EQ(p.events[i].tgid, std::get<2>(want[i])) << i;
    EXPECT_EQ(p.events[i].cpu, std::get<3>(want[i])) << i;
    EXPECT_EQ(p.events[i].ts, 100000001000u + i * 1000) << i;
    EXPECT_EQ(p.events[i].pfn, 0x100u + i) << i;
  }
  EXPECT_EQ(p.events[1].irq_flags, "d..2.");
  EXPECT_EQ(p.events[3].gfp_mask, kGfpKernel | kGfpComp);
}

// An interrupt's event and stack between a task's event and the task's stack, on one CPU, and
// another CPU's entries in between too: each stack goes to its own event; output in line order.
TEST(FtraceParserSampleTest, NestedInterruptAndInterleavedCpus) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_nested.txt"), 1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  ASSERT_EQ(p.events.size(), 3u);
  EXPECT_EQ(p.events[0].line, 2u);
  EXPECT_EQ(p.events[0].stack_line, 12u);
  EXPECT_EQ(p.events[0].frames,
            (std::vector<std::string>{"trace_event_raw_event_mm_page_alloc+0x8f/0xd0",
                                      "__alloc_pages+0x25d/0x330"}));
  EXPECT_EQ(p.events[1].line, 3u);
  EXPECT_EQ(p.events[1].cpu, 1u);
  EXPECT_EQ(p.events[1].stack_line, 9u);
  EXPECT_EQ(p.events[1].frames,
            (std::vector<std::string>{"trace_event_raw_event_mm_page_free+0x8f/0xd0",
                                      "free_unref_page+0x11/0x20"}));
  EXPECT_EQ(p.events[2].line, 4u);
  EXPECT_EQ(p.events[2].irq_flags, "..s3.");
  EXPECT_EQ(p.events[2].stack_line, 5u);
  EXPECT_EQ(p.events[2].frames.size(), 3u);
  EXPECT_EQ(p.events[2].frames[2], "rcu_core+0x1c1/0x5a0");
}

TEST(FtraceParserMalformedTest, GarbageLines) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_garbage.txt"), 1 << 20);
  using K = ParseProblemKind;
  EXPECT_EQ(Problems(p.report),
            (std::vector<std::pair<uint64_t, ParseProblemKind>>{{2, K::kUnknownLine},
                                                                {7, K::kUnknownEvent},
                                                                {10, K::kBadEventLine},
                                                                {13, K::kUnknownGfpName},
                                                                {16, K::kLostEvents},
                                                                {17, K::kOrphanStack},
                                                                {20, K::kBadEventLine},
                                                                {23, K::kUnknownLine},
                                                                {24, K::kOrphanFrame}}))
      << p.report.Summary();
  EXPECT_EQ(p.lost, 17u);
  EXPECT_EQ(p.report.records, 3u);
  EXPECT_EQ(p.report.records_skipped, 2u);
  ASSERT_EQ(p.events.size(), 3u);
  EXPECT_EQ(p.events[0].line, 3u);
  EXPECT_EQ(p.events[0].frames.size(), 2u);
  EXPECT_EQ(p.events[1].line, 13u);
  EXPECT_TRUE(p.events[1].gfp_unknown);
  EXPECT_EQ(p.events[1].gfp_mask, kGfpKernel);  // the names known
  EXPECT_EQ(p.events[1].gfp_names, "GFP_KERNEL|__GFP_SHINY");
  EXPECT_EQ(p.events[1].frames.size(), 1u);
  EXPECT_EQ(p.events[2].line, 26u);
  EXPECT_EQ(p.events[2].frames,
            (std::vector<std::string>{"trace_event_raw_event_mm_page_free+0x1/0x2"}));
  EXPECT_NE(p.report.problems[3].detail.find("__GFP_SHINY"), std::string::npos);
}

TEST(FtraceParserMalformedTest, TruncatedStackAtEof) {
  const Parsed p = ParseChunked(ReadTestFile("import/ftrace_truncated_stack.txt"), 1 << 20);
  EXPECT_EQ(Problems(p.report),
            (std::vector<std::pair<uint64_t, ParseProblemKind>>{
                {5, ParseProblemKind::kNoFinalNewline}, {3, ParseProblemKind::kTruncatedStack}}));
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_TRUE(p.events[0].stack_truncated);
  EXPECT_EQ(p.events[0].frames,
            (std::vector<std::string>{"trace_event_raw_event_mm_page_alloc+0x93/0xd0",
                                      "__alloc_pages_nopr"}));
  EXPECT_EQ(p.report.records_truncated, 1u);
}

TEST(FtraceParserMalformedTest, StackEntryWithoutFramesAtEof) {
  const std::string text =
      "            init-1       [001] .....    51.809253: mm_page_free: page=0 pfn=0x1 order=0\n"
      "            init-1       [001] .....    51.810342: <stack trace>\n";
  const Parsed p = ParseChunked(text, 9);
  EXPECT_EQ(
      Problems(p.report),
      (std::vector<std::pair<uint64_t, ParseProblemKind>>{{2, ParseProblemKind::kTruncatedStack}}));
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_TRUE(p.events[0].has_stack);
  EXPECT_TRUE(p.events[0].stack_truncated);
}

// With stacks in the trace, an event at the end without its stack was cut off.
TEST(FtraceParserMalformedTest, EventWithoutItsStackAtEof) {
  const std::string text =
      "            init-1       [001] .....    51.809253: mm_page_free: page=0 pfn=0x1 order=0\n"
      "            init-1       [001] .....    51.809254: <stack trace>\n"
      " => f\n"
      "            init-1       [001] .....    51.809255: mm_page_free: page=0 pfn=0x2 order=0\n";
  const Parsed p = ParseChunked(text, 1);
  EXPECT_EQ(
      Problems(p.report),
      (std::vector<std::pair<uint64_t, ParseProblemKind>>{{4, ParseProblemKind::kTruncatedStack}}));
  ASSERT_EQ(p.events.size(), 2u);
  EXPECT_FALSE(p.events[0].stack_truncated);
  EXPECT_TRUE(p.events[1].stack_truncated);
  EXPECT_FALSE(p.events[1].has_stack);
}

TEST(FtraceParserMalformedTest, HugeNumbersAndBadTimestamps) {
  const std::string good =
      "            init-1       [001] .....    51.809253: mm_page_free: page=0 pfn=0x1 order=0\n";
  const std::vector<std::string> bad_events = {
      "  a-1 [001] .....    1.000001: mm_page_free: page=0 pfn=0x10000000000000000 order=0\n",
      "  a-1 [001] .....    1.000001: mm_page_free: page=0 pfn=18446744073709551616 order=0\n",
      "  a-1 [001] .....    1.000001: mm_page_free: page=0 pfn=0x1 order=4294967296\n",
      "  a-1 [001] .....    1.000001: mm_page_free: page=0 pfn=0x1 order=-1\n",
      "  a-1 [001] .....    1.000001: mm_page_free: page=0 pfn=0x1\n",
      "  a-1 [001] .....    1.000001: mm_page_alloc: page=0 pfn=0x1 order=0 migratetype=0\n",
      "  a-1 [001] .....    1.000001: mm_page_alloc: page=0 pfn=0x1 order=0 migratetype="
      "99999999999 gfp_flags=GFP_KERNEL\n",
  };
  for (const std::string& line : bad_events) {
    const Parsed p = ParseChunked(line + good, 1 << 20);
    EXPECT_EQ(
        Problems(p.report),
        (std::vector<std::pair<uint64_t, ParseProblemKind>>{{1, ParseProblemKind::kBadEventLine}}))
        << line;
    EXPECT_EQ(p.events.size(), 1u) << line;
  }
  // A prefix that does not parse makes the line unknown.
  const std::vector<std::string> bad_prefixes = {
      "  a-1 [001] .....    18446744074.709551: mm_page_free: page=0 pfn=0x1 order=0\n",
      "  a-1 [001] .....    1.0000000001: mm_page_free: page=0 pfn=0x1 order=0\n",
      "  a-1 [001] .....    12345: mm_page_free: page=0 pfn=0x1 order=0\n",
      "  a-1 [99999999999] .....    1.000001: mm_page_free: page=0 pfn=0x1 order=0\n",
      "  a-99999999999 [001] .....    1.000001: mm_page_free: page=0 pfn=0x1 order=0\n",
      "  a [001] .....    1.000001: mm_page_free: page=0 pfn=0x1 order=0\n",
  };
  for (const std::string& line : bad_prefixes) {
    const Parsed p = ParseChunked(line + good, 1 << 20);
    EXPECT_EQ(
        Problems(p.report),
        (std::vector<std::pair<uint64_t, ParseProblemKind>>{{1, ParseProblemKind::kUnknownLine}}))
        << line;
  }
  // Exact conversions: 9 fraction digits, and the largest timestamp that fits.
  const Parsed p = ParseChunked(
      "  a-1 [001] .....    1.5: mm_page_free: page=0 pfn=0x1 order=0\n"
      "  a-1 [001] .....    0.123456789: mm_page_free: page=0 pfn=0x1 order=0\n"
      "  a-1 [001] .....    18446744073.709551615: mm_page_free: page=0 pfn=0xffffffffffffffff "
      "order=0\n",
      1 << 20);
  EXPECT_EQ(p.report.problems_total, 0u) << p.report.Summary();
  ASSERT_EQ(p.events.size(), 3u);
  EXPECT_EQ(p.events[0].ts, 1500000000u);
  EXPECT_EQ(p.events[1].ts, 123456789u);
  EXPECT_EQ(p.events[2].ts, UINT64_MAX);
  EXPECT_EQ(p.events[2].pfn, UINT64_MAX);
}

TEST(FtraceParserMalformedTest, BinaryEmptyAndCrLf) {
  {
    const Parsed p = ParseChunked("", 1);
    EXPECT_TRUE(p.events.empty());
    EXPECT_EQ(p.report.problems_total, 0u);
  }
  {
    const std::string text = std::string(
                                 "\x7f"
                                 "ELF\0\0\0\n",
                                 8) +
                             std::string(10000, 'x') + "\n";
    const Parsed p = ParseChunked(text, 100);
    EXPECT_EQ(Problems(p.report),
              (std::vector<std::pair<uint64_t, ParseProblemKind>>{
                  {1, ParseProblemKind::kBinaryData}, {2, ParseProblemKind::kLineTooLong}}));
  }
  {
    const std::string lf = ReadTestFile("import/ftrace_nested.txt");
    std::string crlf;
    for (char c : lf) {
      if (c == '\n') crlf.push_back('\r');
      crlf.push_back(c);
    }
    const Parsed a = ParseChunked(lf, 1 << 20);
    const Parsed b = ParseChunked(crlf, 3);
    EXPECT_EQ(Problems(b.report), (std::vector<std::pair<uint64_t, ParseProblemKind>>{
                                      {1, ParseProblemKind::kCarriageReturn}}));
    ASSERT_EQ(a.events.size(), b.events.size());
    for (size_t i = 0; i < a.events.size(); ++i) EXPECT_EQ(a.events[i].Key(), b.events[i].Key());
  }
}

// Without stacks, an idle CPU's event must not hold the rest back forever: at
// max_pending_events the oldest goes out without a stack, and a late stack is an orphan.
TEST(FtraceParserMalformedTest, HeldEventsAreBounded) {
  std::string text = "  a-1 [001] .....    1.000000: mm_page_free: page=0 pfn=0x100 order=0\n";
  for (int i = 0; i < 10; ++i) {
    text += "  b-2 [000] .....    1.00000" + std::to_string(i) + ": mm_page_free: page=0 pfn=0x" +
            std::to_string(i) + " order=0\n";
  }
  text += "  a-1 [001] .....    2.000000: <stack trace>\n => late\n";  // line 12
  FtraceParserOptions options;
  options.max_pending_events = 4;
  std::vector<uint64_t> seen;
  size_t max_behind = 0;
  uint64_t lines_fed = 0;
  FtraceParser parser(
      [&](const TraceEvent& e) {
        seen.push_back(e.line);
        max_behind = std::max<size_t>(max_behind, lines_fed - e.line);
      },
      options);
  for (size_t at = 0; at < text.size();) {
    const size_t nl = text.find('\n', at) + 1;
    ++lines_fed;
    parser.Feed(std::string_view(text).substr(at, nl - at));
    at = nl;
  }
  parser.Finish();
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_LE(max_behind, 4u);
  EXPECT_EQ(
      Problems(parser.report()),
      (std::vector<std::pair<uint64_t, ParseProblemKind>>{{12, ParseProblemKind::kOrphanStack}}));
}

// Any chunking gives the same events and problems.
TEST(FtraceParserChunkTest, AnyChunkingSameResult) {
  for (const char* name :
       {"import/ftrace_nostack.txt", "import/ftrace_decimal_pfn.txt",
        "import/ftrace_nosymoffset.txt", "import/ftrace_tasknames.txt", "import/ftrace_garbage.txt",
        "import/ftrace_truncated_stack.txt", "import/ftrace_nested.txt"}) {
    const std::string text = ReadTestFile(name);
    const Parsed whole = ParseChunked(text, text.size() + 1);
    EXPECT_FALSE(whole.events.empty()) << name;
    for (size_t chunk : {size_t{1}, size_t{2}, size_t{5}, size_t{64}}) {
      const Parsed p = ParseChunked(text, chunk);
      ASSERT_EQ(p.events.size(), whole.events.size()) << name << " " << chunk;
      for (size_t i = 0; i < p.events.size(); ++i) {
        EXPECT_EQ(p.events[i].Key(), whole.events[i].Key()) << name << " " << chunk;
      }
      EXPECT_EQ(Problems(p.report), Problems(whole.report)) << name << " " << chunk;
    }
  }
}

}  // namespace
}  // namespace pageowner
