// `pageowner dump [--format today|v6.2|2016]`: /sys/kernel/debug/page_owner for every allocated
// block, in pfn order, from the daemon's ListPages stream.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "client/command.h"
#include "client/commands.h"
#include "client/real_kernels.h"
#include "core/reports.h"
#include "core/symbols.h"
#include "wire/convert.h"

namespace pageowner::cli {
namespace {

struct DumpOptions {
  DumpFormat format = DumpFormat::kToday;
};

absl::StatusOr<DumpOptions> ParseDump(const CommandLine& line) {
  absl::StatusOr<DumpFormat> format = FormatFlag(line);
  if (!format.ok()) return format.status();
  return DumpOptions{*format};
}

int RunDumpCommand(client::Client& client, const DumpOptions& options, Io io) {
  return RunDump(client, io, options.format);
}

}  // namespace

const Command& DumpCommand() {
  static const auto* const kCommand = new Command{
      .name = "dump",
      .synopsis = "dump [--format today|v6.2|2016]",
      .summary =
          "/sys/kernel/debug/page_owner: the block of every allocated block, in pfn order;\n"
          "--format v6.2 prints the 5.11..6.2 text (6.1's), 2016 the seed's",
      .min_positional = 0,
      .max_positional = 0,
      .flags = {{"format", true}},
      .parse = Steps(ParseDump, RunDumpCommand),
  };
  return *kCommand;
}

int RunDump(client::Client& client, Io io, DumpFormat format) {
  SymbolTable symbols;
  absl::flat_hash_map<uint32_t, std::vector<uint64_t>> frames;  // handle -> addresses
  BufferedOut out(io.out);
  absl::Status fetch_error;
  v1::ListPagesRequest request;
  request.set_state(v1::PAGE_STATE_ALLOCATED);
  absl::Status status = client.ListPages(request, [&](const v1::ListPagesResponse& chunk) {
    for (const v1::Stack& stack : chunk.stacks()) {
      frames[stack.handle()] = wire::FromProto(stack, &symbols).ips;
    }
    for (const v1::PageRecord& record : chunk.pages()) {
      auto it = frames.find(record.handle());
      if (it == frames.end()) {
        // Every stack should come with its first page; fetch one the daemon did not send.
        absl::StatusOr<v1::Stack> s = client.GetStack(StackHandle(record.handle()));
        if (!s.ok()) {
          fetch_error = s.status();
          return false;
        }
        it = frames.emplace(record.handle(), wire::FromProto(*s, &symbols).ips).first;
      }
      PrintedExtras extras;
      AppendPageOwnerBlock(wire::FromProto(record, &extras), it->second, symbols, format,
                           out.buf());
      out.MaybeFlush();
      if (!out.ok()) return false;  // a full disk or a closed pipe: stop reading
    }
    return true;
  });
  out.Flush();
  if (!out.ok()) return FinishOutput(io, kExitOk);
  if (!fetch_error.ok()) return ServerError(io, fetch_error);
  if (!status.ok()) return ServerError(io, status);
  return kExitOk;
}

}  // namespace pageowner::cli
