// Snapshots in --data_dir: the file read back equals what was written, and each way a file can
// be wrong (truncated, bit-flipped, another version or geometry, not a snapshot, trailing bytes)
// is a clear error naming the file, never a crash; recovery loads the newest snapshot and replays
// only the log after it, deletes nothing a fallback needs, falls back from a bad snapshot, and
// refuses when no choice keeps every acknowledged record; the Snapshot rpc.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/workload.h"
#include "gtest/gtest.h"
#include "server/crc32c.h"
#include "server/server.h"
#include "server/snapshot.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string SaveBytes(const Machine& m) {
  StringSink sink;
  SnapshotWriter w(&sink);
  m.SaveState(w);
  EXPECT_TRUE(w.Finish().ok());
  return sink.data();
}

class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/snapshot_file_test_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    options_.pages = PageCount(8192);
    machine_ = std::make_unique<Machine>(options_);
    Workload w(WorkloadOptions{.pages = 8192, .stacks = 200, .seed = 3});
    for (int i = 0; i < 5000; ++i) {
      const WorkloadEvent e = w.Next();
      const EventResult r = machine_->Apply(w.ToMachineEvent(e));
      w.Observe(e, r.status.ok(), r.pfn);
    }
    for (uint64_t ip : {5, 3, 1000}) names_.Add(ip);
    path_ = SnapshotPath(dir_, 77);
    const std::string temp = SnapshotTempPath(dir_, 77);
    ASSERT_TRUE(WriteSnapshotTemp(temp, *machine_, names_, Geometry(), 77).ok());
    ASSERT_TRUE(PublishSnapshot(temp, path_, dir_).ok());
    EXPECT_FALSE(std::filesystem::exists(temp));
    bytes_ = ReadAll(path_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  WalGeometry Geometry() const { return WalGeometry::Of(options_); }
  absl::Status ReadBack(const std::string& data) {
    WriteAll(path_, data);
    return ReadSnapshot(path_, options_, Geometry()).status();
  }
  // Where the body starts: magic, version, length, the header fields, the CRC.
  size_t BodyStart() const {
    uint32_t len;
    std::memcpy(&len, bytes_.data() + 12, 4);
    return 16 + len + 4;
  }

  std::string dir_;
  std::string path_;
  MachineOptions options_;
  std::unique_ptr<Machine> machine_;
  WalNames names_;
  std::string bytes_;
};

TEST_F(SnapshotFileTest, ReadBackIsTheSameMachine) {
  EXPECT_EQ(path_, dir_ + "/snap-00000000000000000077.snap");
  absl::StatusOr<LoadedSnapshot> s = ReadSnapshot(path_, options_, Geometry());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->seq, 77u);
  EXPECT_EQ(s->bytes, bytes_.size());
  EXPECT_EQ(s->names.Sorted(), (std::vector<uint64_t>{3, 5, 1000}));
  EXPECT_EQ(SaveBytes(*s->machine), SaveBytes(*machine_));
  absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> list = ListSnapshots(dir_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].first, 77u);
}

TEST_F(SnapshotFileTest, TruncatedFilesAreDataLossNamingTheFile) {
  const size_t body = BodyStart();
  for (size_t len : {size_t{0}, size_t{10}, body - 2, body + 4, body + 100, bytes_.size() / 2,
                     bytes_.size() - 4, bytes_.size() - 1}) {
    const absl::Status s = ReadBack(bytes_.substr(0, len));
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << len;
    EXPECT_EQ(s.message().find("snapshot " + path_ + ": "), 0u) << s;
  }
  EXPECT_EQ(ReadBack(bytes_.substr(0, body + 4)).message(),
            "snapshot " + path_ + ": cut short at offset " + std::to_string(body) +
                " (a chunk frame; the file has " + std::to_string(body + 4) + " bytes)");
  EXPECT_EQ(ReadBack(bytes_.substr(0, 10)).message(),
            "snapshot " + path_ + ": cut short in the header");
  EXPECT_EQ(ReadBack(bytes_.substr(0, bytes_.size() - 1)).message(),
            "snapshot " + path_ + ": cut short at offset " + std::to_string(bytes_.size() - 8) +
                " (the end chunk; the file has " + std::to_string(bytes_.size() - 1) + " bytes)");
}

TEST_F(SnapshotFileTest, FlippedBitsAreCaughtByTheirCrc) {
  const size_t body = BodyStart();
  std::string bad = bytes_;
  bad[body + 100] ^= 0x10;
  EXPECT_EQ(ReadBack(bad).message(),
            "snapshot " + path_ + ": CRC mismatch in the chunk at offset " + std::to_string(body));
  bad = bytes_;
  bad[20] ^= 1;  // a header field
  EXPECT_EQ(ReadBack(bad).message(), "snapshot " + path_ + ": header CRC mismatch");
  // Any single flipped bit anywhere: kDataLoss, never a crash and never a machine.
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200; ++i) {
    bad = bytes_;
    bad[rng() % bad.size()] ^= static_cast<char>(1 << (rng() % 8));
    const absl::Status s = ReadBack(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  }
}

TEST_F(SnapshotFileTest, OtherVersionGeometryOrFileAreRefusedClearly) {
  // Version 2 with a valid header CRC: a newer pageownerd wrote it.
  std::string v2 = bytes_;
  const uint32_t version = 2;
  std::memcpy(v2.data() + 8, &version, 4);
  const size_t crc_at = BodyStart() - 4;
  const uint32_t crc = Crc32c(std::string_view(v2.data(), crc_at));
  std::memcpy(v2.data() + crc_at, &crc, 4);
  absl::Status s = ReadBack(v2);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "snapshot " + path_ + ": format version 2; this pageownerd reads version 1");

  s = ReadBack("#!/bin/sh\necho not a snapshot\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "snapshot " + path_ + ": not a pageowner snapshot (no PGOWNSNP magic)");

  s = ReadBack(bytes_ + "junk");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "snapshot " + path_ + ": 4 bytes after the end chunk");

  WriteAll(path_, bytes_);
  MachineOptions other = options_;
  other.pages = PageCount(16384);
  s = ReadSnapshot(path_, other, WalGeometry::Of(other)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("this one has --memory=67108864 bytes (16384 pages)"),
            std::string::npos)
      << s;
}

class SnapshotRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/snapshot_recovery_test_" + std::to_string(getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ServerOptions Options() const {
    ServerOptions o = testing::SmallOptions();
    o.wal = WalOptions{.dir = dir_, .segment_bytes = 4096};
    // Only the ones the test asks for.
    o.snapshot = SnapshotPolicy{.interval = absl::ZeroDuration(), .log_bytes = 0};
    return o;
  }

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
    grpc::ClientContext c2;
    v1::Stats stats;
    EXPECT_TRUE(stub->GetStats(&c2, v1::GetStatsRequest(), &stats).ok());
    stats.clear_batches();  // of this process, not of the machine
    out += "\n" + stats.DebugString();
    return out;
  }

  // `n` batches (one log record each) from `first` on: named and unnamed frames, frees, a
  // migration.
  static void Feed(v1::PageOwner::Stub* stub, int first, int n) {
    for (int i = first; i < first + n; ++i) {
      BatchBuilder b(i + 1);
      b.Stack(1, {{0xffffffff81000000ull + i, "alloc_pages+0x1/0x10"}, {0, "caller_a+0x2/0x20"}})
          .Stack(2, {0xffffffff82000000ull, 0xffffffff82000010ull + i})
          .Task(1, 100 + i, 100, "task" + std::to_string(i));
      b.Alloc(i % 3, 1, 1, 10 * i).Alloc(0, 2, 1, 10 * i + 1);
      b.AllocAt(8192 + 16 * i, 2, 2, 1, 10 * i + 2);
      b.Free(8192 + 16 * i, 2, 1, 1, 10 * i + 3);
      b.AllocAt(8192 + 16 * i, 1, 1, 1, 10 * i + 4);
      b.Migrate(8192 + 16 * i, v1::MIGRATE_REASON_COMPACTION, 2, 1, 10 * i + 5);
      EXPECT_EQ(testing::IngestOne(stub, b.batch()).code(), testing::kOk);
    }
  }

  std::vector<std::string> Segments() const { return *Wal::ListSegments(dir_); }
  std::vector<std::pair<uint64_t, std::string>> Snapshots() const { return *ListSnapshots(dir_); }

  std::string dir_;
};

TEST_F(SnapshotRecoveryTest, RestartLoadsTheSnapshotAndReplaysOnlyTheRest) {
  std::string before;
  std::string path;
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 0, 30);
    absl::StatusOr<SnapshotResult> snap = server->TakeSnapshot();
    ASSERT_TRUE(snap.ok()) << snap.status();
    EXPECT_EQ(snap->seq, 30u);
    EXPECT_EQ(snap->path, SnapshotPath(dir_, 30));
    EXPECT_EQ(snap->bytes, std::filesystem::file_size(snap->path));
    EXPECT_EQ(snap->segments_deleted, 0u);  // the first snapshot: the log stays for fallback
    path = snap->path;
    Feed(stub.get(), 30, 12);
    before = State(stub.get());
  }
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  const WalRecoveryReport& r = *server->recovery();
  EXPECT_EQ(r.snapshot, path);
  EXPECT_EQ(r.snapshot_seq, 30u);
  EXPECT_EQ(r.records, 12u);  // only those after the snapshot
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  EXPECT_EQ(State(stub.get()), before);
  // The same future: more batches give what a daemon that never stopped would give.
  Feed(stub.get(), 42, 5);
}

TEST_F(SnapshotRecoveryTest, SegmentsOfTheOlderKeptSnapshotAreDeleted) {
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  Feed(stub.get(), 0, 20);
  ASSERT_TRUE(server->TakeSnapshot().ok());  // seq 20
  Feed(stub.get(), 20, 20);
  const std::vector<std::string> segments = Segments();
  ASSERT_GT(segments.size(), 2u);
  // The segments wholly at or before record 20: those followed by one that starts by 21.
  uint64_t covered = 0;
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    if (Wal::SegmentFirstSeq(segments[i + 1]) <= 21) ++covered;
  }
  ASSERT_GT(covered, 0u);
  absl::StatusOr<SnapshotResult> second = server->TakeSnapshot();  // seq 40
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->seq, 40u);
  EXPECT_EQ(second->segments_deleted, covered);
  EXPECT_EQ(second->snapshots_deleted, 0u);
  EXPECT_EQ(Segments().size(), segments.size() - covered);
  Feed(stub.get(), 40, 5);
  absl::StatusOr<SnapshotResult> third = server->TakeSnapshot();  // seq 45
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->snapshots_deleted, 1u);  // snap-20; 40 and 45 stay
  const auto snaps = Snapshots();
  ASSERT_EQ(snaps.size(), 2u);
  EXPECT_EQ(snaps[0].first, 40u);
  EXPECT_EQ(snaps[1].first, 45u);
  EXPECT_LE(Wal::SegmentFirstSeq(Segments().front()), 41u);  // the log 40 needs is there
}

TEST_F(SnapshotRecoveryTest, ABadNewestSnapshotFallsBackToTheOlder) {
  std::string before;
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 0, 10);
    ASSERT_TRUE(server->TakeSnapshot().ok());
    Feed(stub.get(), 10, 10);
    ASSERT_TRUE(server->TakeSnapshot().ok());
    Feed(stub.get(), 20, 3);
    before = State(stub.get());
  }
  const std::string newest = SnapshotPath(dir_, 20);
  std::string data = ReadAll(newest);
  data[data.size() / 2] ^= 0x40;
  WriteAll(newest, data);
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  const WalRecoveryReport& r = *server->recovery();
  EXPECT_EQ(r.snapshot, SnapshotPath(dir_, 10));
  EXPECT_EQ(r.records, 13u);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_EQ(r.notes[0].find("snapshot " + newest + ": CRC mismatch in the chunk at offset "), 0u)
      << r.notes[0];
  EXPECT_NE(r.notes[0].find("renamed to " + newest + ".corrupt, recovered from " +
                            SnapshotPath(dir_, 10) + " and the log after it"),
            std::string::npos)
      << r.notes[0];
  EXPECT_TRUE(std::filesystem::exists(newest + ".corrupt"));
  EXPECT_FALSE(std::filesystem::exists(newest));
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  EXPECT_EQ(State(stub.get()), before);
}

TEST_F(SnapshotRecoveryTest, NoUsableSnapshotRefusesNamingTheFiles) {
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    for (int k = 0; k < 3; ++k) {
      Feed(stub.get(), 15 * k, 15);
      ASSERT_TRUE(server->TakeSnapshot().ok());
    }
  }
  // Snapshots 30 and 45 are kept; the log before 31 is gone. Both bad: nothing holds 1..30.
  ASSERT_GT(Wal::SegmentFirstSeq(Segments().front()), 1u);
  const uint64_t log_start = Wal::SegmentFirstSeq(Segments().front());
  for (uint64_t seq : {30, 45}) {
    std::string data = ReadAll(SnapshotPath(dir_, seq));
    WriteAll(SnapshotPath(dir_, seq), data.substr(0, data.size() - 100));
  }
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(Options());
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kDataLoss);
  const std::string m(server.status().message());
  EXPECT_EQ(m.find("cannot recover " + dir_ + ": snapshot " + SnapshotPath(dir_, 45) +
                   ": cut short at offset "),
            0u)
      << m;
  EXPECT_NE(m.find("; snapshot " + SnapshotPath(dir_, 30) + ": cut short at offset "),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("no older snapshot is valid and the log starts at record " +
                   std::to_string(log_start) + ", so nothing else holds the records before"),
            std::string::npos)
      << m;
  // Nothing was renamed or deleted: the files stay for whoever repairs them.
  EXPECT_TRUE(std::filesystem::exists(SnapshotPath(dir_, 45)));
  EXPECT_TRUE(std::filesystem::exists(SnapshotPath(dir_, 30)));
}

TEST_F(SnapshotRecoveryTest, LeftoverTemporaryFilesAreRemoved) {
  {
    auto server = testing::StartServer(Options());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    Feed(stub.get(), 0, 4);
  }
  WriteAll(SnapshotTempPath(dir_, 3), "half a snapshot");
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  EXPECT_FALSE(std::filesystem::exists(SnapshotTempPath(dir_, 3)));
  ASSERT_EQ(server->recovery()->notes.size(), 1u);
  EXPECT_EQ(server->recovery()->notes[0],
            SnapshotTempPath(dir_, 3) + ": an unfinished snapshot, removed");
  EXPECT_EQ(server->recovery()->records, 4u);
}

TEST_F(SnapshotRecoveryTest, SnapshotRpc) {
  {
    auto server = testing::StartServer(testing::SmallOptions());
    ASSERT_NE(server, nullptr);
    auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
    grpc::ClientContext context;
    v1::SnapshotResponse response;
    const grpc::Status s = stub->Snapshot(&context, v1::SnapshotRequest(), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(s.error_message(),
              "no snapshot without a data directory: start pageownerd with --data_dir to keep "
              "its state");
  }
  auto server = testing::StartServer(Options());
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(testing::Channel(server->bound_port()));
  Feed(stub.get(), 0, 7);
  grpc::ClientContext context;
  v1::SnapshotResponse response;
  const grpc::Status s = stub->Snapshot(&context, v1::SnapshotRequest(), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.path(), SnapshotPath(dir_, 7));
  EXPECT_EQ(response.log_seq(), 7u);
  EXPECT_EQ(response.bytes(), std::filesystem::file_size(response.path()));
  EXPECT_GT(response.duration_seconds(), 0.0);
  EXPECT_GT(response.stall_seconds(), 0.0);
  EXPECT_LT(response.stall_seconds(), response.duration_seconds());
}

}  // namespace
}  // namespace pageowner::server
