// `pageowner page PFN [--json]`: the page_owner block of the block holding PFN.
#include <cstdint>
#include <utility>

#include "client/command.h"
#include "client/commands.h"
#include "client/render.h"

namespace pageowner::cli {
namespace {

absl::StatusOr<PageOptions> ParsePage(const CommandLine& line) {
  absl::StatusOr<uint64_t> pfn = NumberArg(line.command, "PFN", line.positional[0], UINT64_MAX);
  if (!pfn.ok()) return pfn.status();
  return PageOptions{Pfn(*pfn), HasFlag(line, "json")};
}

}  // namespace

const Command& PageCommand() {
  static const auto* const kCommand = new Command{
      .name = "page",
      .synopsis = "page PFN [--json]",
      .summary =
          "the page_owner block of the block holding PFN (decimal or 0x hex), as dump prints it;\n"
          "a page that no block owns prints the kernel's dump_page_owner lines",
      .min_positional = 1,
      .max_positional = 1,
      .flags = {{"json", false}},
      .parse = Steps(ParsePage, RunPage),
  };
  return *kCommand;
}

int RunPage(client::Client& client, const PageOptions& options, Io io) {
  absl::StatusOr<v1::GetPageResponse> resp = client.GetPage(options.pfn);
  if (!resp.ok()) return ServerError(io, resp.status());
  if (options.json) return JsonOut(*resp, io);
  const v1::PageRecord& page = resp->page();
  // The daemon sends the stack with the record; ask for it only if it did not.
  v1::Stack alloc_stack = resp->alloc_stack();
  if (page.handle() != 0 && alloc_stack.handle() == 0) {
    absl::StatusOr<v1::Stack> s = client.GetStack(StackHandle(page.handle()));
    if (!s.ok()) return ServerError(io, s.status());
    alloc_stack = *std::move(s);
  }
  io.out << RenderPage(*resp, alloc_stack);
  return kExitOk;
}

}  // namespace pageowner::cli
