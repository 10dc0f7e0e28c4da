#include "server/grpc_security.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "wire/auth_token.h"

namespace pageowner::server {
namespace {

std::string_view View(grpc::string_ref s) { return std::string_view(s.data(), s.size()); }

// Who the connection is, as far as the transport knows: gRPC 1.51 gives a processor no peer
// address, only the connection's auth context ("local"; "tls"; "tls CN=..." with a client
// certificate).
std::string PeerOf(const grpc::AuthContext& context) {
  std::string peer = "unknown";
  for (const grpc::string_ref& v : context.FindPropertyValues("transport_security_type")) {
    peer = std::string(View(v));
  }
  if (peer == "ssl") peer = "tls";
  for (const grpc::string_ref& v : context.FindPropertyValues("x509_common_name")) {
    absl::StrAppend(&peer, " CN=", std::string(View(v)));
  }
  return peer;
}

class TokenProcessor final : public grpc::AuthMetadataProcessor {
 public:
  TokenProcessor(const TokenStore* tokens, AuthAudit* audit) : tokens_(tokens), audit_(audit) {}

  // Cheap (a hash and a few compares): run inline in the transport, no thread hop.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed, OutputMetadata*) override {
    std::string_view method;
    std::optional<std::string_view> authorization;
    for (const auto& [key, value] : metadata) {
      if (View(key) == ":path") method = View(value);
      if (View(key) == wire::kAuthorizationKey) authorization = View(value);
    }
    // Handlers never see the token.
    if (authorization.has_value()) {
      consumed->emplace(std::string(wire::kAuthorizationKey), std::string(*authorization));
    }
    const AuthDecision decision = Decide(*tokens_, GrpcMethodAccess(method), authorization);
    if (decision.allowed) return grpc::Status::OK;
    audit_->Refused("grpc", method, PeerOf(*context), decision);
    return grpc::Status(decision.reason == RefusalReason::kInsufficientRole
                            ? grpc::StatusCode::PERMISSION_DENIED
                            : grpc::StatusCode::UNAUTHENTICATED,
                        RefusalMessage(method, decision));
  }

 private:
  const TokenStore* const tokens_;
  AuthAudit* const audit_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& tls, const TokenStore* tokens, AuthAudit* audit) {
  if (absl::Status s = CheckTlsFiles(tls); !s.ok()) return s;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (tls.enabled()) {
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        tls.key, tls.cert, tls.client_ca, kTlsRefreshSeconds);
    grpc::experimental::TlsServerCredentialsOptions options(provider);
    options.watch_identity_key_cert_pairs();
    if (!tls.client_ca.empty()) {
      options.watch_root_certs();
      options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    } else {
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    }
    credentials = grpc::experimental::TlsServerCredentials(options);
  } else if (tokens != nullptr) {
    credentials = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  } else {
    return grpc::InsecureServerCredentials();
  }
  if (tokens != nullptr) {
    credentials->SetAuthMetadataProcessor(std::make_shared<TokenProcessor>(tokens, audit));
  }
  return credentials;
}

}  // namespace pageowner::server
