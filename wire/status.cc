#include "wire/status.h"

#include <algorithm>
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
  return grpc::Status(ToGrpcCode(status.code()), WireMessage(status.message()));
}

namespace {

// The length of the valid UTF-8 sequence at s[i], or 0 when the byte there does not start one.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;  // no overlong forms
    if (c == 0xed) hi = 0x9f;  // no surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

}  // namespace

std::string WireMessage(absl::string_view message) {
  std::string out;
  const size_t keep = std::min(message.size(), kMaxWireMessageBytes);
  out.reserve(keep + 64);
  for (size_t i = 0; i < keep;) {
    const size_t n = Utf8SequenceLength(message, i);
    if (n == 0) {
      absl::StrAppend(&out, "\\x",
                      absl::Hex(static_cast<unsigned char>(message[i]), absl::kZeroPad2));
      ++i;
    } else if (i + n > keep) {
      break;  // a character cut by the limit is left out whole
    } else {
      out.append(message.data() + i, n);
      i += n;
    }
  }
  if (keep < message.size()) {
    absl::StrAppend(&out, "... (cut: the message was ", message.size(), " bytes)");
  }
  return out;
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
