// `pageowner stack HANDLE [--json]`: the frames of a stack handle and what it owns.
#include <cstdint>

#include "client/command.h"
#include "client/commands.h"
#include "client/render.h"

namespace pageowner::cli {
namespace {

absl::StatusOr<StackOptions> ParseStack(const CommandLine& line) {
  absl::StatusOr<uint64_t> handle =
      NumberArg(line.command, "HANDLE", line.positional[0], UINT32_MAX);
  if (!handle.ok()) return handle.status();
  return StackOptions{StackHandle(static_cast<uint32_t>(*handle)), HasFlag(line, "json")};
}

}  // namespace

const Command& StackCommand() {
  static const auto* const kCommand = new Command{
      .name = "stack",
      .synopsis = "stack HANDLE [--json]",
      .summary = "the frames of a stack handle and what it owns",
      .min_positional = 1,
      .max_positional = 1,
      .flags = {{"json", false}},
      .parse = Steps(ParseStack, RunStack),
  };
  return *kCommand;
}

int RunStack(client::Client& client, const StackOptions& options, Io io) {
  absl::StatusOr<v1::Stack> stack = client.GetStack(options.handle);
  if (!stack.ok()) return ServerError(io, stack.status());
  if (options.json) return JsonOut(*stack, io);
  io.out << RenderStack(*stack);
  return kExitOk;
}

}  // namespace pageowner::cli
