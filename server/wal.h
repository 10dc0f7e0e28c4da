// Wal: pageownerd's write-ahead log in --data_dir, and the recovery that replays it.
//
// Files: DIR/wal-<first sequence number, 20 digits>.log, each a 44-byte header (magic
// "PGOWNWAL", version, the machine's geometry: pages, stack depth, depot pool limit, tracking
// at start; the first record's sequence number; a CRC32C) and then records as wal_record.h
// frames them, in the writer's apply order, sequence numbers 1, 2, ... without gaps. A segment
// holds at most --wal_segment_bytes (a single larger record gets a segment of its own); the next
// segment is created only after the previous one is fdatasync'ed, and the directory is synced
// after each creation, so that only the last segment can have an unsynced tail.
//
// Recovery (Open): every segment in order; each record's length, CRC and sequence number are
// checked and it is replayed into the Machine. The first bad record ends the log: when nothing
// valid follows it (a torn write, a garbage or zero tail: what a crash or power cut leaves) the
// last segment is cut there, and the cut is reported. When valid records follow (corruption in
// the middle, which no crash produces), Open refuses with the file, the offset and the way out
// (--wal_recovery=truncate drops everything from that record on).
#ifndef PAGEOWNER_SERVER_WAL_H_
#define PAGEOWNER_SERVER_WAL_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/machine.h"
#include "server/wal_record.h"

namespace pageowner::server {

enum class FsyncMode {
  kAlways,    // fdatasync before a batch is answered
  kInterval,  // answered once written; fdatasync every interval (a power cut loses that much)
};
enum class WalRecoveryMode {
  kStrict,    // refuse to start on corruption before the tail
  kTruncate,  // drop the log from the first bad record on, and say so
};

struct WalOptions {
  std::string dir;
  FsyncMode fsync = FsyncMode::kAlways;
  absl::Duration fsync_interval = absl::Milliseconds(1000);
  uint64_t segment_bytes = uint64_t{64} << 20;
  WalRecoveryMode recovery = WalRecoveryMode::kStrict;
};

// Where replay starts: after a snapshot's last record, with the names the log had defined by
// then. seq 0: from the log's first record, into a fresh Machine.
struct WalStart {
  uint64_t seq = 0;
  WalNames names;
};

// What recovery found and did.
struct WalRecoveryReport {
  // The snapshot loaded ("" when none) and the last record it covers; the records replayed
  // after it are `records`.
  std::string snapshot;
  uint64_t snapshot_seq = 0;
  uint64_t snapshot_bytes = 0;
  absl::Duration snapshot_duration;
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;            // of the log kept
  uint64_t truncated_tails = 0;  // cuts made (a torn tail, or a --wal_recovery=truncate drop)
  uint64_t truncated_bytes = 0;
  std::vector<std::string> notes;  // one line a cut: file, offset, why
  absl::Duration duration;
};

// Counters and the fsync latency histogram, for /metrics.
struct WalMetrics {
  // Upper bounds of the fsync histogram buckets, in seconds (then +Inf).
  static constexpr std::array<double, 12> kFsyncBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
  std::atomic<uint64_t> bytes{0};  // on disk, all segments
  std::atomic<uint64_t> segments{0};
  std::atomic<uint64_t> records{0};  // written since start
  std::atomic<uint64_t> write_errors{0};
  std::array<std::atomic<uint64_t>, kFsyncBuckets.size() + 1> fsync_buckets{};
  std::atomic<uint64_t> fsync_count{0};
  std::atomic<uint64_t> fsync_ns{0};
  std::atomic<uint64_t> truncated_tails{0};
  std::atomic<uint64_t> recovery_ns{0};

  // The pageowner_wal_* families, in the Prometheus text format 0.0.4.
  void AppendTo(std::string* out) const;
};

// The geometry a log was written for; replaying into another machine would give another state.
struct WalGeometry {
  uint64_t pages = 0;
  uint32_t stack_depth = 0;
  uint32_t depot_max_pools = 0;
  bool tracking = false;
  static WalGeometry Of(const MachineOptions& o);
  friend bool operator==(const WalGeometry&, const WalGeometry&) = default;
};

// The files of `dir` named PREFIX<20-digit number>SUFFIX (log segments, snapshots), as (number,
// path), by number. kUnavailable when `dir` cannot be listed.
absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ListNumberedFiles(
    const std::string& dir, std::string_view prefix, std::string_view suffix);

// Thread-safety: Append, Roll and next_seq on one thread (the ingest writer); SyncTo, synced_seq
// and metrics from any thread.
class Wal {
 public:
  // Creates `options.dir` if needed, replays the log there into `machine` (a fresh Machine made
  // with `machine_options`) and opens it for appending. Errors: kFailedPrecondition for a log of
  // another geometry or corruption before the tail (under kStrict); kDataLoss for a record that
  // passes its CRC and does not decode; kUnavailable for I/O errors. Each names the file.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(const WalOptions& options,
                                                   const MachineOptions& machine_options,
                                                   Machine* machine, WalRecoveryReport* report);
  // The same after a snapshot: `machine` is the snapshot's, and only the records after
  // start.seq are replayed (the segments wholly before it are skipped; they stay until
  // DeleteSegmentsThrough). kFailedPrecondition when the log starts after start.seq + 1 (the
  // records between are missing). When the log ends before start.seq (it was cut below what
  // the snapshot holds), the next record is start.seq + 1, in a new segment.
  static absl::StatusOr<std::unique_ptr<Wal>> Open(const WalOptions& options,
                                                   const MachineOptions& machine_options,
                                                   Machine* machine, WalStart start,
                                                   WalRecoveryReport* report);
  // Syncs what was written.
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // The sequence number the next record must carry.
  uint64_t next_seq() const { return next_seq_; }
  // Names already in the log (AppendBatchRecord's `names`).
  WalNames& names() { return names_; }

  // Writes `records` (`count` whole framed records, numbered next_seq() on) at the end of the
  // log. kUnavailable with the reason when the write fails (disk full, read-only, file size
  // limit): the log is then as it was before the call, and a later Append may succeed.
  absl::Status Append(std::string_view records, uint64_t count);

  // Makes every record up to `seq` durable (fdatasync), sharing one fdatasync among all the
  // callers waiting meanwhile. With FsyncMode::kInterval, returns at once. A failed fdatasync
  // ends the process (the page cache may have dropped the pages: only a restart from what is on
  // disk is safe).
  void SyncTo(uint64_t seq) ABSL_LOCKS_EXCLUDED(sync_mu_, mu_);
  bool sync_on_commit() const { return options_.fsync == FsyncMode::kAlways; }
  // Makes every record written so far durable, whatever the fsync mode (a snapshot is published
  // only once the log holds all it covers, so that the log is never behind a snapshot).
  void SyncAll() ABSL_LOCKS_EXCLUDED(sync_mu_, mu_);

  // Deletes the segments all of whose records are at or before `seq` (never the segment being
  // written), then syncs the directory. Returns how many were deleted; kUnavailable naming the
  // file on an error (the rest stay). Any thread; the writer may roll meanwhile.
  absl::StatusOr<uint64_t> DeleteSegmentsThrough(uint64_t seq) ABSL_LOCKS_EXCLUDED(mu_);
  // Bytes of records appended since Open (grows only; a snapshot policy's clock).
  uint64_t bytes_appended() const { return bytes_appended_.load(std::memory_order_relaxed); }
  // The last record written (durable or not). Any thread.
  uint64_t written_seq() const ABSL_LOCKS_EXCLUDED(mu_);

  const WalOptions& options() const { return options_; }
  WalMetrics& metrics() { return metrics_; }

  // The path of the segment that starts at `first_seq`.
  static std::string SegmentPath(const std::string& dir, uint64_t first_seq);
  // The segment files in `dir`, by first sequence number.
  static absl::StatusOr<std::vector<std::string>> ListSegments(const std::string& dir);
  // The first sequence number in a segment's file name; 0 when it is not a segment's name.
  static uint64_t SegmentFirstSeq(std::string_view path);

 private:
  struct Segment;
  Wal(const WalOptions& options, const WalGeometry& geometry);
  absl::Status Roll();  // writer thread
  absl::Status CreateSegment(uint64_t first_seq, std::shared_ptr<Segment>* out);
  void IntervalLoop();
  // fdatasyncs the current segment and advances synced_seq_ to what was written before it.
  void SyncLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_) ABSL_LOCKS_EXCLUDED(mu_);

  const WalOptions options_;
  const WalGeometry geometry_;
  WalMetrics metrics_;
  WalNames names_;
  uint64_t next_seq_ = 1;  // writer thread
  bool dirty_ = false;     // a failed write may have left bytes past size (writer thread)

  mutable absl::Mutex mu_;
  std::shared_ptr<Segment> current_ ABSL_GUARDED_BY(mu_);
  uint64_t written_seq_ ABSL_GUARDED_BY(mu_) = 0;  // last record written

  absl::Mutex sync_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one fdatasync at a time
  std::atomic<uint64_t> synced_seq_{0};
  std::atomic<uint64_t> bytes_appended_{0};

  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread interval_thread_;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_WAL_H_
