// `pageowner pprof [-o FILE] [--pid N] [--comm C] [--order K]`: the daemon's heap profile in
// pprof's format (gzipped profile.proto), for `go tool pprof`, Pyroscope, Parca or Grafana.
// It comes over gRPC (GetProfile), not from the http listener's /debug/pprof/heap, so that the
// CLI needs only --server and its one set of credentials, and works with the listener off.
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/commands.h"
#include "core/types.h"

namespace pageowner::cli {
namespace {

struct PprofOptions {
  std::string output;  // "" or "-": stdout
  v1::GetProfileRequest request;
};

absl::StatusOr<PprofOptions> ParsePprof(const CommandLine& line) {
  PprofOptions o;
  o.output = Flag(line, "o", Flag(line, "output", ""));
  if (HasFlag(line, "pid")) {
    absl::StatusOr<uint64_t> pid = NumberArg("pprof", "--pid", Flag(line, "pid", ""), INT32_MAX);
    if (!pid.ok()) return pid.status();
    o.request.set_pid(static_cast<int32_t>(*pid));
  }
  if (HasFlag(line, "comm")) o.request.set_comm(Flag(line, "comm", ""));
  if (HasFlag(line, "order")) {
    absl::StatusOr<uint64_t> order =
        NumberArg("pprof", "--order", Flag(line, "order", ""), kMaxOrder);
    if (!order.ok()) return order.status();
    o.request.set_order(static_cast<uint32_t>(*order));
  }
  return o;
}

int RunPprof(client::Client& client, const PprofOptions& options, Io io) {
  absl::StatusOr<v1::GetProfileResponse> resp = client.GetProfile(options.request);
  if (!resp.ok()) return ServerError(io, resp.status());
  const std::string& bytes = resp->profile();
  if (options.output.empty() || options.output == "-") {
    io.out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return kExitOk;
  }
  std::ofstream out(options.output, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    io.err << "pageowner: cannot write " << options.output << "\n";
    return kExitServerError;
  }
  io.err << "pageowner: wrote " << bytes.size() << " bytes to " << options.output
         << " (go tool pprof -top " << options.output << ")\n";
  return kExitOk;
}

}  // namespace

const Command& PprofCommand() {
  static const auto* const kCommand = new Command{
      .name = "pprof",
      .synopsis = "pprof [-o FILE] [--pid N] [--comm C] [--order K]",
      .summary =
          "the owners of the allocated pages as a gzipped pprof heap profile (to FILE,\n"
          "or stdout): go tool pprof -top FILE; -diff_base OLD NEW shows what grew",
      .min_positional = 0,
      .max_positional = 0,
      .flags = {{"o", true}, {"output", true}, {"pid", true}, {"comm", true}, {"order", true}},
      .parse = Steps(ParsePprof, RunPprof),
  };
  return *kCommand;
}

}  // namespace pageowner::cli
