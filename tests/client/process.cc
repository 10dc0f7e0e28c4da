#include "tests/client/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pageowner::e2e {

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
  const pid_t pid = fork();
  if (pid == 0) {
    const int in = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(), O_RDONLY);
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0) _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  Ran r;
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return r;
}

DaemonProcess::DaemonProcess(const std::string& binary, const std::vector<std::string>& flags) {
  int fds[2];
  if (pipe(fds) != 0) return;
  std::vector<std::string> argv = {binary, "--listen=127.0.0.1:0", "--metrics_listen=none"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  pid_ = fork();
  if (pid_ == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  // "pageownerd: listening on ADDR ..." once ready.
  FILE* err = fdopen(fds[0], "r");
  char line[1024];
  const std::string marker = "pageownerd: listening on ";
  while (fgets(line, sizeof(line), err) != nullptr) {
    const std::string l(line);
    stderr_ += l;
    if (absl::StartsWith(l, marker)) {
      address_ = l.substr(marker.size(), l.find_first_of(" \n", marker.size()) - marker.size());
      break;
    }
  }
  drain_ = std::thread([err] {
    char buf[1024];
    while (fgets(buf, sizeof(buf), err) != nullptr) {
    }
    fclose(err);
  });
}

int DaemonProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  if (drain_.joinable()) drain_.join();
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (drain_.joinable()) drain_.join();
}

}  // namespace pageowner::e2e
