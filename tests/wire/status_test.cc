#include "wire/status.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace pageowner::wire {
namespace {

TEST(ToGrpcStatusTest, EveryCodeMapsToTheCodeOfTheSameName) {
  const std::vector<std::pair<absl::StatusCode, grpc::StatusCode>> pairs = {
      {absl::StatusCode::kOk, grpc::StatusCode::OK},
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  for (const auto& [absl_code, grpc_code] : pairs) {
    EXPECT_EQ(wire::ToGrpcCode(absl_code), grpc_code) << absl::StatusCodeToString(absl_code);
    EXPECT_EQ(wire::ToRpcCode(absl_code), static_cast<int32_t>(grpc_code));
  }
  // The google.rpc.Code values the proto documents.
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kInvalidArgument), 3);
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kNotFound), 5);
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kAlreadyExists), 6);
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kResourceExhausted), 8);
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kFailedPrecondition), 9);
  EXPECT_EQ(wire::ToRpcCode(absl::StatusCode::kOutOfRange), 11);
}

TEST(ToGrpcStatusTest, UnknownValueIsUnknown) {
  EXPECT_EQ(wire::ToGrpcCode(static_cast<absl::StatusCode>(42)), grpc::StatusCode::UNKNOWN);
}

TEST(ToGrpcStatusTest, KeepsTheMessage) {
  const grpc::Status s = wire::ToGrpcStatus(absl::OutOfRangeError("pfn 9 is beyond memory"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(s.error_message(), "pfn 9 is beyond memory");
  const grpc::Status ok = wire::ToGrpcStatus(absl::OkStatus());
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.error_message(), "");
}

TEST(WireMessageTest, ValidUtf8PassesAndOtherBytesAreEscaped) {
  EXPECT_EQ(WireMessage("plain"), "plain");
  EXPECT_EQ(WireMessage("Renderer Threa\xc3\x84x"), "Renderer Threa\xc3\x84x");
  EXPECT_EQ(WireMessage("Renderer Threa\xc3"), "Renderer Threa\\xc3");  // cut mid-character
  EXPECT_EQ(WireMessage(std::string("\xff\xfe\x00\xc3", 4)),
            std::string("\\xff\\xfe\x00\\xc3", 13));
  EXPECT_EQ(WireMessage("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate is not UTF-8
  EXPECT_EQ(WireMessage("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
}

// Issue 10, finding 5: a 9 KB argument echoed in a message made INVALID_ARGUMENT a
// RESOURCE_EXHAUSTED "metadata size exceeds limit" on the client.
TEST(WireMessageTest, LongMessagesAreCut) {
  const std::string long_message = "unknown option " + std::string(9000, 'x');
  const std::string got = WireMessage(long_message);
  EXPECT_EQ(got, "unknown option " + std::string(1024 - 15, 'x') +
                     "... (cut: the message was 9015 bytes)");
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(long_message));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), got);
  // A character the limit would cut is left out whole.
  const std::string euro = std::string(1023, 'a') + "\xe2\x82\xac";
  EXPECT_EQ(WireMessage(euro), std::string(1023, 'a') + "... (cut: the message was 1026 bytes)");
}

}  // namespace
}  // namespace pageowner::wire
