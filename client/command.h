// What the CLI's commands share: a command's entry in the table (its usage, the flags and
// positionals its line may hold, its parse and run steps), and the helpers every command uses
// to read its line, check values and report errors. Internal to the CLI; client/commands.h is
// its public face.
#ifndef PAGEOWNER_CLIENT_COMMAND_H_
#define PAGEOWNER_CLIENT_COMMAND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/commands.h"
#include "core/reports.h"
#include "google/protobuf/message.h"

namespace pageowner::cli {

struct FlagSpec {
  std::string_view name;
  bool takes_value;
};

// A command with its values checked, ready to run against the daemon.
using Runner = std::function<int(client::Client&, Io)>;

// One row of the command table. `parse` checks the values of a line that ParseCommandLine has
// already shaped by `flags` and the positional counts, so that bad usage never reaches the
// daemon: kInvalidArgument with the message for the user (Dispatch adds the usage hint).
struct Command {
  std::string_view name;
  std::string_view synopsis;  // after "pageowner "
  std::string_view summary;   // its lines in `pageowner help`
  size_t min_positional;
  size_t max_positional;
  std::vector<FlagSpec> flags;
  std::function<absl::StatusOr<Runner>(const CommandLine&)> parse;  // empty for help
};

// A command's two steps as the table's `parse`: `parse` its options from the line, then `run`
// them against the daemon.
template <typename Options>
std::function<absl::StatusOr<Runner>(const CommandLine&)> Steps(
    absl::StatusOr<Options> (*parse)(const CommandLine&),
    int (*run)(client::Client&, const Options&, Io)) {
  return [parse, run](const CommandLine& line) -> absl::StatusOr<Runner> {
    absl::StatusOr<Options> options = parse(line);
    if (!options.ok()) return options.status();
    return Runner(
        [run, o = *std::move(options)](client::Client& c, Io io) { return run(c, o, io); });
  };
}

// The rows, each defined in the command's own file (cmd_*.cc), in `pageowner help`'s order.
const Command& PageCommand();
const Command& StackCommand();
const Command& StacksCommand();
const Command& DumpCommand();
const Command& ImportCommand();
const Command& SortCommand();
const Command& StatsCommand();
const Command& ReplayCommand();
const Command& LoadCommand();
const Command& ResetCommand();     // cmd_admin.cc
const Command& SnapshotCommand();  // cmd_admin.cc
const Command& TrackingCommand();  // cmd_admin.cc
const Command& PprofCommand();
const Command& RecordCommand();  // cmd_record.cc: --kernel, or `-- CMD` (cmd_app_record.cc)
const Command& TokenCommand();

// ---- Reading a parsed line ----

// The value of the last --name, or `fallback`.
std::string Flag(const CommandLine& line, std::string_view name, std::string_view fallback);
bool HasFlag(const CommandLine& line, std::string_view name);

// `text` as a number up to `max`, for `what` ("PFN", "--top") of `command`; kInvalidArgument
// "COMMAND: bad WHAT: ..." otherwise.
absl::StatusOr<uint64_t> NumberArg(std::string_view command, std::string_view what,
                                   const std::string& text, uint64_t max);
// --format today|v6.2|2016 of dump and sort (today when absent); kInvalidArgument
// "COMMAND: ..." otherwise.
absl::StatusOr<DumpFormat> FormatFlag(const CommandLine& line);
// --batch N (1..2^20), or `fallback` when absent.
absl::StatusOr<size_t> BatchFlag(const CommandLine& line, size_t fallback);

// ---- Output ----

// "pageowner: CODE: message" on io.err; returns kExitServerError. When nothing answered at
// io.server, says so and how to start a daemon or pass --server instead.
int ServerError(Io io, const absl::Status& status);
// Flushes io.out; when it has failed (now or earlier: a full disk, a closed pipe), says so on
// io.err ("pageowner: cannot write the output: REASON") and returns kExitWriteError; else
// returns `code`. Every command's output goes through it (Dispatch).
int FinishOutput(Io io, int code);
// The batch size to stream with: `requested`, or the daemon's --max_batch_events when that is
// smaller (Stats.max_batch_events; a note on io.err says so). `stats` null: as requested.
size_t BatchWithinLimit(std::string_view command, size_t requested, const v1::Stats* stats, Io io);
// "pageowner: message" and the command's usage hint on io.err; returns kExitUsage.
int UsageError(Io io, std::string_view command, std::string_view message);

// `m` as indented JSON with every field and the proto's own field names, ending in a newline.
absl::Status WriteJson(const google::protobuf::Message& m, std::ostream& out);
// WriteJson's result as an exit code.
int JsonOut(const google::protobuf::Message& m, Io io);

// Writes through one large buffer, so a dump of millions of blocks makes few writes.
class BufferedOut {
 public:
  static constexpr size_t kFlushBytes = 1 << 20;
  explicit BufferedOut(std::ostream& out) : out_(out) { buf_.reserve(kFlushBytes + (64 << 10)); }
  ~BufferedOut() { Flush(); }
  std::string* buf() { return &buf_; }
  void MaybeFlush() {
    if (buf_.size() >= kFlushBytes) Flush();
  }
  void Flush() {
    if (!buf_.empty() && out_.good()) {
      out_.write(buf_.data(), static_cast<std::streamsize>(buf_.size()));
      out_.flush();  // so that a full disk or a closed pipe is seen now, not at exit
    }
    buf_.clear();
  }
  // False once a write failed: a streaming command stops then (FinishOutput reports it).
  bool ok() const { return out_.good(); }

 private:
  std::ostream& out_;
  std::string buf_;
};

// Says when a progress line on stderr is due: at most once a second.
class Progress {
 public:
  bool Due() {
    const absl::Time now = absl::Now();
    if (now - last_ < absl::Seconds(1)) return false;
    last_ = now;
    return true;
  }

 private:
  absl::Time last_ = absl::Now();
};

// Events a second, rounded: "123457".
std::string FormatRate(double per_second);

// Counts of results by code, summarized "OK 12, NOT_FOUND 1" in code order.
class CodeCounts {
 public:
  void Add(absl::StatusCode code) { ++counts_[code]; }
  uint64_t Get(absl::StatusCode code) const {
    auto it = counts_.find(code);
    return it == counts_.end() ? 0 : it->second;
  }
  std::string Summary() const;

 private:
  std::map<absl::StatusCode, uint64_t> counts_;
};

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_COMMAND_H_
