#include "core/page_owner_sort_fields.h"

#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/strings.h"

namespace pageowner::sort_fields {
namespace {

// isspace() in the C locale, which is what \s means to glibc's regcomp there.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

size_t SkipSpaces(std::string_view s, size_t i) {
  while (i < s.size() && IsSpace(s[i])) ++i;
  return i;
}
size_t SkipDigits(std::string_view s, size_t i) {
  while (i < s.size() && IsDigit(s[i])) ++i;
  return i;
}

// The tool's regular expressions (REG_EXTENDED | REG_NEWLINE), matched as regexec does: the
// leftmost start, and from there the longest match. For these patterns that pins the group down.
//
// "<literal>\s*([0-9]*)<end>" where <end> is one character that is neither a space nor a digit
// ("order\s*([0-9]*),", "pid\s*([0-9]*),"): the spaces and digits are taken greedily.
Group MatchNumberThenChar(std::string_view s, std::string_view literal, char end) {
  for (size_t at = s.find(literal); at != std::string_view::npos; at = s.find(literal, at + 1)) {
    size_t digits = SkipSpaces(s, at + literal.size());
    size_t after = SkipDigits(s, digits);
    if (after < s.size() && s[after] == end) return {true, digits, after};
  }
  return {};
}

// "tgid\s*([0-9]*) ": the longest match takes the digits and the space after them; without that,
// a shorter \s* leaves a space of its run for the literal space, with an empty group.
Group MatchTgid(std::string_view s) {
  constexpr std::string_view kLiteral = "tgid";
  for (size_t at = s.find(kLiteral); at != std::string_view::npos; at = s.find(kLiteral, at + 1)) {
    size_t spaces = at + kLiteral.size();
    size_t digits = SkipSpaces(s, spaces);
    size_t after = SkipDigits(s, digits);
    if (after > digits && after < s.size() && s[after] == ' ') return {true, digits, after};
    for (size_t k = digits; k > spaces; --k) {
      if (s[k - 1] == ' ') return {true, k - 1, k - 1};
    }
  }
  return {};
}

// "<literal>\s*([0-9]*)\s*ns" plus an optional trailing character (6.1: "ns,").
Group MatchNsValue(std::string_view s, std::string_view literal, std::string_view tail) {
  for (size_t at = s.find(literal); at != std::string_view::npos; at = s.find(literal, at + 1)) {
    size_t digits = SkipSpaces(s, at + literal.size());
    size_t after = SkipDigits(s, digits);
    size_t ns = SkipSpaces(s, after);
    if (s.substr(ns, tail.size()) == tail) return {true, digits, after};
  }
  return {};
}

// "tgid\s*[0-9]*\s*\((.*)\),\s*ts": '.' stops at a newline (REG_NEWLINE), \s does not. The
// longest match ends at the last "),\s*ts" whose ")," is on the line of the '('.
Group MatchComm(std::string_view s) {
  constexpr std::string_view kLiteral = "tgid";
  // The last "),\s*ts" of the line, found once a line (linear even for a line full of "tgid (").
  size_t line_start = 0, line_end = 0, last_close = std::string_view::npos;
  for (size_t at = s.find(kLiteral); at != std::string_view::npos; at = s.find(kLiteral, at + 1)) {
    size_t open = SkipSpaces(s, SkipDigits(s, SkipSpaces(s, at + kLiteral.size())));
    if (open >= s.size() || s[open] != '(') continue;
    if (open < line_start || open >= line_end) {
      size_t nl = s.rfind('\n', open);
      line_start = nl == std::string_view::npos ? 0 : nl + 1;
      line_end = s.find('\n', open);
      if (line_end == std::string_view::npos) line_end = s.size();
      last_close = std::string_view::npos;
      for (size_t close = line_end; close-- > line_start;) {
        if (s[close] != ')' || close + 1 >= s.size() || s[close + 1] != ',') continue;
        if (s.substr(SkipSpaces(s, close + 2), 2) == "ts") {
          last_close = close;
          break;
        }
      }
    }
    if (last_close != std::string_view::npos && last_close > open) {
      return {true, open + 1, last_close};
    }
  }
  return {};
}

Group MatchOrder(std::string_view s) { return MatchNumberThenChar(s, "order", ','); }
Group MatchPid(std::string_view s) { return MatchNumberThenChar(s, "pid", ','); }
// 6.12: "ts\s*([0-9]*)\s*ns"; 6.1: "ts\s*([0-9]*)\s*ns," and "free_ts\s*([0-9]*)\s*ns".
Group MatchTs61(std::string_view s) { return MatchNsValue(s, "ts", "ns,"); }
Group MatchFreeTs(std::string_view s) { return MatchNsValue(s, "free_ts", "ns"); }

// strtol(str, &end, 10) of a run of digits, as the tool checks it: nothing parsed or ERANGE fail.
std::optional<int64_t> DigitsToLong(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - d) / 10) {
      return std::nullopt;
    }
    v = v * 10 + d;
  }
  return static_cast<int64_t>(v);
}

// strtoull likewise.
std::optional<uint64_t> DigitsToULongLong(std::string_view digits) {
  if (digits.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

int32_t GetId(std::string_view s, const Group& g, const FieldDebug& debug, std::string_view wrong) {
  if (!g.found) debug.NoMatch();
  std::optional<int64_t> v = DigitsToLong(g.Of(s));
  if (!v) {
    debug.Wrong(wrong);
    return -1;
  }
  return static_cast<int32_t>(static_cast<uint64_t>(*v));
}
uint64_t GetNs(std::string_view s, const Group& g, const FieldDebug& debug,
               std::string_view wrong) {
  if (!g.found) debug.NoMatch();
  std::optional<uint64_t> v = DigitsToULongLong(g.Of(s));
  if (!v) {
    debug.Wrong(wrong);
    return std::numeric_limits<uint64_t>::max();
  }
  return *v;
}

}  // namespace

void FieldDebug::NoMatch() const {
  if (out) absl::StrAppend(out, "no matching pattern in ", Sv(buf), "\n");
}

void FieldDebug::Wrong(std::string_view what) const {
  if (out) absl::StrAppend(out, Sv(what), " in follow buf:\n", Sv(buf), "\n");
}

Group MatchTs(std::string_view s) { return MatchNsValue(s, "ts", "ns"); }

// get_page_num(): 1 << order, 0 when the order is missing, unparsable or above 64. The order is
// an int (strtol's long truncated) and the shift is x86's, which takes the count modulo 32.
int32_t GetPageNum(std::string_view s, const FieldDebug& debug) {
  Group g = MatchOrder(s);
  if (!g.found) debug.NoMatch();
  std::optional<int64_t> v = DigitsToLong(g.Of(s));
  int32_t order = v ? static_cast<int32_t>(static_cast<uint64_t>(*v)) : 0;
  if (!v || order > 64) {
    debug.Wrong("wrong order");
    return 0;
  }
  return static_cast<int32_t>(1u << (static_cast<uint32_t>(order) & 31));
}

int32_t GetPid(std::string_view s, const FieldDebug& debug) {
  return GetId(s, MatchPid(s), debug, "wrong/invalid pid");
}
int32_t GetTgid(std::string_view s, const FieldDebug& debug) {
  return GetId(s, MatchTgid(s), debug, "wrong/invalid tgid");
}

uint64_t GetTs(std::string_view s, const FieldDebug& debug) {
  return GetNs(s, MatchTs(s), debug, "wrong ts_nsec");
}
uint64_t GetTs61(std::string_view s, const FieldDebug& debug) {
  return GetNs(s, MatchTs61(s), debug, "wrong ts_nsec");
}
uint64_t GetFreeTs(std::string_view s, const FieldDebug& debug) {
  return GetNs(s, MatchFreeTs(s), debug, "wrong free_ts_nsec");
}

// get_comm(): "" when missing. (The tool copies the name into a 16-byte buffer; a longer one
// overflows it, which is undefined; the whole name is kept here.)
std::string_view GetComm(std::string_view s, const FieldDebug& debug) {
  Group g = MatchComm(s);
  if (!g.found) debug.NoMatch();
  return g.Of(s);
}

// get_allocator(): CMA and SLAB from the PFN line (e.g. "slab" among its page flags), VMALLOC
// when the first "__vmalloc_node_range" has an "alloc_pages" in the line before it (or earlier in
// its own line). When that line before is the block's first line or there is none, the tool walks
// back out of its buffer (undefined; in practice onto the zeroed end of its PFN buffer, so that
// the search comes out empty): no VMALLOC then.
int32_t GetAllocator(std::string_view s, std::string_view pfn_line) {
  int32_t allocator = 0;
  if (pfn_line.find("CMA") != std::string_view::npos) allocator |= kAllocatorCma;
  if (pfn_line.find("slab") != std::string_view::npos) allocator |= kAllocatorSlab;
  size_t vmalloc = s.find("__vmalloc_node_range");
  if (vmalloc != std::string_view::npos) {
    size_t line = s.rfind('\n', vmalloc);  // the '\n' before the line of the match
    if (line != std::string_view::npos && line > 0) {
      size_t before = s.rfind('\n', line - 1);  // the '\n' before the line before
      if (before != std::string_view::npos) {
        size_t alloc_pages = s.find("alloc_pages", before + 1);
        if (alloc_pages != std::string_view::npos && alloc_pages < vmalloc) {
          allocator |= kAllocatorVmalloc;
        }
      }
    }
  }
  if (allocator == 0) allocator = kAllocatorOthers;
  return allocator;
}

void AppendAllocator(int32_t allocator, std::string* out) {
  out->append("allocated by ");
  if (allocator & kAllocatorCma) out->append("CMA ");
  if (allocator & kAllocatorSlab) out->append("SLAB ");
  if (allocator & kAllocatorVmalloc) out->append("VMALLOC ");
  if (allocator & kAllocatorOthers) out->append("OTHERS ");
}

}  // namespace pageowner::sort_fields
