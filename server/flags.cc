#include "server/flags.h"

#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/machine.h"
#include "core/stack_depot.h"
#include "core/status_macros.h"
#include "core/strings.h"
#include "core/types.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/tls.h"

namespace pageowner::server {
namespace {

// Debian's Abseil has its own string_view.

struct Suffix {
  std::string_view name;
  unsigned shift;
};
constexpr Suffix kSuffixes[] = {{"", 0}, {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};

// The largest memory the core accepts (Machine::ValidateOptions): 2^32 pages, 16 TiB.
constexpr uint64_t kMaxMemoryBytes = (uint64_t{1} << 32) * kPageSize;

bool IsUsageFlag(std::string_view name) {
  for (std::string_view usage : {"help", "helpfull", "helpshort", "helppackage", "version",
                                 "only_check_args", "helpon", "helpmatch"}) {
    if (name == usage) return true;
  }
  return false;
}

// The TLS files and the token file, checked, and the refusal of a network address left open.
absl::Status SecurityOptions(const FlagValues& flags, ServerOptions* options) {
  options->tls =
      TlsFiles{.cert = flags.tls_cert, .key = flags.tls_key, .client_ca = flags.tls_client_ca};
  PO_RETURN_IF_ERROR(CheckTlsFiles(options->tls));
  if (!flags.auth_tokens.empty()) {
    PO_RETURN_IF_ERROR(ReadTokenFile(flags.auth_tokens).status());
    options->auth_tokens_file = flags.auth_tokens;
  }
  const bool tls = options->tls.enabled();
  const bool tokens = !options->auth_tokens_file.empty();
  if (!IsLocalAddress(flags.listen) && tokens && !tls) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen=", flags.listen,
        ": --auth_tokens on a non-loopback address needs --tls_cert and --tls_key (tokens sent "
        "in clear text can be read on the network; without TLS, gRPC checks tokens on loopback "
        "only)"));
  }
  if (flags.insecure) return absl::OkStatus();
  const auto open = [&](std::string_view flag, const std::string& address) {
    const std::string_view missing = !tls && !tokens ? "TLS and tokens" : !tls ? "TLS" : "tokens";
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(flag), "=", address, " is not a loopback address, and without ", Sv(missing),
        " anyone who can reach it may ",
        flag == "--listen" ? "stream events, turn tracking off and read every owner"
                           : "read the metrics",
        ": add ",
        !tls ? "--tls_cert=FILE --tls_key=FILE (and --tls_client_ca=FILE for mutual TLS) " : "",
        !tls && !tokens ? "and " : "",
        !tokens ? "--auth_tokens=FILE (one line a token; `pageowner token new ROLE` prints one) "
                : "",
        "or, if that is what you mean, --insecure"));
  };
  if (!IsLocalAddress(flags.listen) && !(tls && tokens)) return open("--listen", flags.listen);
  if (!options->metrics_listen_address.empty() && !IsLocalAddress(flags.metrics_listen) &&
      !(tls && tokens)) {
    return open("--metrics_listen", flags.metrics_listen);
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLocalAddress(std::string_view address) {
  if (absl::StartsWith(Sv(address), "unix:") || absl::StartsWith(Sv(address), "unix-abstract:")) {
    return true;
  }
  absl::StatusOr<std::pair<std::string, int>> host_port = SplitHostPort(address);
  if (!host_port.ok()) return false;
  const std::string& host = host_port->first;
  if (host == "localhost" || host == "::1") return true;
  // 127.0.0.0/8, written as four decimal parts.
  if (!absl::StartsWith(host, "127.")) return false;
  int parts = 0;
  size_t i = 0;
  for (;;) {
    size_t j = i;
    while (j < host.size() && absl::ascii_isdigit(static_cast<unsigned char>(host[j]))) ++j;
    if (j == i || j - i > 3) return false;
    ++parts;
    if (j == host.size()) break;
    if (host[j] != '.') return false;
    i = j + 1;
  }
  return parts == 4;
}

absl::StatusOr<uint64_t> ParseMemorySize(std::string_view text) {
  const auto quoted = [&] { return absl::StrCat("memory size \"", Sv(text), "\""); };
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted(), ": expected a decimal number of bytes, KiB, MiB, GiB or TiB"));
  }
  const std::string_view suffix = text.substr(digits);
  const Suffix* unit = nullptr;
  for (const Suffix& s : kSuffixes) {
    if (s.name == suffix) unit = &s;
  }
  if (unit == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(quoted(), ": unknown unit \"", Sv(suffix),
                                                   "\" (use none for bytes, or KiB, MiB, GiB, "
                                                   "TiB)"));
  }
  uint64_t n = 0;
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (size_t i = 0; i < digits; ++i) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (n > (kMax - d) / 10) {
      return absl::OutOfRangeError(absl::StrCat(quoted(), ": does not fit in 64 bits"));
    }
    n = n * 10 + d;
  }
  if (unit->shift > 0 && n > (kMax >> unit->shift)) {
    return absl::OutOfRangeError(absl::StrCat(quoted(), ": does not fit in 64 bits"));
  }
  const uint64_t bytes = n << unit->shift;
  if (bytes == 0) return absl::InvalidArgumentError(absl::StrCat(quoted(), ": must not be zero"));
  if (bytes % kPageSize != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(quoted(), ": ", bytes, " bytes is not a multiple of 4 KiB (4096 bytes)"));
  }
  return bytes;
}

absl::Status CheckCommandLine(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", Sv(arg), "\" (pageownerd takes only flags)"));
    }
    std::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const bool has_value = eq != std::string_view::npos;
    const std::string_view name = body.substr(0, eq);
    // Abseil's usage flags (--help, --helpfull, ...) are not registered flags.
    if (IsUsageFlag(name) || arg == "-h") continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(Sv(name));
    if (flag == nullptr) {
      // --noname turns a bool flag off.
      absl::CommandLineFlag* negated = name.size() > 2 && name.substr(0, 2) == "no"
                                           ? absl::FindCommandLineFlag(Sv(name.substr(2)))
                                           : nullptr;
      if (negated != nullptr && negated->IsOfType<bool>() && !has_value) continue;
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", Sv(name)));
    }
    std::string value;
    if (has_value) {
      value = std::string(body.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("missing value for --", Sv(name)));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("--", Sv(name), "=", value, ": ", error));
    }
  }
  return absl::OkStatus();
}

bool WantsHelp(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") return false;
    if (arg == "--help" || arg == "-help" || arg == "-h") return true;
  }
  return false;
}

std::string HelpText(std::string_view usage, std::string_view file) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Abseil normalizes the file name (drops a leading '/').
    if (absl::EndsWith(Sv(file), flag->Filename())) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string out = absl::StrCat(Sv(usage), "\n\nFlags:\n");
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string def = flag->DefaultValue();
    absl::StrAppend(&out, "  --", flag->Name(), " (default: ",
                    flag->IsOfType<std::string>() ? absl::StrCat("\"", def, "\"") : def,
                    ")\n      ", flag->Help(), "\n");
  }
  return out;
}

absl::StatusOr<ServerOptions> MakeServerOptions(const FlagValues& flags) {
  ServerOptions options;
  if (flags.listen.empty()) return absl::InvalidArgumentError("--listen: must not be empty");
  // gRPC would take ":50099" or "50051" as something else, and bind another port for 99999.
  if (!SplitHostPort(flags.listen).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen=", flags.listen, ": not HOST:PORT with a port in 0..65535"));
  }
  options.listen_address = flags.listen;

  absl::StatusOr<uint64_t> bytes = ParseMemorySize(flags.memory);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("--memory=", flags.memory, ": ", bytes.status().message()));
  }
  if (*bytes > kMaxMemoryBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--memory=", flags.memory, ": above the limit of 16TiB (2^32 pages)"));
  }
  options.machine.pages = PageCount(*bytes / kPageSize);

  if (flags.stack_depth < 1 || flags.stack_depth > StackDepot::kMaxStackDepth) {
    return absl::InvalidArgumentError(absl::StrCat("--stack_depth=", flags.stack_depth,
                                                   ": must be in 1..", StackDepot::kMaxStackDepth));
  }
  options.machine.stack_depth = flags.stack_depth;

  if (flags.depot_max_pools < 1 || flags.depot_max_pools > StackDepot::kMaxPoolsLimit) {
    return absl::InvalidArgumentError(absl::StrCat("--depot_max_pools=", flags.depot_max_pools,
                                                   ": must be in 1..", StackDepot::kMaxPoolsLimit));
  }
  options.machine.depot_max_pools = flags.depot_max_pools;

  if (flags.max_batch_events < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_batch_events=", flags.max_batch_events, ": must be at least 1"));
  }
  options.max_batch_events = flags.max_batch_events;
  if (flags.max_streams < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_streams=", flags.max_streams, ": must be at least 1"));
  }
  options.max_streams = flags.max_streams;
  options.max_symbol_bytes = flags.max_symbol_bytes;
  options.max_stream_definition_bytes = flags.max_stream_definition_bytes;
  absl::StatusOr<uint64_t> grpc_memory = ParseMemorySize(flags.max_grpc_memory);
  if (!grpc_memory.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--max_grpc_memory=", flags.max_grpc_memory,
                                                   ": ", grpc_memory.status().message()));
  }
  if (*grpc_memory < (uint64_t{64} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_grpc_memory=", flags.max_grpc_memory,
                     ": at least 64MiB (one batch may be that large)"));
  }
  options.max_grpc_memory = *grpc_memory;
  options.machine.tracking = flags.tracking;

  if (flags.metrics_listen != "none") {
    if (absl::Status s = SplitHostPort(flags.metrics_listen).status(); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics_listen=", flags.metrics_listen, ": ", s.message()));
    }
    options.metrics_listen_address = flags.metrics_listen;
  }
  PO_RETURN_IF_ERROR(SecurityOptions(flags, &options));

  if (!flags.data_dir.empty()) {
    WalOptions wal{.dir = flags.data_dir};
    if (flags.fsync == "interval") {
      wal.fsync = FsyncMode::kInterval;
    } else if (flags.fsync != "always") {
      return absl::InvalidArgumentError(
          absl::StrCat("--fsync=", flags.fsync, ": must be always or interval"));
    }
    if (flags.fsync_interval_ms < 1 || flags.fsync_interval_ms > 60000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--fsync_interval_ms=", flags.fsync_interval_ms, ": must be in 1..60000"));
    }
    wal.fsync_interval = absl::Milliseconds(flags.fsync_interval_ms);
    absl::StatusOr<uint64_t> segment = ParseMemorySize(flags.wal_segment_bytes);
    if (!segment.ok() || *segment < (uint64_t{1} << 16)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--wal_segment_bytes=", flags.wal_segment_bytes, ": ",
                       segment.ok() ? "at least 64KiB" : segment.status().message()));
    }
    wal.segment_bytes = *segment;
    if (flags.wal_recovery == "truncate") {
      wal.recovery = WalRecoveryMode::kTruncate;
    } else if (flags.wal_recovery != "strict") {
      return absl::InvalidArgumentError(
          absl::StrCat("--wal_recovery=", flags.wal_recovery, ": must be strict or truncate"));
    }
    options.wal = wal;
    absl::Duration interval;
    if (!absl::ParseDuration(flags.snapshot_interval, &interval) ||
        interval < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--snapshot_interval=", flags.snapshot_interval,
                       ": a duration such as 10m, 1h or 0 (none)"));
    }
    options.snapshot.interval = interval;
    absl::StatusOr<uint64_t> log_bytes = flags.snapshot_log_bytes == "0"
                                             ? absl::StatusOr<uint64_t>(0)
                                             : ParseMemorySize(flags.snapshot_log_bytes);
    if (!log_bytes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--snapshot_log_bytes=", flags.snapshot_log_bytes, ": ", log_bytes.status().message()));
    }
    options.snapshot.log_bytes = *log_bytes;
  }
  return options;
}

}  // namespace pageowner::server
