#include "client/replay_format.h"

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "core/kernel_flags.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace pageowner::cli {
namespace {

using Json = nlohmann::json;

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

}  // namespace

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
  } catch (const Json::exception& e) {
    // parse_error, and out_of_range for a number no double holds (1e999): found by the fuzzer.
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

}  // namespace pageowner::cli
