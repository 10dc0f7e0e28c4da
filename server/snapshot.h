// Snapshot files in --data_dir: the whole Machine (core's Machine::SaveState) plus the log's
// WalNames, as of log record `seq`, so that recovery loads the newest valid snapshot and replays
// only the records after it.
//
// File DIR/snap-<seq, 20 digits>.snap (little-endian):
//   "PGOWNSNP", u32 format version (kSnapshotVersion), u32 length L of the header fields, the
//   header fields (u64 seq, u64 pages, u32 stack depth, u32 depot pool limit, u8 tracking at
//   start: the log's geometry; i64 unix ns written; u16 + the writer's BuildVersion; u32
//   0x01020304 to catch another byte order), u32 CRC32C of everything before it;
//   then the body in chunks: u32 length (1..kSnapshotChunkBytes), u32 CRC32C of the chunk, the
//   chunk; the chunks' bytes are Machine::SaveState's then the names (tag NAME, u64 count, the
//   addresses ascending, tag END!); a last chunk of length 0 whose CRC field is the CRC32C of the
//   u64 body length; then the end of the file.
// A reader says which check failed and where: never a crash on a truncated, bit-flipped or
// foreign file.
//
// Written atomically: DIR/snap-<seq>.snap.tmp, fsync, rename, fsync of DIR (WriteSnapshotTemp
// then PublishSnapshot; a forked child may do the first).
#ifndef PAGEOWNER_SERVER_SNAPSHOT_H_
#define PAGEOWNER_SERVER_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/machine.h"
#include "server/wal.h"
#include "server/wal_record.h"

namespace pageowner::server {

inline constexpr uint32_t kSnapshotVersion = 1;
inline constexpr uint32_t kSnapshotChunkBytes = 1 << 20;

// The path of the snapshot covering records up to `seq`, and its temporary name.
std::string SnapshotPath(const std::string& dir, uint64_t seq);
std::string SnapshotTempPath(const std::string& dir, uint64_t seq);
// The snapshot files in `dir` (not temporary ones), oldest first, with their seq.
absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ListSnapshots(const std::string& dir);

// Writes the snapshot of `machine` and `names` as of record `seq` to `path` and fsyncs it.
// kUnavailable naming the file on an I/O error (the partial file is removed).
// REQUIRES: as Machine::SaveState (nothing changes the machine meanwhile).
absl::Status WriteSnapshotTemp(const std::string& path, const Machine& machine,
                               const WalNames& names, const WalGeometry& geometry, uint64_t seq);
// Renames `temp` to `final` and fsyncs the directory. Failpoints snapshot_before_rename and
// snapshot_after_rename (the rename done, the directory not yet synced).
absl::Status PublishSnapshot(const std::string& temp, const std::string& final,
                             const std::string& dir);

// A snapshot read back.
struct LoadedSnapshot {
  std::unique_ptr<Machine> machine;
  WalNames names;
  uint64_t seq = 0;
  uint64_t bytes = 0;
};
// Reads and checks the snapshot at `path` for a machine of `options` (geometry `geometry`).
// Errors name the file and say which check failed: kDataLoss (truncated, CRC mismatch, not a
// snapshot, does not decode), kFailedPrecondition (another format version or geometry),
// kUnavailable (cannot read).
absl::StatusOr<LoadedSnapshot> ReadSnapshot(const std::string& path, const MachineOptions& options,
                                            const WalGeometry& geometry);

// A data directory recovered: the machine (the newest usable snapshot's, or a fresh one) with
// the log replayed after it, and the log open for appending.
struct Recovered {
  std::unique_ptr<Machine> machine;
  std::unique_ptr<Wal> wal;
};
// Removes leftover temporary snapshots, loads the newest snapshot that passes its checks and
// opens the log after it (Wal::Open). A snapshot that fails its checks (kDataLoss, or it cannot
// be read) is renamed to <name>.corrupt and the next older one tried, then none; each fallback
// is a note in *report. Refuses (kDataLoss naming each bad file and what to do) when no usable
// choice is left that the log reaches back to: acknowledged records are never dropped silently.
// A snapshot of another version or geometry is refused at once (kFailedPrecondition).
absl::StatusOr<Recovered> RecoverDataDir(const WalOptions& options,
                                         const MachineOptions& machine_options,
                                         WalRecoveryReport* report);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_SNAPSHOT_H_
