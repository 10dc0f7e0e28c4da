#include "wire/status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace pageowner::wire {

grpc::StatusCode ToGrpcCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return grpc::StatusCode::OK;
    case absl::StatusCode::kCancelled:
      return grpc::StatusCode::CANCELLED;
    case absl::StatusCode::kUnknown:
      return grpc::StatusCode::UNKNOWN;
    case absl::StatusCode::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case absl::StatusCode::kDeadlineExceeded:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case absl::StatusCode::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case absl::StatusCode::kAlreadyExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case absl::StatusCode::kPermissionDenied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case absl::StatusCode::kResourceExhausted:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case absl::StatusCode::kFailedPrecondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case absl::StatusCode::kAborted:
      return grpc::StatusCode::ABORTED;
    case absl::StatusCode::kOutOfRange:
      return grpc::StatusCode::OUT_OF_RANGE;
    case absl::StatusCode::kUnimplemented:
      return grpc::StatusCode::UNIMPLEMENTED;
    case absl::StatusCode::kInternal:
      return grpc::StatusCode::INTERNAL;
    case absl::StatusCode::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case absl::StatusCode::kDataLoss:
      return grpc::StatusCode::DATA_LOSS;
    case absl::StatusCode::kUnauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    default:
      return grpc::StatusCode::UNKNOWN;
  }
}

int32_t ToRpcCode(absl::StatusCode code) { return static_cast<int32_t>(ToGrpcCode(code)); }

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(ToGrpcCode(status.code()), std::string(status.message()));
}

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

}  // namespace pageowner::wire
