#include "server/snapshotter.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"
#include "core/strings.h"
#include "server/failpoints.h"
#include "server/snapshot.h"

namespace pageowner::server {
namespace {

// How often the policy looks at the clock and the log's size.
constexpr absl::Duration kPoll = absl::Milliseconds(100);
// After a failed snapshot, the policy waits this long before trying again.
constexpr absl::Duration kRetryAfterFailure = absl::Seconds(10);

void AtomicMax(std::atomic<uint64_t>& a, uint64_t v) {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < v && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// The forked child: writes the snapshot file and ends without running anything of the parent's
// (no destructors, no atexit). Its error, if any, goes to `error_fd`.
[[noreturn]] void ChildWrite(int error_fd, const std::string& temp, const Machine& machine,
                             const WalNames& names, const WalGeometry& geometry, uint64_t seq,
                             bool crash_during) {
  const absl::Status s = WriteSnapshotTemp(temp, machine, names, geometry, seq);
  if (crash_during) {
    // A daemon that dies in the middle of a snapshot leaves half a temporary file.
    struct stat st;
    if (stat(temp.c_str(), &st) == 0) {
      if (truncate(temp.c_str(), st.st_size / 2) != 0) _exit(1);
    }
    static constexpr char kMessage[] = "pageownerd: failpoint snapshot_during: exiting\n";
    (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    kill(getppid(), SIGKILL);
    _exit(kFailpointExitCode);
  }
  if (!s.ok()) {
    const std::string why(s.message());
    (void)!write(error_fd, why.data(), why.size());
    _exit(1);
  }
  _exit(0);
}

}  // namespace

void SnapshotMetrics::AppendTo(std::string* out) const {
  const auto family = [out](std::string_view name, std::string_view type, std::string_view help) {
    absl::StrAppend(out, "# HELP ", Sv(name), " ", Sv(help), "\n# TYPE ", Sv(name), " ", Sv(type),
                    "\n");
  };
  const auto load = [](const auto& v) { return v.load(std::memory_order_relaxed); };
  family("pageowner_snapshot_last_success_timestamp_seconds", "gauge",
         "Unix time of the last snapshot made durable; 0: none since start.");
  absl::StrAppend(out, "pageowner_snapshot_last_success_timestamp_seconds ",
                  load(last_unix_seconds), "\n");
  family("pageowner_snapshot_last_duration_seconds", "gauge",
         "Time the last snapshot took, from its start to its file being durable.");
  absl::StrAppend(out, "pageowner_snapshot_last_duration_seconds ", load(last_duration_ns) / 1e9,
                  "\n");
  family("pageowner_snapshot_last_bytes", "gauge", "Size of the last snapshot file.");
  absl::StrAppend(out, "pageowner_snapshot_last_bytes ", load(last_bytes), "\n");
  family("pageowner_snapshot_last_stall_seconds", "gauge",
         "How long the last snapshot paused the ingest writer (lock and fork).");
  absl::StrAppend(out, "pageowner_snapshot_last_stall_seconds ", load(last_stall_ns) / 1e9, "\n");
  family("pageowner_snapshot_max_stall_seconds", "gauge",
         "The longest pause of the ingest writer by a snapshot since start.");
  absl::StrAppend(out, "pageowner_snapshot_max_stall_seconds ", load(max_stall_ns) / 1e9, "\n");
  family("pageowner_snapshots_total", "counter", "Snapshots made durable since start.");
  absl::StrAppend(out, "pageowner_snapshots_total ", load(count), "\n");
  family("pageowner_snapshot_failures_total", "counter", "Snapshots that failed since start.");
  absl::StrAppend(out, "pageowner_snapshot_failures_total ", load(failures), "\n");
}

Snapshotter::Snapshotter(std::string dir, const SnapshotPolicy& policy, Wal* wal,
                         SharedMachine* machine, const WalGeometry& geometry,
                         RunOnWriter run_on_writer, uint64_t last_seq)
    : dir_(std::move(dir)),
      policy_(policy),
      wal_(wal),
      machine_(machine),
      geometry_(geometry),
      run_on_writer_(std::move(run_on_writer)),
      last_seq_(last_seq),
      bytes_at_last_(wal->bytes_appended()),
      last_attempt_(absl::Now()),
      thread_([this] { Loop(); }) {}

Snapshotter::~Snapshotter() { Stop(); }

void Snapshotter::Request(Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      requests_.push_back(std::move(done));
      return;
    }
  }
  done(absl::UnavailableError("the server is shutting down; no snapshot was taken"));
}

absl::StatusOr<SnapshotResult> Snapshotter::TakeNow() {
  absl::Notification taken;
  absl::StatusOr<SnapshotResult> out;
  Request([&](absl::StatusOr<SnapshotResult> r) {
    out = std::move(r);
    taken.Notify();
  });
  taken.WaitForNotification();
  return out;
}

void Snapshotter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    if (child_ > 0) kill(child_, SIGKILL);  // reaped by Take, which then fails
  }
  thread_.join();
  std::vector<Done> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(requests_);
  }
  for (Done& d : left) d(absl::UnavailableError("the server is shutting down"));
}

void Snapshotter::Loop() {
  for (;;) {
    std::vector<Done> requests;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](Snapshotter* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
                                 return s->stopping_ || !s->requests_.empty();
                               },
                               this),
                           kPoll);
      if (stopping_) return;
      requests.swap(requests_);
    }
    if (requests.empty()) {
      // The policy: something new, and the interval passed or enough log was written.
      const absl::Time now = absl::Now();
      if (wal_->written_seq() <= last_seq_) continue;
      const bool by_time =
          policy_.interval > absl::ZeroDuration() && now - last_attempt_ >= policy_.interval;
      const bool by_size =
          policy_.log_bytes > 0 && wal_->bytes_appended() - bytes_at_last_ >= policy_.log_bytes;
      if (!by_time && !by_size) continue;
      if (last_failed_ && now - last_attempt_ < kRetryAfterFailure) continue;
    }
    const uint64_t bytes_before = wal_->bytes_appended();
    absl::StatusOr<SnapshotResult> r = Take();
    last_attempt_ = absl::Now();
    last_failed_ = !r.ok();
    if (r.ok()) {
      last_seq_ = r->seq;
      bytes_at_last_ = bytes_before;
    } else {
      std::fprintf(stderr, "pageownerd: snapshot failed: %s\n",
                   std::string(r.status().message()).c_str());
    }
    for (Done& d : requests) d(r);
  }
}

absl::StatusOr<SnapshotResult> Snapshotter::Take() {
  const absl::Time t0 = absl::Now();
  const auto failed = [this](absl::Status s) {
    metrics_.failures.fetch_add(1, std::memory_order_relaxed);
    return s;
  };
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return failed(absl::UnavailableError(absl::StrCat("snapshot: pipe: ", std::strerror(errno))));
  }
  // Counted here, in the parent: a count kept in the child would start afresh each time.
  const bool crash_during = failpoints_internal::armed.load(std::memory_order_relaxed) != 0 &&
                            failpoints_internal::Hit(Failpoint::kSnapshotDuring);
  uint64_t seq = 0;
  std::string temp;
  pid_t pid = -1;
  int fork_errno = 0;
  absl::Duration stall;
  run_on_writer_([&] {
    const absl::Time s0 = absl::Now();
    seq = wal_->next_seq() - 1;
    temp = SnapshotTempPath(dir_, seq);
    const WalNames& names = wal_->names();
    // No reader lock: on this thread nothing else changes the machine (see ReadAsWriter).
    machine_->ReadAsWriter([&](const Machine& m) {
      m.WithSnapshotLocks([&] {
        pid = fork();
        if (pid == 0) ChildWrite(pipe_fds[1], temp, m, names, geometry_, seq, crash_during);
        fork_errno = errno;
      });
    });
    stall = absl::Now() - s0;
  });
  close(pipe_fds[1]);
  if (pid < 0) {
    close(pipe_fds[0]);
    return failed(
        absl::UnavailableError(absl::StrCat("snapshot: fork: ", std::strerror(fork_errno))));
  }
  {
    absl::MutexLock lock(&mu_);
    child_ = pid;
    if (stopping_) kill(pid, SIGKILL);
  }
  std::string child_error;
  char buf[512];
  for (ssize_t n; (n = read(pipe_fds[0], buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    child_error.append(buf, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  {
    absl::MutexLock lock(&mu_);
    child_ = 0;
  }
  AtomicMax(metrics_.max_stall_ns, static_cast<uint64_t>(absl::ToInt64Nanoseconds(stall)));
  metrics_.last_stall_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(stall));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    unlink(temp.c_str());
    const std::string how = WIFSIGNALED(status)
                                ? absl::StrCat("was killed by signal ", WTERMSIG(status))
                                : absl::StrCat("exited with status ", WEXITSTATUS(status));
    return failed(absl::UnavailableError(absl::StrCat(
        "snapshot: the writer ", how, child_error.empty() ? "" : absl::StrCat(": ", child_error))));
  }
  // The log first: a published snapshot never holds a record the log might still lose.
  wal_->SyncAll();
  SnapshotResult result;
  result.seq = seq;
  result.path = SnapshotPath(dir_, seq);
  result.stall = stall;
  struct stat st;
  if (stat(temp.c_str(), &st) == 0) result.bytes = static_cast<uint64_t>(st.st_size);
  if (absl::Status s = PublishSnapshot(temp, result.path, dir_); !s.ok()) return failed(s);
  if (absl::Status s = Retain(&result); !s.ok()) return failed(s);
  result.duration = absl::Now() - t0;
  metrics_.last_unix_seconds = absl::ToUnixSeconds(absl::Now());
  metrics_.last_duration_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(result.duration));
  metrics_.last_bytes = result.bytes;
  metrics_.count.fetch_add(1, std::memory_order_relaxed);
  return result;
}

absl::Status Snapshotter::Retain(SnapshotResult* result) {
  PO_ASSIGN_OR_RETURN(const auto snapshots, ListSnapshots(dir_));
  if (snapshots.size() < static_cast<size_t>(kSnapshotsKept)) return absl::OkStatus();
  const size_t oldest_kept = snapshots.size() - kSnapshotsKept;
  for (size_t i = 0; i < oldest_kept; ++i) {
    if (unlink(snapshots[i].second.c_str()) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot remove ", snapshots[i].second, ": ", std::strerror(errno)));
    }
    ++result->snapshots_deleted;
  }
  MaybeCrash(Failpoint::kBeforeSegmentDelete);
  PO_ASSIGN_OR_RETURN(result->segments_deleted,
                      wal_->DeleteSegmentsThrough(snapshots[oldest_kept].first));
  return absl::OkStatus();
}

}  // namespace pageowner::server
