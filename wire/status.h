// The one place where the core's absl::Status becomes a gRPC status. Whole rpcs use
// ToGrpcStatus; the per-event and per-batch codes of Ingest (google.rpc.Code values in
// BatchResult) use ToRpcCode.
#ifndef PAGEOWNER_WIRE_STATUS_H_
#define PAGEOWNER_WIRE_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace pageowner::wire {

// The gRPC code for an Abseil code. Both follow google.rpc.Code, so every code maps to the code
// of the same name; a value outside the canonical set maps to UNKNOWN.
grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// The google.rpc.Code value of `code`, as BatchResult.code and event_code carry it.
int32_t ToRpcCode(absl::StatusCode code);

// The gRPC status for `status`: same code, same message (OK carries no message).
// The status with its message made fit for the wire (WireMessage).
grpc::Status ToGrpcStatus(const absl::Status& status);

// A status message as it may travel: valid UTF-8 (a byte that is not part of a valid UTF-8
// sequence becomes "\xHH", so kernel names in a message cannot break a proto3 string or a
// client's decoder) and at most kMaxWireMessageBytes (a message that echoes a large input is
// cut, saying how long it was, so that it stays under gRPC's 8 KiB metadata limit).
inline constexpr size_t kMaxWireMessageBytes = 1024;
std::string WireMessage(absl::string_view message);

// The same code and message. gRPC and Abseil share the canonical code numbers.
absl::Status FromGrpcStatus(const grpc::Status& status);

// A google.rpc.Code number as it travels in BatchResult; numbers outside the canonical range
// become kUnknown (the message says which number it was).
absl::StatusCode CodeFromRpc(int32_t code);
absl::Status StatusFromRpc(int32_t code, std::string_view message);

// "OK", "NOT_FOUND", ...: the canonical upper-case name.
std::string CodeName(absl::StatusCode code);

}  // namespace pageowner::wire

#endif  // PAGEOWNER_WIRE_STATUS_H_
