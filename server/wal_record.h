// The write-ahead log's records: what one accepted Ingest batch or one SetTracking call did to
// the machine, self-contained (frames, comm, printed extras inline; no stream-local ids), so
// that replaying the records in order into a fresh Machine rebuilds exactly the same state (the
// Machine is deterministic: the allocator's choices and the depot's pools follow from the
// events).
//
// Framing (little-endian): u32 payload length, u32 CRC32C of the payload, the payload. Payload:
//   u8 type (1 batch, 2 tracking), u64 sequence number (1, 2, ... across all segments), then
//   batch:    u32 names, {u64 ip, u16 len, bytes} (names of frames not named by an earlier
//             record), u32 stacks, {u16 frames, u64 ip...}, u32 events, each:
//             u8 kind (0 alloc, 1 free, 2 migrate, 3 import), u32 flags (bit 0 trusted,
//             bit 1 early), then the kind's fields (see wal_record.cc); a stack is an index into
//             the record's stacks, 0xffffffff for none.
//   tracking: u8 on, u64 ts_ns (the daemon's own clock when it stamped it).
#ifndef PAGEOWNER_SERVER_WAL_RECORD_H_
#define PAGEOWNER_SERVER_WAL_RECORD_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/machine.h"
#include "core/symbols.h"

namespace pageowner::server {

inline constexpr size_t kWalFrameBytes = 8;  // length + CRC
inline constexpr uint8_t kWalBatchRecord = 1;
inline constexpr uint8_t kWalTrackingRecord = 2;
// A record longer than this is garbage (a batch of 65,536 events with 64-frame stacks fits).
inline constexpr uint32_t kWalMaxRecordBytes = 256u << 20;

// The frames a record names, so that names travel once a log: an address is added once its
// record is written.
// Thread-safety: the log writer's thread only.
class WalNames {
 public:
  bool Contains(uint64_t ip) const { return named_.contains(ip); }
  void Add(uint64_t ip) { named_.insert(ip); }
  size_t size() const { return named_.size(); }
  // The addresses, ascending (what a snapshot stores).
  std::vector<uint64_t> Sorted() const {
    std::vector<uint64_t> out(named_.begin(), named_.end());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  absl::flat_hash_set<uint64_t> named_;
};

// Appends the framed record of a batch: the events whose `prechecked` status is OK (the others
// never reach the machine), with the names `symbols` has for their frames that `names` has not
// seen; those addresses go to *new_names (add them to `names` once the record is written).
// `logged[i]` (when not empty) says that the log already has every name event i's frames have,
// so they are not looked up: the caller's knowledge (a stack definition written before).
// REQUIRES: prechecked.size() == events.size(); logged empty or of that size too.
void AppendBatchRecord(uint64_t seq, absl::Span<const Event> events,
                       absl::Span<const absl::Status> prechecked, const SymbolTable& symbols,
                       const WalNames& names, const std::vector<bool>& logged,
                       std::vector<uint64_t>* new_names, std::string* out);
// Appends the framed record of SetTracking(on, ts_ns).
void AppendTrackingRecord(uint64_t seq, bool on, uint64_t ts_ns, std::string* out);

// Writes the frame (length and CRC) of the payload that follows it at `frame_offset` in *out.
void SealRecord(size_t frame_offset, std::string* out);

// A record's payload, decoded far enough to know its kind and place.
struct WalRecordHeader {
  uint8_t type = 0;
  uint64_t seq = 0;
};
// kDataLoss when the payload is too short or of an unknown type.
absl::StatusOr<WalRecordHeader> PeekRecord(std::string_view payload);

// A record decoded; it owns the frames, comms and printed extras its events point into.
struct WalRecord {
  uint8_t type = 0;
  uint64_t seq = 0;
  bool tracking_on = false;  // a tracking record's
  uint64_t tracking_ts_ns = 0;
  std::vector<std::pair<uint64_t, std::string>> names;  // frames named first by this record
  std::vector<Event> events;
  std::vector<uint32_t> flags;  // one a event
  std::vector<std::vector<uint64_t>> stacks;
  std::deque<std::string> strings;
  std::deque<PrintedExtras> extras;
};
// Decodes `payload` (CRC already checked). kDataLoss when it does not decode.
absl::Status DecodeRecord(std::string_view payload, WalRecord* out);

// Applies the record `payload` (CRC already checked) to `machine`: names its frames, then
// applies its events or its SetTracking in order. Adds the named addresses to *names when not
// null. Returns kDataLoss when the payload does not decode (never crashes on garbage); events
// the machine refuses are not errors (they were refused the first time too).
absl::Status ReplayRecord(std::string_view payload, Machine* machine, WalNames* names);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_WAL_RECORD_H_
