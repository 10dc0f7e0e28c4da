// `pageowner record --kernel` without the CLI: mirrors a live kernel's page allocations into a
// daemon. The pieces, each testable alone:
//  - CheckDaemonSize: the daemon must hold every pfn of the real memory map;
//  - KernelEventSender: attach (the in-use blocks of /proc/kpageflags as trusted early
//    allocations, the kernel's init_early_allocated_pages for a running machine) and the
//    translation of each tracepoint sample into a trusted alloc or free on a Session, with
//    its call chain symbolized by kallsyms (%pS, cached per ip and per chain);
//  - TimeOrderer: the rings are per cpu, so samples arrive in cpu order, not time order; an
//    allocation on one cpu of a page another cpu freed just before must be applied after that
//    free. It releases samples in time order once they are older than a window;
//  - RecordKernel: the whole run (open, attach, stream, stop, summary).
//
// The recorder's own allocations (and the daemon's, on the same host) are real page
// allocations: they are recorded like any other task's, under their own pid and comm.
#ifndef PAGEOWNER_CLIENT_KERNEL_RECORD_H_
#define PAGEOWNER_CLIENT_KERNEL_RECORD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/perf_recorder.h"
#include "client/session.h"
#include "core/iomem.h"
#include "core/kallsyms.h"
#include "core/kpageflags.h"

namespace pageowner::client {

// OK when a daemon of `total_pages` pages holds every pfn of `ram`; else kFailedPrecondition:
// "the daemon has N pages (X), this machine's RAM reaches pfn 0x... : start pageownerd with
// --memory=VALUE". REQUIRES: !ram.empty().
absl::Status CheckDaemonSize(uint64_t total_pages, const std::vector<PfnRange>& ram);

// Turns kernel samples into Session events. Every event is EVENT_FLAG_TRUSTED; allocations and
// frees are placed at the sample's pfn. Task: pid = the thread (tid), tgid = perf's pid, as
// page_owner records current->pid and current->tgid.
//
// Thread-safety: not thread-safe; the Session's producer thread.
class KernelEventSender {
 public:
  // `kallsyms` may be null: frames are then bare addresses.
  KernelEventSender(Session* session, const Kallsyms* kallsyms)
      : session_(session), kallsyms_(kallsyms) {}

  // Sends every in-use block of `scan` as a trusted early allocation at its pfn (ts `ts_ns`).
  // Returns the blocks sent.
  uint64_t Attach(const KpageScan& scan, uint64_t ts_ns);

  // Sends `ranges` (pages that are not RAM) as trusted reserved allocations, each cut into
  // aligned blocks. Returns the blocks sent.
  uint64_t Reserve(const std::vector<PfnRange>& ranges, uint64_t ts_ns);

  // Sends one sample: kAlloc as an allocation, kFree and kFreeBatched (order 0) as frees. A
  // sample without a call chain gets the one frame "[no call chain]" (the daemon needs a frame
  // for an allocation); they are counted.
  void Send(const KernelPageEvent& e);

  uint64_t symbolized_ips() const { return symbols_.size(); }
  uint64_t chains() const { return chains_.size(); }
  uint64_t no_chain() const { return no_chain_; }

 private:
  StackId Stack(const std::vector<uint64_t>& ips);
  // A trusted allocation of `b` at its pfn with no owner: early (attach) or reserved.
  void SendOwnerless(const AllocatedBlock& b, uint64_t ts_ns, bool reserved);

  Session* const session_;
  const Kallsyms* const kallsyms_;
  absl::flat_hash_map<uint64_t, std::string> symbols_;  // %pS by ip
  absl::flat_hash_map<std::string, StackId> chains_;    // by the chain's raw bytes
  std::vector<Frame> frames_;                           // scratch
  std::string key_;                                     // scratch
  uint64_t no_chain_ = 0;
};

// Releases samples in time order. A sample is released once a sample at least `window` newer
// has been pushed (the reader drains every cpu's ring at least once each poll timeout, so an
// older sample can no longer arrive), or by Drain.
//
// Thread-safety: not thread-safe.
class TimeOrderer {
 public:
  explicit TimeOrderer(uint64_t window_ns) : window_ns_(window_ns) {}
  void Push(KernelPageEvent e);
  // Appends the released samples, oldest first, to *out.
  void PopReady(std::vector<KernelPageEvent>* out);
  // Appends every sample held, oldest first.
  void Drain(std::vector<KernelPageEvent>* out);
  size_t size() const { return heap_.size(); }
  // Samples pushed older than one already released: applied late, out of order.
  uint64_t late() const { return late_; }

 private:
  struct Item {
    uint64_t time_ns;
    uint64_t seq;
    KernelPageEvent* e;
  };
  struct Later {
    bool operator()(const Item& a, const Item& b) const {
      return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.seq > b.seq;
    }
  };
  void PopTop(std::vector<KernelPageEvent>* out);

  uint64_t window_ns_;
  uint64_t newest_ = 0;
  uint64_t released_ = 0;  // time of the last released sample
  uint64_t seq_ = 0;
  uint64_t late_ = 0;
  std::priority_queue<Item, std::vector<Item>, Later> heap_;
  std::vector<std::unique_ptr<KernelPageEvent>> store_;  // free slots reused
  std::vector<KernelPageEvent*> spare_;
};

struct KernelRecordOptions {
  absl::Duration duration = absl::InfiniteDuration();
  bool attach = true;
  size_t batch = 4096;
  // How late a sample may arrive behind a newer one of another cpu (see TimeOrderer).
  absl::Duration reorder_window = absl::Milliseconds(300);
  std::string iomem_path = "/proc/iomem";
  std::string kallsyms_path = "/proc/kallsyms";
  std::string kpageflags_path = "/proc/kpageflags";
  std::string kpagecount_path = "/proc/kpagecount";
  PerfRecorderOptions perf;  // its kallsyms is set by RecordKernel
};

struct KernelRecordSummary {
  uint64_t read = 0;  // page samples the recorder delivered
  uint64_t sent = 0;  // of them sent (every one)
  uint64_t attach_blocks = 0, attach_pages = 0;
  // Not RAM, sent as reserved blocks: the gaps of /proc/iomem's System RAM up to the daemon's
  // end, and (with attach) the KPF_NOPAGE/KPF_RESERVED pages inside RAM.
  uint64_t reserved_blocks = 0, gap_pages = 0, not_ram_pages = 0;
  std::map<absl::StatusCode, uint64_t> codes;  // results of every event, attach's included
  std::vector<std::string> first_errors;       // "CODE: message" of the first few failures
  PerfRecorderStats perf;
  uint64_t late = 0;  // samples applied out of time order (TimeOrderer::late)
  uint64_t no_chain = 0;
  uint64_t symbols = 0, chains = 0;
  // The daemon's trusted-event counters over the run (GetStats after minus before; another
  // client's trusted events in the meantime would count too).
  uint64_t implied_frees = 0, implied_freed_pages = 0, repaired_allocs = 0, repaired_frees = 0,
           ignored_frees = 0, split_blocks = 0;
  // Attach: from enabling the events to the last early block queued (the kpageflags scan).
  double attach_seconds = 0, attach_cpu_seconds = 0;
  // Streaming: from then to the end. cpu: this process's user + system time (the reader thread
  // included), so cpu_seconds / read is the recorder's cost a sample.
  double seconds = 0;
  double cpu_seconds = 0;
};

// Makes a running RecordKernel stop soon. Async-signal-safe (for SIGINT/SIGTERM handlers).
void RequestKernelRecordStop();

// The whole recording: GetStats and the size check, kallsyms, the pages that are not RAM (the
// iomem gaps, then kpageflags' with attach) as reserved blocks, the perf events (opened and
// enabled before attach scans /proc/kpageflags, so that nothing between the two is missed;
// what the scan and the samples both saw, the trusted rules reconcile), attach, then samples in
// time order until `duration` or RequestKernelRecordStop, then the rest. Progress and notes go
// to `err`. Errors: the daemon's (GetStats, the stream), CheckDaemonSize's, Kallsyms::ReadFile's,
// PerfRecorder::Open's (kPermissionDenied, kFailedPrecondition when tracefs is not mounted, ...),
// ReadKpages' and ReadIomemSystemRam's.
absl::StatusOr<KernelRecordSummary> RecordKernel(Client& client, const KernelRecordOptions& options,
                                                 std::ostream& err);

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_KERNEL_RECORD_H_
