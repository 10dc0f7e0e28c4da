// `pageowner token new ROLE [--out FILE]`: a fresh random token for a daemon's --auth_tokens
// file. Nothing is sent to the daemon.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/command.h"
#include "client/commands.h"
#include "wire/auth_token.h"

namespace pageowner::cli {
namespace {

struct TokenOptions {
  std::string role;
  std::string out;  // "": print the token on stdout
};

absl::StatusOr<TokenOptions> ParseToken(const CommandLine& line) {
  if (line.positional.size() != 2 || line.positional[0] != "new") {
    return absl::InvalidArgumentError("token: expected `token new ROLE`");
  }
  const std::string& role = line.positional[1];
  if (role != "reader" && role != "writer" && role != "admin") {
    return absl::InvalidArgumentError(
        absl::StrCat("token: unknown role '", role, "' (reader, writer or admin)"));
  }
  return TokenOptions{.role = role, .out = Flag(line, "out", "")};
}

// Writes `token` to a new file only its owner may read. Refuses to replace a file.
absl::Status WriteTokenFile(const std::string& path, const std::string& token) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat(path, ": ", std::strerror(errno)));
  const std::string text = token + "\n";
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) return absl::FailedPreconditionError(absl::StrCat(path, ": short write"));
  return absl::OkStatus();
}

int RunToken(client::Client&, const TokenOptions& options, Io io) {
  absl::StatusOr<std::string> token = wire::NewToken();
  if (!token.ok()) return ServerError(io, token.status());
  const std::string line =
      absl::StrCat(options.role, " ", wire::HexDigest(wire::Sha256(*token)), "\n");
  if (options.out.empty()) {
    io.out << *token << "\n";
    io.err << "pageowner: add this line to the daemon's --auth_tokens file, then send it SIGHUP; "
              "give the token above to the client in a file (--token_file):\n"
           << line;
    return kExitOk;
  }
  if (absl::Status s = WriteTokenFile(options.out, *token); !s.ok()) {
    io.err << "pageowner: token: " << s.message() << "\n";
    return kExitUsage;
  }
  io.out << line;
  return kExitOk;
}

}  // namespace

const Command& TokenCommand() {
  static const auto* const kCommand = new Command{
      .name = "token",
      .synopsis = "token new ROLE [--out FILE]",
      .summary =
          "a fresh random token (32 bytes of /dev/urandom, base64url) for a daemon's\n"
          "--auth_tokens file, ROLE reader, writer or admin: prints the token, and the\n"
          "line for the file on stderr; with --out the token goes to FILE (mode 0600,\n"
          "never replaced) and the line to stdout. Nothing is sent to the daemon.",
      .min_positional = 2,
      .max_positional = 2,
      .flags = {{"out", true}},
      .parse = Steps(ParseToken, RunToken),
  };
  return *kCommand;
}

}  // namespace pageowner::cli
