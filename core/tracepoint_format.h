// A tracepoint's binary layout as tracefs describes it in events/<system>/<event>/format: the
// event id (the perf_event_attr.config of PERF_TYPE_TRACEPOINT) and each field's offset, size and
// signedness inside the raw payload (PERF_SAMPLE_RAW). Field offsets differ between kernel
// versions (6.18's mm_page_alloc has `unsigned long pfn` at 8 and `unsigned long gfp_flags` at
// 24; 3.x kernels had `struct page * page` at 8 and a 4-byte gfp_t at 20), so payloads are read by
// field name, never by a hard-coded offset.
#ifndef PAGEOWNER_CORE_TRACEPOINT_FORMAT_H_
#define PAGEOWNER_CORE_TRACEPOINT_FORMAT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pageowner {

// One `field:TYPE NAME;\toffset:N;\tsize:N;\tsigned:N;` line.
struct TracepointField {
  std::string type;  // "unsigned long", "struct page *", "__data_loc char[]"
  std::string name;  // "pfn"; an array's brackets are dropped ("comm[16]" -> "comm")
  uint32_t offset = 0;
  uint32_t size = 0;
  bool is_signed = false;
  bool is_array = false;  // the declaration had [N] after the name
  friend bool operator==(const TracepointField&, const TracepointField&) = default;
};

// A parsed format file. Immutable after Parse.
//
// Thread-safety: const methods may be called from any thread.
class TracepointFormat {
 public:
  // Parses the text of a format file. Requires a `name:` line, an `ID:` line and at least one
  // field; the four common_* fields are kept like any other. Unknown lines (`format:`,
  // `print fmt:`, blank lines) are ignored.
  // Errors: kInvalidArgument naming the 1-based line for a malformed ID or field line (missing
  // `offset:`/`size:`/`signed:`, a number that does not parse or fit in 32 bits, an empty name),
  // a duplicate field name, or a missing name, ID or field.
  static absl::StatusOr<TracepointFormat> Parse(std::string_view text);

  // Reads and parses `<tracefs_root>/events/<system>/<event>/format`.
  // Errors: kFailedPrecondition when `<tracefs_root>/events` does not exist (tracefs is not
  // mounted there; the message gives the mount command), kNotFound when only the event is
  // missing (this kernel lacks it), kPermissionDenied when reading is refused, and Parse's
  // errors prefixed with the path.
  static absl::StatusOr<TracepointFormat> ReadFromTracefs(const std::string& tracefs_root,
                                                          std::string_view system,
                                                          std::string_view event);

  const std::string& name() const { return name_; }
  uint32_t id() const { return id_; }
  const std::vector<TracepointField>& fields() const { return fields_; }

  // The field called `name`, or nullptr.
  const TracepointField* Find(std::string_view name) const;

  // The value of an integer field (size 1, 2, 4 or 8) read little-endian from `payload` (the raw
  // record, starting at common_type). ReadUnsigned zero-extends; ReadSigned sign-extends a field
  // marked signed:1 and zero-extends one marked signed:0.
  // Errors: kNotFound for a field this format lacks; kInvalidArgument for a field whose size is
  // not 1, 2, 4 or 8 or that is an array; kOutOfRange when offset + size passes the payload's end.
  absl::StatusOr<uint64_t> ReadUnsigned(absl::Span<const uint8_t> payload,
                                        std::string_view field) const;
  absl::StatusOr<int64_t> ReadSigned(absl::Span<const uint8_t> payload,
                                     std::string_view field) const;

 private:
  absl::StatusOr<const TracepointField*> IntegerField(absl::Span<const uint8_t> payload,
                                                      std::string_view field) const;

  std::string name_;
  uint32_t id_ = 0;
  std::vector<TracepointField> fields_;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_TRACEPOINT_FORMAT_H_
