// pageownerd crashed for real: at each failpoint of the log and snapshot paths, and by SIGKILL
// at random moments while several clients stream (PAGEOWNER_CRASH_CYCLES cycles, 20 by
// default) and snapshots are taken every 16 KiB of log, with a simulated power cut every other
// cycle (the last segment cut back, or its tail overwritten with garbage, anywhere after the
// last acknowledged record and the newest snapshot's). Every log segment the daemon creates is
// hard-linked into an archive as it appears, so the whole log survives the deletions that follow
// snapshots. After each restart on the same data dir: every acknowledged event is in the
// archived log, and the daemon's state (its newest snapshot plus the log after it) equals that
// of a twin machine fed the whole archived log from its first record (every page record and
// every stack compared).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/crc32c.h"
#include "server/failpoints.h"
#include "server/snapshot.h"
#include "server/wal.h"
#include "server/wal_record.h"
#include "tests/server/test_util.h"
#include "tests/support/daemon_process.h"

namespace pageowner::server {
namespace {

using ::pageowner::testing::DaemonOptions;
using ::pageowner::testing::DaemonProcess;
using testing::BatchBuilder;

constexpr uint64_t kPages = 65536;  // 256 MiB
constexpr int kClients = 4;
constexpr size_t kHeaderBytes = 44;

std::string State(v1::PageOwner::Stub* stub) {
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

struct Record {
  std::string path;
  uint64_t seq = 0;
  size_t end = 0;  // offset just past it
  std::vector<uint64_t> ts;
};

// Every record of the log in `dir`, up to the first bad one.
std::vector<Record> ReadLog(const std::string& dir) {
  std::vector<Record> out;
  absl::StatusOr<std::vector<std::string>> paths = Wal::ListSegments(dir);
  EXPECT_TRUE(paths.ok());
  for (const std::string& path : *paths) {
    std::ifstream f(path, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(f)), {});
    size_t at = kHeaderBytes;
    while (at + kWalFrameBytes <= data.size()) {
      uint32_t len, crc;
      std::memcpy(&len, data.data() + at, 4);
      std::memcpy(&crc, data.data() + at + 4, 4);
      if (len == 0 || data.size() - at - kWalFrameBytes < len) break;
      const std::string_view payload(data.data() + at + kWalFrameBytes, len);
      if (Crc32c(payload) != crc) break;
      WalRecord r;
      if (!DecodeRecord(payload, &r).ok()) break;
      at += kWalFrameBytes + len;
      Record& rec = out.emplace_back();
      rec.path = path;
      rec.seq = r.seq;
      rec.end = at;
      for (const Event& e : r.events)
        rec.ts.push_back(std::visit([](const auto& x) { return x.ts_ns; }, e));
    }
  }
  return out;
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = ::testing::TempDir() + "/crash_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(base_);
    std::filesystem::create_directories(base_);
    dir_ = base_ + "/data";
    archive_ = base_ + "/archive";
    std::filesystem::create_directories(archive_);
    archiver_ = std::thread([this] {
      while (!archiver_stop_.load()) {
        Archive();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  void TearDown() override {
    archiver_stop_ = true;
    archiver_.join();
    std::filesystem::remove_all(base_);
  }

  // Hard-links every segment of the data dir into the archive (a segment recreated under the
  // same name, after a torn creation, replaces its link). Any thread.
  void Archive() {
    std::lock_guard<std::mutex> lock(archive_mu_);
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (!name.starts_with("wal-") || !name.ends_with(".log")) continue;
      const std::string link = archive_ + "/" + name;
      struct stat a, b;
      if (stat(e.path().c_str(), &a) != 0) continue;  // deleted meanwhile
      if (stat(link.c_str(), &b) == 0) {
        if (a.st_ino == b.st_ino) continue;
        std::filesystem::remove(link, ec);
      }
      std::filesystem::create_hard_link(e.path(), link, ec);
    }
  }

  std::unique_ptr<DaemonProcess> Start(const std::string& failpoints = "",
                                       const std::vector<std::string>& flags = {}) {
    DaemonOptions o;
    o.flags = {"--memory=256MiB", "--data_dir=" + dir_, "--wal_segment_bytes=256KiB"};
    o.flags.insert(o.flags.end(), flags.begin(), flags.end());
    if (!failpoints.empty()) o.wrapper = {"/usr/bin/env", "PAGEOWNER_FAILPOINTS=" + failpoints};
    auto d = std::make_unique<DaemonProcess>(PAGEOWNERD_PATH, o);
    EXPECT_FALSE(d->address().empty()) << d->startup_log();
    return d;
  }

  // The invariant: every acknowledged event is in the recovered log, and the daemon serves
  // the state of a twin machine fed that log.
  void Check(DaemonProcess& d) {
    const std::string twin_dir = base_ + "/twin";
    std::filesystem::remove_all(twin_dir);
    Archive();
    {
      std::lock_guard<std::mutex> lock(archive_mu_);
      std::filesystem::copy(archive_, twin_dir);
    }
    absl::flat_hash_set<uint64_t> logged;
    for (const Record& r : ReadLog(twin_dir)) logged.insert(r.ts.begin(), r.ts.end());
    uint64_t missing = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (uint64_t ts : acked_) missing += logged.contains(ts) ? 0 : 1;
      checked_ += acked_.size();
    }
    EXPECT_EQ(missing, 0u) << "acknowledged events lost";
    lost_ += missing;
    ServerOptions options = testing::SmallOptions(kPages);
    options.machine.boot_ts_ns = 0;
    options.max_batch_events = kDefaultMaxBatchEvents;
    options.wal = WalOptions{.dir = twin_dir};
    auto twin = testing::StartServer(options);
    ASSERT_NE(twin, nullptr);
    auto twin_stub = v1::PageOwner::NewStub(testing::Channel(twin->bound_port()));
    auto stub = v1::PageOwner::NewStub(
        grpc::CreateChannel(d.address(), grpc::InsecureChannelCredentials()));
    const std::string daemon_state = State(stub.get());
    EXPECT_EQ(daemon_state, State(twin_stub.get())) << "the daemon's state is not the log's";
    EXPECT_GT(daemon_state.size(), 0u);
  }

  // One client: batches of 1..24 events (allocations on its own stacks, frees of its blocks),
  // one in flight, until the stream breaks or `stop`. Event timestamps are unique.
  void Client(const std::string& address, int id, uint64_t seed, const std::atomic<bool>* stop,
              int max_batches = 1 << 30) {
    auto stub =
        v1::PageOwner::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    auto stream = stub->Ingest(&context);
    std::mt19937_64 rng(seed);
    std::vector<std::pair<uint64_t, uint32_t>> live;  // acknowledged allocations: pfn, order
    for (int n = 0; n < max_batches && !stop->load(); ++n) {
      BatchBuilder b(n + 1);
      if (n == 0) {
        for (uint32_t s = 1; s <= 8; ++s) {
          b.Stack(s, {{0xffffffff81000000ull + 0x1000 * s + id,
                       absl::StrCat("fn", s, "_c", id, "+0x1/0x40")},
                      {0, absl::StrCat("caller", s % 3, "+0x10/0x80")}});
        }
        b.Task(1, 1000 + id, 1000 + id, absl::StrCat("client", id));
      }
      const int events = 1 + static_cast<int>(rng() % 24);
      std::vector<uint64_t> ts;
      std::vector<bool> is_alloc;
      std::vector<uint32_t> orders;
      for (int i = 0; i < events; ++i) {
        const uint64_t t = (uint64_t{static_cast<uint64_t>(id) + 1} << 40) | ++counter_[id];
        ts.push_back(t);
        if (!live.empty() && rng() % 2 == 0) {
          const auto [pfn, order] = live.back();
          live.pop_back();
          b.Free(pfn, order, 1 + rng() % 8, 1, t);
          is_alloc.push_back(false);
          orders.push_back(order);
        } else {
          const uint32_t order = rng() % 3;
          b.Alloc(order, 1 + rng() % 8, 1, t);
          is_alloc.push_back(true);
          orders.push_back(order);
        }
      }
      v1::BatchResult result;
      if (!stream->Write(b.batch()) || !stream->Read(&result)) break;
      if (result.code() != testing::kOk) continue;  // UNAVAILABLE: not applied
      std::lock_guard<std::mutex> lock(mu_);
      acked_.insert(acked_.end(), ts.begin(), ts.end());
      for (int i = 0; i < events; ++i) {
        if (is_alloc[i] && result.event_code(i) == testing::kOk) {
          live.emplace_back(result.event_pfn(i), orders[i]);
        }
      }
    }
    context.TryCancel();
    stream->Finish();
  }

  // Cuts the last segment back to a random point after the last record holding an acknowledged
  // event, or overwrites that tail with garbage: what a power cut may leave of unsynced writes.
  void PowerCut(std::mt19937_64& rng) {
    const std::vector<Record> log = ReadLog(dir_);
    absl::StatusOr<std::vector<std::string>> paths = Wal::ListSegments(dir_);
    ASSERT_TRUE(paths.ok() && !paths->empty());
    const std::string last = paths->back();
    size_t keep = kHeaderBytes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const absl::flat_hash_set<uint64_t> acked(acked_.begin(), acked_.end());
      for (const Record& r : log) {
        if (r.path != last) continue;
        for (uint64_t t : r.ts) {
          if (acked.contains(t)) keep = r.end;
        }
      }
    }
    // What the snapshotter fsynced before publishing the newest snapshot is on disk too.
    absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> snaps = ListSnapshots(dir_);
    ASSERT_TRUE(snaps.ok());
    const uint64_t snapshot_seq = snaps->empty() ? 0 : snaps->back().first;
    for (const Record& r : log) {
      if (r.path == last && r.seq <= snapshot_seq) keep = std::max(keep, r.end);
    }
    const size_t size = std::filesystem::file_size(last);
    if (size < keep) return;
    const size_t cut = keep + rng() % (size - keep + 1);
    if (rng() % 2 == 0) {
      std::filesystem::resize_file(last, cut);
    } else {
      std::string garbage(size - cut, '\0');
      for (char& c : garbage) c = static_cast<char>(rng() % 3 == 0 ? 0 : rng());
      std::fstream f(last, std::ios::binary | std::ios::in | std::ios::out);
      f.seekp(static_cast<std::streamoff>(cut));
      f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    }
    ++power_cuts_;
  }

  std::string base_;
  std::string dir_;
  std::string archive_;
  std::mutex archive_mu_;
  std::atomic<bool> archiver_stop_{false};
  std::thread archiver_;
  std::mutex mu_;
  std::vector<uint64_t> acked_;
  uint64_t counter_[kClients] = {};
  uint64_t checked_ = 0;
  uint64_t lost_ = 0;
  int power_cuts_ = 0;
  int from_snapshot_ = 0;
};

// Each crashing failpoint: the daemon dies there, the restart keeps every acknowledged batch.
// The snapshot ones run with a snapshot every 64 KiB of log; the restart says what it found.
TEST_F(CrashTest, EveryFailpoint) {
  struct Case {
    const char* failpoint;
    int exit_code;
    const char* startup;  // in the restart's log
  };
  const Case cases[] = {
      {"wal_before_write@4", kFailpointExitCode, ""},
      {"wal_partial_write@4", kFailpointExitCode, ""},
      {"wal_after_write@4", kFailpointExitCode, ""},
      {"wal_after_fsync@4", kFailpointExitCode, ""},
      {"wal_segment_roll@1", kFailpointExitCode, ""},
      // The snapshot's child writes half its file and kills the daemon.
      {"snapshot_during@1", 128 + SIGKILL, ".snap.tmp: an unfinished snapshot, removed"},
      {"snapshot_before_rename@1", kFailpointExitCode,
       ".snap.tmp: an unfinished snapshot, removed"},
      {"snapshot_after_rename@1", kFailpointExitCode, "recovered snapshot "},
      {"before_segment_delete@1", kFailpointExitCode, "recovered snapshot "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.failpoint);
    const std::vector<std::string> flags = {"--snapshot_log_bytes=64KiB"};
    {
      auto d = Start(c.failpoint, flags);
      ASSERT_FALSE(d->address().empty());
      std::atomic<bool> stop{false};
      // A segment rolls after 256 KiB, a snapshot is due every 64 KiB: enough batches for both.
      Client(d->address(), 0, 1, &stop, 3000);
      EXPECT_EQ(d->Wait(), c.exit_code) << d->log_after_startup();
    }
    auto d = Start("", flags);
    ASSERT_FALSE(d->address().empty());
    EXPECT_NE(d->startup_log().find(c.startup), std::string::npos) << d->startup_log();
    Check(*d);
    d->Stop(SIGTERM);
  }
}

// A full disk: the batch is answered UNAVAILABLE with the reason and not applied, queries go
// on, and ingest resumes once writes succeed.
TEST_F(CrashTest, FailedWritesAnswerUnavailableAndResume) {
  std::string state;
  {
    auto d = Start("wal_write_enospc@2");
    ASSERT_FALSE(d->address().empty());
    auto stub = v1::PageOwner::NewStub(
        grpc::CreateChannel(d->address(), grpc::InsecureChannelCredentials()));
    BatchBuilder b(1);
    b.Stack(1, std::vector<uint64_t>{0xffffffff81000010ull}).Alloc(0, 1, 0, 5).Alloc(1, 1, 0, 6);
    // One stream a batch, each answered before the next is sent: batches in flight together may
    // share one group-committed write, which would fail them together.
    testing::IngestOutcome out;
    for (int i = 0; i < 3; ++i) {
      testing::IngestOutcome one = testing::Ingest(stub.get(), {b.batch()});
      ASSERT_TRUE(one.status.ok()) << one.status.error_message();
      ASSERT_EQ(one.results.size(), 1u);
      out.results.push_back(one.results[0]);
    }
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(out.results[i].code(), 14);  // UNAVAILABLE
      EXPECT_NE(out.results[i].message().find("write-ahead log: cannot write"), std::string::npos)
          << out.results[i].message();
      EXPECT_NE(out.results[i].message().find("No space left on device"), std::string::npos);
    }
    EXPECT_EQ(out.results[2].code(), testing::kOk);
    EXPECT_EQ(out.results[2].event_pfn_size(), 2);
    state = State(stub.get());
    grpc::ClientContext context;
    v1::Stats stats;
    ASSERT_TRUE(stub->GetStats(&context, v1::GetStatsRequest(), &stats).ok());
    EXPECT_EQ(d->Stop(SIGTERM), 0);
  }
  auto d = Start();
  auto stub =
      v1::PageOwner::NewStub(grpc::CreateChannel(d->address(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(State(stub.get()), state);
  Check(*d);
}

TEST_F(CrashTest, KillNineCycles) {
  const char* env = std::getenv("PAGEOWNER_CRASH_CYCLES");
  const int cycles = env != nullptr ? std::atoi(env) : 20;
  std::mt19937_64 rng(env != nullptr ? std::random_device()() : 20240612);
  for (int cycle = 0; cycle < cycles; ++cycle) {
    SCOPED_TRACE(cycle);
    auto d = Start("", {"--snapshot_log_bytes=16KiB"});
    ASSERT_FALSE(d->address().empty()) << d->startup_log();
    if (d->startup_log().find("recovered snapshot ") != std::string::npos) ++from_snapshot_;
    if (cycle > 0) Check(*d);
    if (::testing::Test::HasFailure()) break;
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c, seed = rng()] { Client(d->address(), c, seed, &stop); });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 250));
    // Halfway, a cycle that has seen no snapshot yet runs until the snapshotter has published
    // one, so that later restarts cross it however slow the daemon is (under ASan none had
    // been written within the random times above).
    if (cycle == cycles / 2) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      for (;;) {  // no ASSERT here: the clients' threads are still to be joined
        absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> snaps = ListSnapshots(dir_);
        EXPECT_TRUE(snaps.ok()) << snaps.status();
        if (!snaps.ok() || !snaps->empty()) break;
        if (std::chrono::steady_clock::now() > deadline) {
          ADD_FAILURE() << "no snapshot in 120 s";
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    EXPECT_EQ(d->Stop(SIGKILL), 128 + SIGKILL);
    stop = true;
    for (std::thread& t : clients) t.join();
    if (cycle % 2 == 1) PowerCut(rng);
  }
  auto d = Start();
  Check(*d);
  std::printf(
      "crash cycles: %d, power cuts: %d, restarts from a snapshot: %d, acknowledged events "
      "checked: %llu, lost: %llu\n",
      cycles, power_cuts_, from_snapshot_, static_cast<unsigned long long>(checked_),
      static_cast<unsigned long long>(lost_));
  // The cycles crossed snapshots (how many depends on the machine's speed: 18 of 20 restarts
  // on a quiet one).
  if (cycles >= 10) {
    EXPECT_GT(from_snapshot_, 0);
  }
}

}  // namespace
}  // namespace pageowner::server
