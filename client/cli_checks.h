// What the CLI checks before and after talking to a daemon, so that a mistake gets a message that
// says what to do: the --server address (a host without a port, a URL), the nearest command to a
// typo, a transport error that means no daemon answers, and the version line.
#ifndef PAGEOWNER_CLIENT_CLI_CHECKS_H_
#define PAGEOWNER_CLIENT_CLI_CHECKS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pageowner::cli {

inline constexpr std::string_view kDefaultPort = "50051";

// The gRPC target for --server=`text`: HOST:PORT as given; a HOST (or [IPv6]) alone gets port
// 50051; "unix:PATH" and "dns:..." pass as gRPC takes them. kInvalidArgument for a URL
// ("http://h:1": "--server wants HOST:PORT, not a URL"), a bare port, an empty host or a port
// outside 1..65535.
absl::StatusOr<std::string> ServerTarget(std::string_view text);

// The known name nearest to `name` (edit distance at most 2, or `name` a prefix of it), or "".
std::string NearestName(std::string_view name, const std::vector<std::string_view>& known);

// True for a transport error that means nothing answered at the address (connection refused,
// no route, a name that does not resolve): UNAVAILABLE from gRPC's connection attempt.
bool NothingAnswers(const absl::Status& status);
// "pageowner: no pageownerd answers at SERVER (...); start one with ... or pass --server".
std::string NoDaemonMessage(std::string_view server, const absl::Status& status);

// "pageowner VERSION" (the CMake project version and, when the tree was a git checkout at
// configure time, `git describe`).
std::string VersionLine(std::string_view program);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_CLI_CHECKS_H_
