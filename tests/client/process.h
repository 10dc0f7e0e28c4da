// Test helpers for end-to-end tests: run a program and capture what it prints, and run a
// pageownerd on a loopback port the kernel picks.
#ifndef PAGEOWNER_TESTS_CLIENT_PROCESS_H_
#define PAGEOWNER_TESTS_CLIENT_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <thread>
#include <vector>

namespace pageowner::e2e {

// What a program did: its exit code (128 + signal when killed) and its output.
struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path);
// A path in $TMPDIR (or /tmp) unique to this process and `name`.
std::string TempPath(const std::string& name);
// Runs `argv` (argv[0] is the program's path) with stdin from `stdin_path` ("" for /dev/null).
Ran RunProgram(const std::vector<std::string>& argv, const std::string& stdin_path = "");

// A pageownerd started with `--listen=127.0.0.1:0 --metrics_listen=none` and `flags`; ready once
// constructed (address() is empty when it failed to start: startup_log() says why). Its stderr
// is drained by a thread. Killed with SIGKILL on destruction unless stopped.
class DaemonProcess {
 public:
  DaemonProcess(const std::string& binary, const std::vector<std::string>& flags);
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // SIGTERM and wait; returns the exit status.
  int Stop();
  const std::string& address() const { return address_; }
  const std::string& startup_log() const { return stderr_; }

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::string stderr_;
  std::thread drain_;
};

}  // namespace pageowner::e2e

#endif  // PAGEOWNER_TESTS_CLIENT_PROCESS_H_
