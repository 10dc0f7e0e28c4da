// TLS: the daemon's certificate files, checked at start and on SIGHUP, and the http listener's
// TLS context, whose certificate is chosen per handshake so that new files serve new
// connections without a restart. (gRPC's own TLS, from the same files, is in
// server/grpc_security.h: gRPC re-reads the files itself.)
#ifndef PAGEOWNER_SERVER_TLS_H_
#define PAGEOWNER_SERVER_TLS_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace pageowner::server {

// PEM files. cert and key are both set or both empty (TLS off); client_ca turns on mutual TLS.
struct TlsFiles {
  std::string cert;       // the server's certificate, then any intermediates
  std::string key;        // its private key
  std::string client_ca;  // the CA bundle client certificates must chain to; empty: none asked
  bool enabled() const { return !cert.empty(); }
};

// Checks what a handshake will need: each file readable PEM, the key the certificate's, the
// certificate valid now, the CA file at least one certificate. Errors: kInvalidArgument naming
// the flag and the file ("--tls_key=/etc/x.key: does not match --tls_cert=...").
absl::Status CheckTlsFiles(const TlsFiles& files);

// The http listener's TLS: TLS 1.2 or newer, the certificate from the files, and with a
// client_ca a client certificate verified against it when the client presents one (not required:
// Kubernetes probes and most scrapers cannot present one; the per-path token table decides what
// an unauthenticated client may fetch).
//
// Thread-safety: Reload and the handshakes may run at once on any threads.
class HttpTls {
 public:
  // Errors: CheckTlsFiles's, and kInternal when OpenSSL refuses what the check accepted.
  static absl::StatusOr<std::unique_ptr<HttpTls>> Load(TlsFiles files);
  ~HttpTls();
  HttpTls(const HttpTls&) = delete;
  HttpTls& operator=(const HttpTls&) = delete;

  // Re-reads the files; on an error the certificates in use stay. New handshakes use the new
  // ones; open connections keep theirs.
  absl::Status Reload() ABSL_LOCKS_EXCLUDED(mu_);

  // Sets up a fresh SSL_CTX (cpp-httplib's SSLServer callback). Returns false on failure.
  bool Configure(SSL_CTX* ctx);

 private:
  struct Material;
  explicit HttpTls(TlsFiles files) : files_(std::move(files)) {}
  static int OnCertificate(SSL* ssl, void* self);
  std::shared_ptr<const Material> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  const TlsFiles files_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Material> material_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_TLS_H_
