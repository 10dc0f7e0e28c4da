// Failpoints: named places in the durability paths where a test can make pageownerd crash, to
// check that a restart recovers whatever the crash left on disk. Switched on by the environment
// variable PAGEOWNER_FAILPOINTS=name[@N][,name[@N]...] in any build: the process _exits (status
// 86) the Nth time (default the first) it passes the named point. Unset, a check is one relaxed
// load of a word that is zero.
//
// Names: wal_before_write, wal_partial_write (half of the records written, then exit),
// wal_after_write (written, not yet fsynced), wal_after_fsync (fsynced, not yet answered),
// wal_segment_roll (a new segment created, its header not yet written), snapshot_during (the
// snapshot's forked writer leaves half its temporary file and kills the daemon),
// snapshot_before_rename (the temporary file written and fsynced), snapshot_after_rename (the
// directory not yet synced), before_segment_delete (a snapshot published, the old snapshots
// deleted, the log it covers not yet). wal_write_enospc@N is not a crash: the next N log writes
// fail with ENOSPC, as on a full disk.
#ifndef PAGEOWNER_SERVER_FAILPOINTS_H_
#define PAGEOWNER_SERVER_FAILPOINTS_H_

#include <atomic>
#include <cstdint>

namespace pageowner::server {

enum class Failpoint : int {
  kWalBeforeWrite = 0,
  kWalPartialWrite,
  kWalAfterWrite,
  kWalAfterFsync,
  kWalSegmentRoll,
  kSnapshotDuring,
  kSnapshotBeforeRename,
  kSnapshotAfterRename,
  kBeforeSegmentDelete,
  kWalWriteEnospc,  // not a crash: see FailpointFailsWrite
  kCount,
};

// The exit status of a failpoint crash.
inline constexpr int kFailpointExitCode = 86;

namespace failpoints_internal {
extern std::atomic<uint32_t> armed;  // bit i: Failpoint i is armed
bool Hit(Failpoint f);               // counts the pass; true when it is the one that fires
[[noreturn]] void Crash(Failpoint f);
}  // namespace failpoints_internal

// Reads PAGEOWNER_FAILPOINTS (once; later calls do nothing). Unknown names are reported on
// stderr and ignored.
void InitFailpoints();

// Crashes here when `f` is armed and its count is reached.
inline void MaybeCrash(Failpoint f) {
  if (failpoints_internal::armed.load(std::memory_order_relaxed) == 0) [[likely]]
    return;
  if (failpoints_internal::Hit(f)) failpoints_internal::Crash(f);
}

// True when wal_write_enospc is armed and has writes left to fail (each call uses one).
bool FailpointFailsWrite();

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_FAILPOINTS_H_
