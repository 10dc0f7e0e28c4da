#include "client/credentials.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/strings.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/client_interceptor.h"
#include "wire/auth_token.h"

namespace pageowner::client {
namespace {

absl::StatusOr<std::string> ReadFile(std::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("--", Sv(flag), "=", path, ": cannot read"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Adds the token to every call's initial metadata.
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string* value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace(std::string(wire::kAuthorizationKey), *value_);
    }
    methods->Proceed();
  }

 private:
  const std::string* const value_;
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string value) : value_(std::move(value)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(&value_);
  }

 private:
  const std::string value_;  // "Bearer TOKEN"; lives as long as the channel
};

}  // namespace

std::string* ConnectionFlag(ConnectionOptions* options, std::string_view name) {
  if (name == "tls_ca") return &options->tls_ca;
  if (name == "tls_cert") return &options->tls_cert;
  if (name == "tls_key") return &options->tls_key;
  if (name == "token_file") return &options->token_file;
  return nullptr;
}

void FillFromEnvironment(ConnectionOptions* options) {
  const std::pair<std::string*, const char*> vars[] = {
      {&options->tls_ca, "PAGEOWNER_TLS_CA"},
      {&options->tls_cert, "PAGEOWNER_TLS_CERT"},
      {&options->tls_key, "PAGEOWNER_TLS_KEY"},
      {&options->token_file, "PAGEOWNER_TOKEN_FILE"},
  };
  for (const auto& [field, var] : vars) {
    const char* value = std::getenv(var);
    if (field->empty() && value != nullptr) *field = value;
  }
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(std::string_view target,
                                                           const ConnectionOptions& options) {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls()) {
    if (options.tls_cert.empty() != options.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      absl::StatusOr<std::string> ca = ReadFile("tls_ca", options.tls_ca);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = std::move(*ca);
    }
    if (!options.tls_cert.empty()) {
      absl::StatusOr<std::string> cert = ReadFile("tls_cert", options.tls_cert);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadFile("tls_key", options.tls_key);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = std::move(*cert);
      ssl.pem_private_key = std::move(*key);
    }
    credentials = grpc::SslCredentials(ssl);
  } else {
    credentials = grpc::InsecureChannelCredentials();
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!options.token_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile("token_file", options.token_file);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::string> token = wire::CleanToken(*text);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file=", options.token_file, ": ", token.status().message()));
    }
    interceptors.push_back(
        std::make_unique<TokenInterceptorFactory>(absl::StrCat(Sv(wire::kBearerPrefix), *token)));
  }
  // Responses have no bound of their own (SortPages, ListStacks can pass 4 MiB): see the proto.
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  return grpc::experimental::CreateCustomChannelWithInterceptors(std::string(target), credentials,
                                                                 args, std::move(interceptors));
}

std::string CredentialsHint(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnauthenticated:
      return "the daemon wants a token: pass --token_file=FILE (or set PAGEOWNER_TOKEN_FILE) "
             "with a token whose hash is in its --auth_tokens file (`pageowner token new ROLE` "
             "makes one)";
    case absl::StatusCode::kPermissionDenied:
      return "this token's role may not do that: use a token with the role the message names "
             "(reader: queries; writer: replay, load, import; admin: tracking)";
    case absl::StatusCode::kUnavailable:
      if (absl::StrContains(status.message(), "andshake") ||
          absl::StrContains(status.message(), "SSL") ||
          absl::StrContains(status.message(), "Socket closed")) {
        return "if the daemon serves TLS: pass --tls_ca=FILE (its CA), and for mutual TLS "
               "--tls_cert=FILE --tls_key=FILE (or PAGEOWNER_TLS_CA, PAGEOWNER_TLS_CERT, "
               "PAGEOWNER_TLS_KEY)";
      }
      return "";
    default:
      return "";
  }
}

}  // namespace pageowner::client
