// Command-line handling for pageownerd, kept out of main so that it can be tested: the memory
// size syntax, a strict pre-check of argv (so that every bad flag exits 2, not Abseil's 1), and
// the conversion of the parsed flag values into ServerOptions.
#ifndef PAGEOWNER_SERVER_FLAGS_H_
#define PAGEOWNER_SERVER_FLAGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/server.h"

namespace pageowner::server {

// Parses a memory size: decimal bytes ("4294967296") or a decimal number with one of the binary
// suffixes KiB, MiB, GiB, TiB ("4GiB" = 4 * 2^30), no spaces, no fractions. Returns the bytes.
// Errors: kInvalidArgument for bad syntax, an unknown suffix, zero, or a size that is not a
// multiple of 4 KiB (the page size); kOutOfRange when the bytes do not fit in 64 bits.
absl::StatusOr<uint64_t> ParseMemorySize(std::string_view text);

// Checks argv the way absl::ParseCommandLine will read it (--name=value, --name value for
// non-bool flags, --name and --noname for bool flags, "--" ends the flags) against the flags
// registered in this binary, and parses every value with its flag's own parser. Returns
// kInvalidArgument with a one-line message for the first unknown flag, missing or malformed
// value, or positional argument (pageownerd takes none). Run it before ParseCommandLine, which
// exits 1 on such errors; we promise 2.
absl::Status CheckCommandLine(int argc, char** argv);

// True when argv asks for --help (or -help) before any "--".
bool WantsHelp(int argc, char** argv);

// pageownerd's --help text: `usage`, then every flag defined in the source file `file` (as
// __FILE__ names it there), by name, with its default and its help.
std::string HelpText(std::string_view usage, std::string_view file);

// The values of pageownerd's flags, as parsed.
struct FlagValues {
  std::string listen;
  std::string memory;
  int32_t stack_depth = 0;
  uint32_t depot_max_pools = 0;
  uint32_t max_batch_events = 0;
  uint64_t max_symbol_bytes = kDefaultMaxSymbolBytes;
  uint64_t max_stream_definition_bytes = kDefaultMaxStreamDefinitionBytes;
  uint32_t max_streams = kDefaultMaxStreams;
  std::string max_grpc_memory = "1GiB";
  bool tracking = true;
  // TLS and tokens (server/tls.h, server/auth.h); empty: none.
  std::string tls_cert = {};
  std::string tls_key = {};
  std::string tls_client_ca = {};
  std::string auth_tokens = {};
  bool insecure = false;         // a non-local address without TLS or tokens is meant
  std::string metrics_listen;    // HOST:PORT, or "none"
  std::string data_dir;          // "": in memory
  std::string fsync = "always";  // always | interval
  uint32_t fsync_interval_ms = 1000;
  std::string wal_segment_bytes = "64MiB";
  std::string wal_recovery = "strict";        // strict | truncate
  std::string snapshot_interval = "30m";      // a duration; "0": no timed snapshots
  std::string snapshot_log_bytes = "512MiB";  // "0": none by log size
};

// True when `address` (a --listen or --metrics_listen value) can be reached only from this host:
// a host of localhost, 127.0.0.0/8 or ::1, or a unix: socket.
bool IsLocalAddress(std::string_view address);

// Validates the flag values and builds the server's options. Errors are kInvalidArgument (or
// kOutOfRange for a memory size beyond 64 bits) with a message that starts with the flag and its
// value, e.g. "--stack_depth=0: must be in 1..64". It also reads the TLS files and the token file
// (CheckTlsFiles, ReadTokenFile: their errors, naming the file and line, are returned as they
// are), and refuses the dangerous default: a non-local --listen or --metrics_listen without TLS
// and tokens needs --insecure; tokens on a non-local --listen need TLS even then.
absl::StatusOr<ServerOptions> MakeServerOptions(const FlagValues& flags);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_FLAGS_H_
