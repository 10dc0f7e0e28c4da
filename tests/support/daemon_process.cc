#include "tests/support/daemon_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pageowner::testing {
namespace {

constexpr std::string_view kListening = "pageownerd: listening on ";
constexpr std::string_view kMetrics = "pageownerd: metrics on http://";
// The last line of the start-up: where the state lives (or that it lives in memory only).
constexpr std::string_view kStateInMemory = "pageownerd: no --data_dir: ";
constexpr std::string_view kStateInDir = "pageownerd: state in ";

// Forks `argv` with stdin, stdout and stderr on the given descriptors (-1: ours). A name without
// a '/' is looked up on PATH. Exit 127 when it cannot be run.
pid_t Spawn(const std::vector<std::string>& argv, int in, int out, int err) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (in >= 0) dup2(in, 0);
    if (out >= 0) dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

// Waits for `pid`; its exit code, or 128 + the signal that killed it.
int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The text of `line` after `prefix` up to the first space, '/' or end.
std::string Field(std::string_view line, std::string_view prefix) {
  line.remove_prefix(prefix.size());
  return std::string(line.substr(0, line.find_first_of(" /\n")));
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return absl::StrCat(dir ? dir : "/tmp", "/pageowner_e2e_", getpid(), "_", name);
}

Ran RunProgram(const std::vector<std::string>& argv, const std::string& stdin_path) {
  const std::string out_path = TempPath("out");
  const std::string err_path = TempPath("err");
  const int in = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
  const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  Ran r;
  if (in >= 0 && out >= 0 && err >= 0) r.code = WaitExit(Spawn(argv, in, out, err));
  for (int fd : {in, out, err}) {
    if (fd >= 0) close(fd);
  }
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return r;
}

int RunProgramTo(const std::vector<std::string>& argv, int stdout_fd) {
  return WaitExit(Spawn(argv, -1, stdout_fd, -1));
}

DaemonProcess::DaemonProcess(const std::string& binary, DaemonOptions options)
    : options_(std::move(options)) {
  // Close-on-exec, so that a daemon started meanwhile on another thread does not hold our pipes
  // open (the readers would never see EOF).
  int err[2], out[2];
  if (pipe2(err, O_CLOEXEC) != 0) return;
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(err[0]);
    close(err[1]);
    return;
  }
  std::vector<std::string> argv = options_.wrapper;
  argv.insert(argv.end(),
              {binary, "--listen=127.0.0.1:0",
               options_.metrics ? "--metrics_listen=127.0.0.1:0" : "--metrics_listen=none"});
  argv.insert(argv.end(), options_.flags.begin(), options_.flags.end());
  pid_ = Spawn(argv, -1, out[1], err[1]);
  daemon_pid_ = pid_;
  close(err[1]);
  close(out[1]);
  err_reader_ = std::thread([this, fd = err[0]] { ReadStderr(fd); });
  out_reader_ = std::thread([this, fd = out[0]] { ReadStdout(fd); });

  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ready_ || err_closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&settled), options_.startup_timeout);
  if (ready_) {
    address_ = ready_address_;
    metrics_address_ = ready_metrics_;
    startup_log_ = err_.substr(0, ready_bytes_);
  } else {
    startup_log_ = err_;
  }
  if (ready_ && !options_.wrapper.empty()) FindDaemonPid();
}

DaemonProcess::DaemonProcess(const std::string& binary, const std::vector<std::string>& flags)
    : DaemonProcess(binary, [&] {
        DaemonOptions o;
        o.flags = flags;
        return o;
      }()) {}

void DaemonProcess::FindDaemonPid() {
  // The daemon is the wrapper's only child, and it exists: it has printed its address.
  std::ifstream in(absl::StrCat("/proc/", pid_, "/task/", pid_, "/children"));
  pid_t child = 0;
  if (in >> child) daemon_pid_ = child;
}

void DaemonProcess::ReadStderr(int fd) {
  std::string partial;  // a line not yet ended
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) {
    absl::MutexLock lock(&mu_);
    err_.append(buf, static_cast<size_t>(n));
    partial.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = partial.find('\n')) != std::string::npos; partial.erase(0, nl + 1)) {
      const std::string_view line(partial.data(), nl + 1);
      if (!options_.echo_stderr_prefix.empty()) std::cerr << options_.echo_stderr_prefix << line;
      if (ready_) continue;
      if (line.starts_with(kListening)) ready_address_ = Field(line, kListening);
      if (line.starts_with(kMetrics)) ready_metrics_ = Field(line, kMetrics);
      if (line.starts_with(kStateInMemory) || line.starts_with(kStateInDir)) state_line_ = true;
      if (!ready_address_.empty() && (!options_.metrics || !ready_metrics_.empty()) &&
          state_line_) {
        ready_ = true;
        ready_bytes_ = err_.size() - (partial.size() - nl - 1);
      }
    }
  }
  close(fd);
  absl::MutexLock lock(&mu_);
  if (!partial.empty() && !options_.echo_stderr_prefix.empty()) {
    std::cerr << options_.echo_stderr_prefix << partial << "\n";
  }
  err_closed_ = true;
}

void DaemonProcess::ReadStdout(int fd) {
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) {
    absl::MutexLock lock(&mu_);
    out_.append(buf, static_cast<size_t>(n));
  }
  close(fd);
}

int DaemonProcess::port() const {
  int port = 0;
  const size_t colon = address_.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address_.substr(colon + 1), &port)) return 0;
  return port;
}

int DaemonProcess::Reap(int signal) {
  if (pid_ <= 0) return -1;
  if (signal != 0) kill(daemon_pid_, signal);
  const int code = WaitExit(pid_);
  pid_ = -1;
  daemon_pid_ = -1;
  if (err_reader_.joinable()) err_reader_.join();
  if (out_reader_.joinable()) out_reader_.join();
  return code;
}

int DaemonProcess::Stop(int signal) { return Reap(signal); }

int DaemonProcess::Wait() { return Reap(0); }

std::string DaemonProcess::log_after_startup() const {
  absl::MutexLock lock(&mu_);
  return err_.substr(std::min(startup_log_.size(), err_.size()));
}

std::string DaemonProcess::out() const {
  absl::MutexLock lock(&mu_);
  return out_;
}

DaemonProcess::~DaemonProcess() {
  Reap(SIGKILL);
  // Not started at all (no pipes): nothing to join.
  if (err_reader_.joinable()) err_reader_.join();
  if (out_reader_.joinable()) out_reader_.join();
}

}  // namespace pageowner::testing
