// Unit tests of server/auth.h (token file, role tables, decisions, audit), wire/auth_token.h and
// the security checks of server/flags.h (IsLocalAddress, the refusal of an open network address).
#include "server/auth.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/flags.h"
#include "wire/auth_token.h"

namespace pageowner::server {
namespace {

const std::string kHashA = wire::HexDigest(wire::Sha256("token-a"));
const std::string kHashB = wire::HexDigest(wire::Sha256("token-b"));

TEST(Sha256, KnownVector) {
  EXPECT_EQ(wire::HexDigest(wire::Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(NewToken, IsBase64UrlOf32RandomBytes) {
  absl::StatusOr<std::string> a = wire::NewToken();
  absl::StatusOr<std::string> b = wire::NewToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 43u);
  EXPECT_NE(*a, *b);
  std::string bytes;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(*a, &bytes));
  EXPECT_EQ(bytes.size(), wire::kTokenBytes);
}

TEST(CleanToken, StripsTheNewlineAndRefusesTwoLines) {
  EXPECT_EQ(*wire::CleanToken("abc\n"), "abc");
  EXPECT_EQ(wire::CleanToken("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(wire::CleanToken("abc\ndef\n").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseTokenFile, EntriesCommentsAndBlankLines) {
  const std::string text = "# pageownerd tokens\n\nreader " + kHashA + "\n\twriter\t" + kHashB +
                           "  # the ingester\r\nadmin " + kHashA + "\n";
  absl::StatusOr<std::vector<TokenEntry>> entries = ParseTokenFile(text, "t.txt");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].role, Role::kReader);
  EXPECT_EQ((*entries)[0].line, 3);
  EXPECT_EQ(wire::HexDigest((*entries)[0].digest), kHashA);
  EXPECT_EQ((*entries)[1].role, Role::kWriter);
  EXPECT_EQ((*entries)[1].line, 4);
  EXPECT_EQ((*entries)[2].role, Role::kAdmin);
  EXPECT_TRUE(ParseTokenFile("", "empty")->empty());
}

TEST(ParseTokenFile, MalformedLinesNameTheLineAndNeverEchoTheSecret) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::string token = "s3cr3t-token-pasted-in-place-of-its-hash-0123456789";
  const Case cases[] = {
      {"reader\n", "f:1: expected ROLE SHA256HEX, found 1 field"},
      {"\n\nroot " + kHashA, "f:3: unknown role \"root\" (reader, writer or admin)"},
      {"reader " + kHashA + " extra", "f:1: expected ROLE SHA256HEX, found 3 fields"},
      {"Reader " + kHashA, "f:1: unknown role \"Reader\" (reader, writer or admin)"},
      {"reader " + token,
       "f:1: the second field must be 64 lowercase hex digits (the SHA-256 of the token, as "
       "`pageowner token new` prints it), found 51 characters"},
      {"writer " + std::string(64, 'A'),
       "f:1: the second field must be 64 lowercase hex digits (the SHA-256 of the token, as "
       "`pageowner token new` prints it), found 64 characters"},
      {token + " " + kHashA, "f:1: unknown role (reader, writer or admin come first)"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<TokenEntry>> entries = ParseTokenFile(c.text, "f");
    ASSERT_FALSE(entries.ok()) << c.text;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(entries.status().message(), c.message);
    EXPECT_FALSE(absl::StrContains(entries.status().message(), token));
  }
}

TEST(AccessTables, EveryRpcAndPath) {
  EXPECT_EQ(GrpcMethodAccess("/grpc.health.v1.Health/Check"), Access::kOpen);
  EXPECT_EQ(GrpcMethodAccess("/grpc.health.v1.Health/Watch"), Access::kOpen);
  EXPECT_EQ(GrpcMethodAccess("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Access::kReader);
  for (const char* query :
       {"GetPage", "GetStack", "ListPages", "ListStacks", "GetStats", "SortPages"}) {
    EXPECT_EQ(GrpcMethodAccess(std::string("/pageowner.v1.PageOwner/") + query), Access::kReader)
        << query;
  }
  EXPECT_EQ(GrpcMethodAccess("/pageowner.v1.PageOwner/Ingest"), Access::kWriter);
  EXPECT_EQ(GrpcMethodAccess("/pageowner.v1.PageOwner/SetTracking"), Access::kAdmin);
  EXPECT_EQ(GrpcMethodAccess("/pageowner.v1.PageOwner/Snapshot"), Access::kAdmin);
  // Not in the table: admin (a future Reset is closed until someone decides).
  EXPECT_EQ(GrpcMethodAccess("/pageowner.v1.PageOwner/Reset"), Access::kAdmin);
  EXPECT_EQ(GrpcMethodAccess("/grpc.health.v1.Health"), Access::kAdmin);  // no method: no prefix
  EXPECT_EQ(GrpcMethodAccess("/pageowner.v1.PageOwner/GetPageX"), Access::kAdmin);
  EXPECT_EQ(GrpcMethodAccess(""), Access::kAdmin);

  EXPECT_EQ(HttpPathAccess("/healthz"), Access::kOpen);
  EXPECT_EQ(HttpPathAccess("/readyz"), Access::kOpen);
  EXPECT_EQ(HttpPathAccess("/metrics"), Access::kReader);
  EXPECT_EQ(HttpPathAccess("/metrics/"), Access::kAdmin);
  // "/" is the root page alone, not a prefix of every path.
  EXPECT_EQ(HttpPathAccess("/debug/other"), Access::kAdmin);
  EXPECT_EQ(HttpPathAccess("/nothing"), Access::kAdmin);
}

TEST(Roles, Order) {
  EXPECT_TRUE(Allows(Role::kReader, Access::kOpen));
  EXPECT_TRUE(Allows(Role::kReader, Access::kReader));
  EXPECT_FALSE(Allows(Role::kReader, Access::kWriter));
  EXPECT_TRUE(Allows(Role::kWriter, Access::kReader));
  EXPECT_FALSE(Allows(Role::kWriter, Access::kAdmin));
  EXPECT_TRUE(Allows(Role::kAdmin, Access::kAdmin));
  EXPECT_EQ(ParseRole("writer"), Role::kWriter);
  EXPECT_EQ(ParseRole("root"), std::nullopt);
}

TokenStore MakeStore() {
  return TokenStore(*ParseTokenFile("reader " + kHashA + "\nwriter " + kHashB + "\n", "s"));
}

TEST(TokenStore, RoleOf) {
  const TokenStore store = MakeStore();
  EXPECT_EQ(store.RoleOf("token-a"), Role::kReader);
  EXPECT_EQ(store.RoleOf("token-b"), Role::kWriter);
  EXPECT_EQ(store.RoleOf("token-c"), std::nullopt);
  EXPECT_EQ(store.RoleOf(""), std::nullopt);
  EXPECT_EQ(store.RoleOf(kHashA), std::nullopt);  // the hash is not the token
  // Listed twice: the higher role.
  const TokenStore twice(*ParseTokenFile("admin " + kHashA + "\nreader " + kHashA, "s"));
  EXPECT_EQ(twice.RoleOf("token-a"), Role::kAdmin);
}

TEST(TokenStore, ReloadReplacesAndKeepsTheOldOnError) {
  char dir[] = "/tmp/auth_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/tokens";
  std::ofstream(path) << "reader " << kHashA << "\n";
  absl::StatusOr<std::unique_ptr<TokenStore>> store = TokenStore::Load(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->RoleOf("token-a"), Role::kReader);
  std::ofstream(path) << "admin " << kHashB << "\n";
  EXPECT_EQ(*(*store)->Reload(), 1u);
  EXPECT_EQ((*store)->RoleOf("token-a"), std::nullopt);
  EXPECT_EQ((*store)->RoleOf("token-b"), Role::kAdmin);
  std::ofstream(path) << "admin " << kHashA << "\nbogus\n";
  absl::StatusOr<size_t> bad = (*store)->Reload();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), path + ":2: expected ROLE SHA256HEX, found 1 field");
  EXPECT_EQ((*store)->RoleOf("token-b"), Role::kAdmin);  // still the last good file
  std::remove(path.c_str());
  EXPECT_EQ((*store)->Reload().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TokenStore::Load(path).status().code(), absl::StatusCode::kFailedPrecondition);
  rmdir(dir);
}

TEST(TokenFromAuthorization, BearerAndBasic) {
  EXPECT_EQ(TokenFromAuthorization("Bearer abc"), "abc");
  EXPECT_EQ(TokenFromAuthorization("bearer  abc "), "abc");
  EXPECT_EQ(TokenFromAuthorization("Basic " + absl::Base64Escape("prometheus:abc")), "abc");
  EXPECT_EQ(TokenFromAuthorization("Basic " + absl::Base64Escape("abc")), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("Basic " + absl::Base64Escape("user:")), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("Basic !!!"), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("Bearer"), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("Bearer "), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("abc"), std::nullopt);
  EXPECT_EQ(TokenFromAuthorization("Digest abc"), std::nullopt);
}

TEST(Decide, EveryOutcome) {
  const TokenStore store = MakeStore();
  const AuthDecision open = Decide(store, Access::kOpen, std::nullopt);
  EXPECT_TRUE(open.allowed);
  const AuthDecision none = Decide(store, Access::kReader, std::nullopt);
  EXPECT_FALSE(none.allowed);
  EXPECT_EQ(none.reason, RefusalReason::kMissingToken);
  EXPECT_EQ(Decide(store, Access::kReader, "Token x").reason, RefusalReason::kMalformedCredentials);
  EXPECT_EQ(Decide(store, Access::kReader, "Bearer token-c").reason, RefusalReason::kUnknownToken);
  const AuthDecision low = Decide(store, Access::kWriter, "Bearer token-a");
  EXPECT_FALSE(low.allowed);
  EXPECT_EQ(low.reason, RefusalReason::kInsufficientRole);
  EXPECT_EQ(low.role, Role::kReader);
  EXPECT_EQ(RefusalMessage("/pageowner.v1.PageOwner/Ingest", low),
            "/pageowner.v1.PageOwner/Ingest needs the writer role; this token has reader (ask for "
            "a token with that role)");
  EXPECT_TRUE(Decide(store, Access::kWriter, "Bearer token-b").allowed);
  EXPECT_TRUE(Decide(store, Access::kReader, "Bearer token-b").allowed);
  EXPECT_FALSE(Decide(store, Access::kAdmin, "Bearer token-b").allowed);
}

TEST(AuthAudit, CountsByReasonAndLogsNoToken) {
  const TokenStore store = MakeStore();
  AuthAudit audit;
  testing::internal::CaptureStderr();
  audit.Refused("grpc", "/pageowner.v1.PageOwner/Ingest", "tls CN=client",
                Decide(store, Access::kWriter, "Bearer token-a"));
  audit.Refused("http", "/metrics\n", "127.0.0.1:5555",
                Decide(store, Access::kReader, "Bearer token-c"));
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(log,
            "pageownerd: auth: refused grpc /pageowner.v1.PageOwner/Ingest from tls CN=client: "
            "insufficient_role (needs writer, token has reader)\n"
            "pageownerd: auth: refused http /metrics\\x0a from 127.0.0.1:5555: unknown_token\n");
  EXPECT_FALSE(absl::StrContains(log, "token-a"));
  EXPECT_EQ(audit.count(RefusalReason::kInsufficientRole), 1u);
  EXPECT_EQ(audit.count(RefusalReason::kUnknownToken), 1u);
  std::string out;
  audit.AppendTo(&out);
  EXPECT_EQ(out,
            "# HELP pageowner_auth_refused_total Requests refused by token auth (gRPC calls and "
            "http requests), by reason.\n"
            "# TYPE pageowner_auth_refused_total counter\n"
            "pageowner_auth_refused_total{reason=\"missing_token\"} 0\n"
            "pageowner_auth_refused_total{reason=\"malformed_credentials\"} 0\n"
            "pageowner_auth_refused_total{reason=\"unknown_token\"} 1\n"
            "pageowner_auth_refused_total{reason=\"insufficient_role\"} 1\n");
}

TEST(IsLocalAddress, LoopbackOnly) {
  for (const char* local : {"127.0.0.1:50051", "127.1.2.3:0", "localhost:1", "[::1]:50051",
                            "unix:/run/pageownerd.sock"}) {
    EXPECT_TRUE(IsLocalAddress(local)) << local;
  }
  for (const char* remote : {"0.0.0.0:50051", "[::]:50051", "10.0.0.1:1", "127.0.0.1.nip.io:1",
                             "1270.0.0.1:1", "127.0.0:1", "example.com:1", ":50051"}) {
    EXPECT_FALSE(IsLocalAddress(remote)) << remote;
  }
}

FlagValues Flags(std::string listen) {
  FlagValues flags;
  flags.listen = std::move(listen);
  flags.memory = "64MiB";
  flags.stack_depth = 16;
  flags.depot_max_pools = 64;
  flags.max_batch_events = 100;
  flags.metrics_listen = "none";
  return flags;
}

TEST(MakeServerOptions, RefusesAnOpenNetworkAddress) {
  absl::StatusOr<ServerOptions> open = MakeServerOptions(Flags("0.0.0.0:50051"));
  EXPECT_EQ(open.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(open.status().message(),
            "--listen=0.0.0.0:50051 is not a loopback address, and without TLS and tokens anyone "
            "who can reach it may stream events, turn tracking off and read every owner: add "
            "--tls_cert=FILE --tls_key=FILE (and --tls_client_ca=FILE for mutual TLS) and "
            "--auth_tokens=FILE (one line a token; `pageowner token new ROLE` prints one) or, if "
            "that is what you mean, --insecure");
  FlagValues insecure = Flags("0.0.0.0:50051");
  insecure.insecure = true;
  EXPECT_TRUE(MakeServerOptions(insecure).ok());
  EXPECT_TRUE(MakeServerOptions(Flags("127.0.0.1:50051")).ok());
  FlagValues metrics = Flags("127.0.0.1:50051");
  metrics.metrics_listen = "0.0.0.0:9464";
  EXPECT_TRUE(absl::StartsWith(MakeServerOptions(metrics).status().message(),
                               "--metrics_listen=0.0.0.0:9464 is not a loopback address"));
}

TEST(MakeServerOptions, TokenFileErrorsAndTokensWithoutTls) {
  char dir[] = "/tmp/auth_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/tokens";
  std::ofstream(path) << "reader " << kHashA << "\nwriter nothex\n";
  FlagValues flags = Flags("127.0.0.1:0");
  flags.auth_tokens = path;
  absl::StatusOr<ServerOptions> bad = MakeServerOptions(flags);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), path + ":2: the second field"))
      << bad.status();
  std::ofstream(path) << "reader " << kHashA << "\n";
  absl::StatusOr<ServerOptions> good = MakeServerOptions(flags);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->auth_tokens_file, path);
  flags.listen = "0.0.0.0:0";
  flags.insecure = true;
  EXPECT_TRUE(absl::StrContains(MakeServerOptions(flags).status().message(),
                                "--auth_tokens on a non-loopback address needs --tls_cert"));
  flags.tls_cert = path;
  EXPECT_EQ(MakeServerOptions(flags).status().message(),
            "--tls_cert and --tls_key go together: give both or neither");
  std::remove(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace pageowner::server
