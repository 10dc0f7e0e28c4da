#include "client/cli_checks.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/build_info.h"
#include "core/strings.h"

namespace pageowner::cli {
namespace {

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace

absl::StatusOr<std::string> ServerTarget(std::string_view text) {
  const std::string given(text);
  if (absl::StartsWith(given, "unix:") || absl::StartsWith(given, "dns:") ||
      absl::StartsWith(given, "ipv4:") || absl::StartsWith(given, "ipv6:")) {
    return given;
  }
  if (given.find("://") != std::string::npos || given.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server wants HOST:PORT, not a URL: '", given, "'"));
  }
  std::string host = given;
  std::string port;
  if (absl::StartsWith(given, "[")) {  // [IPv6] or [IPv6]:PORT
    const size_t close = given.find(']');
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--server: no ']' in '", given, "'"));
    }
    host = given.substr(0, close + 1);
    if (close + 1 < given.size()) {
      if (given[close + 1] != ':') {
        return absl::InvalidArgumentError(absl::StrCat("--server wants HOST:PORT: '", given, "'"));
      }
      port = given.substr(close + 2);
    }
  } else if (const size_t colon = given.rfind(':'); colon != std::string::npos) {
    host = given.substr(0, colon);
    port = given.substr(colon + 1);
  }
  uint32_t number = 0;
  const bool all_digits =
      !host.empty() && std::all_of(host.begin(), host.end(), absl::ascii_isdigit);
  if (host.empty() || (all_digits && port.empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server wants HOST:PORT (e.g. 127.0.0.1:", Sv(kDefaultPort), "): '", given, "'"));
  }
  if (port.empty() && given.find(':') != std::string::npos && !absl::StartsWith(given, "[")) {
    return absl::InvalidArgumentError(absl::StrCat("--server: no port after ':' in '", given, "'"));
  }
  if (port.empty()) return absl::StrCat(host, ":", Sv(kDefaultPort));
  if (!absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--server: bad port '", port, "' in '", given, "': 1..65535"));
  }
  return given;
}

std::string NearestName(std::string_view name, const std::vector<std::string_view>& known) {
  std::string best;
  size_t best_distance = 3;
  for (std::string_view k : known) {
    if (name.size() >= 2 && absl::StartsWith(Sv(k), Sv(name))) return std::string(k);
    const size_t d = EditDistance(name, k);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(k);
    }
  }
  return best;
}

bool NothingAnswers(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable) return false;
  const absl::string_view m = status.message();
  return absl::StrContains(m, "failed to connect") || absl::StrContains(m, "Connection refused") ||
         absl::StrContains(m, "DNS resolution failed") ||
         absl::StrContains(m, "No route to host") ||
         absl::StrContains(m, "connections to all backends failing");
}

std::string NoDaemonMessage(std::string_view server, const absl::Status& status) {
  return absl::StrCat("pageowner: no pageownerd answers at ", Sv(server),
                      " (UNAVAILABLE: ", status.message(),
                      "); start one there (`pageownerd --listen=", Sv(server),
                      "` or `make run`) or pass --server=HOST:PORT");
}

std::string VersionLine(std::string_view program) {
  return absl::StrCat(Sv(program), " ", Sv(BuildVersion()));
}

}  // namespace pageowner::cli
