#include "client/command.h"

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/cli_checks.h"
#include "client/credentials.h"
#include "client/json_out.h"
#include "client/real_kernels.h"
#include "core/strings.h"
#include "wire/status.h"

namespace pageowner::cli {

std::string Flag(const CommandLine& line, std::string_view name, std::string_view fallback) {
  std::string value(fallback);
  for (const auto& [n, v] : line.flags) {
    if (n == name) value = v;
  }
  return value;
}

bool HasFlag(const CommandLine& line, std::string_view name) {
  for (const auto& [n, v] : line.flags) {
    if (n == name) return true;
  }
  return false;
}

absl::StatusOr<uint64_t> NumberArg(std::string_view command, std::string_view what,
                                   const std::string& text, uint64_t max) {
  absl::StatusOr<uint64_t> n = ParseNumber(text);
  if (!n.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(command), ": bad ", Sv(what), ": ", n.status().message()));
  }
  if (*n > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(command), ": bad ", Sv(what), ": '", text, "' is above ", max));
  }
  return *n;
}

absl::StatusOr<DumpFormat> FormatFlag(const CommandLine& line) {
  absl::StatusOr<DumpFormat> format = ParseDumpFormat(Flag(line, "format", "today"));
  if (!format.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(line.command, ": ", format.status().message()));
  }
  return *format;
}

absl::StatusOr<size_t> BatchFlag(const CommandLine& line, size_t fallback) {
  uint64_t n = fallback;
  if (HasFlag(line, "batch")) {
    absl::StatusOr<uint64_t> given =
        NumberArg(line.command, "--batch", Flag(line, "batch", ""), 1 << 20);
    if (!given.ok()) return given.status();
    n = *given;
  }
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(line.command, ": bad --batch: must be at least 1"));
  }
  return n;
}

int ServerError(Io io, const absl::Status& status) {
  if (NothingAnswers(status)) {
    io.err << NoDaemonMessage(io.server.empty() ? kDefaultServer : io.server, status) << "\n";
    // A daemon that serves TLS closes a plaintext connection: it looks like no daemon at all.
    if (const std::string hint = client::CredentialsHint(status); !hint.empty()) {
      io.err << "pageowner: " << hint << "\n";
    }
    return kExitServerError;
  }
  io.err << "pageowner: " << wire::CodeName(status.code()) << ": " << status.message() << "\n";
  if (const std::string hint = client::CredentialsHint(status); !hint.empty()) {
    io.err << "pageowner: " << hint << "\n";
  }
  return kExitServerError;
}

int FinishOutput(Io io, int code) {
  // A write that failed before this call left its errno (the stream keeps no reason).
  if (io.out.good()) {
    errno = 0;
    io.out.flush();
  }
  if (io.out.good()) return code;
  const int saved = errno;
  io.err << "pageowner: cannot write the output: "
         << (saved != 0 ? std::strerror(saved) : "the stream failed") << "\n";
  return code == kExitOk ? kExitWriteError : code;
}

size_t BatchWithinLimit(std::string_view command, size_t requested, const v1::Stats* stats, Io io) {
  if (stats == nullptr || stats->max_batch_events() == 0 ||
      requested <= stats->max_batch_events()) {
    return requested;
  }
  io.err << Sv(command) << ": --batch " << requested << " is above the daemon's --max_batch_events "
         << stats->max_batch_events() << ": sending batches of " << stats->max_batch_events()
         << "\n";
  return stats->max_batch_events();
}

int UsageError(Io io, std::string_view command, std::string_view message) {
  io.err << "pageowner: " << message << "\n" << UsageHint(command) << "\n";
  return kExitUsage;
}

absl::Status WriteJson(const google::protobuf::Message& m, std::ostream& out) {
  out << MessageToReadableJson(m);
  return absl::OkStatus();
}

int JsonOut(const google::protobuf::Message& m, Io io) {
  absl::Status s = WriteJson(m, io.out);
  return s.ok() ? kExitOk : ServerError(io, s);
}

std::string FormatRate(double per_second) { return absl::StrFormat("%.0f", per_second); }

std::string CodeCounts::Summary() const {
  std::vector<std::string> parts;
  for (const auto& [code, n] : counts_) parts.push_back(absl::StrCat(wire::CodeName(code), " ", n));
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

absl::StatusOr<uint64_t> ParseNumber(std::string_view text) {
  const absl::string_view s = Sv(text);
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("'", s, "' is not a decimal or 0x hex number"));
  };
  if (s.empty()) return bad();
  absl::string_view digits = s;
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  for (char c : digits) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return bad();
    }
    if (value > (UINT64_MAX - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return absl::InvalidArgumentError(absl::StrCat("'", s, "' is too large"));
    }
    value = value * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  return value;
}

}  // namespace pageowner::cli
