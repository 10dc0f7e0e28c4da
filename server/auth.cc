#include "server/auth.h"

#include <openssl/crypto.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/strings.h"

namespace pageowner::server {
namespace {

// Which role each gRPC method needs. Health is open like /healthz (probes carry no token);
// reflection shows only the schema, so readers may use grpcurl's describe.
constexpr AccessRule kGrpcRules[] = {
    {"/grpc.health.v1.Health/", Access::kOpen},
    {"/grpc.reflection.v1alpha.ServerReflection/", Access::kReader},
    {"/grpc.reflection.v1.ServerReflection/", Access::kReader},
    {"/pageowner.v1.PageOwner/GetPage", Access::kReader},
    {"/pageowner.v1.PageOwner/GetStack", Access::kReader},
    {"/pageowner.v1.PageOwner/ListPages", Access::kReader},
    {"/pageowner.v1.PageOwner/ListStacks", Access::kReader},
    {"/pageowner.v1.PageOwner/GetStats", Access::kReader},
    {"/pageowner.v1.PageOwner/SortPages", Access::kReader},
    {"/pageowner.v1.PageOwner/GetProfile", Access::kReader},
    {"/pageowner.v1.PageOwner/Ingest", Access::kWriter},
    {"/pageowner.v1.PageOwner/SetTracking", Access::kAdmin},
    {"/pageowner.v1.PageOwner/Snapshot", Access::kAdmin},
};

// Which role each http path needs. Add a row with a page or a profile; a path not named here
// needs admin.
constexpr AccessRule kHttpRules[] = {
    {"/healthz", Access::kOpen},
    {"/readyz", Access::kOpen},
    {"/metrics", Access::kReader},
    // The heap profile, the web page and its data (server/viz_http.h).
    {"/debug/pprof/heap", Access::kReader},
    {"/", Access::kReader},
    {"/viz/", Access::kReader},
};

constexpr std::string_view kReasonNames[kNumRefusalReasons] = {
    "missing_token", "malformed_credentials", "unknown_token", "insufficient_role"};

std::string_view Std(absl::string_view s) { return std::string_view(s.data(), s.size()); }

bool IsLowerHex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Printable ASCII kept, the rest escaped, at most 200 bytes: client-chosen text in a log line.
std::string ForLog(std::string_view s) {
  constexpr size_t kMax = 200;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReader:
      return "reader";
    case Role::kWriter:
      return "writer";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::string_view AccessName(Access access) {
  return access == Access::kOpen ? "open" : RoleName(static_cast<Role>(access));
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role role : {Role::kReader, Role::kWriter, Role::kAdmin}) {
    if (RoleName(role) == name) return role;
  }
  return std::nullopt;
}

Access LookUpAccess(const AccessRule* rules, size_t count, std::string_view name) {
  for (size_t i = 0; i < count; ++i) {
    const std::string_view rule = rules[i].name;
    if (rule == name) return rules[i].access;
    // "/" (the web page) is exact: as a prefix it would name every path.
    if (rule.size() > 1 && rule.back() == '/' && name.size() > rule.size() &&
        name.substr(0, rule.size()) == rule) {
      return rules[i].access;
    }
  }
  return Access::kAdmin;
}

Access GrpcMethodAccess(std::string_view method) {
  return LookUpAccess(kGrpcRules, std::size(kGrpcRules), method);
}

Access HttpPathAccess(std::string_view path) {
  return LookUpAccess(kHttpRules, std::size(kHttpRules), path);
}

absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(std::string_view text,
                                                       std::string_view name) {
  std::vector<TokenEntry> entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(Sv(text), '\n')) {
    ++line_number;
    const auto bad = [&](std::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(name), ":", line_number, ": ", Sv(what)));
    };
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return bad(absl::StrCat("expected ROLE SHA256HEX, found ", fields.size(), " field",
                              fields.size() == 1 ? "" : "s"));
    }
    const std::optional<Role> role = ParseRole(Std(fields[0]));
    if (!role.has_value()) {
      // The role field is short and never a secret unless the two fields were swapped.
      return bad(fields[0].size() <= 16
                     ? absl::StrCat("unknown role \"", fields[0], "\" (reader, writer or admin)")
                     : "unknown role (reader, writer or admin come first)");
    }
    const absl::string_view hex = fields[1];
    if (hex.size() != 64 || !IsLowerHex(Std(hex))) {
      // Never echo it: it may be a token pasted in place of its hash.
      return bad(
          absl::StrCat("the second field must be 64 lowercase hex digits (the SHA-256 of "
                       "the token, as `pageowner token new` prints it), found ",
                       hex.size(), " characters"));
    }
    TokenEntry entry{.role = *role, .digest = {}, .line = line_number};
    const std::string bytes = absl::HexStringToBytes(hex);
    std::copy(bytes.begin(), bytes.end(), entry.digest.begin());
    entries.push_back(entry);
  }
  return entries;
}

absl::StatusOr<std::vector<TokenEntry>> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read token file ", path));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseTokenFile(text.str(), path);
}

TokenStore::TokenStore(std::vector<TokenEntry> entries) : TokenStore("", std::move(entries)) {}

TokenStore::TokenStore(std::string path, std::vector<TokenEntry> entries)
    : path_(std::move(path)),
      entries_(std::make_shared<const std::vector<TokenEntry>>(std::move(entries))) {}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Load(std::string path) {
  absl::StatusOr<std::vector<TokenEntry>> entries = ReadTokenFile(path);
  if (!entries.ok()) return entries.status();
  return std::unique_ptr<TokenStore>(new TokenStore(std::move(path), std::move(*entries)));
}

absl::StatusOr<size_t> TokenStore::Reload() {
  if (path_.empty()) return absl::FailedPreconditionError("no token file to reload");
  absl::StatusOr<std::vector<TokenEntry>> entries = ReadTokenFile(path_);
  if (!entries.ok()) return entries.status();
  const size_t n = entries->size();
  auto fresh = std::make_shared<const std::vector<TokenEntry>>(std::move(*entries));
  absl::MutexLock lock(&mu_);
  entries_ = std::move(fresh);
  return n;
}

std::optional<Role> TokenStore::RoleOf(std::string_view token) const {
  std::shared_ptr<const std::vector<TokenEntry>> entries;
  {
    absl::MutexLock lock(&mu_);
    entries = entries_;
  }
  const wire::Sha256Digest digest = wire::Sha256(token);
  // Every entry is compared, whichever matches; the highest role wins if a hash is listed twice.
  uint8_t best = 0;
  for (const TokenEntry& entry : *entries) {
    const uint8_t match =
        CRYPTO_memcmp(digest.data(), entry.digest.data(), digest.size()) == 0 ? 0xff : 0;
    const uint8_t role = static_cast<uint8_t>(entry.role) & match;
    best = role > best ? role : best;
  }
  if (best == 0) return std::nullopt;
  return static_cast<Role>(best);
}

std::string_view RefusalReasonName(RefusalReason reason) {
  return kReasonNames[static_cast<size_t>(reason)];
}

std::optional<std::string> TokenFromAuthorization(std::string_view value) {
  const absl::string_view v = absl::StripAsciiWhitespace(Sv(value));
  const size_t space = v.find(' ');
  if (space == absl::string_view::npos) return std::nullopt;
  const absl::string_view scheme = v.substr(0, space);
  const absl::string_view rest = absl::StripLeadingAsciiWhitespace(v.substr(space + 1));
  if (rest.empty()) return std::nullopt;
  if (absl::EqualsIgnoreCase(scheme, "bearer")) return std::string(rest);
  if (absl::EqualsIgnoreCase(scheme, "basic")) {
    std::string decoded;
    if (!absl::Base64Unescape(rest, &decoded)) return std::nullopt;
    const size_t colon = decoded.find(':');
    if (colon == std::string::npos || colon + 1 == decoded.size()) return std::nullopt;
    return decoded.substr(colon + 1);
  }
  return std::nullopt;
}

AuthDecision Decide(const TokenStore& tokens, Access needed,
                    std::optional<std::string_view> authorization) {
  AuthDecision d;
  d.needed = needed;
  if (needed == Access::kOpen) {
    d.allowed = true;
    return d;
  }
  if (!authorization.has_value()) {
    d.reason = RefusalReason::kMissingToken;
    return d;
  }
  const std::optional<std::string> token = TokenFromAuthorization(*authorization);
  if (!token.has_value()) {
    d.reason = RefusalReason::kMalformedCredentials;
    return d;
  }
  d.role = tokens.RoleOf(*token);
  if (!d.role.has_value()) {
    d.reason = RefusalReason::kUnknownToken;
    return d;
  }
  if (!Allows(*d.role, needed)) {
    d.reason = RefusalReason::kInsufficientRole;
    return d;
  }
  d.allowed = true;
  return d;
}

void AuthAudit::Refused(std::string_view transport, std::string_view what, std::string_view peer,
                        const AuthDecision& decision) {
  counts_[static_cast<size_t>(decision.reason)].fetch_add(1, std::memory_order_relaxed);
  std::string detail;
  if (decision.reason == RefusalReason::kInsufficientRole && decision.role.has_value()) {
    detail = absl::StrCat(" (needs ", Sv(AccessName(decision.needed)), ", token has ",
                          Sv(RoleName(*decision.role)), ")");
  }
  const std::string line =
      absl::StrCat("pageownerd: auth: refused ", Sv(transport), " ", ForLog(what), " from ",
                   ForLog(peer), ": ", Sv(RefusalReasonName(decision.reason)), detail, "\n");
  std::fputs(line.c_str(), stderr);
}

uint64_t AuthAudit::count(RefusalReason reason) const {
  return counts_[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
}

void AuthAudit::AppendTo(std::string* out) const {
  absl::StrAppend(out,
                  "# HELP pageowner_auth_refused_total Requests refused by token auth (gRPC calls "
                  "and http requests), by reason.\n"
                  "# TYPE pageowner_auth_refused_total counter\n");
  for (size_t i = 0; i < kNumRefusalReasons; ++i) {
    absl::StrAppend(out, "pageowner_auth_refused_total{reason=\"", Sv(kReasonNames[i]), "\"} ",
                    counts_[i].load(std::memory_order_relaxed), "\n");
  }
}

std::string RefusalMessage(std::string_view what, const AuthDecision& decision) {
  switch (decision.reason) {
    case RefusalReason::kMissingToken:
      return absl::StrCat(Sv(what), " needs a token with the ", Sv(AccessName(decision.needed)),
                          " role: send `authorization: Bearer TOKEN` (pageowner --token_file=FILE "
                          "or PAGEOWNER_TOKEN_FILE)");
    case RefusalReason::kMalformedCredentials:
      return "the authorization value is neither `Bearer TOKEN` nor `Basic base64(user:TOKEN)`";
    case RefusalReason::kUnknownToken:
      return "the token is not in the daemon's --auth_tokens file (make one with `pageowner token "
             "new ROLE` and add its line there, then SIGHUP the daemon)";
    case RefusalReason::kInsufficientRole:
      return absl::StrCat(Sv(what), " needs the ", Sv(AccessName(decision.needed)),
                          " role; this token has ",
                          Sv(decision.role.has_value() ? RoleName(*decision.role) : "none"),
                          " (ask for a token with that role)");
  }
  return "refused";
}

}  // namespace pageowner::server
