#include "client/status.h"

#include "absl/strings/str_cat.h"

namespace pageowner::client {
namespace {

constexpr int32_t kMaxCanonicalCode = static_cast<int32_t>(absl::StatusCode::kUnauthenticated);

}  // namespace

absl::StatusCode CodeFromRpc(int32_t code) {
  if (code < 0 || code > kMaxCanonicalCode) return absl::StatusCode::kUnknown;
  return static_cast<absl::StatusCode>(code);
}

absl::Status StatusFromRpc(int32_t code, std::string_view message) {
  const absl::StatusCode c = CodeFromRpc(code);
  if (c == absl::StatusCode::kOk) return absl::OkStatus();
  if (c == absl::StatusCode::kUnknown && code != static_cast<int32_t>(c)) {
    return absl::UnknownError(absl::StrCat("status code ", code, ": ",
                                           absl::string_view(message.data(), message.size())));
  }
  return absl::Status(c, absl::string_view(message.data(), message.size()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return StatusFromRpc(static_cast<int32_t>(status.error_code()), status.error_message());
}

std::string CodeName(absl::StatusCode code) { return absl::StatusCodeToString(code); }

}  // namespace pageowner::client
