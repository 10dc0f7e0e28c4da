// The command lines of `pageowner import` and `pageowner sort`; the commands themselves are
// real_kernels.cc's RunImport and RunSort, beside the dump and trace readers they share.
#include <string>
#include <vector>

#include "client/command.h"
#include "client/commands.h"
#include "client/real_kernels.h"

namespace pageowner::cli {
namespace {

absl::StatusOr<ImportOptions> ParseImport(const CommandLine& line) {
  ImportOptions o;
  o.file = line.positional[0];
  o.force = HasFlag(line, "force");
  absl::StatusOr<size_t> batch = BatchFlag(line, o.batch);
  if (!batch.ok()) return batch.status();
  o.batch = *batch;
  return o;
}

struct SortOptions {
  std::vector<std::string> args;  // page_owner_sort's own options
  DumpFormat format = DumpFormat::kToday;
};

absl::StatusOr<SortOptions> ParseSort(const CommandLine& line) {
  absl::StatusOr<DumpFormat> format = FormatFlag(line);
  if (!format.ok()) return format.status();
  return SortOptions{line.positional, *format};
}

int RunSortCommand(client::Client& client, const SortOptions& options, Io io) {
  return RunSort(client, options.args, options.format, io);
}

}  // namespace

const Command& ImportCommand() {
  static const auto* const kCommand = new Command{
      .name = "import",
      .synopsis = "import FILE [--force] [--batch N]",
      .summary =
          "streams a real /sys/kernel/debug/page_owner dump (- for stdin; .gz, .xz) into the\n"
          "daemon, each block at its pfn; refuses a dump beyond the daemon's memory unless "
          "--force",
      .min_positional = 1,
      .max_positional = 1,
      .flags = {{"force", false}, {"batch", true}},
      .parse = Steps(ParseImport, RunImport),
  };
  return *kCommand;
}

const Command& SortCommand() {
  static const auto* const kCommand = new Command{
      .name = "sort",
      .synopsis = "sort [--format today|v6.2|2016] [page_owner_sort options]",
      .summary =
          "page_owner_sort's report (-a -m -n -p -P -s -t --pid --tgid --name --cull --sort),\n"
          "computed in the daemon over its allocated blocks",
      .min_positional = 0,
      .max_positional = SIZE_MAX,
      .flags = {{"format", true}},
      .parse = Steps(ParseSort, RunSortCommand),
  };
  return *kCommand;
}

}  // namespace pageowner::cli
