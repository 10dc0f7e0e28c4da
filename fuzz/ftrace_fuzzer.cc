// The ftrace text parser (kmem page events and their stacks) over any bytes. Properties: no
// crash, every event handed over once in line order, bounded frames, and the same events
// whatever the chunking of the input.
#include <cstddef>
#include <cstdint>

#include "core/ftrace_parser.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

struct Seen {
  uint64_t events = 0;
  uint64_t sum = 0;
  uint64_t last_line = 0;
  bool ordered = true;
  void Add(const TraceEvent& e, const FtraceParserOptions& o) {
    ++events;
    sum = sum * 31 + e.pfn.raw() * 7 + e.order.raw() + e.frames.size() * 131 + e.line;
    ordered = ordered && e.line > last_line;
    last_line = e.line;
    PO_FUZZ_CHECK(e.frames.size() <= o.max_frames, "more frames than max_frames");
    PO_FUZZ_CHECK(!e.has_stack || e.stack_line > e.line, "a stack before its event");
  }
};

void Run(std::string_view text) {
  FtraceParserOptions options;
  options.max_pending_events = 8;  // small: the ring's wrap is reached by short inputs
  options.max_frames = 32;
  Seen whole;
  const ParseReport report = ParseFtrace(
      text, [&](const TraceEvent& e) { whole.Add(e, options); }, options);
  PO_FUZZ_CHECK(whole.ordered, "events out of line order");
  PO_FUZZ_CHECK(report.records == whole.events, "records counted differ from events delivered");

  Seen chunked;
  FtraceParser parser([&](const TraceEvent& e) { chunked.Add(e, options); }, options);
  const size_t step = 1 + (text.empty() ? 0 : static_cast<uint8_t>(text[0]) % 61);
  for (size_t at = 0; at < text.size(); at += step) parser.Feed(text.substr(at, step));
  parser.Finish();
  PO_FUZZ_CHECK(chunked.events == whole.events && chunked.sum == whole.sum,
                "chunked parse gave other events");
  PO_FUZZ_CHECK(parser.report().problems_total == report.problems_total,
                "chunked parse gave other problems");
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(pageowner::fuzz::AsText(data, size));
  return 0;
}
