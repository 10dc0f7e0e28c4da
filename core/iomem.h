// The real machine's RAM layout from /proc/iomem's top-level "System RAM" lines, as page frame
// ranges, and the pageownerd --memory a daemon needs to mirror it.
#ifndef PAGEOWNER_CORE_IOMEM_H_
#define PAGEOWNER_CORE_IOMEM_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/types.h"

namespace pageowner {

// The pages [first, first + count) of one System RAM range.
struct PfnRange {
  Pfn first;
  PageCount count;
  Pfn end() const { return first + count; }
  friend bool operator==(const PfnRange&, const PfnRange&) = default;
};

// Parses /proc/iomem text and returns its top-level (unindented) `START-END : System RAM`
// ranges, in file order, as the whole pages they cover: first = ceil(START / 4096), end =
// (END + 1) / 4096 (END is inclusive), so a range that does not start or end on a page boundary
// (`00001000-0009fbff`) loses its partial pages, as the kernel's memblock does. A range holding
// no whole page is dropped. Nested lines (Kernel code, ...) and other names are ignored.
// Errors: kInvalidArgument naming the 1-based line for a malformed top-level line (no `-`, no
// ` : `, a bad hex number, END < START); kPermissionDenied when every range reads 0-0 (the
// kernel hides addresses from readers without CAP_SYS_ADMIN); kNotFound when no System RAM
// range holds a whole page.
absl::StatusOr<std::vector<PfnRange>> ParseIomemSystemRam(std::string_view text);

// Reads and parses `path` (default /proc/iomem). Errors: the file's, then Parse's.
absl::StatusOr<std::vector<PfnRange>> ReadIomemSystemRam(const std::string& path = "/proc/iomem");

// The pages of [0, total) that no range of `ram` covers (holes between System RAM ranges and
// everything past the last), in pfn order. `ram` may be in any order and may pass `total`.
std::vector<PfnRange> RamGaps(const std::vector<PfnRange>& ram, PageCount total);

// The highest pfn of `ranges` (the last page of the range that ends highest).
// REQUIRES: !ranges.empty().
Pfn HighestPfn(const std::vector<PfnRange>& ranges);

// The memory a pageownerd needs to hold every pfn of `ranges`: (HighestPfn + 1) pages, rounded
// up to a whole MiB so that it reads well; a multiple of 4096 bytes, as pageownerd's --memory
// requires.
// REQUIRES: !ranges.empty().
uint64_t DaemonMemoryBytes(const std::vector<PfnRange>& ranges);

// `bytes` as a --memory value: "<n>GiB" when a whole number of GiB, else "<n>MiB" when a whole
// number of MiB, else "<n>KiB" when whole KiB, else "<n>" (bytes). ParseMemorySize in
// server/flags.cc reads every form back to `bytes`.
std::string MemoryFlagValue(uint64_t bytes);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_IOMEM_H_
