#include "core/page_owner_sort_args.h"

#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "core/strings.h"

namespace pageowner {
namespace {

// --pid/--tgid lists: parse_nums_list() (explode(',') then strtol, base 10, the whole field).
std::optional<std::vector<int32_t>> ParseNumList(const std::string& arg) {
  std::vector<int32_t> out;
  for (absl::string_view field : absl::StrSplit(Sv(arg), ',')) {
    size_t i = 0;
    while (i < field.size() && absl::ascii_isspace(static_cast<unsigned char>(field[i]))) ++i;
    bool negative = false;
    if (i < field.size() && (field[i] == '+' || field[i] == '-')) negative = field[i++] == '-';
    size_t digits_end = i;
    while (digits_end < field.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(field[digits_end]))) {
      ++digits_end;
    }
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
  for (absl::string_view field : absl::StrSplit(Sv(arg), ',')) {
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
  for (absl::string_view field : absl::StrSplit(Sv(arg), ',')) {
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

// ---- getopt_long, as glibc runs it for the tool ----

// What getopt_long hands the tool's loop, one call at a time.
class OptionHandler {
 public:
  virtual ~OptionHandler() = default;
  virtual void Short(char c) = 0;
  virtual absl::Status Long(int index, const std::string& arg) = 0;
};

// The long option `a` ("--name" or "--name=value") names: the exact name, or a prefix of only
// one. Its index in `longs`, or the error glibc prints.
absl::StatusOr<int> FindLongOption(const std::string& a, absl::Span<const std::string_view> longs) {
  std::string_view rest = std::string_view(a).substr(2);
  std::string_view name = rest.substr(0, rest.find('='));
  std::vector<int> prefixed;
  for (int k = 0; k < static_cast<int>(longs.size()); ++k) {
    if (longs[k] == name) return k;
    if (longs[k].substr(0, name.size()) == name) prefixed.push_back(k);
  }
  if (prefixed.size() == 1) return prefixed[0];
  if (prefixed.size() > 1) {
    std::string message =
        absl::StrCat("page_owner_sort: option '", a, "' is ambiguous; possibilities:");
    for (int k : prefixed) absl::StrAppend(&message, " '--", Sv(longs[k]), "'");
    return absl::InvalidArgumentError(message);
  }
  return absl::InvalidArgumentError(absl::StrCat("page_owner_sort: unrecognized option '", a, "'"));
}

// getopt_long over `args` (no argv[0]) with the option string `shorts` (none takes an argument)
// and `longs` (each requires one): operands are permuted to the end (collected in `operands`),
// "--" ends the options, short options may be grouped, a long one takes "=value" or the next
// argument. Stops at the first error, as the tool exits there.
absl::Status GetoptLong(const std::vector<std::string>& args, std::string_view shorts,
                        absl::Span<const std::string_view> longs, OptionHandler& handler,
                        std::vector<std::string>* operands) {
  bool operands_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (operands_only || a.size() < 2 || a[0] != '-') {
      operands->push_back(a);
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
        handler.Short(a[k]);
      }
      continue;
    }
    absl::StatusOr<int> found = FindLongOption(a, longs);
    if (!found.ok()) return found.status();
    const size_t eq = a.find('=');
    std::string arg;
    if (eq != std::string::npos) {
      arg = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      arg = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("page_owner_sort: option '--", Sv(longs[*found]), "' requires an argument"));
    }
    if (absl::Status s = handler.Long(*found, arg); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---- The tool's option loop ----

// The body of the tool's switch on getopt_long's result. 6.12 collects -a -m -n -p -P -s -t as
// bits and picks the comparator after the loop; 6.1 sets it at once (set_single_cmp), and
// --sort replaces it.
class SortArgs : public OptionHandler {
 public:
  explicit SortArgs(PageOwnerSortVersion version) : version_(version) { o_.version = version; }

  std::string_view shorts() const { return v61() ? "adfmnprstP" : "admnpstP"; }
  std::vector<std::string>* operands() { return &o_.operands; }

  void Short(char c) override {
    switch (c) {
      case 'a':
        Single(kA, SortKey::kAllocTs, false);
        break;
      case 'd':
        o_.debug = true;
        break;
      case 'f':
        o_.filter_released = true;
        break;
      case 'm':
        Single(kM, SortKey::kPages, true);
        break;
      case 'n':
        Single(kN, SortKey::kName, false);
        break;
      case 'p':
        Single(kP, SortKey::kPid, false);
        break;
      case 'r':
        Single(0, SortKey::kFreeTs, false);
        break;
      case 's':
        Single(kS, SortKey::kStacktrace, false);
        break;
      case 't':
        Single(kT, SortKey::kTimes, true);
        break;
      case 'P':
        Single(kTg, SortKey::kTgid, false);
        break;
    }
  }

  // `index` in kLongOptions.
  absl::Status Long(int index, const std::string& arg) override {
    switch (index) {
      case 0:
      case 1: {
        std::optional<std::vector<int32_t>> list = ParseNumList(arg);
        if (!list) {
          return absl::InvalidArgumentError(absl::StrCat(
              "wrong/invalid ", index == 0 ? "pid" : "tgid", " in from the command line:", arg));
        }
        (index == 0 ? o_.pids : o_.tgids) = std::move(*list);
        return absl::OkStatus();
      }
      case 2: {
        std::vector<std::string> names = absl::StrSplit(Sv(arg), ',');
        o_.names = std::move(names);
        return absl::OkStatus();
      }
      case 3:
        if (!ParseCull(arg, version_, &o_.cull)) {
          return absl::InvalidArgumentError(
              absl::StrCat("wrong argument after --cull option:", arg));
        }
        if (sort_condition_.empty()) sort_condition_ = {{SortKey::kTimes, true}};
        return absl::OkStatus();
      default: {
        std::optional<std::vector<SortField>> list = ParseSortList(arg, version_);
        if (!list) {
          return absl::InvalidArgumentError(
              absl::StrCat("wrong argument after --sort option:", arg));
        }
        sort_condition_ = std::move(*list);
        return absl::OkStatus();
      }
    }
  }

  // After the loop: the comparator chain.
  absl::StatusOr<SortOptions> Finish() && {
    if (v61()) {
      o_.sort = std::move(sort_condition_);
      return std::move(o_);
    }
    // 6.12: one of the flags or none (-t); the comparator replaces whatever --sort gave.
    switch (compare_flag_) {
      case 0:
      case kT:
        o_.sort = {{SortKey::kTimes, true}};
        break;
      case kA:
        o_.sort = {{SortKey::kAllocTs, false}};
        break;
      case kM:
        o_.sort = {{SortKey::kPages, true}};
        break;
      case kP:
        o_.sort = {{SortKey::kPid, false}};
        break;
      case kS:
        o_.sort = {{SortKey::kStacktrace, false}};
        break;
      case kTg:
        o_.sort = {{SortKey::kTgid, false}};
        break;
      case kN:
        o_.sort = {{SortKey::kName, false}};
        break;
      default:
        return absl::InvalidArgumentError(
            "page_owner_sort: only one of -a, -m, -n, -p, -P, -s, -t may be given (the tool "
            "prints its usage)");
    }
    return std::move(o_);
  }

 private:
  enum : int { kA = 1, kM = 2, kP = 4, kS = 8, kT = 16, kTg = 32, kN = 64 };

  bool v61() const { return version_ == PageOwnerSortVersion::k6_1; }
  // A single-key flag: 6.12's bit (0 for 6.1's -r, which 6.12 does not have), 6.1's comparator.
  void Single(int bit, SortKey key, bool descending) {
    compare_flag_ |= bit;
    sort_condition_ = {{key, descending}};
  }

  PageOwnerSortVersion version_;
  SortOptions o_;
  int compare_flag_ = 0;
  std::vector<SortField> sort_condition_;  // 6.1's sort_condition, empty at first
};

// The tool's long options, in its order (the index SortArgs::Long gets).
constexpr std::string_view kLongOptions[] = {"pid", "tgid", "name", "cull", "sort"};

}  // namespace

std::string_view PageOwnerSortUsage() { return kUsage; }

absl::StatusOr<SortOptions> ParseSortArgs(const std::vector<std::string>& args,
                                          PageOwnerSortVersion version) {
  SortArgs parsed(version);
  if (absl::Status s = GetoptLong(args, parsed.shorts(), kLongOptions, parsed, parsed.operands());
      !s.ok()) {
    return s;
  }
  return std::move(parsed).Finish();
}

}  // namespace pageowner
