// The real pageownerd binary: started on a free loopback port, driven through a stub, stopped
// by a signal; and its answers to bad flags.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

// A pageownerd process with its stdout and stderr on pipes.
class Daemon {
 public:
  explicit Daemon(const std::vector<std::string>& args) {
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      close(out[0]);
      close(err[0]);
      // No metrics endpoint (its default port would clash between tests run in parallel).
      std::vector<char*> argv = {const_cast<char*>(PAGEOWNERD_PATH),
                                 const_cast<char*>("--metrics_listen=none")};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(PAGEOWNERD_PATH, argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  ~Daemon() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
    close(err_);
  }

  // The next line of stderr (without its newline); "" at EOF or after 10 s.
  std::string ReadErrLine() {
    for (;;) {
      const size_t nl = err_buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = err_buf_.substr(0, nl);
        err_buf_.erase(0, nl + 1);
        return line;
      }
      pollfd p{err_, POLLIN, 0};
      if (poll(&p, 1, 10000) <= 0) return "";
      char buf[4096];
      const ssize_t n = read(err_, buf, sizeof(buf));
      if (n <= 0) return "";
      err_buf_.append(buf, n);
    }
  }
  // Everything left on a pipe, until EOF.
  static std::string Drain(int fd, std::string already = "") {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) already.append(buf, n);
    return already;
  }
  std::string RestOfErr() { return Drain(err_, std::exchange(err_buf_, "")); }
  std::string Out() { return Drain(out_); }

  void Signal(int sig) { kill(pid_, sig); }
  // The exit code (128 + signal when killed by one).
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Reads the "listening on" line and returns the port; 0 when it is not there.
  int Port() {
    const std::string line = ReadErrLine();
    std::smatch m;
    static const std::regex kLine(
        R"(pageownerd: listening on 127\.0\.0\.1:(\d+) \(memory 16384 pages\))");
    if (!std::regex_match(line, m, kLine)) {
      ADD_FAILURE() << "unexpected first line: " << line;
      return 0;
    }
    return std::stoi(m[1]);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
  bool exited_ = false;
  std::string err_buf_;
};

v1::Stats GetStats(v1::PageOwner::Stub* stub) {
  grpc::ClientContext context;
  v1::Stats stats;
  EXPECT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
  return stats;
}

void SendGarbage(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage \x01\x02";
  EXPECT_GT(write(fd, garbage.data(), garbage.size()), 0);
  char buf[256];
  pollfd p{fd, POLLIN, 0};
  poll(&p, 1, 1000);  // the server answers or closes; either is fine
  (void)!read(fd, buf, sizeof(buf));
  close(fd);
}

TEST(PageownerdTest, ServesAndExitsZeroOnSigterm) {
  Daemon d({"--listen=127.0.0.1:0", "--memory=64MiB", "--max_batch_events=16"});
  const int port = d.Port();
  ASSERT_NE(port, 0);
  auto stub = v1::PageOwner::NewStub(testing::Channel(port));

  BatchBuilder b(1);
  b.Stack(1, {{0xffffffff81000100, "alloc+0x0/0x10"}}).Task(1, 3, 3, "e2e");
  b.AllocAt(64, 1, 1, 1, 10).Free(64, 1, 1, 1, 11).Free(64, 1).Alloc(11, 1).AllocAt(16384, 0, 1);
  const v1::BatchResult r = testing::IngestOne(stub.get(), b.batch());
  ASSERT_EQ(r.event_code_size(), 5);
  EXPECT_EQ(r.event_code(0), testing::kOk);
  EXPECT_EQ(r.event_code(1), testing::kOk);
  EXPECT_EQ(r.event_code(2), testing::kFailedPrecondition);
  EXPECT_EQ(r.event_code(3), testing::kInvalidArgument);
  EXPECT_EQ(r.event_code(4), testing::kOutOfRange);
  BatchBuilder oversized(2);
  for (int i = 0; i < 17; ++i) oversized.Alloc(0, 0);
  EXPECT_EQ(testing::IngestOne(stub.get(), oversized.batch()).code(), testing::kInvalidArgument);

  grpc::ClientContext page_context;
  v1::GetPageRequest page_request;
  page_request.set_pfn(65);
  v1::GetPageResponse page;
  ASSERT_TRUE(stub->GetPage(&page_context, page_request, &page).ok());
  EXPECT_EQ(page.page().comm(), "e2e");
  EXPECT_FALSE(page.page().allocated());
  grpc::ClientContext stack_context;
  v1::GetStackRequest stack_request;
  stack_request.set_handle(r.event_handle(0));
  v1::Stack stack;
  ASSERT_TRUE(stub->GetStack(&stack_context, stack_request, &stack).ok());
  ASSERT_EQ(stack.frames_size(), 1);
  EXPECT_EQ(stack.frames(0).symbol(), "alloc+0x0/0x10");
  grpc::ClientContext unknown_context;
  stack_request.set_handle(0xdead);
  EXPECT_EQ(stub->GetStack(&unknown_context, stack_request, &stack).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Garbage on the port: the daemon goes on, its state unchanged.
  const v1::Stats before = GetStats(stub.get());
  SendGarbage(port);
  const v1::Stats after = GetStats(stub.get());
  EXPECT_EQ(after.allocs(), before.allocs());
  EXPECT_EQ(after.free_pages(), before.free_pages());
  EXPECT_EQ(after.batches(), 2u);
  EXPECT_EQ(after.batches_rejected(), 1u);

  d.Signal(SIGTERM);
  EXPECT_EQ(d.Wait(), 0);
  EXPECT_EQ(d.RestOfErr(), "pageownerd: SIGTERM, shutting down\n");
}

TEST(PageownerdTest, SigintDrainsAnOpenStreamAndExitsZero) {
  Daemon d({"--listen=127.0.0.1:0", "--memory=64MiB"});
  const int port = d.Port();
  ASSERT_NE(port, 0);
  auto stub = v1::PageOwner::NewStub(testing::Channel(port));
  grpc::ClientContext context;
  auto rw = stub->Ingest(&context);
  BatchBuilder b(1);
  b.Stack(1, std::vector<uint64_t>{0xffffffff81000100}).Alloc(0, 1);
  ASSERT_TRUE(rw->Write(b.batch()));
  v1::BatchResult r;
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_EQ(r.event_code(0), testing::kOk);
  d.Signal(SIGINT);
  EXPECT_FALSE(rw->Read(&r));
  EXPECT_EQ(rw->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(d.Wait(), 0);
  EXPECT_EQ(d.RestOfErr(), "pageownerd: SIGINT, shutting down\n");
}

TEST(PageownerdTest, ASecondDaemonOnTheSamePortFails) {
  Daemon first({"--listen=127.0.0.1:0", "--memory=64MiB"});
  const int port = first.Port();
  ASSERT_NE(port, 0);
  Daemon second({"--listen=127.0.0.1:" + std::to_string(port), "--memory=64MiB"});
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_NE(second.RestOfErr().find(
                "pageownerd: cannot listen on 127.0.0.1:" + std::to_string(port) + "\n"),
            std::string::npos);
  first.Signal(SIGTERM);
  EXPECT_EQ(first.Wait(), 0);
}

TEST(PageownerdTest, BadFlagsExitTwoWithOneLine) {
  const std::vector<std::vector<std::string>> cases = {
      {"--memory=12parsecs"},
      {"--memory=4097"},
      {"--memory=32TiB"},
      {"--stack_depth=0"},
      {"--stack_depth=65"},
      {"--stack_depth=abc"},
      {"--depot_max_pools=0"},
      {"--max_batch_events=0"},
      {"--max_batch_events=-1"},
      {"--tracking=maybe"},
      {"--bogus"},
      {"--listen"},
      {"serve"},
  };
  for (const std::vector<std::string>& args : cases) {
    SCOPED_TRACE(args[0]);
    Daemon d(args);
    EXPECT_EQ(d.Wait(), 2);
    const std::string err = d.RestOfErr();
    EXPECT_EQ(err.rfind("pageownerd: ", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.back(), '\n');
    EXPECT_EQ(d.Out(), "");
  }
  Daemon d({"--memory=12parsecs"});
  EXPECT_EQ(d.Wait(), 2);
  EXPECT_EQ(d.RestOfErr(),
            "pageownerd: --memory=12parsecs: memory size \"12parsecs\": unknown unit "
            "\"parsecs\" (use none for bytes, or KiB, MiB, GiB, TiB)\n");
}

TEST(PageownerdTest, HelpDocumentsEveryFlag) {
  Daemon d({"--help"});
  EXPECT_EQ(d.Wait(), 0);
  const std::string out = d.Out();
  for (const char* flag :
       {"--listen (default: \"127.0.0.1:50051\")", "--memory (default: \"4GiB\")",
        "--stack_depth (default: 16)", "--depot_max_pools (default: 8192)",
        "--max_batch_events (default: 65536)", "--tracking (default: true)"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << "\n" << out;
  }
}

}  // namespace
}  // namespace pageowner::server
