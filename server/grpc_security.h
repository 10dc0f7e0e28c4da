// The gRPC side of TLS and tokens: the credentials pageownerd listens with, and the check of
// every call's token against its method's role (server/auth.h's table).
//
// The check is an AuthMetadataProcessor: gRPC runs it in the transport, on the call's metadata,
// before the call is matched to a handler, so that a refused call never reaches a handler,
// an interceptor or the core, and its request message is never read. gRPC 1.51 runs a processor
// only on secure credentials (its authorization policy provider does not link on Debian, and a
// server interceptor cannot end a call before the handler runs), so without TLS the daemon
// listens with local credentials, which are plaintext on the wire and accept loopback peers only.
#ifndef PAGEOWNER_SERVER_GRPC_SECURITY_H_
#define PAGEOWNER_SERVER_GRPC_SECURITY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/auth.h"
#include "server/tls.h"

namespace pageowner::server {

// gRPC re-reads the TLS files this often, and serves new handshakes with what it read.
inline constexpr unsigned kTlsRefreshSeconds = 1;

// The credentials for the listening port:
//   TLS files: TLS 1.2 or newer (gRPC's minimum), client certificates required and verified
//     against client_ca when it is set; the files are watched (kTlsRefreshSeconds).
//   no TLS, tokens: local credentials (loopback peers only).
//   no TLS, no tokens: plaintext.
// With `tokens` (not null), every call is checked; refusals go to `audit`. Both must outlive the
// server. Errors: CheckTlsFiles's.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& tls, const TokenStore* tokens, AuthAudit* audit);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_GRPC_SECURITY_H_
