// The metrics endpoint in process: /healthz through a shutdown, /metrics' content type and
// families, rpc counts from the interceptor, and the address syntax.
#include "server/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/build_info.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/flags.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

std::unique_ptr<Server> StartWithMetrics() {
  ServerOptions options = testing::SmallOptions();
  options.metrics_listen_address = "127.0.0.1:0";
  return testing::StartServer(options);
}

TEST(MetricsTest, HealthzIsOkWhileServingAnd503AfterShutdown) {
  std::unique_ptr<Server> server = StartWithMetrics();
  ASSERT_NE(server, nullptr);
  ASSERT_NE(server->metrics_port(), 0);
  httplib::Client http("127.0.0.1", server->metrics_port());
  httplib::Result r = http.Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");
  server->Shutdown();
  r = http.Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  r = http.Get("/nothing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
}

TEST(MetricsTest, MetricsCountRpcsAndEvents) {
  std::unique_ptr<Server> server = StartWithMetrics();
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  BatchBuilder b(1);
  b.Stack(1, std::vector<uint64_t>{0xffffffff81000010ULL}).Alloc(0, 1).Alloc(1, 1).Free(12345, 0);
  b.Event(v1::EVENT_KIND_ALLOC, 3, 8192, 0, 0, 0, 0, 0, 0,
          v1::EVENT_FLAG_AT_PFN | v1::EVENT_FLAG_RESERVED);
  testing::IngestOne(stub.get(), b.batch());
  grpc::ClientContext context;
  v1::Stack stack;
  v1::GetStackRequest request;
  request.set_handle(7);
  EXPECT_EQ(stub->GetStack(&context, request, &stack).error_code(), grpc::StatusCode::NOT_FOUND);

  httplib::Client http("127.0.0.1", server->metrics_port());
  httplib::Result r = http.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = r->body;
  for (const char* line : {
           "pageowner_events_total{kind=\"alloc\",code=\"OK\"} 3\n",
           "pageowner_reserved_pages 8\n",
           "pageowner_allocated_pages{order=\"3\",migratetype=\"Unmovable\"} 8\n",
           "pageowner_events_total{kind=\"free\",code=\"FAILED_PRECONDITION\"} 1\n",
           "pageowner_events_total{kind=\"free\",code=\"OK\"} 0\n",
           "pageowner_ingest_batches_total{result=\"ok\"} 1\n",
           "pageowner_memory_pages 16384\n",
           "pageowner_allocated_pages{order=\"1\",migratetype=\"Unmovable\"} 2\n",
           "pageowner_rpc_requests_total{method=\"pageowner.v1.PageOwner/GetStack\","
           "code=\"NOT_FOUND\"} 1\n",
           "pageowner_rpc_requests_total{method=\"pageowner.v1.PageOwner/Ingest\",code=\"OK\"} 1\n",
           "pageowner_rpc_duration_seconds_count{method=\"pageowner.v1.PageOwner/Ingest\"} 1\n",
           "pageowner_rpc_duration_seconds_bucket{method=\"pageowner.v1.PageOwner/GetStack\","
           "le=\"+Inf\"} 1\n",
           "# TYPE pageowner_rpc_duration_seconds histogram\n",
       }) {
    EXPECT_TRUE(absl::StrContains(text, line)) << line << "\nnot in\n" << text;
  }
}

// A call is counted by the time its client has its status: each scrape right after an Ingest
// stream ended sees that stream (the count was once made when gRPC freed the call, after the
// client's Finish had returned: MetricsCountRpcsAndEvents failed under make test-asan).
TEST(MetricsTest, AnRpcIsCountedWhenItsClientSeesItEnd) {
  std::unique_ptr<Server> server = StartWithMetrics();
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  httplib::Client http("127.0.0.1", server->metrics_port());
  for (int i = 1; i <= 200; ++i) {
    BatchBuilder b(1);
    b.Stack(1, std::vector<uint64_t>{0xffffffff81000010ULL}).Alloc(0, 1);
    testing::IngestOne(stub.get(), b.batch());
    httplib::Result r = http.Get("/metrics");
    ASSERT_TRUE(r);
    const std::string line = absl::StrCat(
        "pageowner_rpc_requests_total{method=\"pageowner.v1.PageOwner/Ingest\",code=\"OK\"} ", i,
        "\n");
    ASSERT_TRUE(absl::StrContains(r->body, line)) << line << "\nnot in\n" << r->body;
  }
}

// What every exporter has: the process's cpu, descriptors and build, and the memory in bytes.
TEST(MetricsTest, ProcessAndBuildFamilies) {
  std::unique_ptr<Server> server = StartWithMetrics();
  ASSERT_NE(server, nullptr);
  httplib::Client http("127.0.0.1", server->metrics_port());
  httplib::Result r = http.Get("/metrics");
  ASSERT_TRUE(r);
  const std::string& text = r->body;
  EXPECT_TRUE(absl::StrContains(text, "\npageowner_memory_bytes 67108864\n")) << text;
  EXPECT_TRUE(absl::StrContains(
      text, absl::StrCat("\npageowner_build_info{version=\"", std::string(ProjectVersion()),
                         "\",git=\"", std::string(GitDescribe()), "\",build_type=\"",
                         std::string(BuildType()), "\"} 1\n")))
      << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE process_cpu_seconds_total counter\n")) << text;
  // The values: read back from the text and compared with what this process sees.
  const auto value = [&](const std::string& name) {
    const size_t at = text.find(absl::StrCat("\n", name, " "));
    EXPECT_NE(at, std::string::npos) << name;
    if (at == std::string::npos) return -1.0;
    return std::stod(text.substr(at + name.size() + 2));
  };
  const double cpu = value("process_cpu_seconds_total");
  EXPECT_GT(cpu, 0.0);
  rusage u{};
  ASSERT_EQ(getrusage(RUSAGE_SELF, &u), 0);
  EXPECT_LE(cpu, static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 2.0);
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  EXPECT_EQ(value("process_max_fds"), static_cast<double>(files.rlim_cur));
  // The server's sockets, epoll and pipes are open: more than stdin, stdout and stderr.
  EXPECT_GT(value("process_open_fds"), 3.0);
  EXPECT_LT(value("process_open_fds"), static_cast<double>(files.rlim_cur));
}

TEST(MetricsTest, SnapshotFamilies) {
  const std::string dir =
      ::testing::TempDir() + "/metrics_test_snapshots_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  ServerOptions options = testing::SmallOptions();
  options.metrics_listen_address = "127.0.0.1:0";
  options.wal = WalOptions{.dir = dir};
  options.snapshot = SnapshotPolicy{.interval = absl::ZeroDuration(), .log_bytes = 0};
  std::unique_ptr<Server> server = testing::StartServer(options);
  ASSERT_NE(server, nullptr);
  httplib::Client http("127.0.0.1", server->metrics_port());
  httplib::Result r = http.Get("/metrics");
  ASSERT_TRUE(r);
  for (const char* line : {"pageowner_snapshots_total 0\n", "pageowner_snapshot_failures_total 0\n",
                           "pageowner_snapshot_last_success_timestamp_seconds 0\n",
                           "# TYPE pageowner_snapshot_last_bytes gauge\n"}) {
    EXPECT_TRUE(absl::StrContains(r->body, line)) << line << "\nnot in\n" << r->body;
  }
  const int64_t before = absl::ToUnixSeconds(absl::Now());
  absl::StatusOr<SnapshotResult> snap = server->TakeSnapshot();
  ASSERT_TRUE(snap.ok()) << snap.status();
  r = http.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_TRUE(absl::StrContains(r->body, "pageowner_snapshots_total 1\n")) << r->body;
  EXPECT_TRUE(
      absl::StrContains(r->body, absl::StrCat("pageowner_snapshot_last_bytes ", snap->bytes, "\n")))
      << r->body;
  const size_t at = r->body.find("\npageowner_snapshot_last_success_timestamp_seconds ");
  ASSERT_NE(at, std::string::npos);
  const int64_t when = std::stoll(r->body.substr(at + 51));
  EXPECT_GE(when, before);
  EXPECT_LE(when, absl::ToUnixSeconds(absl::Now()));
  server.reset();
  std::filesystem::remove_all(dir);
}

TEST(MetricsTest, NoMetricsAddressServesNothing) {
  std::unique_ptr<Server> server = testing::StartServer(testing::SmallOptions());
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->metrics_port(), 0);
}

TEST(MetricsTest, AnAddressInUseFailsTheServer) {
  std::unique_ptr<Server> first = StartWithMetrics();
  ASSERT_NE(first, nullptr);
  ServerOptions options = testing::SmallOptions();
  options.metrics_listen_address = absl::StrCat("127.0.0.1:", first->metrics_port());
  absl::StatusOr<std::unique_ptr<Server>> second = Server::Create(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(MetricsTest, SplitHostPort) {
  EXPECT_EQ(*SplitHostPort("127.0.0.1:9464"), std::make_pair(std::string("127.0.0.1"), 9464));
  EXPECT_EQ(*SplitHostPort("[::1]:0"), std::make_pair(std::string("::1"), 0));
  EXPECT_EQ(*SplitHostPort("localhost:65535"), std::make_pair(std::string("localhost"), 65535));
  for (const char* bad : {"", "9464", ":9464", "host:", "host:65536", "host:-1", "host:9x",
                          "::1:9464", "[::1]", "[]:1", "host:123456"}) {
    EXPECT_EQ(SplitHostPort(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(MetricsTest, MetricsListenFlag) {
  FlagValues flags;
  flags.listen = "127.0.0.1:50051";
  flags.memory = "64MiB";
  flags.stack_depth = 16;
  flags.depot_max_pools = 8192;
  flags.max_batch_events = 1024;
  flags.tracking = true;
  flags.metrics_listen = "none";
  EXPECT_EQ(MakeServerOptions(flags)->metrics_listen_address, "");
  flags.metrics_listen = "127.0.0.1:9464";
  EXPECT_EQ(MakeServerOptions(flags)->metrics_listen_address, "127.0.0.1:9464");
  // A non-local address without TLS and tokens is refused unless --insecure says it is meant.
  flags.metrics_listen = "0.0.0.0:9464";
  const absl::Status open = MakeServerOptions(flags).status();
  EXPECT_EQ(open.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(open.message(),
                               "--metrics_listen=0.0.0.0:9464 is not a loopback "
                               "address"))
      << open.message();
  flags.insecure = true;
  EXPECT_EQ(MakeServerOptions(flags)->metrics_listen_address, "0.0.0.0:9464");
  flags.metrics_listen = "9464";
  const absl::Status s = MakeServerOptions(flags).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(s.message(), "--metrics_listen=9464: ")) << s.message();
}

TEST(MetricsTest, RpcMetricsEscapeAndCapMethods) {
  RpcMetrics rpcs;
  rpcs.Record("/a\"b\\c\nd", 0, absl::Microseconds(30));
  for (size_t i = 0; i < RpcMetrics::kMaxMethods + 5; ++i) {
    rpcs.Record(absl::StrCat("/m", i), 5, absl::Seconds(20));
  }
  std::string out;
  rpcs.AppendTo(&out);
  EXPECT_TRUE(absl::StrContains(out, "method=\"a\\\"b\\\\c\\nd\",code=\"OK\"} 1\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "{method=\"a\\\"b\\\\c\\nd\",le=\"5e-05\"} 1\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "{method=\"a\\\"b\\\\c\\nd\",le=\"2.5e-05\"} 0\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "{method=\"other\",code=\"NOT_FOUND\"} 6\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "{method=\"other\",le=\"10\"} 0\n")) << out;
  EXPECT_TRUE(absl::StrContains(out, "{method=\"other\",le=\"+Inf\"} 6\n")) << out;
}

}  // namespace
}  // namespace pageowner::server
