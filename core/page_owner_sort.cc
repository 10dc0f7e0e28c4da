#include "core/page_owner_sort.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pageowner {
namespace {

// The tool's read buffer (BUF_SIZE): fgets never reads more than this minus the block so far.
constexpr size_t kBufSize = 128 * 1024;

// The tool's allocator bits.
constexpr int32_t kAllocatorCma = 1 << 1;
constexpr int32_t kAllocatorSlab = 1 << 2;
constexpr int32_t kAllocatorVmalloc = 1 << 3;
constexpr int32_t kAllocatorOthers = 1 << 4;

// The tool's int arithmetic (two's complement wrap, as gcc -O2 gives on x86-64).
int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
int32_t WrapSub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}
template <typename T>
int32_t Sign(T a, T b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Debian's Abseil 20220623 has its own string_view.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

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

// The first parenthesised group of a POSIX match (regexec's pmatch[1]); !found = REG_NOMATCH.
struct Group {
  bool found = false;
  size_t begin = 0;
  size_t end = 0;
  std::string_view Of(std::string_view s) const {
    return found ? s.substr(begin, end - begin) : std::string_view();
  }
};

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
Group MatchTs(std::string_view s) { return MatchNsValue(s, "ts", "ns"); }
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

// -d: the tool prints the block buffer, which holds the block and the '\n' of its blank line.
struct Debug {
  std::string* out = nullptr;
  std::string_view buf;
  void NoMatch() const {
    if (out) absl::StrAppend(out, "no matching pattern in ", Av(buf), "\n");
  }
  void Wrong(std::string_view what) const {
    if (out) absl::StrAppend(out, Av(what), " in follow buf:\n", Av(buf), "\n");
  }
};

// get_page_num(): 1 << order, 0 when the order is missing, unparsable or above 64. The order is
// an int (strtol's long truncated) and the shift is x86's, which takes the count modulo 32.
int32_t GetPageNum(std::string_view s, const Debug& debug) {
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

// get_pid() / get_tgid(): -1 when missing or unparsable, else strtol's value as a pid_t.
int32_t GetId(std::string_view s, const Group& g, const Debug& debug, std::string_view wrong) {
  if (!g.found) debug.NoMatch();
  std::optional<int64_t> v = DigitsToLong(g.Of(s));
  if (!v) {
    debug.Wrong(wrong);
    return -1;
  }
  return static_cast<int32_t>(static_cast<uint64_t>(*v));
}
int32_t GetPid(std::string_view s, const Debug& debug) {
  return GetId(s, MatchPid(s), debug, "wrong/invalid pid");
}
int32_t GetTgid(std::string_view s, const Debug& debug) {
  return GetId(s, MatchTgid(s), debug, "wrong/invalid tgid");
}

// get_ts_nsec() and 6.1's get_free_ts_nsec(): (u64)-1 when missing or unparsable.
uint64_t GetNs(std::string_view s, const Group& g, const Debug& debug, std::string_view wrong) {
  if (!g.found) debug.NoMatch();
  std::optional<uint64_t> v = DigitsToULongLong(g.Of(s));
  if (!v) {
    debug.Wrong(wrong);
    return std::numeric_limits<uint64_t>::max();
  }
  return *v;
}
uint64_t GetTs(std::string_view s, const Debug& debug) {
  return GetNs(s, MatchTs(s), debug, "wrong ts_nsec");
}
uint64_t GetTs61(std::string_view s, const Debug& debug) {
  return GetNs(s, MatchTs61(s), debug, "wrong ts_nsec");
}
uint64_t GetFreeTs(std::string_view s, const Debug& debug) {
  return GetNs(s, MatchFreeTs(s), debug, "wrong free_ts_nsec");
}

// get_comm(): "" when missing. (The tool copies the name into a 16-byte buffer; a longer one
// overflows it, which is undefined; the whole name is kept here.)
std::string_view GetComm(std::string_view s, const Debug& debug) {
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

// A block text in up to three pieces (the text with its ts digits taken out, split where they
// were, and the digits between), so that the original is compared without being rebuilt.
struct Pieces {
  std::string_view part[3];

  int Compare(const Pieces& o) const {
    int i = 0, j = 0;
    size_t a = 0, b = 0;
    while (true) {
      while (i < 3 && a == part[i].size()) ++i, a = 0;
      while (j < 3 && b == o.part[j].size()) ++j, b = 0;
      if (i == 3 || j == 3) return (i == 3 ? 0 : 1) - (j == 3 ? 0 : 1);
      size_t n = std::min(part[i].size() - a, o.part[j].size() - b);
      int c = std::memcmp(part[i].data() + a, o.part[j].data() + b, n);
      if (c != 0) return c < 0 ? -1 : 1;
      a += n;
      b += n;
    }
  }
  // What follows the first '\n' (the tool's stacktrace pointer), or nothing.
  Pieces AfterFirstLine() const {
    for (int i = 0; i < 3; ++i) {
      size_t nl = part[i].find('\n');
      if (nl == std::string_view::npos) continue;
      Pieces p;
      p.part[0] = part[i].substr(nl + 1);
      for (int k = i + 1; k < 3; ++k) p.part[k - i] = part[k];
      return p;
    }
    return Pieces();
  }
  void AppendTo(std::string* out) const {
    for (const auto& p : part) out->append(p.data(), p.size());
  }
};

std::string_view AfterFirstLine(std::string_view s) {
  size_t nl = s.find('\n');
  return nl == std::string_view::npos ? std::string_view() : s.substr(nl + 1);
}

// glibc 2.36's qsort for the tool's 56-byte records: msort_with_tmp over pointers (indirect
// sorting), a top-down merge sort that halves at n / 2 and takes from the left run while
// cmp(left, right) <= 0. Reproducing it, not just any stable sort, keeps the tool's order even
// for comparators that are not consistent (int overflow, 6.1's compare_free_ts).
template <typename Cmp>
void MergeSort(uint32_t* b, size_t n, uint32_t* tmp, const Cmp& cmp) {
  if (n <= 1) return;
  size_t n1 = n / 2;
  size_t n2 = n - n1;
  uint32_t* b1 = b;
  uint32_t* b2 = b + n1;
  MergeSort(b1, n1, tmp, cmp);
  MergeSort(b2, n2, tmp, cmp);
  uint32_t* t = tmp;
  while (n1 > 0 && n2 > 0) {
    if (cmp(*b1, *b2) <= 0) {
      *t++ = *b1++;
      --n1;
    } else {
      *t++ = *b2++;
      --n2;
    }
  }
  if (n1 > 0) std::memcpy(t, b1, n1 * sizeof(*b1));
  std::memcpy(b, tmp, (n - n2) * sizeof(*b));
}

template <typename Cmp>
void GlibcQsort(std::vector<uint32_t>* v, const Cmp& cmp) {
  std::vector<uint32_t> tmp(v->size());
  MergeSort(v->data(), v->size(), tmp.data(), cmp);
}

// Ranks 0.. of n items under a three-way comparison (equal items, equal ranks).
template <typename Cmp3>
std::vector<uint32_t> Ranks(size_t n, const Cmp3& cmp3) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return cmp3(a, b) < 0; });
  std::vector<uint32_t> rank(n);
  uint32_t r = 0;
  for (size_t k = 0; k < n; ++k) {
    if (k > 0 && cmp3(order[k - 1], order[k]) != 0) ++r;
    rank[order[k]] = r;
  }
  return rank;
}

// --pid/--tgid lists: parse_nums_list() (explode(',') then strtol, base 10, the whole field).
std::optional<std::vector<int32_t>> ParseNumList(const std::string& arg) {
  std::vector<int32_t> out;
  for (absl::string_view field : absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',')) {
    size_t i = 0;
    while (i < field.size() && IsSpace(field[i])) ++i;
    bool negative = false;
    if (i < field.size() && (field[i] == '+' || field[i] == '-')) negative = field[i++] == '-';
    size_t digits_end = i;
    while (digits_end < field.size() && IsDigit(field[digits_end])) ++digits_end;
    if (digits_end == i || digits_end != field.size()) return std::nullopt;
    // strtol: ERANGE beyond [LONG_MIN, LONG_MAX].
    uint64_t limit =
        static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + (negative ? 1 : 0);
    uint64_t v = 0;
    for (size_t k = i; k < digits_end; ++k) {
      uint64_t d = static_cast<uint64_t>(field[k] - '0');
      if (v > (limit - d) / 10) return std::nullopt;
      v = v * 10 + d;
    }
    // The long lands in an int.
    out.push_back(static_cast<int32_t>(static_cast<uint32_t>(negative ? 0 - v : v)));
  }
  return out;
}

// get_arg_type() of the key names the tool knows.
enum class ArgType {
  kPid,
  kTgid,
  kComm,
  kStacktrace,
  kTxt,
  kAllocTs,
  kAllocator,
  kFree,
  kFreeTs,
  kUnknown
};

ArgType GetArgType(std::string_view arg, PageOwnerSortVersion version) {
  bool v61 = version == PageOwnerSortVersion::k6_1;
  if (arg == "pid" || arg == "p") return ArgType::kPid;
  if (arg == "tgid" || arg == "tg") return ArgType::kTgid;
  if (arg == "name" || arg == "n") return ArgType::kComm;
  if (arg == "stacktrace" || arg == "st") return ArgType::kStacktrace;
  if (v61 && (arg == "free" || arg == "f")) return ArgType::kFree;
  if (arg == "txt" || arg == "T") return ArgType::kTxt;
  if (v61 && (arg == "free_ts" || arg == "ft")) return ArgType::kFreeTs;
  if (arg == "alloc_ts" || arg == "at") return ArgType::kAllocTs;
  if (arg == "allocator" || arg == "ator") return ArgType::kAllocator;
  return ArgType::kUnknown;
}

bool ParseCull(const std::string& arg, PageOwnerSortVersion version, CullKeys* cull) {
  for (absl::string_view field : absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',')) {
    switch (GetArgType(std::string_view(field.data(), field.size()), version)) {
      case ArgType::kPid:
        cull->pid = true;
        break;
      case ArgType::kTgid:
        cull->tgid = true;
        break;
      case ArgType::kComm:
        cull->name = true;
        break;
      case ArgType::kStacktrace:
        cull->stacktrace = true;
        break;
      case ArgType::kFree:
        cull->released = true;
        break;
      case ArgType::kAllocator:
        cull->allocator = true;
        break;
      default:
        return false;
    }
  }
  return true;
}

std::optional<std::vector<SortField>> ParseSortList(const std::string& arg,
                                                    PageOwnerSortVersion version) {
  std::vector<SortField> out;
  for (absl::string_view field : absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',')) {
    SortField f;
    if (!field.empty() && (field[0] == '-' || field[0] == '+')) {
      f.descending = field[0] == '-';
      field.remove_prefix(1);
    }
    switch (GetArgType(std::string_view(field.data(), field.size()), version)) {
      case ArgType::kPid:
        f.key = SortKey::kPid;
        break;
      case ArgType::kTgid:
        f.key = SortKey::kTgid;
        break;
      case ArgType::kComm:
        f.key = SortKey::kName;
        break;
      case ArgType::kStacktrace:
        f.key = SortKey::kStacktrace;
        break;
      case ArgType::kAllocTs:
        f.key = SortKey::kAllocTs;
        break;
      case ArgType::kFreeTs:
        f.key = SortKey::kFreeTs;
        break;
      case ArgType::kTxt:
        f.key = SortKey::kText;
        break;
      case ArgType::kAllocator:
        f.key = SortKey::kAllocator;
        break;
      default:  // including 6.1's "free", which --cull takes and --sort does not
        return std::nullopt;
    }
    out.push_back(f);
  }
  return out;
}

constexpr std::string_view kUsage =
    "Usage: ./page_owner_sort [OPTIONS] <input> <output>\n"
    "-a\t\t\tSort by memory allocation time.\n"
    "-m\t\t\tSort by total memory.\n"
    "-n\t\t\tSort by task command name.\n"
    "-p\t\t\tSort by pid.\n"
    "-P\t\t\tSort by tgid.\n"
    "-s\t\t\tSort by the stacktrace.\n"
    "-t\t\t\tSort by number of times record is seen (default).\n\n"
    "--pid <pidlist>\t\tSelect by pid. This selects the information of\n"
    "\t\t\tblocks whose process ID numbers appear in <pidlist>.\n"
    "--tgid <tgidlist>\tSelect by tgid. This selects the information of\n"
    "\t\t\tblocks whose Thread Group ID numbers appear in <tgidlist>.\n"
    "--name <cmdlist>\tSelect by command name. This selects the information\n"
    "\t\t\tof blocks whose command name appears in <cmdlist>.\n"
    "--cull <rules>\t\tCull by user-defined rules. <rules> is a single\n"
    "\t\t\targument in the form of a comma-separated list with some\n"
    "\t\t\tcommon fields predefined (pid, tgid, comm, stacktrace, allocator)\n"
    "--sort <order>\t\tSpecify sort order as: [+|-]key[,[+|-]key[,...]]\n";

}  // namespace

std::string_view PageOwnerSortUsage() { return kUsage; }

absl::StatusOr<SortOptions> ParseSortArgs(const std::vector<std::string>& args,
                                          PageOwnerSortVersion version) {
  const bool v61 = version == PageOwnerSortVersion::k6_1;
  SortOptions o;
  o.version = version;
  // 6.12 collects -a -m -n -p -P -s -t as bits and picks the comparator after the loop; 6.1 sets
  // it at once (set_single_cmp), and --sort replaces it.
  enum : int { kA = 1, kM = 2, kP = 4, kS = 8, kT = 16, kTg = 32, kN = 64 };
  int compare_flag = 0;
  std::vector<SortField> sc;  // 6.1's sort_condition, empty at first
  const std::string_view shorts = v61 ? "adfmnprstP" : "admnpstP";
  constexpr std::string_view kLongs[] = {"pid", "tgid", "name", "cull", "sort"};

  auto short_option = [&](char c) {
    switch (c) {
      case 'a':
        compare_flag |= kA;
        sc = {{SortKey::kAllocTs, false}};
        break;
      case 'd':
        o.debug = true;
        break;
      case 'f':
        o.filter_released = true;
        break;
      case 'm':
        compare_flag |= kM;
        sc = {{SortKey::kPages, true}};
        break;
      case 'n':
        compare_flag |= kN;
        sc = {{SortKey::kName, false}};
        break;
      case 'p':
        compare_flag |= kP;
        sc = {{SortKey::kPid, false}};
        break;
      case 'r':
        sc = {{SortKey::kFreeTs, false}};
        break;
      case 's':
        compare_flag |= kS;
        sc = {{SortKey::kStacktrace, false}};
        break;
      case 't':
        compare_flag |= kT;
        sc = {{SortKey::kTimes, true}};
        break;
      case 'P':
        compare_flag |= kTg;
        sc = {{SortKey::kTgid, false}};
        break;
    }
  };
  auto long_option = [&](int index, const std::string& arg) -> absl::Status {
    switch (index) {
      case 0:
      case 1: {
        std::optional<std::vector<int32_t>> list = ParseNumList(arg);
        if (!list) {
          return absl::InvalidArgumentError(absl::StrCat(
              "wrong/invalid ", index == 0 ? "pid" : "tgid", " in from the command line:", arg));
        }
        (index == 0 ? o.pids : o.tgids) = std::move(*list);
        return absl::OkStatus();
      }
      case 2: {
        std::vector<std::string> names =
            absl::StrSplit(absl::string_view(arg.data(), arg.size()), ',');
        o.names = std::move(names);
        return absl::OkStatus();
      }
      case 3:
        if (!ParseCull(arg, version, &o.cull)) {
          return absl::InvalidArgumentError(
              absl::StrCat("wrong argument after --cull option:", arg));
        }
        if (sc.empty()) sc = {{SortKey::kTimes, true}};
        return absl::OkStatus();
      default: {
        std::optional<std::vector<SortField>> list = ParseSortList(arg, version);
        if (!list) {
          return absl::InvalidArgumentError(
              absl::StrCat("wrong argument after --sort option:", arg));
        }
        sc = std::move(*list);
        return absl::OkStatus();
      }
    }
  };

  bool operands_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (operands_only || a.size() < 2 || a[0] != '-') {
      o.operands.push_back(a);
      continue;
    }
    if (a == "--") {
      operands_only = true;
      continue;
    }
    if (a[1] != '-') {  // one or more short options
      for (size_t k = 1; k < a.size(); ++k) {
        if (shorts.find(a[k]) == std::string_view::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("page_owner_sort: invalid option -- '", std::string(1, a[k]), "'"));
        }
        short_option(a[k]);
      }
      continue;
    }
    // A long option: the exact name, or a prefix of only one.
    std::string_view rest = std::string_view(a).substr(2);
    size_t eq = rest.find('=');
    std::string_view name = rest.substr(0, eq);
    int found = -1;
    std::vector<int> prefixed;
    for (int k = 0; k < 5; ++k) {
      if (kLongs[k] == name) {
        found = k;
        break;
      }
      if (kLongs[k].substr(0, name.size()) == name) prefixed.push_back(k);
    }
    if (found < 0 && prefixed.size() == 1) found = prefixed[0];
    if (found < 0 && prefixed.size() > 1) {
      std::string message =
          absl::StrCat("page_owner_sort: option '", a, "' is ambiguous; possibilities:");
      for (int k : prefixed) absl::StrAppend(&message, " '--", Av(kLongs[k]), "'");
      return absl::InvalidArgumentError(message);
    }
    if (found < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("page_owner_sort: unrecognized option '", a, "'"));
    }
    std::string arg;
    if (eq != std::string_view::npos) {
      arg = std::string(rest.substr(eq + 1));
    } else if (i + 1 < args.size()) {
      arg = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("page_owner_sort: option '--", Av(kLongs[found]), "' requires an argument"));
    }
    if (absl::Status s = long_option(found, arg); !s.ok()) return s;
  }

  if (v61) {
    o.sort = std::move(sc);
    return o;
  }
  // 6.12: one of the flags or none (-t); the comparator replaces whatever --sort gave.
  switch (compare_flag) {
    case 0:
    case kT:
      o.sort = {{SortKey::kTimes, true}};
      break;
    case kA:
      o.sort = {{SortKey::kAllocTs, false}};
      break;
    case kM:
      o.sort = {{SortKey::kPages, true}};
      break;
    case kP:
      o.sort = {{SortKey::kPid, false}};
      break;
    case kS:
      o.sort = {{SortKey::kStacktrace, false}};
      break;
    case kTg:
      o.sort = {{SortKey::kTgid, false}};
      break;
    case kN:
      o.sort = {{SortKey::kName, false}};
      break;
    default:
      return absl::InvalidArgumentError(
          "page_owner_sort: only one of -a, -m, -n, -p, -P, -s, -t may be given (the tool prints "
          "its usage)");
  }
  return o;
}

PageOwnerSorter::PageOwnerSorter() = default;
PageOwnerSorter::~PageOwnerSorter() = default;

void PageOwnerSorter::AddText(std::string_view text) {
  input_bytes_ += static_cast<int64_t>(text.size());
  // Cut the input as fgets(curr, buf_end - curr) does: at each '\n', or after as many bytes as
  // fit in what is left of the block buffer.
  while (!stopped_ && !text.empty()) {
    size_t room = kBufSize - block_.size() - 1 - pending_.size();
    size_t newline = text.find('\n');
    size_t take = newline == std::string_view::npos ? text.size() : newline + 1;
    if (take > room) {
      take = room;
    } else if (newline == std::string_view::npos) {
      pending_.append(text);
      return;
    }
    if (pending_.empty()) {
      ProcessPiece(text.substr(0, take));
    } else {
      pending_.append(text.substr(0, take));
      std::string piece = std::move(pending_);
      pending_.clear();
      ProcessPiece(piece);
    }
    text.remove_prefix(take);
  }
}

void PageOwnerSorter::AddBlock(std::string_view block) {
  AddText(block);
  if (!block.empty() && block.back() != '\n') AddText("\n");
  AddText("\n");
}

void PageOwnerSorter::ProcessPiece(std::string_view piece) {
  if (piece.empty()) return;
  if (piece[0] == '\n') {  // the blank line: the block is complete
    EndBlock();
    return;
  }
  // The tool handles the line as a C string: a NUL cuts it (and drops its '\n').
  std::string_view line = piece.substr(0, piece.find('\0'));
  if (line.substr(0, 3) == "PFN") {
    pfn_line_.assign(line.data(), line.size());
    return;
  }
  block_.append(line.data(), line.size());
  // The buffer is full (one byte left for the NUL): read_block() reports EOF and the tool stops.
  if (kBufSize - block_.size() <= 1) stopped_ = true;
}

uint32_t PageOwnerSorter::InternText(std::string_view text) {
  auto it = text_ids_.find(text);
  if (it != text_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(texts_.size());
  texts_.emplace_back(text);
  text_ids_.emplace(texts_.back(), id);
  return id;
}

uint32_t PageOwnerSorter::InternName(std::string_view name) {
  auto it = name_ids_.find(name);
  if (it != name_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(names_.size());
  names_.emplace_back(name);
  name_ids_.emplace(names_.back(), id);
  return id;
}

void PageOwnerSorter::EndBlock() {
  std::string_view raw = block_;
  const Debug quiet;
  Block b;
  // remove_pattern(): the digits of the first "ts N ns" come out (when the options ask for it).
  Group ts = MatchTs(raw);
  if (ts.found && ts.end > ts.begin) {
    std::string stripped;
    stripped.reserve(raw.size());
    stripped.append(raw.substr(0, ts.begin));
    stripped.append(raw.substr(ts.end));
    b.text = InternText(stripped);
    b.strip_at = static_cast<uint32_t>(ts.begin);
    b.digits_at = static_cast<uint32_t>(digits_.size());
    b.digits_len = static_cast<uint32_t>(ts.end - ts.begin);
    digits_.append(raw.substr(ts.begin, ts.end - ts.begin));
  } else {
    b.text = InternText(raw);
    b.strip_at = 0;
    b.digits_at = 0;
    b.digits_len = 0;
  }
  b.name = InternName(GetComm(raw, quiet));
  b.pid = GetPid(raw, quiet);
  b.tgid = GetTgid(raw, quiet);
  b.pages = GetPageNum(raw, quiet);
  b.allocator = GetAllocator(raw, pfn_line_);
  b.ts = GetTs(raw, quiet);
  b.ts_61 = GetTs61(raw, quiet);
  b.free_ts = GetFreeTs(raw, quiet);
  blocks_.push_back(b);
  block_.clear();
}

namespace {

// One record of the tool's list: a kept block and what merged into it.
struct Record {
  uint32_t block;
  int32_t num;
  int32_t pages;
};

}  // namespace

SortReport PageOwnerSorter::Report(const SortOptions& o) const {
  const bool v61 = o.version == PageOwnerSortVersion::k6_1;
  // add_list() takes the ts digits out unless the first comparator is compare_ts (6.12 only).
  const bool stripped = !v61 && (o.sort.empty() || o.sort[0].key != SortKey::kAllocTs);
  const bool cull = o.cull.any();
  SortReport r;

  auto raw_pieces = [&](const Block& b) {
    std::string_view t = texts_[b.text];
    return Pieces{{t.substr(0, b.strip_at),
                   std::string_view(digits_).substr(b.digits_at, b.digits_len),
                   t.substr(b.strip_at)}};
  };
  auto same_raw = [&](const Block& a, const Block& b) {
    return a.text == b.text && a.strip_at == b.strip_at &&
           std::string_view(digits_).substr(a.digits_at, a.digits_len) ==
               std::string_view(digits_).substr(b.digits_at, b.digits_len);
  };
  auto in = [](const auto& list, const auto& value) {
    return std::find(list.begin(), list.end(), value) != list.end();
  };

  // The reading loop: max_size, the filters (is_need) and, for 6.1, the merging of a block equal
  // to the record before it.
  const int64_t max_size = input_bytes_ / 100;
  std::vector<Record> records;
  std::string raw_text;
  for (uint32_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    Debug debug;
    std::string_view raw;
    if (o.debug) {
      raw_text.clear();
      raw_pieces(b).AppendTo(&raw_text);
      raw_text.push_back('\n');
      debug.out = &r.stderr_text;
      debug.buf = raw_text;
      raw = std::string_view(raw_text).substr(0, raw_text.size() - 1);
    }
    if (v61 && !records.empty() && same_raw(b, blocks_[records.back().block])) {
      if (o.debug) GetPageNum(raw, debug);
      records.back().num = WrapAdd(records.back().num, 1);
      records.back().pages = WrapAdd(records.back().pages, b.pages);
      continue;
    }
    if (static_cast<int64_t>(records.size()) == max_size) {
      r.stderr_text.append("max_size too small??\n");
      r.loaded = static_cast<int64_t>(records.size());
      r.completed = false;
      return r;
    }
    if (v61 && o.debug) {
      GetTs61(raw, debug);
      GetFreeTs(raw, debug);
    }
    if (v61 && o.filter_released && b.free_ts != 0 && b.ts_61 < b.free_ts) continue;
    if (o.pids) {
      if (o.debug) GetPid(raw, debug);
      if (!in(*o.pids, b.pid)) continue;
    }
    if (o.tgids) {
      if (o.debug) GetTgid(raw, debug);
      if (!in(*o.tgids, b.tgid)) continue;
    }
    if (o.debug) GetComm(raw, debug);
    if (o.names && !in(*o.names, names_[b.name])) continue;
    if (o.debug) {
      GetPid(raw, debug);
      GetTgid(raw, debug);
      GetComm(raw, debug);
      GetPageNum(raw, debug);
      if (v61) {
        GetTs61(raw, debug);
        GetFreeTs(raw, debug);
      } else {
        GetTs(raw, debug);
      }
    }
    records.push_back({i, 1, b.pages});
    if (records.size() % 1000 == 0)
      absl::StrAppend(&r.stdout_text, "loaded ", records.size(), "\r");
  }
  const size_t n = records.size();
  r.loaded = static_cast<int64_t>(n);
  absl::StrAppend(&r.stdout_text, "loaded ", n, "\nsorting ....\nculling\n");

  // The string comparisons become ranks: strcmp of the whole text (txt), of the text after its
  // first line (stacktrace) and of the comm.
  auto needs = [&](SortKey key) {
    return std::any_of(o.sort.begin(), o.sort.end(),
                       [key](const SortField& f) { return f.key == key; });
  };
  std::vector<uint32_t> text_rank, stack_rank, name_rank;
  auto block_of = [&](size_t k) -> const Block& { return blocks_[records[k].block]; };
  const bool want_text = !cull || needs(SortKey::kText);
  const bool want_stack = (cull && o.cull.stacktrace) || needs(SortKey::kStacktrace);
  if (stripped) {
    // Ranks of the distinct texts, then of the records.
    std::vector<uint32_t> ids;
    std::vector<int32_t> slot(texts_.size(), -1);
    for (size_t k = 0; k < n; ++k) {
      uint32_t t = block_of(k).text;
      if (slot[t] < 0) {
        slot[t] = static_cast<int32_t>(ids.size());
        ids.push_back(t);
      }
    }
    auto by_ids = [&](const std::vector<uint32_t>& id_rank) {
      std::vector<uint32_t> out(n);
      for (size_t k = 0; k < n; ++k) out[k] = id_rank[slot[block_of(k).text]];
      return out;
    };
    if (want_text) {
      text_rank = by_ids(Ranks(ids.size(), [&](uint32_t a, uint32_t b) {
        return std::string_view(texts_[ids[a]]).compare(texts_[ids[b]]);
      }));
    }
    if (want_stack) {
      stack_rank = by_ids(Ranks(ids.size(), [&](uint32_t a, uint32_t b) {
        return AfterFirstLine(texts_[ids[a]]).compare(AfterFirstLine(texts_[ids[b]]));
      }));
    }
  } else {
    std::vector<Pieces> pieces(n);
    for (size_t k = 0; k < n; ++k) pieces[k] = raw_pieces(block_of(k));
    if (want_text) {
      text_rank = Ranks(n, [&](uint32_t a, uint32_t b) { return pieces[a].Compare(pieces[b]); });
    }
    if (want_stack) {
      std::vector<Pieces> stacks(n);
      for (size_t k = 0; k < n; ++k) stacks[k] = pieces[k].AfterFirstLine();
      stack_rank = Ranks(n, [&](uint32_t a, uint32_t b) { return stacks[a].Compare(stacks[b]); });
    }
  }
  if ((cull && o.cull.name) || needs(SortKey::kName)) {
    std::vector<uint32_t> by_name = Ranks(names_.size(), [&](uint32_t a, uint32_t b) {
      return std::string_view(names_[a]).compare(names_[b]);
    });
    name_rank.resize(n);
    for (size_t k = 0; k < n; ++k) name_rank[k] = by_name[block_of(k).name];
  }

  // The tool's comparators over record indices.
  auto compare = [&](SortKey key, uint32_t a, uint32_t b) -> int32_t {
    const Block& x = block_of(a);
    const Block& y = block_of(b);
    switch (key) {
      case SortKey::kTimes:
        return WrapSub(records[a].num, records[b].num);
      case SortKey::kPages:
        return WrapSub(records[a].pages, records[b].pages);
      case SortKey::kPid:
        return WrapSub(x.pid, y.pid);
      case SortKey::kTgid:
        return WrapSub(x.tgid, y.tgid);
      case SortKey::kName:
        return Sign(name_rank[a], name_rank[b]);
      case SortKey::kStacktrace:
        return Sign(stack_rank[a], stack_rank[b]);
      case SortKey::kAllocTs: {
        uint64_t tx = v61 ? x.ts_61 : x.ts;
        uint64_t ty = v61 ? y.ts_61 : y.ts;
        return Sign(tx, ty);  // three-way since the 2025 fix, in both stable trees
      }
      case SortKey::kText:
        return Sign(text_rank[a], text_rank[b]);
      case SortKey::kAllocator:
        return WrapSub(x.allocator, y.allocator);
      case SortKey::kFreeTs:
        return x.free_ts < y.free_ts ? -1 : 1;  // never 0, as the tool's
    }
    return 0;
  };
  auto compare_cull = [&](uint32_t a, uint32_t b) -> int32_t {
    if (!cull) return Sign(text_rank[a], text_rank[b]);
    int32_t c = 0;
    if (o.cull.stacktrace && (c = compare(SortKey::kStacktrace, a, b)) != 0) return c;
    if (o.cull.pid && (c = compare(SortKey::kPid, a, b)) != 0) return c;
    if (o.cull.tgid && (c = compare(SortKey::kTgid, a, b)) != 0) return c;
    if (o.cull.name && (c = compare(SortKey::kName, a, b)) != 0) return c;
    if (v61 && o.cull.released) {
      bool fa = block_of(a).free_ts != 0;
      bool fb = block_of(b).free_ts != 0;
      if (fa != fb) return fa ? 1 : -1;
    }
    if (o.cull.allocator && (c = compare(SortKey::kAllocator, a, b)) != 0) return c;
    return 0;
  };
  auto compare_sort = [&](uint32_t a, uint32_t b) -> int32_t {
    int32_t c = 0;
    for (const SortField& f : o.sort) {
      if (c == 0) c = WrapMul(f.descending ? -1 : 1, compare(f.key, a, b));
    }
    return c;
  };

  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  GlibcQsort(&order, compare_cull);
  std::vector<uint32_t> kept;
  for (uint32_t k : order) {
    if (kept.empty() || compare_cull(kept.back(), k) != 0) {
      kept.push_back(k);
    } else {
      Record& into = records[kept.back()];
      into.num = WrapAdd(into.num, records[k].num);
      into.pages = WrapAdd(into.pages, records[k].pages);
    }
  }
  GlibcQsort(&kept, compare_sort);

  std::string& out = r.output;
  for (uint32_t k : kept) {
    const Record& rec = records[k];
    const Block& b = block_of(k);
    absl::StrAppend(&out, rec.num, " times, ", rec.pages, " pages");
    if (!cull) {
      out.append(", ");
      AppendAllocator(b.allocator, &out);
      out.append(":\n");
      if (stripped) {
        out.append(texts_[b.text]);
      } else {
        raw_pieces(b).AppendTo(&out);
      }
      out.append("\n");
      continue;
    }
    if (o.cull.pid || o.pids) absl::StrAppend(&out, ", PID ", b.pid);
    if (o.cull.tgid || o.tgids) absl::StrAppend(&out, ", TGID ", b.tgid);
    if (o.cull.name || o.names) absl::StrAppend(&out, ", task_comm_name: ", names_[b.name]);
    if (o.cull.allocator) {
      out.append(", ");
      AppendAllocator(b.allocator, &out);
    }
    if (v61 && o.cull.released) {
      // Sic: a block with a free_ts is the "UNRELEASED" one.
      out.append(b.free_ts != 0 ? " (UNRELEASED)" : " (RELEASED)");
    }
    if (o.cull.stacktrace) {
      out.append(":\n");
      if (stripped) {
        out.append(AfterFirstLine(texts_[b.text]));
      } else {
        raw_pieces(b).AfterFirstLine().AppendTo(&out);
      }
    }
    out.append("\n");
  }
  r.records = static_cast<int64_t>(kept.size());
  return r;
}

SortReport SortPageOwnerDump(std::string_view dump, const SortOptions& options) {
  PageOwnerSorter sorter;
  sorter.AddText(dump);
  return sorter.Report(options);
}

}  // namespace pageowner
