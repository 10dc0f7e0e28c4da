// pageowner: the command-line client of pageownerd. Parses the command line and dispatches; the
// commands live in commands.cc.
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "client/commands.h"

int main(int argc, char** argv) {
  // Debian builds Abseil with deadlock detection on: it costs every lock a graph update.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::ios::sync_with_stdio(false);
  const std::vector<std::string> args(argv + 1, argv + argc);
  const pageowner::cli::Io io{std::cin, std::cout, std::cerr};
  absl::StatusOr<pageowner::cli::CommandLine> line = pageowner::cli::ParseCommandLine(args);
  if (!line.ok()) {
    std::cerr << "pageowner: " << line.status().message() << "\n";
    return pageowner::cli::kExitUsage;
  }
  const int code = pageowner::cli::Dispatch(*line, io);
  std::cout.flush();
  return code;
}
