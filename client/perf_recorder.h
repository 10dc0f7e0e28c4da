// The live-kernel side of `pageowner record --kernel`: samples the kmem:mm_page_alloc,
// kmem:mm_page_free and (where the kernel has it) kmem:mm_page_free_batched tracepoints on every
// online cpu with the raw perf_event_open syscall, reads the per-cpu mmap rings, and turns each
// sample into a KernelPageEvent: the tracepoint's fields (read by name through the tracefs format
// file, never at fixed offsets), the task, the cpu, the time and the kernel call chain.
//
// No gRPC here: the caller decides what to do with the events (the CLI streams them to the
// daemon). Linux only.
//
// Differences from page_owner's own record, which the caller should document to users:
//  - The call chain starts inside the allocator (the function holding the tracepoint, e.g.
//    __alloc_frozen_pages_noprof), where page_owner's starts at post_alloc_hook's caller chain; no
//    frame is invented to make them look alike.
//  - time_ns is perf's clock (local_clock), which is also page_owner's ts clock.
//  - A failed allocation (pfn -1 in the payload) is counted, not reported.
#ifndef PAGEOWNER_CLIENT_PERF_RECORDER_H_
#define PAGEOWNER_CLIENT_PERF_RECORDER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/kallsyms.h"
#include "core/tracepoint_format.h"

namespace pageowner::client {

enum class KernelPageEventKind { kAlloc, kFree, kFreeBatched };

// One decoded tracepoint sample.
struct KernelPageEvent {
  KernelPageEventKind kind = KernelPageEventKind::kAlloc;
  uint64_t pfn = 0;
  uint32_t order = 0;       // 0 for kFreeBatched
  uint64_t gfp_flags = 0;   // kAlloc only
  int32_t migratetype = 0;  // kAlloc only
  int32_t pid = 0;          // the thread group id (perf's pid)
  int32_t tid = 0;          // the thread id
  uint32_t cpu = 0;
  uint64_t time_ns = 0;       // perf clock (local_clock), as page_owner's ts
  std::string comm;           // the thread's name; "" when it could not be learnt
  std::vector<uint64_t> ips;  // kernel return addresses, innermost first, markers removed
};

struct PerfRecorderStats {
  uint64_t records = 0;                            // every record read from the rings
  uint64_t samples = 0;                            // PERF_RECORD_SAMPLE records
  uint64_t alloc = 0, free = 0, free_batched = 0;  // events delivered
  uint64_t failed_allocs = 0;  // mm_page_alloc with pfn -1 (allocation failed): not delivered
  uint64_t lost = 0;           // samples the kernel dropped (sum of PERF_RECORD_LOST counts)
  uint64_t lost_records = 0;   // PERF_RECORD_LOST records
  uint64_t comm_records = 0;   // PERF_RECORD_COMM records
  uint64_t fork_records = 0, exit_records = 0;  // PERF_RECORD_FORK / EXIT (attr.comm sends them)
  uint64_t comm_from_proc = 0;                  // threads first named from /proc
  uint64_t comm_unknown = 0;    // threads neither a COMM record nor /proc could name
  uint64_t malformed = 0;       // records too short for their declared content, or unknown ids
  uint64_t dropped_frames = 0;  // perf-internal frames removed from the top of chains
  // PERF_RECORD_THROTTLE / UNTHROTTLE: the kernel stopped sampling an event for a while because
  // it fired more often than kernel.perf_event_max_sample_rate allows; the events in between are
  // missed and not counted in `lost`.
  uint64_t throttled = 0, unthrottled = 0;
  uint64_t other_records = 0;  // record types this decoder ignores
};

// The sample_type every event is opened with; the record layout below depends on it.
// PERF_SAMPLE_IDENTIFIER | TID | TIME | CPU | CALLCHAIN | RAW.
uint64_t RecorderSampleType();

// Decodes perf records (as the rings hold them, header included) of events opened with
// RecorderSampleType() and sample_id_all. The tracepoint is recognised by the payload's
// common_type, which is its format id.
//
// Thread-safety: not thread-safe; one reader thread.
class PerfRecordDecoder {
 public:
  // REQUIRES for Create: `alloc` has pfn, order, gfp_flags, migratetype; `free` has pfn, order;
  // `free_batched` (optional) has pfn.
  // Errors: kUnimplemented when a format has `page` (a struct page pointer, older kernels)
  // instead of `pfn`: turning it into a pfn needs vmemmap_base and sizeof(struct page), which
  // userspace cannot read reliably; kFailedPrecondition naming any other missing field.
  static absl::StatusOr<PerfRecordDecoder> Create(TracepointFormat alloc, TracepointFormat free,
                                                  std::optional<TracepointFormat> free_batched);

  // When set, leading frames of perf's or tracing's own (perf_*, __perf_*, perf_trace_*,
  // trace_event_raw_event_*, __traceiter_*, __bpf_trace_*) are removed from chains.
  void set_kallsyms(const Kallsyms* k) { kallsyms_ = k; }
  // Where /proc/PID/task/TID/comm is read for threads seen before their COMM record.
  void set_proc_root(std::string root) { proc_root_ = std::move(root); }

  // Decodes one record; calls `on_event` for a page event.
  void Decode(absl::Span<const uint8_t> record,
              absl::FunctionRef<void(const KernelPageEvent&)> on_event);

  const PerfRecorderStats& stats() const { return stats_; }

 private:
  PerfRecordDecoder() = default;
  void DecodeSample(absl::Span<const uint8_t> body,
                    absl::FunctionRef<void(const KernelPageEvent&)> on_event);
  const std::string& Comm(int32_t pid, int32_t tid, uint32_t cpu);

  TracepointFormat alloc_, free_;
  std::optional<TracepointFormat> free_batched_;
  const Kallsyms* kallsyms_ = nullptr;
  std::string proc_root_ = "/proc";
  absl::flat_hash_map<int32_t, std::string> comms_;  // by tid
  PerfRecorderStats stats_;
  KernelPageEvent event_;  // reused: its vectors keep their capacity
};

// Copies the records between `tail` and `head` out of a ring's data area (`data`, `size` bytes,
// a power of two; positions are free-running byte counters, taken modulo `size`), handing each
// whole record (header included) to `on_record`; a record that wraps past the end is reassembled
// in `scratch`. Returns the new tail: `head`, or the start of a record whose header claims fewer
// than 8 bytes or more than head - position (then the rest is skipped by returning `head` and
// counting `*malformed`).
uint64_t DrainRing(const uint8_t* data, uint64_t size, uint64_t tail, uint64_t head,
                   std::vector<uint8_t>& scratch, uint64_t* malformed,
                   absl::FunctionRef<void(absl::Span<const uint8_t>)> on_record);

// The cpus of a sysfs cpu list ("0-3,6,8-9\n").
// Errors: kInvalidArgument for malformed text.
absl::StatusOr<std::vector<int>> ParseCpuList(std::string_view text);

struct PerfRecorderOptions {
  std::string tracefs_root = "/sys/kernel/tracing";
  std::string cpus_online = "/sys/devices/system/cpu/online";
  // Data pages of each cpu's ring (a power of two): 512 pages is 2 MiB a cpu.
  size_t ring_pages = 512;
  // Wake the reader when a ring holds this many bytes (0: a quarter of the ring).
  uint32_t wakeup_bytes = 0;
  // The longest poll(2) wait, so that Stop is seen even when no ring fills.
  int poll_timeout_ms = 100;
  bool free_batched = true;            // sample mm_page_free_batched when the kernel has it
  const Kallsyms* kallsyms = nullptr;  // see PerfRecordDecoder::set_kallsyms
};

// One perf event per online cpu and tracepoint, one ring per cpu (the cpu's other events are
// redirected into it with PERF_EVENT_IOC_SET_OUTPUT).
//
// Thread-safety: Run on one thread; Stop from any thread or from a signal handler
// (async-signal-safe: an atomic store and an eventfd write). stats() after Run returns.
class PerfRecorder {
 public:
  // Reads the tracepoints' formats and opens (disabled) and maps every event.
  // Errors: kFailedPrecondition when tracefs is not mounted (the message has the mount command)
  // or a format lacks a needed field; kUnimplemented for `page`-based formats (see
  // PerfRecordDecoder::Create); kNotFound when the kernel lacks mm_page_alloc or mm_page_free;
  // kPermissionDenied when perf_event_open is refused, naming what is missing (CAP_PERFMON or
  // CAP_SYS_ADMIN, the kernel.perf_event_paranoid value, or for root a seccomp profile or LSM);
  // kInvalidArgument when ring_pages is not a power of two; kInternal for other failures.
  static absl::StatusOr<std::unique_ptr<PerfRecorder>> Open(const PerfRecorderOptions& options);

  ~PerfRecorder();
  PerfRecorder(const PerfRecorder&) = delete;
  PerfRecorder& operator=(const PerfRecorder&) = delete;

  // Enables the events and delivers decoded events until Stop, then disables them and drains
  // what the rings still hold. Errors: kInternal when poll or an ioctl fails.
  absl::Status Run(absl::FunctionRef<void(const KernelPageEvent&)> on_event);

  // Makes Run return soon. Async-signal-safe.
  void Stop();

  const PerfRecorderStats& stats() const { return decoder_.stats(); }
  int cpus() const { return static_cast<int>(rings_.size()); }

 private:
  struct Ring {
    int cpu = -1;
    int leader_fd = -1;
    std::vector<int> fds;  // every event of the cpu, leader first
    void* base = nullptr;
    size_t map_bytes = 0;
  };
  PerfRecorder(const PerfRecorderOptions& options, PerfRecordDecoder decoder);
  void DrainAll(absl::FunctionRef<void(const KernelPageEvent&)> on_event);

  PerfRecorderOptions options_;
  PerfRecordDecoder decoder_;
  std::vector<Ring> rings_;
  std::vector<uint8_t> scratch_;
  int stop_fd_ = -1;  // eventfd
  std::atomic<bool> stop_{false};
};

// Whether tracefs is mounted at `root` (its events/ folder exists).
bool TracefsMounted(const std::string& root = "/sys/kernel/tracing");

// `mount -t tracefs nodev ROOT`, for --mount-tracefs only; never called otherwise.
// Errors: kPermissionDenied without CAP_SYS_ADMIN; kAlreadyExists when it is mounted already;
// kNotFound when ROOT does not exist; kInternal otherwise.
absl::Status MountTracefs(const std::string& root = "/sys/kernel/tracing");

// Unmounts what MountTracefs mounted. Errors: kPermissionDenied, kFailedPrecondition when
// nothing is mounted there (EINVAL), kInternal otherwise (EBUSY: in use).
absl::Status UnmountTracefs(const std::string& root = "/sys/kernel/tracing");

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_PERF_RECORDER_H_
