// The replay JSON-lines parser (client/replay_format.h) over any bytes, a line at a time.
// Properties: no crash, no exception escapes, errors are kInvalidArgument, a parsed event has
// what its kind needs.
#include <cstddef>
#include <cstdint>

#include "client/replay_format.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

void Run(std::string_view text) {
  for (std::string_view line : Split(text, '\n')) {
    absl::StatusOr<cli::ReplayEvent> e = cli::ParseReplayLine(line);
    if (!e.ok()) {
      PO_FUZZ_CHECK(e.status().code() == absl::StatusCode::kInvalidArgument, e.status().ToString());
      continue;
    }
    PO_FUZZ_CHECK(e->kind != cli::ReplayKind::kAlloc || !e->stack.empty(),
                  "an alloc without a stack parsed");
    PO_FUZZ_CHECK(e->kind == cli::ReplayKind::kAlloc || e->pfn.has_value(),
                  "a free or migrate without a pfn parsed");
  }
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(pageowner::fuzz::AsText(data, size));
  return 0;
}
