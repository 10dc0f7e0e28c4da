// The real pageownerd binary: started on a free loopback port, driven through a stub, stopped
// by a signal; and its answers to bad flags.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
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
#include "tests/support/daemon_process.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

using ::pageowner::testing::DaemonProcess;

// The port of its "listening on" line, which must come first; 0 when it is not there.
int Port(const DaemonProcess& d) {
  const std::string log = d.startup_log();
  const std::string line = log.substr(0, log.find('\n'));
  std::smatch m;
  static const std::regex kLine(
      R"(pageownerd: listening on 127\.0\.0\.1:(\d+) \(memory 16384 pages\))");
  if (!std::regex_match(line, m, kLine)) {
    ADD_FAILURE() << "unexpected first line: " << line;
    return 0;
  }
  return std::stoi(m[1]);
}

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
  DaemonProcess d(PAGEOWNERD_PATH, {"--memory=64MiB", "--max_batch_events=16"});
  const int port = Port(d);
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

  EXPECT_EQ(d.Stop(SIGTERM), 0);
  EXPECT_EQ(d.log_after_startup(), "pageownerd: SIGTERM, shutting down\n");
}

TEST(PageownerdTest, SigintDrainsAnOpenStreamAndExitsZero) {
  DaemonProcess d(PAGEOWNERD_PATH, {"--memory=64MiB"});
  const int port = Port(d);
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
  kill(d.pid(), SIGINT);
  EXPECT_FALSE(rw->Read(&r));
  EXPECT_EQ(rw->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(d.Wait(), 0);
  EXPECT_EQ(d.log_after_startup(), "pageownerd: SIGINT, shutting down\n");
}

TEST(PageownerdTest, ASecondDaemonOnTheSamePortFails) {
  DaemonProcess first(PAGEOWNERD_PATH, {"--memory=64MiB"});
  const int port = Port(first);
  ASSERT_NE(port, 0);
  // A later --listen wins over the launcher's port 0.
  DaemonProcess second(PAGEOWNERD_PATH,
                       {"--listen=127.0.0.1:" + std::to_string(port), "--memory=64MiB"});
  EXPECT_EQ(second.Wait(), 1);
  EXPECT_TRUE(second.address().empty());
  EXPECT_NE(
      second.startup_log().find("pageownerd: cannot listen on 127.0.0.1:" + std::to_string(port) +
                                ": the address is in use (another pageownerd?)\n"),
      std::string::npos);
  EXPECT_EQ(first.Stop(SIGTERM), 0);
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
    DaemonProcess d(PAGEOWNERD_PATH, args);
    EXPECT_EQ(d.Wait(), 2);
    const std::string err = d.startup_log();
    EXPECT_EQ(err.rfind("pageownerd: ", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.back(), '\n');
    EXPECT_EQ(d.out(), "");
  }
  DaemonProcess d(PAGEOWNERD_PATH, {"--memory=12parsecs"});
  EXPECT_EQ(d.Wait(), 2);
  EXPECT_EQ(d.startup_log(),
            "pageownerd: --memory=12parsecs: memory size \"12parsecs\": unknown unit "
            "\"parsecs\" (use none for bytes, or KiB, MiB, GiB, TiB)\n");
}

TEST(PageownerdTest, HelpDocumentsEveryFlag) {
  DaemonProcess d(PAGEOWNERD_PATH, {"--help"});
  EXPECT_EQ(d.Wait(), 0);
  const std::string out = d.out();
  for (const char* flag :
       {"--listen (default: \"127.0.0.1:50051\")", "--memory (default: \"4GiB\")",
        "--stack_depth (default: 16)", "--depot_max_pools (default: 8192)",
        "--max_batch_events (default: 65536)", "--tracking (default: true)"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << "\n" << out;
  }
}

}  // namespace
}  // namespace pageowner::server
