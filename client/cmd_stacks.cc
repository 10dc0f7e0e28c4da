// `pageowner stacks`: page_owner_stacks/show_stacks (or show_stacks_handles) from the daemon's
// ListStacks.
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/commands.h"
#include "client/render.h"
#include "core/symbols.h"

namespace pageowner::cli {
namespace {

absl::StatusOr<StacksOptions> ParseStacks(const CommandLine& line) {
  StacksOptions o;
  if (HasFlag(line, "threshold")) {
    absl::StatusOr<uint64_t> n =
        NumberArg(line.command, "--threshold", Flag(line, "threshold", ""), INT64_MAX);
    if (!n.ok()) return n.status();
    o.threshold = static_cast<int64_t>(*n);
  }
  if (HasFlag(line, "top")) {
    absl::StatusOr<uint64_t> n =
        NumberArg(line.command, "--top", Flag(line, "top", ""), UINT32_MAX);
    if (!n.ok()) return n.status();
    o.top = static_cast<uint32_t>(*n);
  }
  o.sort = Flag(line, "sort", "pages");
  if (o.sort != "pages" && o.sort != "allocs" && o.sort != "newest") {
    return absl::InvalidArgumentError(
        absl::StrCat("stacks: bad --sort '", o.sort, "': pages, allocs or newest"));
  }
  o.handles = HasFlag(line, "handles");
  o.json = HasFlag(line, "json");
  return o;
}

}  // namespace

const Command& StacksCommand() {
  static const auto* const kCommand = new Command{
      .name = "stacks",
      .synopsis =
          "stacks [--threshold N] [--top N] [--sort pages|allocs|newest] [--handles] [--json]",
      .summary =
          "stacks owning at least max(1, N) pages, as page_owner_stacks/show_stacks prints them;\n"
          "--handles prints show_stacks_handles (frames, then handle: H) with content_id: and\n"
          "nr_base_pages: under it; --sort allocs adds allocations: N; --json the whole answer",
      .min_positional = 0,
      .max_positional = 0,
      .flags =
          {{"threshold", true}, {"top", true}, {"sort", true}, {"handles", false}, {"json", false}},
      .parse = Steps(ParseStacks, RunStacks),
  };
  return *kCommand;
}

int RunStacks(client::Client& client, const StacksOptions& options, Io io) {
  v1::ListStacksRequest request;
  request.set_threshold(options.threshold);
  request.set_top(options.top);
  request.set_sort(options.sort == "allocs"   ? v1::STACK_SORT_ALLOCATIONS
                   : options.sort == "newest" ? v1::STACK_SORT_NEWEST
                                              : v1::STACK_SORT_PAGES);
  absl::StatusOr<v1::ListStacksResponse> resp = client.ListStacks(request);
  if (!resp.ok()) return ServerError(io, resp.status());
  if (options.json) return JsonOut(*resp, io);
  SymbolTable symbols;
  BufferedOut out(io.out);
  for (const v1::Stack& stack : resp->stacks()) {
    AppendStacksEntry(stack, options.handles, options.sort == "allocs", &symbols, out.buf());
    out.MaybeFlush();
  }
  return kExitOk;
}

}  // namespace pageowner::cli
