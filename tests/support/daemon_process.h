// Real processes for end-to-end tests and benchmarks: a pageownerd on a loopback port the kernel
// picks, and a program run to completion with what it printed. No gtest here: the benchmark
// links this too.
#ifndef PAGEOWNER_TESTS_SUPPORT_DAEMON_PROCESS_H_
#define PAGEOWNER_TESTS_SUPPORT_DAEMON_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pageowner::testing {

// What a program did: its exit code (128 + signal when killed) and its output.
struct Ran {
  int code = -1;
  std::string out;
  std::string err;
};

// A whole file ("" when it cannot be read).
std::string ReadFile(const std::string& path);
// A path in $TMPDIR (or /tmp) unique to this process and `name`.
std::string TempPath(const std::string& name);
// Runs `argv` (argv[0] is the program's path) with stdin from `stdin_path` ("" for /dev/null)
// and waits for it.
Ran RunProgram(const std::vector<std::string>& argv, const std::string& stdin_path = "");
// Runs `argv` (a name without '/' is looked up on PATH) with its stdout on `stdout_fd` (-1: ours)
// and waits; returns the exit status. For output too large to keep, or timed.
int RunProgramTo(const std::vector<std::string>& argv, int stdout_fd);

struct DaemonOptions {
  // After `--listen=127.0.0.1:0 --metrics_listen=none` (or 127.0.0.1:0 with `metrics`): a flag
  // given again here wins, as absl flags keep the last value.
  std::vector<std::string> flags;
  // Serve /metrics on a free port too, and wait for its address.
  bool metrics = false;
  // Runs the daemon under this command, e.g. {"/usr/bin/time", "-v"}; pid() is still the
  // daemon's, and signals go to it.
  std::vector<std::string> wrapper;
  // When set, each line the daemon writes on stderr is copied to ours behind this prefix.
  std::string echo_stderr_prefix;
  absl::Duration startup_timeout = absl::Seconds(30);
};

// A pageownerd child with its stdout and stderr on pipes, read by threads of its own. Ready once
// constructed: address() is empty when it did not start (exited, or said nothing in time), and
// startup_log() says why.
// Thread-safety: one thread drives it; the readers only append to the logs.
class DaemonProcess {
 public:
  DaemonProcess(const std::string& binary, DaemonOptions options);
  DaemonProcess(const std::string& binary, const std::vector<std::string>& flags);
  // SIGKILL unless stopped.
  ~DaemonProcess();
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;

  // "127.0.0.1:PORT" from its "listening on" line; "" when it did not start.
  const std::string& address() const { return address_; }
  // The port of address(); 0 when it did not start.
  int port() const;
  // "HOST:PORT" of /metrics when DaemonOptions::metrics; "" otherwise.
  const std::string& metrics_address() const { return metrics_address_; }
  // Its stderr up to and including the ready lines; all of it when it exited before.
  const std::string& startup_log() const { return startup_log_; }
  // The daemon's pid (not the wrapper's); -1 once stopped.
  pid_t pid() const { return daemon_pid_; }

  // Sends `signal` and waits; returns the exit status (128 + signal when killed by one), -1 when
  // it was already stopped.
  int Stop(int signal = SIGTERM);
  // Waits for it to exit on its own (bad flags, --help); the exit status as Stop's.
  int Wait();

  // What it wrote on stderr after startup_log(), and on stdout: complete after Stop or Wait.
  std::string log_after_startup() const;
  std::string out() const;

 private:
  void ReadStderr(int fd);
  void ReadStdout(int fd);
  void FindDaemonPid();
  int Reap(int signal);

  const DaemonOptions options_;
  pid_t pid_ = -1;         // our child: the wrapper, or the daemon
  pid_t daemon_pid_ = -1;  // the daemon
  std::string address_;
  std::string metrics_address_;
  std::string startup_log_;
  std::thread err_reader_;
  std::thread out_reader_;

  mutable absl::Mutex mu_;
  std::string err_ ABSL_GUARDED_BY(mu_);
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string ready_address_ ABSL_GUARDED_BY(mu_);
  std::string ready_metrics_ ABSL_GUARDED_BY(mu_);
  bool state_line_ ABSL_GUARDED_BY(mu_) = false;  // the start-up's last line was seen
  size_t ready_bytes_ ABSL_GUARDED_BY(mu_) = 0;   // err_'s size when the ready lines were read
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool err_closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pageowner::testing

#endif  // PAGEOWNER_TESTS_SUPPORT_DAEMON_PROCESS_H_
