// The one place where gRPC statuses and the google.rpc.Code values carried in BatchResult become
// absl::Status, and where a status is given the name the CLI prints ("NOT_FOUND").
#ifndef PAGEOWNER_CLIENT_STATUS_H_
#define PAGEOWNER_CLIENT_STATUS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace pageowner::client {

// The same code and message. gRPC and Abseil share the canonical code numbers.
absl::Status FromGrpcStatus(const grpc::Status& status);

// A google.rpc.Code number as it travels in BatchResult; numbers outside the canonical range
// become kUnknown (the message says which number it was).
absl::StatusCode CodeFromRpc(int32_t code);
absl::Status StatusFromRpc(int32_t code, std::string_view message);

// "OK", "NOT_FOUND", ...: the canonical upper-case name.
std::string CodeName(absl::StatusCode code);

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_STATUS_H_
