#include "core/strings.h"
#include "client/commands.h"

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <istream>
#include <map>
#include <ostream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/real_kernels.h"
#include "client/status.h"
#include "core/kernel_flags.h"
#include "core/reports.h"
#include "core/symbols.h"
#include "core/workload.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace pageowner::cli {
namespace {

using client::Client;
using client::IngestResult;
using client::Session;
using client::SessionOptions;
using Json = nlohmann::json;

// Debian's absl::string_view is not std::string_view.

// ---- The command table ----

struct FlagSpec {
  std::string_view name;
  bool takes_value;
};

struct CommandSpec {
  std::string_view name;
  std::string_view synopsis;  // after "pageowner "
  std::string_view summary;
  size_t min_positional;
  size_t max_positional;
  std::vector<FlagSpec> flags;
};

const std::vector<CommandSpec>& Commands() {
  static const auto* const kCommands = new std::vector<CommandSpec>{
      {"page",
       "page PFN [--json]",
       "the page_owner block of the block holding PFN (decimal or 0x hex), as dump prints it;\n"
       "a page that no block owns prints the kernel's dump_page_owner lines",
       1,
       1,
       {{"json", false}}},
      {"stack",
       "stack HANDLE [--json]",
       "the frames of a stack handle and what it owns",
       1,
       1,
       {{"json", false}}},
      {"stacks",
       "stacks [--threshold N] [--top N] [--sort pages|allocs|newest] [--handles]",
       "stacks owning at least max(1, N) pages, as page_owner_stacks/show_stacks prints them;\n"
       "--handles prints show_stacks_handles (frames, then handle: H)",
       0,
       0,
       {{"threshold", true}, {"top", true}, {"sort", true}, {"handles", false}}},
      {"dump",
       "dump [--format today|v6.2|2016]",
       "/sys/kernel/debug/page_owner: the block of every allocated block, in pfn order;\n"
       "--format v6.2 prints the 5.11..6.2 text (6.1's), 2016 the seed's",
       0,
       0,
       {{"format", true}}},
      {"import",
       "import FILE [--force] [--batch N]",
       "streams a real /sys/kernel/debug/page_owner dump (- for stdin; .gz, .xz) into the\n"
       "daemon, each block at its pfn; refuses a dump beyond the daemon's memory unless --force",
       1,
       1,
       {{"force", false}, {"batch", true}}},
      {"sort",
       "sort [--format today|v6.2|2016] [page_owner_sort options]",
       "page_owner_sort's report (-a -m -n -p -P -s -t --pid --tgid --name --cull --sort),\n"
       "computed in the daemon over its allocated blocks",
       0,
       SIZE_MAX,
       {{"format", true}}},
      {"stats",
       "stats [--json]",
       "allocator, depot and ingest counters (name: value), stackdepot/stats, mixed blocks",
       0,
       0,
       {{"json", false}}},
      {"replay",
       "replay FILE [--batch N] [--format jsonl|ftrace]",
       "sends the events of a JSON-lines file (- for stdin; format: client/REPLAY_FORMAT.md);\n"
       "bad lines are reported and skipped; prints the results by code. --format ftrace reads\n"
       "a kmem:mm_page_alloc/mm_page_free text trace (.gz, .xz too)",
       1,
       1,
       {{"batch", true}, {"format", true}}},
      {"load",
       "load --events N [--stacks S] [--fill F] [--seed X] [--batch N]",
       "a synthetic workload: N events over S distinct 16-frame stacks (default 10000), memory\n"
       "kept near the fraction F full (default 0.7, counting pages already allocated), seed X\n"
       "(default 1); prints events/s",
       0,
       0,
       {{"events", true}, {"stacks", true}, {"fill", true}, {"seed", true}, {"batch", true}}},
      {"help", "help", "this text", 0, 1, {}},
  };
  return *kCommands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const FlagSpec* FindFlag(const CommandSpec& c, std::string_view name) {
  for (const FlagSpec& f : c.flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::Status UsageStatus(std::string_view command, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(message), "\n", UsageHint(command)));
}

std::string Flag(const CommandLine& line, std::string_view name, std::string_view fallback) {
  std::string value(fallback);
  for (const auto& [n, v] : line.flags) {
    if (n == name) value = v;
  }
  return value;
}

bool HasFlag(const CommandLine& line, std::string_view name) {
  for (const auto& [n, v] : line.flags) {
    if (n == name) return true;
  }
  return false;
}

// ---- Output helpers ----

int ServerError(Io io, const absl::Status& status) {
  io.err << "pageowner: " << client::CodeName(status.code()) << ": " << status.message() << "\n";
  return kExitServerError;
}

int UsageError(Io io, std::string_view command, std::string_view message) {
  io.err << "pageowner: " << message << "\n" << UsageHint(command) << "\n";
  return kExitUsage;
}

absl::Status WriteJson(const google::protobuf::Message& m, std::ostream& out) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(m, &json, options);
  if (!status.ok()) return absl::InternalError(std::string(status.message()));
  out << json;
  if (json.empty() || json.back() != '\n') out << "\n";
  return absl::OkStatus();
}

// Writes through one large buffer, so a dump of millions of blocks makes few writes.
class BufferedOut {
 public:
  static constexpr size_t kFlushBytes = 1 << 20;
  explicit BufferedOut(std::ostream& out) : out_(out) { buf_.reserve(kFlushBytes + (64 << 10)); }
  ~BufferedOut() { Flush(); }
  std::string* buf() { return &buf_; }
  void MaybeFlush() {
    if (buf_.size() >= kFlushBytes) Flush();
  }
  void Flush() {
    out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    buf_.clear();
  }

 private:
  std::ostream& out_;
  std::string buf_;
};

// Prints a line on stderr at most once a second.
class Progress {
 public:
  bool Due() {
    const absl::Time now = absl::Now();
    if (now - last_ < absl::Seconds(1)) return false;
    last_ = now;
    return true;
  }

 private:
  absl::Time last_ = absl::Now();
};

std::string FormatRate(double per_second) { return absl::StrFormat("%.0f", per_second); }

// Counts of results by code, printed "  CODE: n" in code order.
class CodeCounts {
 public:
  void Add(absl::StatusCode code) { ++counts_[code]; }
  uint64_t Get(absl::StatusCode code) const {
    auto it = counts_.find(code);
    return it == counts_.end() ? 0 : it->second;
  }
  std::string Summary() const {
    std::vector<std::string> parts;
    for (const auto& [code, n] : counts_)
      parts.push_back(absl::StrCat(client::CodeName(code), " ", n));
    return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
  }

 private:
  std::map<absl::StatusCode, uint64_t> counts_;
};

// ---- Replay parsing ----

absl::Status Bad(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

std::string Quoted(std::string_view s) { return absl::StrCat("\"", Sv(s), "\""); }

absl::StatusOr<uint64_t> JsonUnsigned(const Json& v, std::string_view field, uint64_t max) {
  uint64_t n = 0;
  if (v.is_number_unsigned()) {
    n = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    return Bad(absl::StrCat("field ", Quoted(field), " must not be negative"));
  } else if (v.is_number_float()) {
    return Bad(absl::StrCat("field ", Quoted(field), " must be an integer"));
  } else if (v.is_string()) {
    absl::StatusOr<uint64_t> p = ParseNumber(v.get_ref<const std::string&>());
    if (!p.ok()) return Bad(absl::StrCat("field ", Quoted(field), ": ", p.status().message()));
    n = *p;
  } else {
    return Bad(absl::StrCat("field ", Quoted(field), " must be a number or a string"));
  }
  if (n > max) return Bad(absl::StrCat("field ", Quoted(field), " is above ", max));
  return n;
}

absl::StatusOr<int32_t> JsonInt32(const Json& v, std::string_view field) {
  if (!v.is_number_integer()) {
    return Bad(absl::StrCat("field ", Quoted(field), " must be an integer"));
  }
  const int64_t n = v.get<int64_t>();
  if (v.is_number_unsigned() && v.get<uint64_t>() > INT32_MAX) {
    return Bad(absl::StrCat("field ", Quoted(field), " is out of range"));
  }
  if (n < INT32_MIN || n > INT32_MAX) {
    return Bad(absl::StrCat("field ", Quoted(field), " is out of range"));
  }
  return static_cast<int32_t>(n);
}

absl::StatusOr<std::string> JsonString(const Json& v, std::string_view field) {
  if (!v.is_string()) return Bad(absl::StrCat("field ", Quoted(field), " must be a string"));
  return v.get<std::string>();
}

absl::StatusOr<uint32_t> JsonGfp(const Json& v) {
  if (!v.is_string()) {
    absl::StatusOr<uint64_t> n = JsonUnsigned(v, "gfp", UINT32_MAX);
    if (!n.ok()) return n.status();
    return static_cast<uint32_t>(*n);
  }
  const std::string& s = v.get_ref<const std::string&>();
  if (absl::StatusOr<uint64_t> n = ParseNumber(s); n.ok()) {
    if (*n > UINT32_MAX) return Bad("field \"gfp\" is above 4294967295");
    return static_cast<uint32_t>(*n);
  }
  absl::StatusOr<uint32_t> mask = ParseGfpNames(s);
  if (!mask.ok()) return Bad(absl::StrCat("field \"gfp\": ", mask.status().message()));
  return *mask;
}

absl::StatusOr<client::Frame> JsonFrame(const Json& v, size_t index) {
  const std::string where = absl::StrCat("stack frame ", index);
  client::Frame f;
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.empty()) return Bad(absl::StrCat(where, " is empty"));
    if (absl::StatusOr<uint64_t> ip = ParseNumber(s); ip.ok()) {
      if (*ip == 0) return Bad(absl::StrCat(where, ": address 0"));
      f.ip = *ip;
    } else {
      f.symbol = s;
    }
    return f;
  }
  if (v.is_number_unsigned()) {
    f.ip = v.get<uint64_t>();
    if (f.ip == 0) return Bad(absl::StrCat(where, ": address 0"));
    return f;
  }
  if (!v.is_object()) {
    return Bad(absl::StrCat(where, " must be a string, an address or {\"ip\": ..., \"sym\": ...}"));
  }
  for (const auto& [key, value] : v.items()) {
    if (key == "ip") {
      absl::StatusOr<uint64_t> ip = JsonUnsigned(value, "ip", UINT64_MAX);
      if (!ip.ok()) return Bad(absl::StrCat(where, ": ", ip.status().message()));
      f.ip = *ip;
    } else if (key == "sym") {
      if (!value.is_string()) return Bad(absl::StrCat(where, ": field \"sym\" must be a string"));
      f.symbol = value.get<std::string>();
    } else {
      return Bad(absl::StrCat(where, ": unknown field ", Quoted(key)));
    }
  }
  if (f.ip == 0 && f.symbol.empty()) return Bad(absl::StrCat(where, " has neither ip nor sym"));
  return f;
}

// The fields each kind takes; the others are refused, so that a typo does not pass unseen.
bool FieldApplies(ReplayKind kind, std::string_view field) {
  static constexpr std::string_view kCommon[] = {"kind", "pid", "tgid", "comm", "ts_ns", "stack"};
  for (std::string_view f : kCommon) {
    if (f == field) return true;
  }
  switch (kind) {
    case ReplayKind::kAlloc:
      return field == "order" || field == "gfp" || field == "pfn";
    case ReplayKind::kFree:
      return field == "order" || field == "pfn";
    case ReplayKind::kMigrate:
      return field == "pfn" || field == "reason" || field == "target_pfn";
  }
  return false;
}

constexpr std::string_view kKnownFields[] = {"kind",  "pid", "tgid", "comm",   "ts_ns",     "stack",
                                             "order", "gfp", "pfn",  "reason", "target_pfn"};

// The parse error's text without nlohmann's "[json.exception.parse_error.101] " prefix.
std::string JsonErrorText(const char* what) {
  std::string_view s(what);
  if (size_t p = s.find("] "); p != std::string_view::npos && s.rfind("[json", 0) == 0) {
    s.remove_prefix(p + 2);
  }
  return std::string(s);
}

// ---- Commands' helpers ----

// Renders a page the way dump renders it when dump would print it, else dump_page_owner's lines.
std::string RenderPage(const v1::GetPageResponse& resp, const v1::Stack& alloc_stack) {
  SymbolTable symbols;
  PrintedExtras extras;
  const PageOwner p = client::ToPageOwner(resp.page(), &extras);
  const client::ReceivedStack alloc = client::ReceiveStack(alloc_stack, &symbols);
  std::string out;
  if (p.owner && p.allocated && p.handle.valid()) {
    AppendPageOwnerBlock(p, alloc.ips, symbols, DumpFormat::kToday, &out);
  } else {
    const client::ReceivedStack freed = client::ReceiveStack(resp.free_stack(), &symbols);
    out = DumpPageOwnerText(p, alloc.ips, freed.ips, symbols);
  }
  return out;
}

void AppendStatsLines(const google::protobuf::Message& m, std::string* out) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING ||
        f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      continue;  // the texts follow below
    }
    std::vector<std::string> values;
    const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
    for (int j = 0; j < n; ++j) {
      const bool rep = f->is_repeated();
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_UINT64:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedUInt64(m, f, j) : r->GetUInt64(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedUInt32(m, f, j) : r->GetUInt32(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedInt64(m, f, j) : r->GetInt64(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedInt32(m, f, j) : r->GetInt32(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          values.push_back((rep ? r->GetRepeatedBool(m, f, j) : r->GetBool(m, f)) ? "true"
                                                                                  : "false");
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          values.push_back(
              absl::StrFormat("%.2f", rep ? r->GetRepeatedDouble(m, f, j) : r->GetDouble(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          values.push_back(
              absl::StrFormat("%.2f", rep ? r->GetRepeatedFloat(m, f, j) : r->GetFloat(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          values.push_back(rep ? r->GetRepeatedEnum(m, f, j)->name() : r->GetEnum(m, f)->name());
          break;
        default:
          break;
      }
    }
    absl::StrAppend(out, f->name(), ":", values.empty() ? "" : " ", absl::StrJoin(values, " "),
                    "\n");
  }
}

}  // namespace

// ---- Command line ----

std::string Usage() {
  std::string out =
      "usage: pageowner [--server=HOST:PORT] COMMAND [ARGS]\n"
      "\n"
      "Asks a pageownerd daemon who owns the pages of its simulated machine, in the Linux\n"
      "kernel's page_owner formats, and feeds it events.\n"
      "\n"
      "commands:\n";
  for (const CommandSpec& c : Commands()) {
    absl::StrAppend(&out, "  ", Sv(c.synopsis), "\n");
    for (absl::string_view line : absl::StrSplit(Sv(c.summary), '\n')) {
      absl::StrAppend(&out, "      ", line, "\n");
    }
  }
  absl::StrAppend(
      &out,
      "\n"
      "flags:\n"
      "  --server=HOST:PORT   the daemon (default ",
      Sv(kDefaultServer),
      ")\n"
      "  --help, -h           this text\n"
      "  --batch N            replay, load: events a batch on the stream (default 4096)\n"
      "\n"
      "Numbers are decimal or 0x hex. Exit codes: 0 success, 1 an error from the "
      "daemon,\n2 bad usage.\n");
  return out;
}

std::string UsageHint(std::string_view command) {
  if (const CommandSpec* c = FindCommand(command); c != nullptr && command != "help") {
    return absl::StrCat("usage: pageowner [--server=HOST:PORT] ", Sv(c->synopsis),
                        " ('pageowner help' lists all commands)");
  }
  std::vector<absl::string_view> names;
  for (const CommandSpec& c : Commands()) names.push_back(Sv(c.name));
  return absl::StrCat("usage: pageowner [--server=HOST:PORT] COMMAND [ARGS], COMMAND one of ",
                      absl::StrJoin(names, " "), " ('pageowner help' for more)");
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine line;
  const CommandSpec* spec = nullptr;
  bool help = false;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const std::string_view cmd = spec ? spec->name : "";
    // sort passes page_owner_sort's options through; only --server and --format are ours.
    if (spec != nullptr && spec->name == "sort" && a.rfind("--server", 0) != 0 &&
        a.rfind("--format", 0) != 0 && a != "--help" && a != "-h") {
      line.positional.push_back(a);
      continue;
    }
    if (!only_positional && (a == "--help" || a == "-h")) {
      help = true;
      continue;
    }
    if (!only_positional && a == "--" && spec != nullptr) {
      only_positional = true;
      continue;
    }
    if (!only_positional && a.size() > 2 && a.rfind("--", 0) == 0) {
      std::string name = a.substr(2);
      std::optional<std::string> value;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      }
      const FlagSpec* f = spec ? FindFlag(*spec, name) : nullptr;
      const bool is_server = name == "server";
      if (f == nullptr && !is_server) {
        return UsageStatus(cmd, spec ? absl::StrCat("unknown flag --", name, " for ", Sv(cmd))
                                     : absl::StrCat("unknown flag --", name));
      }
      if (is_server || f->takes_value) {
        if (!value) {
          if (i + 1 >= args.size()) {
            return UsageStatus(cmd, absl::StrCat("flag --", name, " needs a value"));
          }
          value = args[++i];
        }
        if (is_server) {
          if (value->empty()) return UsageStatus(cmd, "flag --server needs HOST:PORT");
          line.server = *value;
        } else {
          line.flags.emplace_back(name, *value);
        }
      } else {
        if (value && *value != "true" && *value != "false") {
          return UsageStatus(cmd, absl::StrCat("flag --", name, " takes no value (or true|false)"));
        }
        if (!value || *value == "true") line.flags.emplace_back(name, "true");
      }
      continue;
    }
    // "-" is stdin and "-5" a (bad) number, for the value checks to report.
    const bool negative_number = a.size() > 1 && a[0] == '-' && a[1] >= '0' && a[1] <= '9';
    if (!only_positional && a.size() > 1 && a[0] == '-' && !negative_number) {
      return UsageStatus(cmd, absl::StrCat("unknown flag ", a));
    }
    if (spec == nullptr) {
      spec = FindCommand(a);
      if (spec == nullptr) return UsageStatus("", absl::StrCat("unknown command '", a, "'"));
      line.command = a;
      continue;
    }
    line.positional.push_back(a);
  }
  if (help || (spec != nullptr && spec->name == "help")) {
    line.command = "help";
    line.positional.clear();
    line.flags.clear();
    return line;
  }
  if (spec == nullptr) return UsageStatus("", "no command given");
  if (line.positional.size() < spec->min_positional) {
    return UsageStatus(spec->name, absl::StrCat(Sv(spec->name), ": missing argument"));
  }
  if (line.positional.size() > spec->max_positional) {
    return UsageStatus(spec->name, absl::StrCat(Sv(spec->name), ": unexpected argument '",
                                                line.positional[spec->max_positional], "'"));
  }
  return line;
}

absl::StatusOr<uint64_t> ParseNumber(std::string_view text) {
  const absl::string_view s = Sv(text);
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("'", s, "' is not a decimal or 0x hex number"));
  };
  if (s.empty()) return bad();
  absl::string_view digits = s;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  for (char c : digits) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return bad();
    }
    if (value > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return absl::InvalidArgumentError(absl::StrCat("'", s, "' is too large"));
    }
    value = value * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return value;
}

absl::StatusOr<MigrateReason> ParseMigrateReason(std::string_view name) {
  for (int i = 0; i < kNumMigrateReasons; ++i) {
    const auto r = static_cast<MigrateReason>(i);
    if (MigrateReasonName(r) == name) return r;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown migrate reason ", Quoted(name)));
}

absl::StatusOr<ReplayEvent> ParseReplayLine(std::string_view line) {
  Json j;
  try {
    j = Json::parse(line.begin(), line.end());
  } catch (const Json::parse_error& e) {
    return Bad(absl::StrCat("not JSON: ", JsonErrorText(e.what())));
  }
  if (!j.is_object()) return Bad("not a JSON object");
  ReplayEvent e;
  auto kind_it = j.find("kind");
  if (kind_it == j.end()) return Bad("missing field \"kind\"");
  if (!kind_it->is_string()) return Bad("field \"kind\" must be a string");
  const std::string& kind = kind_it->get_ref<const std::string&>();
  if (kind == "alloc") {
    e.kind = ReplayKind::kAlloc;
  } else if (kind == "free") {
    e.kind = ReplayKind::kFree;
  } else if (kind == "migrate") {
    e.kind = ReplayKind::kMigrate;
  } else {
    return Bad(absl::StrCat("unknown kind ", Quoted(kind), " (alloc, free or migrate)"));
  }
  bool has_tgid = false;
  for (const auto& [key, v] : j.items()) {
    if (!FieldApplies(e.kind, key)) {
      bool known = false;
      for (std::string_view f : kKnownFields) known = known || f == key;
      if (!known) return Bad(absl::StrCat("unknown field ", Quoted(key)));
      return Bad(absl::StrCat("field ", Quoted(key), " does not apply to ", kind));
    }
    if (key == "kind") continue;
    if (key == "order") {
      absl::StatusOr<uint64_t> n = JsonUnsigned(v, key, UINT32_MAX);
      if (!n.ok()) return n.status();
      e.order = static_cast<uint32_t>(*n);
    } else if (key == "gfp") {
      absl::StatusOr<uint32_t> n = JsonGfp(v);
      if (!n.ok()) return n.status();
      e.gfp_mask = *n;
    } else if (key == "pfn" || key == "target_pfn") {
      absl::StatusOr<uint64_t> n = JsonUnsigned(v, key, UINT64_MAX);
      if (!n.ok()) return n.status();
      (key == "pfn" ? e.pfn : e.target_pfn) = *n;
    } else if (key == "reason") {
      absl::StatusOr<std::string> s = JsonString(v, key);
      if (!s.ok()) return s.status();
      absl::StatusOr<MigrateReason> r = ParseMigrateReason(*s);
      if (!r.ok()) return r.status();
      e.reason = *r;
    } else if (key == "pid" || key == "tgid") {
      absl::StatusOr<int32_t> n = JsonInt32(v, key);
      if (!n.ok()) return n.status();
      (key == "pid" ? e.pid : e.tgid) = *n;
      has_tgid = has_tgid || key == "tgid";
    } else if (key == "comm") {
      absl::StatusOr<std::string> s = JsonString(v, key);
      if (!s.ok()) return s.status();
      e.comm = std::move(*s);
    } else if (key == "ts_ns") {
      absl::StatusOr<uint64_t> n = JsonUnsigned(v, key, UINT64_MAX);
      if (!n.ok()) return n.status();
      e.ts_ns = *n;
    } else if (key == "stack") {
      if (!v.is_array()) return Bad("field \"stack\" must be an array of frames");
      for (size_t i = 0; i < v.size(); ++i) {
        absl::StatusOr<client::Frame> f = JsonFrame(v[i], i);
        if (!f.ok()) return f.status();
        e.stack.push_back(std::move(*f));
      }
    }
  }
  if (!has_tgid) e.tgid = e.pid;
  if (e.kind == ReplayKind::kAlloc && e.stack.empty()) {
    return Bad("an alloc needs a non-empty \"stack\"");
  }
  if (e.kind != ReplayKind::kAlloc && !e.pfn) {
    return Bad(absl::StrCat("a ", kind, " needs field \"pfn\""));
  }
  return e;
}

// ---- Commands ----

int RunPage(Client& client, const PageOptions& options, Io io) {
  absl::StatusOr<v1::GetPageResponse> resp = client.GetPage(options.pfn);
  if (!resp.ok()) return ServerError(io, resp.status());
  if (options.json) {
    absl::Status s = WriteJson(*resp, io.out);
    return s.ok() ? kExitOk : ServerError(io, s);
  }
  const v1::PageRecord& page = resp->page();
  // The daemon sends the stack with the record; ask for it only if it did not.
  v1::Stack alloc_stack = resp->alloc_stack();
  if (page.handle() != 0 && alloc_stack.handle() == 0) {
    absl::StatusOr<v1::Stack> s = client.GetStack(StackHandle(page.handle()));
    if (!s.ok()) return ServerError(io, s.status());
    alloc_stack = *std::move(s);
  }
  io.out << RenderPage(*resp, alloc_stack);
  return kExitOk;
}

namespace {

// "content_id: 0x%016x\n": a stack's host-independent id (proto Stack.content_id).
std::string ContentIdLine(uint64_t content_id) {
  return absl::StrFormat("content_id: 0x%016x\n", content_id);
}

}  // namespace

int RunStack(Client& client, const StackOptions& options, Io io) {
  absl::StatusOr<v1::Stack> stack = client.GetStack(options.handle);
  if (!stack.ok()) return ServerError(io, stack.status());
  if (options.json) {
    absl::Status s = WriteJson(*stack, io.out);
    return s.ok() ? kExitOk : ServerError(io, s);
  }
  SymbolTable symbols;
  const client::ReceivedStack s = client::ReceiveStack(*stack, &symbols);
  std::string out;
  for (uint64_t ip : s.ips) {
    out.push_back(' ');
    symbols.AppendFrame(ip, &out);
    out.push_back('\n');
  }
  absl::StrAppend(&out, "handle: ", s.handle.raw(), "\n", ContentIdLine(stack->content_id()),
                  "nr_base_pages: ", s.pages, "\nallocations: ", s.allocations, "\n");
  io.out << out;
  return kExitOk;
}

int RunStacks(Client& client, const StacksOptions& options, Io io) {
  v1::ListStacksRequest request;
  request.set_threshold(options.threshold);
  request.set_top(options.top);
  request.set_sort(options.sort == "allocs"   ? v1::STACK_SORT_ALLOCATIONS
                   : options.sort == "newest" ? v1::STACK_SORT_NEWEST
                                              : v1::STACK_SORT_PAGES);
  absl::StatusOr<v1::ListStacksResponse> resp = client.ListStacks(request);
  if (!resp.ok()) return ServerError(io, resp.status());
  SymbolTable symbols;
  BufferedOut out(io.out);
  const StacksView view = options.handles ? StacksView::kStacksHandles : StacksView::kStacks;
  for (const v1::Stack& stack : resp->stacks()) {
    const client::ReceivedStack s = client::ReceiveStack(stack, &symbols);
    AppendStackEntry(s.usage(), symbols, view, out.buf());
    // Ours, not the kernel's: the content id goes under the entry's closing "handle: H" line.
    if (options.handles) {
      out.buf()->insert(out.buf()->size() - 1, ContentIdLine(stack.content_id()));
    }
    out.MaybeFlush();
  }
  return kExitOk;
}

int RunDump(Client& client, Io io, DumpFormat format) {
  SymbolTable symbols;
  absl::flat_hash_map<uint32_t, std::vector<uint64_t>> frames;  // handle -> addresses
  BufferedOut out(io.out);
  absl::Status fetch_error;
  v1::ListPagesRequest request;
  request.set_state(v1::PAGE_STATE_ALLOCATED);
  absl::Status status = client.ListPages(request, [&](const v1::ListPagesResponse& chunk) {
    for (const v1::Stack& stack : chunk.stacks()) {
      frames[stack.handle()] = client::ReceiveStack(stack, &symbols).ips;
    }
    for (const v1::PageRecord& record : chunk.pages()) {
      auto it = frames.find(record.handle());
      if (it == frames.end()) {
        // Every stack should come with its first page; fetch one the daemon did not send.
        absl::StatusOr<v1::Stack> s = client.GetStack(StackHandle(record.handle()));
        if (!s.ok()) {
          fetch_error = s.status();
          return false;
        }
        it = frames.emplace(record.handle(), client::ReceiveStack(*s, &symbols).ips).first;
      }
      PrintedExtras extras;
      AppendPageOwnerBlock(client::ToPageOwner(record, &extras), it->second, symbols, format,
                           out.buf());
      out.MaybeFlush();
    }
    return true;
  });
  out.Flush();
  if (!fetch_error.ok()) return ServerError(io, fetch_error);
  if (!status.ok()) return ServerError(io, status);
  return kExitOk;
}

int RunStats(Client& client, const StatsOptions& options, Io io) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return ServerError(io, stats.status());
  if (options.json) {
    absl::Status s = WriteJson(*stats, io.out);
    return s.ok() ? kExitOk : ServerError(io, s);
  }
  std::string out;
  AppendStatsLines(*stats, &out);
  StackDepotStats depot;
  depot.pools = stats->depot_pools();
  depot.persistent_count = stats->depot_persistent_count();
  depot.persistent_bytes = stats->depot_persistent_bytes();
  depot.truncated = stats->depot_truncated();
  depot.failed = stats->depot_failed();
  absl::StrAppend(&out, "\n", StackDepotStatsText(depot));
  if (!stats->mixed_blocks_text().empty()) absl::StrAppend(&out, "\n", stats->mixed_blocks_text());
  io.out << out;
  return kExitOk;
}

int RunReplay(Client& client, const ReplayOptions& options, Io io) {
  std::ifstream file;
  std::istream* in = &io.in;
  if (options.file != "-") {
    file.open(options.file);
    if (!file) {
      return UsageError(
          io, "replay",
          absl::StrCat("replay: cannot open ", options.file, ": ", std::strerror(errno)));
    }
    in = &file;
  }
  SessionOptions session_options;
  session_options.batch_events = options.batch;
  std::unique_ptr<Session> session = client.StartSession(std::move(session_options));

  constexpr uint64_t kMaxFailuresShown = 20;
  std::vector<uint64_t> line_of;  // by event seq
  CodeCounts counts;
  uint64_t bad_lines = 0;
  uint64_t failed = 0;
  std::vector<IngestResult> results;
  auto take_results = [&] {
    results.clear();
    session->Poll(&results);
    for (const IngestResult& r : results) {
      counts.Add(r.code);
      if (r.ok()) continue;
      if (++failed <= kMaxFailuresShown) {
        io.err << "replay: line " << line_of[r.seq] << ": " << client::CodeName(r.code) << ": "
               << r.message << "\n";
      }
    }
  };

  Progress progress;
  std::string text;
  uint64_t lineno = 0;
  while (std::getline(*in, text)) {
    ++lineno;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    const size_t first = text.find_first_not_of(" \t");
    if (first == std::string::npos || text[first] == '#') continue;
    absl::StatusOr<ReplayEvent> e = ParseReplayLine(text);
    if (!e.ok()) {
      ++bad_lines;
      io.err << "replay: line " << lineno << ": " << e.status().message() << "\n";
      continue;
    }
    const client::Task task{e->pid, e->tgid, e->comm};
    line_of.push_back(lineno);
    switch (e->kind) {
      case ReplayKind::kAlloc:
        session->Alloc({.order = Order(e->order),
                        .gfp_mask = e->gfp_mask,
                        .stack = e->stack,
                        .task = task,
                        .ts_ns = e->ts_ns,
                        .pfn = e->pfn ? std::optional<Pfn>(Pfn(*e->pfn)) : std::nullopt});
        break;
      case ReplayKind::kFree:
        session->Free({.pfn = Pfn(*e->pfn),
                       .order = Order(e->order),
                       .stack = e->stack,
                       .task = task,
                       .ts_ns = e->ts_ns});
        break;
      case ReplayKind::kMigrate:
        session->Migrate(
            {.pfn = Pfn(*e->pfn),
             .reason = e->reason,
             .target = e->target_pfn ? std::optional<Pfn>(Pfn(*e->target_pfn)) : std::nullopt,
             .stack = e->stack,
             .task = task,
             .ts_ns = e->ts_ns});
        break;
    }
    if ((line_of.size() & 1023) == 0) {
      take_results();
      if (progress.Due()) {
        io.err << "replay: " << line_of.size() << " events sent, " << session->stats().results
               << " answered\n";
      }
    }
  }
  const absl::Status status = session->Finish();
  take_results();
  if (failed > kMaxFailuresShown) {
    io.err << "replay: " << failed - kMaxFailuresShown << " more failed events not shown\n";
  }
  io.out << "replay: " << line_of.size() << (line_of.size() == 1 ? " event, " : " events, ")
         << bad_lines << (bad_lines == 1 ? " bad line skipped\n" : " bad lines skipped\n");
  io.out << "results: " << counts.Summary() << "\n";
  if (!status.ok()) return ServerError(io, status);
  return kExitOk;
}

int RunLoad(Client& client, const LoadOptions& options, Io io) {
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) return ServerError(io, stats.status());

  WorkloadOptions wo;
  wo.pages = stats->total_pages();
  wo.stacks = options.stacks;
  // Pages a previous load or replay left allocated count towards the fill level.
  const double used = stats->total_pages() == 0 ? 0
                                                : static_cast<double>(stats->allocated_pages()) /
                                                      static_cast<double>(stats->total_pages());
  wo.fill = std::max(0.01, options.fill - used);
  wo.seed = options.seed;
  Workload workload(wo);

  SessionOptions session_options;
  session_options.batch_events = options.batch;
  std::unique_ptr<Session> session = client.StartSession(std::move(session_options));
  // Every stack and task once, with the names of its frames; each is sent with its first use.
  std::vector<client::StackId> stack_ids(workload.num_stacks());
  std::vector<client::Frame> frames;
  for (uint32_t s = 0; s < workload.num_stacks(); ++s) {
    frames.clear();
    for (uint64_t ip : workload.frames(s)) frames.push_back({ip, Workload::SymbolName(ip)});
    stack_ids[s] = session->InternStack(frames);
  }
  std::vector<client::TaskId> task_ids;
  for (const WorkloadTask& t : workload.tasks()) {
    task_ids.push_back(session->InternTask({t.pid, t.tgid, t.comm}));
  }

  std::deque<WorkloadEvent> pending;  // events sent, in seq order, not yet observed
  CodeCounts counts;
  std::vector<IngestResult> results;
  auto observe = [&] {
    results.clear();
    session->Poll(&results);
    for (const IngestResult& r : results) {
      counts.Add(r.code);
      workload.Observe(pending.front(), r.ok(), r.pfn);
      pending.pop_front();
    }
  };

  const absl::Time start = absl::Now();
  Progress progress;
  for (uint64_t i = 0; i < options.events; ++i) {
    const WorkloadEvent e = workload.Next();
    pending.push_back(e);
    const client::StackId stack = stack_ids[e.stack];
    const client::TaskId task = task_ids[e.task];
    client::AddWorkloadEvent(session.get(), e, stack, task);
    if ((i & 1023) == 1023) {
      observe();
      if (progress.Due()) {
        const double secs = absl::ToDoubleSeconds(absl::Now() - start);
        io.err << "load: " << i + 1 << " events, " << FormatRate(static_cast<double>(i + 1) / secs)
               << " events/s\n";
      }
    }
  }
  const absl::Status status = session->Finish();
  observe();
  const double secs = std::max(absl::ToDoubleSeconds(absl::Now() - start), 1e-9);
  io.out << "load: results: " << counts.Summary() << "\n";
  io.out << "load: " << options.events << " events in " << absl::StrFormat("%.2f", secs) << " s, "
         << FormatRate(static_cast<double>(options.events) / secs) << " events/s\n";
  if (!status.ok()) return ServerError(io, status);
  return kExitOk;
}

int Dispatch(const CommandLine& line, Io io) {
  const std::string& cmd = line.command;
  if (cmd == "help") {
    io.out << Usage();
    return kExitOk;
  }
  // Values are checked before anything is sent, so that bad usage never reaches the daemon.
  auto number = [&](std::string_view what, const std::string& text, uint64_t max,
                    uint64_t* value) -> bool {
    absl::StatusOr<uint64_t> n = ParseNumber(text);
    if (!n.ok()) {
      UsageError(io, cmd, absl::StrCat(cmd, ": bad ", Sv(what), ": ", n.status().message()));
      return false;
    }
    if (*n > max) {
      UsageError(io, cmd, absl::StrCat(cmd, ": bad ", Sv(what), ": '", text, "' is above ", max));
      return false;
    }
    *value = *n;
    return true;
  };
  auto batch = [&](size_t* out) -> bool {
    uint64_t n = *out;
    if (HasFlag(line, "batch") && !number("--batch", Flag(line, "batch", ""), 1 << 20, &n)) {
      return false;
    }
    if (n == 0) {
      UsageError(io, cmd, absl::StrCat(cmd, ": bad --batch: must be at least 1"));
      return false;
    }
    *out = n;
    return true;
  };

  Client client(line.server);
  if (cmd == "page") {
    uint64_t pfn;
    if (!number("PFN", line.positional[0], UINT64_MAX, &pfn)) return kExitUsage;
    return RunPage(client, {Pfn(pfn), HasFlag(line, "json")}, io);
  }
  if (cmd == "stack") {
    uint64_t handle;
    if (!number("HANDLE", line.positional[0], UINT32_MAX, &handle)) return kExitUsage;
    return RunStack(client, {StackHandle(static_cast<uint32_t>(handle)), HasFlag(line, "json")},
                    io);
  }
  if (cmd == "stacks") {
    StacksOptions o;
    uint64_t n = 0;
    if (HasFlag(line, "threshold")) {
      if (!number("--threshold", Flag(line, "threshold", ""), INT64_MAX, &n)) return kExitUsage;
      o.threshold = static_cast<int64_t>(n);
    }
    if (HasFlag(line, "top")) {
      if (!number("--top", Flag(line, "top", ""), UINT32_MAX, &n)) return kExitUsage;
      o.top = static_cast<uint32_t>(n);
    }
    o.sort = Flag(line, "sort", "pages");
    if (o.sort != "pages" && o.sort != "allocs" && o.sort != "newest") {
      return UsageError(io, cmd,
                        absl::StrCat("stacks: bad --sort '", o.sort, "': pages, allocs or newest"));
    }
    o.handles = HasFlag(line, "handles");
    return RunStacks(client, o, io);
  }
  if (cmd == "dump" || cmd == "sort") {
    absl::StatusOr<DumpFormat> format = ParseDumpFormat(Flag(line, "format", "today"));
    if (!format.ok()) {
      return UsageError(io, cmd, absl::StrCat(cmd, ": ", format.status().message()));
    }
    if (cmd == "sort") return RunSort(client, line.positional, *format, io);
    return RunDump(client, io, *format);
  }
  if (cmd == "import") {
    ImportOptions o;
    o.file = line.positional[0];
    o.force = HasFlag(line, "force");
    if (!batch(&o.batch)) return kExitUsage;
    return RunImport(client, o, io);
  }
  if (cmd == "stats") return RunStats(client, {HasFlag(line, "json")}, io);
  if (cmd == "replay") {
    ReplayOptions o;
    o.file = line.positional[0];
    if (!batch(&o.batch)) return kExitUsage;
    const std::string format = Flag(line, "format", "jsonl");
    if (format == "ftrace") return RunReplayFtrace(client, o, io);
    if (format != "jsonl") {
      return UsageError(io, cmd,
                        absl::StrCat("replay: unknown --format '", format, "': jsonl or ftrace"));
    }
    return RunReplay(client, o, io);
  }
  if (cmd == "load") {
    LoadOptions o;
    if (!HasFlag(line, "events")) return UsageError(io, cmd, "load: --events N is required");
    if (!number("--events", Flag(line, "events", ""), UINT64_MAX, &o.events)) return kExitUsage;
    uint64_t n = o.stacks;
    if (HasFlag(line, "stacks")) {
      if (!number("--stacks", Flag(line, "stacks", ""), 1 << 24, &n)) return kExitUsage;
      if (n == 0) return UsageError(io, cmd, "load: bad --stacks: must be at least 1");
      o.stacks = static_cast<uint32_t>(n);
    }
    if (HasFlag(line, "fill")) {
      const std::string text = Flag(line, "fill", "");
      double f;
      if (!absl::SimpleAtod(text, &f) || !(f > 0 && f <= 1)) {
        return UsageError(io, cmd,
                          absl::StrCat("load: bad --fill '", text, "': a fraction in (0, 1]"));
      }
      o.fill = f;
    }
    if (HasFlag(line, "seed") && !number("--seed", Flag(line, "seed", ""), UINT64_MAX, &o.seed)) {
      return kExitUsage;
    }
    if (!batch(&o.batch)) return kExitUsage;
    return RunLoad(client, o, io);
  }
  return UsageError(io, "", absl::StrCat("unknown command '", cmd, "'"));
}

}  // namespace pageowner::cli
