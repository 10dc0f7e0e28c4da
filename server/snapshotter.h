// Snapshotter: takes pageownerd's snapshots (server/snapshot.h) on a policy (every
// --snapshot_interval, and after every --snapshot_log_bytes of log) and on request (the admin
// rpc), without stopping ingest for longer than a fork.
//
// A snapshot: on the ingest writer thread, between two batches (so that the machine holds
// exactly the log's records up to seq, and the log's names are those up to seq; that thread is
// the machine's one writer, so no machine lock is needed and none is waited for), the symbol
// table's and the depot's locks are taken and the process forks; the
// child, a copy-on-write image of that moment, writes DIR/snap-<seq>.snap.tmp, fsyncs it and
// _exits; the writer goes on at once. The snapshotter's thread reaps the child, makes the log
// durable through seq (the log is never behind a snapshot), renames the file into place and
// syncs the directory; then it keeps the newest kSnapshotsKept snapshots, deletes older ones,
// and deletes the log segments wholly covered by the oldest snapshot kept, so that recovery
// can always fall back from a bad newest snapshot to the one before it.
//
// Failpoints: snapshot_during (the child writes half the file, then the daemon dies),
// snapshot_before_rename, snapshot_after_rename, before_segment_delete.
#ifndef PAGEOWNER_SERVER_SNAPSHOTTER_H_
#define PAGEOWNER_SERVER_SNAPSHOTTER_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/shared_machine.h"
#include "server/wal.h"

namespace pageowner::server {

// How many snapshots stay on disk: the newest and the one before it (with its log).
inline constexpr int kSnapshotsKept = 2;

struct SnapshotPolicy {
  absl::Duration interval = absl::Minutes(30);  // ZeroDuration(): no timed snapshots
  uint64_t log_bytes = uint64_t{512} << 20;     // 0: none by log size
};

// One snapshot taken.
struct SnapshotResult {
  std::string path;
  uint64_t seq = 0;         // the last log record it holds
  uint64_t bytes = 0;       // of the file
  absl::Duration duration;  // from the request to the file being durable
  absl::Duration stall;     // the writer thread's pause (lock + fork)
  uint64_t segments_deleted = 0;
  uint64_t snapshots_deleted = 0;
};

// For /metrics: pageowner_snapshot_*.
struct SnapshotMetrics {
  std::atomic<int64_t> last_unix_seconds{0};  // of the last success; 0: none yet
  std::atomic<uint64_t> last_duration_ns{0};
  std::atomic<uint64_t> last_bytes{0};
  std::atomic<uint64_t> last_stall_ns{0};
  std::atomic<uint64_t> max_stall_ns{0};
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> failures{0};
  void AppendTo(std::string* out) const;
};

// Thread-safety: every method may be called from any thread.
class Snapshotter {
 public:
  // Runs fn on the ingest writer thread between batches; returns once it ran.
  using RunOnWriter = std::function<void(const std::function<void()>& fn)>;
  using Done = std::function<void(absl::StatusOr<SnapshotResult>)>;

  // `last_seq`: the newest snapshot's (recovery's), 0 for none. Starts the policy thread.
  Snapshotter(std::string dir, const SnapshotPolicy& policy, Wal* wal, SharedMachine* machine,
              const WalGeometry& geometry, RunOnWriter run_on_writer, uint64_t last_seq);
  // Stop()s.
  ~Snapshotter();
  Snapshotter(const Snapshotter&) = delete;
  Snapshotter& operator=(const Snapshotter&) = delete;

  // Takes a snapshot of everything applied before the call and calls done with it (on the
  // snapshotter's thread). A request made while one is being taken gets the next one.
  void Request(Done done) ABSL_LOCKS_EXCLUDED(mu_);
  // Request, waiting for the answer.
  absl::StatusOr<SnapshotResult> TakeNow() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the thread; a snapshot being written is abandoned (its child killed, the temporary
  // file removed); waiting requests get UNAVAILABLE. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  const SnapshotMetrics& metrics() const { return metrics_; }

 private:
  void Loop();
  absl::StatusOr<SnapshotResult> Take() ABSL_LOCKS_EXCLUDED(mu_);
  // Keeps the newest kSnapshotsKept snapshots and the log the oldest of them needs.
  absl::Status Retain(SnapshotResult* result);

  const std::string dir_;
  const SnapshotPolicy policy_;
  Wal* const wal_;
  SharedMachine* const machine_;
  const WalGeometry geometry_;
  const RunOnWriter run_on_writer_;
  SnapshotMetrics metrics_;

  absl::Mutex mu_;
  std::vector<Done> requests_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  pid_t child_ ABSL_GUARDED_BY(mu_) = 0;  // the writer child while one runs
  // Policy state (the thread's).
  uint64_t last_seq_;
  uint64_t bytes_at_last_ = 0;
  absl::Time last_attempt_;
  bool last_failed_ = false;
  std::thread thread_;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_SNAPSHOTTER_H_
