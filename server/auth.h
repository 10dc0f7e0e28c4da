// Auth: who may call what. Roles, the tables that say which role each gRPC method and each http
// path needs, the token file (`ROLE SHA256HEX` lines), the token store that answers "which role
// has this token" in constant time, and the audit of refused requests (a log line and a counter
// by reason). No gRPC and no http here: server/grpc_security.cc and server/metrics.cc apply it.
//
// Tokens themselves never enter this process's logs, messages or metric labels: the store keeps
// only their SHA-256, and a refusal names the method, the peer and the reason, never the token.
#ifndef PAGEOWNER_SERVER_AUTH_H_
#define PAGEOWNER_SERVER_AUTH_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "wire/auth_token.h"

namespace pageowner::server {

// Roles, each with the rights of the ones before it: reader (every query), writer (Ingest and the
// queries), admin (SetTracking and everything else).
enum class Role : uint8_t { kReader = 1, kWriter = 2, kAdmin = 3 };
// What a gRPC method or an http path needs: nothing (open), or at least a role.
enum class Access : uint8_t { kOpen = 0, kReader = 1, kWriter = 2, kAdmin = 3 };

std::string_view RoleName(Role role);
std::string_view AccessName(Access access);  // "open", "reader", ...
std::optional<Role> ParseRole(std::string_view name);
constexpr bool Allows(Role role, Access access) {
  return static_cast<uint8_t>(role) >= static_cast<uint8_t>(access);
}

// One row of an access table: an exact name ("/pageowner.v1.PageOwner/GetPage", "/metrics"), or
// a prefix when it ends in '/' ("/grpc.health.v1.Health/": every method of the service); "/"
// alone is exact (the web page).
struct AccessRule {
  std::string_view name;
  Access access;
};

// The gRPC table (server/auth.cc): health open (as /healthz), reflection and every query reader,
// Ingest writer, SetTracking admin. A method it does not name needs admin, so that a new rpc is
// closed until someone decides.
Access GrpcMethodAccess(std::string_view method);
// The http table (server/auth.cc): /healthz open, /metrics reader; a path it does not name needs
// admin. Whoever adds a page or a profile to the listener adds its row there.
Access HttpPathAccess(std::string_view path);
// The lookup both use; exposed for tests.
Access LookUpAccess(const AccessRule* rules, size_t count, std::string_view name);

// One line of a token file.
struct TokenEntry {
  Role role;
  wire::Sha256Digest digest;
  int line;  // 1-based
};

// Parses a token file: one `ROLE SHA256HEX` entry a line (role reader, writer or admin; 64
// lowercase hex digits; separated by spaces or tabs), `#` starts a comment (whole line or after
// an entry), blank lines allowed. Errors: kInvalidArgument naming `name`, the line number and
// what is wrong ("tokens.txt:3: unknown role \"root\" (reader, writer or admin)"); the line's
// text is not quoted, in case someone pasted a token instead of its hash. An empty file (no
// entries) is valid: every call that needs a role is refused.
absl::StatusOr<std::vector<TokenEntry>> ParseTokenFile(std::string_view text,
                                                       std::string_view name);
// Reads and parses the file at `path`. Errors: kNotFound/kPermissionDenied-like failures to read
// as kFailedPrecondition naming the path; the parser's errors.
absl::StatusOr<std::vector<TokenEntry>> ReadTokenFile(const std::string& path);

// The tokens of a token file, replaced whole by Reload (SIGHUP).
//
// Thread-safety: every method may be called from any thread.
class TokenStore {
 public:
  // Reads `path`; its errors are ReadTokenFile's.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Load(std::string path);
  // For tests: a store over `entries`, with no file behind it (Reload fails).
  explicit TokenStore(std::vector<TokenEntry> entries);

  // Re-reads the file. On an error the tokens in use stay as they were. Returns the entries now
  // in force.
  absl::StatusOr<size_t> Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // The role of `token`, or nullopt for a token not in the file. Hashes the token, then compares
  // the digest with every entry without an early exit (CRYPTO_memcmp), so the time taken does
  // not depend on which entry, or how much of one, matched.
  std::optional<Role> RoleOf(std::string_view token) const ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }

 private:
  TokenStore(std::string path, std::vector<TokenEntry> entries);

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> entries_ ABSL_GUARDED_BY(mu_);
};

// Why a request was refused. Each is a value of the `reason` label of
// pageowner_auth_refused_total.
enum class RefusalReason : uint8_t {
  kMissingToken = 0,      // no credentials: UNAUTHENTICATED / 401
  kMalformedCredentials,  // an authorization value that is neither Bearer nor Basic
  kUnknownToken,          // a token not in the file: UNAUTHENTICATED / 401
  kInsufficientRole,      // a known token without the role: PERMISSION_DENIED / 403
};
inline constexpr size_t kNumRefusalReasons = 4;
std::string_view RefusalReasonName(RefusalReason reason);

// The outcome of one request.
struct AuthDecision {
  bool allowed = false;
  RefusalReason reason = RefusalReason::kMissingToken;  // when !allowed
  std::optional<Role> role;                             // the token's, when it was known
  Access needed = Access::kAdmin;
};

// The token in an `authorization` value: "Bearer TOKEN" (scheme case-insensitive), or
// "Basic base64(user:TOKEN)" (any user name: Prometheus' basic_auth and curl -u send this).
// nullopt when the value is neither, or the token part is empty.
std::optional<std::string> TokenFromAuthorization(std::string_view value);

// Decides a request that needs `needed`, carrying `authorization` (nullopt: no header).
AuthDecision Decide(const TokenStore& tokens, Access needed,
                    std::optional<std::string_view> authorization);

// The refusals so far, by reason, and the audit log line of each.
//
// Thread-safety: every method may be called from any thread.
class AuthAudit {
 public:
  // Counts the refusal and writes one line to stderr:
  //   pageownerd: auth: refused grpc /pageowner.v1.PageOwner/Ingest from ipv4:10.0.0.7:4242:
  //   insufficient_role (needs writer, token has reader)
  // `what` and `peer` come from the client: bytes outside printable ASCII are escaped and each
  // is cut at 200 bytes, so that a client cannot forge log lines.
  void Refused(std::string_view transport, std::string_view what, std::string_view peer,
               const AuthDecision& decision);
  uint64_t count(RefusalReason reason) const;
  // Appends pageowner_auth_refused_total{reason} (every reason, zeros too).
  void AppendTo(std::string* out) const;

 private:
  std::array<std::atomic<uint64_t>, kNumRefusalReasons> counts_{};
};

// The detail of a refusal for the client: what to do, never the token.
std::string RefusalMessage(std::string_view what, const AuthDecision& decision);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_AUTH_H_
