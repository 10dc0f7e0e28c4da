// The /proc/kallsyms parser over any bytes; when the text parses, addresses around every
// symbol the text names are looked up and symbolized. Properties: no crash, Parse's errors are
// the documented ones, a found symbol covers the address.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/numbers.h"
#include "core/kallsyms.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

void Run(std::string_view text) {
  absl::StatusOr<Kallsyms> k = Kallsyms::Parse(text);
  if (!k.ok()) {
    const absl::StatusCode c = k.status().code();
    PO_FUZZ_CHECK(c == absl::StatusCode::kInvalidArgument ||
                      c == absl::StatusCode::kPermissionDenied || c == absl::StatusCode::kNotFound,
                  k.status().ToString());
    return;
  }
  int lookups = 0;
  for (std::string_view line : Split(text, '\n')) {
    if (++lookups > 64) break;
    uint64_t addr = 0;
    const std::string_view hex = line.substr(0, line.find(' '));
    if (!absl::SimpleHexAtoi(absl::string_view(hex.data(), hex.size()), &addr)) continue;
    for (uint64_t ip : {addr - 1, addr, addr + 1, addr + 0x100}) {
      const std::optional<KallsymsMatch> m = k->Find(ip);
      if (m.has_value()) {
        PO_FUZZ_CHECK(m->offset < m->size, "a symbol that does not cover its address");
      }
      const std::string s = k->Symbolize(ip);
      PO_FUZZ_CHECK(!s.empty(), "an empty symbolization");
    }
  }
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(pageowner::fuzz::AsText(data, size));
  return 0;
}
