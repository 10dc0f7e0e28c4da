#include "core/iomem.h"

#include <algorithm>
#include <cassert>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "core/procfs.h"
#include "core/strings.h"

namespace pageowner {
namespace {

bool ParseHex(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, 16);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

absl::StatusOr<std::vector<PfnRange>> ParseIomemSystemRam(std::string_view text) {
  std::vector<PfnRange> out;
  size_t line_no = 0;
  bool any_range = false;
  bool all_zero = true;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.empty() || line[0] == ' ') continue;  // nested resources are indented
    const auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", Sv(why)));
    };
    const size_t colon = line.find(" : ");
    if (colon == std::string_view::npos) return bad("expected \"START-END : NAME\"");
    const std::string_view span = line.substr(0, colon);
    const size_t dash = span.find('-');
    if (dash == std::string_view::npos) return bad("expected \"START-END\"");
    uint64_t start = 0, end = 0;
    if (!ParseHex(span.substr(0, dash), &start) || !ParseHex(span.substr(dash + 1), &end)) {
      return bad("bad hex address");
    }
    if (end < start) return bad("END below START");
    any_range = true;
    if (start != 0 || end != 0) all_zero = false;
    if (line.substr(colon + 3) != "System RAM") continue;
    const uint64_t first = (start + kPageSize - 1) / kPageSize;
    const uint64_t last_end = end / kPageSize + ((end % kPageSize) == kPageSize - 1 ? 1 : 0);
    if (last_end <= first) continue;
    out.push_back(PfnRange{Pfn(first), PageCount(last_end - first)});
  }
  if (any_range && all_zero) {
    return absl::PermissionDeniedError(
        "every /proc/iomem range reads 0-0: the kernel hides physical addresses from readers "
        "without CAP_SYS_ADMIN");
  }
  if (out.empty()) return absl::NotFoundError("no System RAM range holds a whole page");
  return out;
}

absl::StatusOr<std::vector<PfnRange>> ReadIomemSystemRam(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<PfnRange>> r = ParseIomemSystemRam(*text);
  if (!r.ok())
    return absl::Status(r.status().code(), absl::StrCat(path, ": ", r.status().message()));
  return r;
}

std::vector<PfnRange> RamGaps(const std::vector<PfnRange>& ram, PageCount total) {
  std::vector<PfnRange> sorted = ram;
  std::sort(sorted.begin(), sorted.end(),
            [](const PfnRange& a, const PfnRange& b) { return a.first < b.first; });
  std::vector<PfnRange> gaps;
  uint64_t next = 0;  // the first pfn not known to be RAM
  for (const PfnRange& r : sorted) {
    const uint64_t first = std::min(r.first.raw(), total.raw());
    if (first > next) gaps.push_back(PfnRange{Pfn(next), PageCount(first - next)});
    next = std::max(next, std::min(r.end().raw(), total.raw()));
  }
  if (total.raw() > next) gaps.push_back(PfnRange{Pfn(next), PageCount(total.raw() - next)});
  return gaps;
}

Pfn HighestPfn(const std::vector<PfnRange>& ranges) {
  assert(!ranges.empty());
  uint64_t highest = 0;
  for (const PfnRange& r : ranges) highest = std::max(highest, r.end().raw() - 1);
  return Pfn(highest);
}

uint64_t DaemonMemoryBytes(const std::vector<PfnRange>& ranges) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  const uint64_t bytes = (HighestPfn(ranges).raw() + 1) * kPageSize;
  return (bytes + kMiB - 1) / kMiB * kMiB;
}

std::string MemoryFlagValue(uint64_t bytes) {
  struct Unit {
    const char* name;
    unsigned shift;
  };
  for (Unit u : {Unit{"TiB", 40}, Unit{"GiB", 30}, Unit{"MiB", 20}, Unit{"KiB", 10}}) {
    const uint64_t one = uint64_t{1} << u.shift;
    if (bytes != 0 && bytes % one == 0) return absl::StrCat(bytes >> u.shift, u.name);
  }
  return absl::StrCat(bytes);
}

}  // namespace pageowner
