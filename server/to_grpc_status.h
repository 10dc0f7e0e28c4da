// The one place where the core's absl::Status becomes a gRPC status. Whole rpcs use
// ToGrpcStatus; the per-event and per-batch codes of Ingest (google.rpc.Code values in
// BatchResult) use ToRpcCode.
#ifndef PAGEOWNER_SERVER_TO_GRPC_STATUS_H_
#define PAGEOWNER_SERVER_TO_GRPC_STATUS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace pageowner::server {

// The gRPC code for an Abseil code. Both follow google.rpc.Code, so every code maps to the code
// of the same name; a value outside the canonical set maps to UNKNOWN.
grpc::StatusCode ToGrpcCode(absl::StatusCode code);

// The google.rpc.Code value of `code`, as BatchResult.code and event_code carry it.
int32_t ToRpcCode(absl::StatusCode code);

// The gRPC status for `status`: same code, same message (OK carries no message).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_TO_GRPC_STATUS_H_
