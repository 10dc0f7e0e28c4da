// The tracefs format-file parser over any bytes; when the text parses, every field is read out
// of a payload made of the input itself. Properties: no crash, Parse's error is
// kInvalidArgument, reads stay inside the payload (ASan) and fail with their documented codes.
#include <cstddef>
#include <cstdint>

#include "core/tracepoint_format.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

bool Documented(absl::StatusCode c) {
  return c == absl::StatusCode::kNotFound || c == absl::StatusCode::kInvalidArgument ||
         c == absl::StatusCode::kOutOfRange;
}

void Run(const uint8_t* data, size_t size) {
  absl::StatusOr<TracepointFormat> f = TracepointFormat::Parse(AsText(data, size));
  if (!f.ok()) {
    PO_FUZZ_CHECK(f.status().code() == absl::StatusCode::kInvalidArgument, f.status().ToString());
    return;
  }
  PO_FUZZ_CHECK(!f->fields().empty(), "a parsed format without fields");
  const absl::Span<const uint8_t> payload(data, size);
  for (const TracepointField& field : f->fields()) {
    PO_FUZZ_CHECK(f->Find(field.name) != nullptr, "a field not found by its name");
    absl::StatusOr<uint64_t> u = f->ReadUnsigned(payload, field.name);
    absl::StatusOr<int64_t> s = f->ReadSigned(payload, field.name);
    PO_FUZZ_CHECK(u.ok() || Documented(u.status().code()), u.status().ToString());
    PO_FUZZ_CHECK(s.ok() || Documented(s.status().code()), s.status().ToString());
    PO_FUZZ_CHECK(u.ok() == s.ok(), "signed and unsigned reads disagree");
  }
  PO_FUZZ_CHECK(!f->ReadUnsigned(payload, "\xff no such field").ok(), "an unknown field read");
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(data, size);
  return 0;
}
