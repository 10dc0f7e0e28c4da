// Credentials: how the CLI (and any user of the client library) reaches a daemon that asks for
// TLS, a client certificate or a token. Files only: a token is read from a file (or
// PAGEOWNER_TOKEN_FILE), never taken on the command line, where `ps` would show it.
#ifndef PAGEOWNER_CLIENT_CREDENTIALS_H_
#define PAGEOWNER_CLIENT_CREDENTIALS_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"

namespace pageowner::client {

struct ConnectionOptions {
  std::string tls_ca;      // PEM CA bundle the daemon's certificate must chain to; set: TLS
  std::string tls_cert;    // PEM client certificate for mutual TLS (with tls_key); set: TLS
  std::string tls_key;     // its private key
  std::string token_file;  // a file holding the token; every call sends it
  bool tls() const { return !tls_ca.empty() || !tls_cert.empty(); }
};

// The field behind a global CLI flag ("tls_ca", "tls_cert", "tls_key", "token_file"), or null.
std::string* ConnectionFlag(ConnectionOptions* options, std::string_view name);

// Fills each empty field from its environment variable: PAGEOWNER_TLS_CA, PAGEOWNER_TLS_CERT,
// PAGEOWNER_TLS_KEY, PAGEOWNER_TOKEN_FILE. Flags win over the environment.
void FillFromEnvironment(ConnectionOptions* options);

// A channel to `target`: plaintext without TLS files; TLS with them (the daemon checked against
// tls_ca, or the system's roots when only a client certificate is given). With a token file,
// every call carries `authorization: Bearer TOKEN` (a client interceptor adds it). Errors:
// kInvalidArgument naming the flag when a file cannot be read, tls_cert and tls_key are not both
// given, or the token file does not hold one token.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(std::string_view target,
                                                           const ConnectionOptions& options);

// What to do about a status: for UNAUTHENTICATED, PERMISSION_DENIED and a TLS handshake failure
// (UNAVAILABLE with a handshake message) one line of advice; "" for anything else.
std::string CredentialsHint(const absl::Status& status);

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_CREDENTIALS_H_
