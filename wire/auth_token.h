// Auth tokens as both ends see them: a token travels as `authorization: Bearer TOKEN` call
// metadata (or an http Authorization header), and the daemon's token file holds only the lowercase
// hex SHA-256 of each token, so that the file is no secret. The server checks tokens with
// server/auth.h; the CLI makes them (`pageowner token new ROLE`) and sends them.
#ifndef PAGEOWNER_WIRE_AUTH_TOKEN_H_
#define PAGEOWNER_WIRE_AUTH_TOKEN_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pageowner::wire {

// The metadata key (gRPC) and header (http) that carry the token; gRPC keys are lowercase.
inline constexpr std::string_view kAuthorizationKey = "authorization";
inline constexpr std::string_view kBearerPrefix = "Bearer ";

// Random bytes in a fresh token (256 bits).
inline constexpr size_t kTokenBytes = 32;

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 of `data` (OpenSSL).
Sha256Digest Sha256(std::string_view data);
// Lowercase hex, 64 characters.
std::string HexDigest(const Sha256Digest& digest);

// A fresh token: kTokenBytes from /dev/urandom in base64url without padding (43 characters of
// A-Z a-z 0-9 - _). Errors: kUnavailable when /dev/urandom cannot be read.
absl::StatusOr<std::string> NewToken();

// A token as read from a token file: surrounding white space (the file's final newline) dropped.
// Errors: kInvalidArgument when it is empty, or has a character outside visible ASCII (a token
// must fit in an http header and in gRPC metadata).
absl::StatusOr<std::string> CleanToken(std::string_view file_contents);

}  // namespace pageowner::wire

#endif  // PAGEOWNER_WIRE_AUTH_TOKEN_H_
