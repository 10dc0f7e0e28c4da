// The `pageowner` CLI: its command line, and each command as a function that talks to a Client
// and writes to streams, so that tests can run commands against any server. The table and the
// parser are in command_line.cc, each command in its cmd_*.cc, the replay format in
// replay_format.h, the text renderers in render.h.
#ifndef PAGEOWNER_CLIENT_COMMANDS_H_
#define PAGEOWNER_CLIENT_COMMANDS_H_

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/credentials.h"
#include "client/replay_format.h"
#include "client/session.h"
#include "core/reports.h"
#include "core/types.h"

namespace pageowner::cli {

// The exit codes, the same for every command (`pageowner help` and the README say it too):
inline constexpr int kExitOk = 0;           // everything was printed, every event applied
inline constexpr int kExitServerError = 1;  // an rpc failed or the daemon refused something,
                                            // even one event of many (partial failure)
inline constexpr int kExitUsage = 2;  // bad usage; an unreadable input or one with nothing usable
                                      // in it (a directory, no valid line, no block)
inline constexpr int kExitWriteError = 3;     // writing the output failed (a full disk, EPIPE)
inline constexpr int kExitInterrupted = 130;  // SIGINT (128 + 2), after printing what was done

inline constexpr std::string_view kDefaultServer = "127.0.0.1:50051";

// Where a command reads and writes.
struct Io {
  std::istream& in;   // replay's "-"
  std::ostream& out;  // the command's output
  std::ostream& err;  // errors, progress
  // The daemon's address as given, for messages that say where nothing answered.
  std::string_view server = {};
};

// ---- Command line ----

// A parsed command line. `command` is one of the names `Usage()` lists.
struct CommandLine {
  std::string server = std::string(kDefaultServer);
  // --tls_ca, --tls_cert, --tls_key, --token_file (before or after the command); the
  // environment fills what they leave empty when the command runs.
  client::ConnectionOptions connection;
  std::string command;
  std::vector<std::string> positional;
  // Flags given to the command, by name without dashes; a boolean flag has value "true".
  std::vector<std::pair<std::string, std::string>> flags;
};

// Splits `args` (argv without the program name) into the global --server, the command, its
// flags (`--name=value`, `--name value`, `--bool`) and positionals, checking each flag and the
// number of positionals against the command's table. --help or -h anywhere means `help`.
// Errors: kInvalidArgument with a message for the user.
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// Runs a parsed command against the daemon at `line.server`; returns the exit code. Errors are
// written to io.err as "pageowner: ...".
int Dispatch(const CommandLine& line, Io io);

// What `pageowner help` prints: every command with its flags.
std::string Usage();
// A one-line hint for a usage error in `command` ("" for the top level).
std::string UsageHint(std::string_view command);

// ---- Values ----

// A non-negative integer in decimal or 0x/0X hex ("4096", "0x1000"); kInvalidArgument for
// anything else (signs, spaces, garbage, overflow).
absl::StatusOr<uint64_t> ParseNumber(std::string_view text);

// ---- Replay ----
// ReplayEvent, ParseReplayLine and ParseMigrateReason: client/replay_format.h.

// ---- Commands ----

struct PageOptions {
  Pfn pfn;
  bool json = false;
};
int RunPage(client::Client& client, const PageOptions& options, Io io);

struct StackOptions {
  StackHandle handle;
  bool json = false;
};
int RunStack(client::Client& client, const StackOptions& options, Io io);

struct StacksOptions {
  int64_t threshold = 0;
  uint32_t top = 0;            // 0: all
  std::string sort = "pages";  // pages, allocs or newest
  bool handles = false;
  bool json = false;
};
int RunStacks(client::Client& client, const StacksOptions& options, Io io);

// `format`: kToday by default; kFreeTs and k2016 print the older kernels' text.
int RunDump(client::Client& client, Io io, DumpFormat format = DumpFormat::kToday);

struct StatsOptions {
  bool json = false;
};
int RunStats(client::Client& client, const StatsOptions& options, Io io);

struct ReplayOptions {
  std::string file;  // "-": io.in
  size_t batch = 4096;
  // --trusted: the events happened on a real machine (EVENT_FLAG_TRUSTED): applied over what
  // the daemon believes, each repair counted in `stats` (core/machine.h, "Trusted events").
  bool trusted = false;
};
int RunReplay(client::Client& client, const ReplayOptions& options, Io io);

struct LoadOptions {
  uint64_t events = 0;
  uint32_t stacks = 10000;
  double fill = 0.7;
  uint64_t seed = 1;
  size_t batch = 4096;
};
int RunLoad(client::Client& client, const LoadOptions& options, Io io);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_COMMANDS_H_
