// The write-ahead log in process: CRC32C vectors, records replayed into a fresh machine, a
// restart on the same --data_dir serving the same state, torn tails cut, corruption before the
// tail refused (and accepted with --wal_recovery=truncate), and garbage never crashing Open.
#include "server/wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "server/crc32c.h"
#include "server/wal_record.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);  // RFC 3720 B.4
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::mt19937_64 rng(7);
  std::string data(4099, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t n : {0, 1, 7, 8, 9, 63, 4099}) {
    EXPECT_EQ(Crc32cExtend(0, data.data(), n), Crc32cPortable(0, data.data(), n)) << n;
  }
  EXPECT_EQ(Crc32cExtend(Crc32cExtend(0, data.data(), 100), data.data() + 100, 3999), Crc32c(data));
}

// A stack the log has named before (`logged`) is not looked up again: its record carries no
// names; an unlogged one's record names its frames once, even when several events use it.
TEST(WalRecordTest, LoggedStacksAreNotNamedAgain) {
  SymbolTable symbols;
  const std::vector<uint64_t> frames = {0xffffffff81000010ull, 0xffffffff81000020ull};
  symbols.Register(frames[0], "alloc_pages+0x10/0x40");
  symbols.Register(frames[1], "caller+0x20/0x80");
  const std::vector<Event> events = {AllocEvent{.order = Order(0), .frames = frames, .comm = "t"},
                                     FreeEvent{.pfn = Pfn(3), .order = Order(0), .frames = frames}};
  const std::vector<absl::Status> ok(2);
  WalNames names;
  for (const bool logged : {false, true}) {
    std::vector<uint64_t> new_names;
    std::string out;
    AppendBatchRecord(1, events, ok, symbols, names, std::vector<bool>(2, logged), &new_names,
                      &out);
    WalRecord r;
    ASSERT_TRUE(DecodeRecord(std::string_view(out).substr(kWalFrameBytes), &r).ok());
    EXPECT_EQ(r.events.size(), 2u);
    ASSERT_EQ(r.stacks.size(), 1u);
    EXPECT_EQ(r.stacks[0], frames);
    if (logged) {
      EXPECT_TRUE(r.names.empty());
      EXPECT_TRUE(new_names.empty());
    } else {
      EXPECT_EQ(r.names,
                (std::vector<std::pair<uint64_t, std::string>>{{frames[0], "alloc_pages+0x10/0x40"},
                                                               {frames[1], "caller+0x20/0x80"}}));
      EXPECT_EQ(new_names, frames);
    }
  }
}

class WalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/wal_test_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ServerOptions Options(WalRecoveryMode recovery = WalRecoveryMode::kStrict) const {
    ServerOptions o = testing::SmallOptions();
    o.wal = WalOptions{.dir = dir_, .segment_bytes = 4096, .recovery = recovery};
    return o;
  }

  // Every page record and every stack, as the daemon answers them.
  static std::string State(v1::PageOwner::Stub* stub) {
    std::string out;
    v1::ListPagesRequest pages;
    pages.set_state(v1::PAGE_STATE_ANY);
    grpc::Status status;
    for (const v1::ListPagesResponse& r : testing::ListPages(stub, pages, &status)) {
      out += r.SerializeAsString();
    }
    EXPECT_TRUE(status.ok()) << status.error_message();
    grpc::ClientContext context;
    v1::ListStacksRequest stacks;
    stacks.set_include_empty(true);
    v1::ListStacksResponse response;
    EXPECT_TRUE(stub->ListStacks(&context, stacks, &response).ok());
    out += response.SerializeAsString();
    return out;
  }

  // `n` batches, one record each: allocations on named and synthetic stacks, frees, a migration.
  static void Feed(v1::PageOwner::Stub* stub, int n, uint64_t ts0 = 1) {
    for (int i = 0; i < n; ++i) {
      BatchBuilder b(i + 1);
      b.Stack(1, {{0xffffffff81000000ull + i, "alloc_pages+0x1/0x10"}, {0, "caller_a+0x2/0x20"}})
          .Stack(2, {0xffffffff82000000ull, 0xffffffff82000010ull + i})
          .Task(1, 100 + i, 100, "task" + std::to_string(i));
      b.Alloc(i % 3, 1, 1, ts0 + 10 * i).Alloc(0, 2, 1, ts0 + 10 * i + 1);
      b.AllocAt(8192 + 16 * i, 2, 2, 1, ts0 + 10 * i + 2);
      b.Free(8192 + 16 * i, 2, 1, 1, ts0 + 10 * i + 3);
      b.AllocAt(8192 + 16 * i, 1, 1, 1, ts0 + 10 * i + 4);
      b.Migrate(8192 + 16 * i, v1::MIGRATE_REASON_COMPACTION, 2, 1, ts0 + 10 * i + 5);
      // Not RAM on the mirrored machine: its flag must come back from the log.
      b.Event(v1::EVENT_KIND_ALLOC, 1, 12288 + 2 * (ts0 / 100000) + 8 * i, 0, 0, 0, 0,
              ts0 + 10 * i + 6, 0, v1::EVENT_FLAG_AT_PFN | v1::EVENT_FLAG_RESERVED);
      const v1::BatchResult r = testing::IngestOne(stub, b.batch());
      EXPECT_EQ(r.code(), testing::kOk);
    }
  }

  std::vector<std::string> Segments() const {
    absl::StatusOr<std::vector<std::string>> s = Wal::ListSegments(dir_);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : std::vector<std::string>();
  }

  std::string dir_;
};

TEST_F(WalTest, RestartServesTheSameState) {
  std::string before;
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    ASSERT_TRUE(server->recovery().has_value());
    EXPECT_EQ(server->recovery()->records, 0u);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 40);
    grpc::ClientContext context;
    v1::SetTrackingRequest off;
    off.set_on(false);
    v1::SetTrackingResponse response;
    ASSERT_TRUE(stub->SetTracking(&context, off, &response).ok());
    Feed(stub.get(), 3, 100000);
    grpc::ClientContext context2;
    v1::SetTrackingRequest on;
    on.set_on(true);
    ASSERT_TRUE(stub->SetTracking(&context2, on, &response).ok());
    EXPECT_GT(response.early_pages(), 0u);
    before = State(stub.get());
  }
  EXPECT_GT(Segments().size(), 1u);  // 4 KiB segments
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->recovery()->records, 45u);
  EXPECT_EQ(server->recovery()->truncated_tails, 0u);
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  EXPECT_EQ(State(stub.get()), before);
  grpc::ClientContext stats_context;
  v1::Stats stats;
  ASSERT_TRUE(stub->GetStats(&stats_context, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.reserved_pages(), 43u * 2);  // one order-1 reserved block a batch
  // And it goes on from there.
  Feed(stub.get(), 2, 200000);
}

// Issue 12: while a data dir is recovered the ports are open: probes see a live, unready
// daemon and every rpc is answered UNAVAILABLE saying why; Recover then serves the state.
TEST_F(WalTest, WhileRecoveringTheDaemonIsAliveNotReadyAndRefusesEveryRpc) {
  std::string before;
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 5);
    before = State(stub.get());
  }
  ServerOptions options = Options();
  options.metrics_listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Open(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_FALSE((*server)->recovery().has_value());
  auto channel = testing::Channel((*server)->bound_port());
  auto stub = v1::PageOwner::NewStub(channel);
  auto health = grpc::health::v1::Health::NewStub(channel);
  httplib::Client http("127.0.0.1", (*server)->metrics_port());
  const std::string why = "pageownerd is recovering its state from " + dir_ +
                          " (snapshot and log); retry when it is serving";
  {
    grpc::ClientContext context;
    v1::Stats stats;
    const grpc::Status s = stub->GetStats(&context, v1::GetStatsRequest(), &stats);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(s.error_message(), why);
    // The streams too: an Ingest ends at once with the same status, nothing applied.
    grpc::ClientContext ingest_context;
    auto ingest = stub->Ingest(&ingest_context);
    v1::BatchResult r;
    EXPECT_FALSE(ingest->Read(&r));
    const grpc::Status refused = ingest->Finish();
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(refused.error_message(), why);
    grpc::ClientContext health_context;
    grpc::health::v1::HealthCheckResponse h;
    ASSERT_TRUE(health->Check(&health_context, grpc::health::v1::HealthCheckRequest(), &h).ok());
    EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    httplib::Result live = http.Get("/healthz");
    ASSERT_TRUE(live);
    EXPECT_EQ(live->status, 200);
    EXPECT_EQ(live->body, "recovering\n");
    httplib::Result ready = http.Get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503);
    EXPECT_EQ(ready->body, "recovering\n");
  }
  ASSERT_TRUE((*server)->Recover().ok());
  ASSERT_TRUE((*server)->recovery().has_value());
  EXPECT_EQ((*server)->recovery()->records, 5u);
  EXPECT_EQ(State(stub.get()), before);
  grpc::ClientContext health_context;
  grpc::health::v1::HealthCheckResponse h;
  ASSERT_TRUE(health->Check(&health_context, grpc::health::v1::HealthCheckRequest(), &h).ok());
  EXPECT_EQ(h.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  httplib::Result ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ok\n");
  // The log's families are on /metrics once it is attached.
  httplib::Result metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("pageowner_wal_"), std::string::npos);
  (*server)->Shutdown();
  ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 503);
  EXPECT_EQ(ready->body, "draining\n");
}

TEST_F(WalTest, TornTailIsCutAndReported) {
  std::string before;
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 5);
    before = State(stub.get());
  }
  const std::string last = Segments().back();
  const auto size = std::filesystem::file_size(last);
  for (const std::string& tail : {std::string("\x40\x00\x00\x00\x12\x34", 6),
                                  std::string(100, '\0'), std::string(5000, '\x5a')}) {
    {
      std::ofstream f(last, std::ios::binary | std::ios::app);
      f << tail;
    }
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    EXPECT_EQ(server->recovery()->truncated_tails, 1u);
    EXPECT_EQ(server->recovery()->truncated_bytes, tail.size());
    ASSERT_EQ(server->recovery()->notes.size(), 1u);
    EXPECT_NE(server->recovery()->notes[0].find(last + " offset " + std::to_string(size)),
              std::string::npos)
        << server->recovery()->notes[0];
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    EXPECT_EQ(State(stub.get()), before);
  }
  EXPECT_EQ(std::filesystem::file_size(last), size);
}

TEST_F(WalTest, CorruptionBeforeTheTailRefusesThenTruncateAccepts) {
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 5);
  }
  const std::string path = Segments().front();
  const auto size = std::filesystem::file_size(path);
  // A byte in the middle of the third record: records 3..5 follow it or are it.
  std::string data;
  {
    std::ifstream f(path, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(f), {});
  }
  size_t offset = 44;
  for (int i = 0; i < 2; ++i) {
    uint32_t len;
    std::memcpy(&len, data.data() + offset, 4);
    offset += 8 + len;
  }
  data[offset + 20] ^= 0x10;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << data;
  }
  absl::StatusOr<std::unique_ptr<Server>> refused = Server::Create(Options());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(refused.status().message());
  EXPECT_NE(message.find(path + " offset " + std::to_string(offset) + ": a CRC mismatch"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("--wal_recovery=truncate"), std::string::npos) << message;
  EXPECT_EQ(std::filesystem::file_size(path), size);  // untouched

  auto server = testing::StartServer(Options(WalRecoveryMode::kTruncate));
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(server->recovery()->records, 2u);
  EXPECT_EQ(server->recovery()->truncated_bytes, size - offset);
  EXPECT_EQ(std::filesystem::file_size(path), offset);
}

TEST_F(WalTest, AnotherGeometryIsRefused) {
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
  }
  ServerOptions other = Options();
  other.machine.pages = PageCount(32768);
  absl::StatusOr<std::unique_ptr<Server>> refused = Server::Create(other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("32768 pages"), std::string::npos);
}

// Every cut and many bit flips of a small log: Open answers, never crashes; a cut anywhere is
// a torn tail (recovered), and the records it keeps are a prefix.
TEST_F(WalTest, GarbageNeverCrashesOpen) {
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 3);
  }
  const std::string path = Segments().front();
  std::string data;
  {
    std::ifstream f(path, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(f), {});
  }
  const WalOptions options{.dir = dir_};
  const MachineOptions machine_options = Options().machine;
  const auto open = [&](const std::string& content) {
    {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      f << content;
    }
    Machine machine(machine_options);
    WalRecoveryReport report;
    return Wal::Open(options, machine_options, &machine, &report);
  };
  for (size_t n = 0; n < data.size(); n += (n < 64 ? 1 : 29)) {
    absl::StatusOr<std::unique_ptr<Wal>> wal = open(data.substr(0, n));
    EXPECT_TRUE(wal.ok()) << n << ": " << wal.status();
  }
  std::mt19937_64 rng(12);
  int refused = 0;
  for (int i = 0; i < 120; ++i) {
    std::string flipped = data;
    flipped[rng() % flipped.size()] ^= static_cast<char>(1 << (rng() % 8));
    absl::StatusOr<std::unique_ptr<Wal>> wal = open(flipped);
    if (!wal.ok()) {
      ++refused;
      EXPECT_TRUE(absl::IsFailedPrecondition(wal.status()) || absl::IsDataLoss(wal.status()))
          << wal.status();
    }
  }
  EXPECT_GT(refused, 0);
  // A wrong version says so.
  std::string version = data;
  version[8] = 9;
  const uint32_t crc = Crc32c(std::string_view(version).substr(0, 40));
  std::memcpy(version.data() + 40, &crc, 4);
  absl::StatusOr<std::unique_ptr<Wal>> wal = open(version);
  ASSERT_FALSE(wal.ok());
  EXPECT_NE(wal.status().message().find("version"), std::string::npos) << wal.status();
}

}  // namespace
}  // namespace pageowner::server
