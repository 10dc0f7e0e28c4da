#include "client/kernel_record.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "wire/status.h"

namespace pageowner::client {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<PerfRecorder*> g_recorder{nullptr};

constexpr size_t kErrorsKept = 5;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t Delta(uint64_t after, uint64_t before) { return after >= before ? after - before : 0; }

}  // namespace

absl::Status CheckDaemonSize(uint64_t total_pages, const std::vector<PfnRange>& ram) {
  const Pfn highest = HighestPfn(ram);
  if (total_pages > highest.raw()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the daemon's machine has ", total_pages,
                   " pages, this machine's RAM reaches pfn 0x", absl::Hex(highest.raw()),
                   ": start pageownerd with --memory=", MemoryFlagValue(DaemonMemoryBytes(ram))));
}

// ---- KernelEventSender ----

StackId KernelEventSender::Stack(const std::vector<uint64_t>& ips) {
  key_.assign(reinterpret_cast<const char*>(ips.data()), ips.size() * sizeof(uint64_t));
  if (auto it = chains_.find(key_); it != chains_.end()) return it->second;
  frames_.clear();
  if (ips.empty()) {
    ++no_chain_;
    frames_.push_back(Frame{0, "[no call chain]"});
  }
  for (uint64_t ip : ips) {
    auto [it, inserted] = symbols_.try_emplace(ip);
    if (inserted) {
      it->second =
          kallsyms_ != nullptr ? kallsyms_->Symbolize(ip) : absl::StrCat("0x", absl::Hex(ip));
    }
    frames_.push_back(Frame{ip, it->second});
  }
  const StackId id = session_->InternStack(frames_);
  chains_.emplace(key_, id);
  return id;
}

void KernelEventSender::SendOwnerless(const AllocatedBlock& b, uint64_t ts_ns, bool reserved) {
  AllocSpec spec;  // no stack, no task, mask 0
  spec.order = b.order;
  spec.ts_ns = ts_ns;
  spec.pfn = b.head;
  spec.trusted = true;
  spec.early = !reserved;  // the early handle's
  spec.reserved = reserved;
  session_->Alloc(spec);
}

uint64_t KernelEventSender::Attach(const KpageScan& scan, uint64_t ts_ns) {
  for (const AllocatedBlock& b : scan.in_use) SendOwnerless(b, ts_ns, /*reserved=*/false);
  return scan.in_use.size();
}

uint64_t KernelEventSender::Reserve(const std::vector<PfnRange>& ranges, uint64_t ts_ns) {
  uint64_t blocks = 0;
  for (const PfnRange& r : ranges) {
    for (const AllocatedBlock& b : AlignedBlocks(r.first, r.count.raw())) {
      SendOwnerless(b, ts_ns, /*reserved=*/true);
      ++blocks;
    }
  }
  return blocks;
}

void KernelEventSender::Send(const KernelPageEvent& e) {
  const StackId stack = Stack(e.ips);
  // page_owner keeps current->pid (the thread) and current->tgid.
  const TaskId task = session_->InternTask(Task{e.tid, e.pid, e.comm});
  if (e.kind == KernelPageEventKind::kAlloc) {
    session_->Alloc({.order = Order(e.order),
                     .gfp_mask = static_cast<uint32_t>(e.gfp_flags),
                     .stack = stack,
                     .task = task,
                     .ts_ns = e.time_ns,
                     .pfn = Pfn(e.pfn),
                     .trusted = true,
                     .early = false});
    return;
  }
  session_->Free({.pfn = Pfn(e.pfn),
                  .order = Order(e.kind == KernelPageEventKind::kFreeBatched ? 0 : e.order),
                  .stack = stack,
                  .task = task,
                  .ts_ns = e.time_ns,
                  .trusted = true});
}

// ---- TimeOrderer ----

void TimeOrderer::Push(KernelPageEvent e) {
  if (e.time_ns < released_) ++late_;
  KernelPageEvent* slot;
  if (spare_.empty()) {
    store_.push_back(std::make_unique<KernelPageEvent>(std::move(e)));
    slot = store_.back().get();
  } else {
    slot = spare_.back();
    spare_.pop_back();
    *slot = std::move(e);
  }
  newest_ = std::max(newest_, slot->time_ns);
  heap_.push(Item{slot->time_ns, seq_++, slot});
}

void TimeOrderer::PopTop(std::vector<KernelPageEvent>* out) {
  KernelPageEvent* e = heap_.top().e;
  heap_.pop();
  released_ = std::max(released_, e->time_ns);
  out->push_back(std::move(*e));
  spare_.push_back(e);
}

void TimeOrderer::PopReady(std::vector<KernelPageEvent>* out) {
  while (!heap_.empty() && heap_.top().time_ns + window_ns_ <= newest_) PopTop(out);
}

void TimeOrderer::Drain(std::vector<KernelPageEvent>* out) {
  while (!heap_.empty()) PopTop(out);
}

// ---- RecordKernel ----

void RequestKernelRecordStop() {
  g_stop.store(true);
  if (PerfRecorder* r = g_recorder.load()) r->Stop();
}

absl::StatusOr<KernelRecordSummary> RecordKernel(Client& client, const KernelRecordOptions& options,
                                                 std::ostream& err) {
  g_stop.store(false);
  KernelRecordSummary summary;
  absl::StatusOr<std::vector<PfnRange>> ram = ReadIomemSystemRam(options.iomem_path);
  if (!ram.ok()) return ram.status();
  absl::StatusOr<v1::Stats> before = client.GetStats();
  if (!before.ok()) return before.status();
  if (absl::Status s = CheckDaemonSize(before->total_pages(), *ram); !s.ok()) return s;
  absl::StatusOr<Kallsyms> kallsyms = Kallsyms::ReadFile(options.kallsyms_path);
  if (!kallsyms.ok()) return kallsyms.status();
  PerfRecorderOptions perf = options.perf;
  perf.kallsyms = &*kallsyms;
  absl::StatusOr<std::unique_ptr<PerfRecorder>> recorder = PerfRecorder::Open(perf);
  if (!recorder.ok()) return recorder.status();

  absl::Mutex results_mu;
  SessionOptions session_options;
  session_options.batch_events = options.batch;
  session_options.on_results = [&](absl::Span<const IngestResult> results) {
    absl::MutexLock lock(&results_mu);
    for (const IngestResult& r : results) {
      ++summary.codes[r.code];
      if (!r.ok() && summary.first_errors.size() < kErrorsKept) {
        summary.first_errors.push_back(absl::StrCat(wire::CodeName(r.code), ": ", r.message));
      }
    }
  };
  std::unique_ptr<Session> session = client.StartSession(std::move(session_options));
  KernelEventSender sender(session.get(), &*kallsyms);
  // Holes are never handed out (the daemon mirrors the machine's shape): what /proc/iomem does
  // not call System RAM, up to the daemon's last page.
  const std::vector<PfnRange> gaps = RamGaps(*ram, PageCount(before->total_pages()));
  summary.reserved_blocks = sender.Reserve(gaps, MonotonicNs());
  for (const PfnRange& g : gaps) summary.gap_pages += g.count.raw();

  // The reader: drains the rings into `incoming` and never waits for the daemon.
  absl::Mutex mu;
  std::vector<KernelPageEvent> incoming;
  bool reader_done = false;
  absl::Status run_status;
  const double cpu_start = CpuSeconds();
  const absl::Time start = absl::Now();
  g_recorder.store(recorder->get());
  if (g_stop.load()) (*recorder)->Stop();
  std::thread reader([&] {
    absl::Status s = (*recorder)->Run([&](const KernelPageEvent& e) {
      absl::MutexLock lock(&mu);
      incoming.push_back(e);
    });
    absl::MutexLock lock(&mu);
    run_status = std::move(s);
    reader_done = true;
  });
  const auto stop_reader = [&] {
    RequestKernelRecordStop();
    reader.join();
    g_recorder.store(nullptr);
  };

  if (options.attach) {
    absl::StatusOr<KpageScan> scan =
        ReadKpages(*ram, {}, options.kpageflags_path, options.kpagecount_path);
    if (!scan.ok()) {
      stop_reader();
      return scan.status();
    }
    summary.reserved_blocks += sender.Reserve(scan->not_ram, MonotonicNs());
    summary.not_ram_pages = scan->not_ram_pages;
    summary.attach_blocks = sender.Attach(*scan, MonotonicNs());
    summary.attach_pages = scan->in_use_pages;
    err << "record: attached " << summary.attach_blocks << " blocks in use (" << scan->in_use_pages
        << " pages; " << scan->free_pages << " free, " << scan->flagless_free_pages
        << " never given to the allocator, " << scan->flagless_in_use_pages
        << " flagless taken as in use)\n";
  }

  // The rates count from here: attach's scan and blocks are a one-off.
  const double cpu_stream = CpuSeconds();
  const absl::Time stream = absl::Now();
  summary.attach_seconds = absl::ToDoubleSeconds(stream - start);
  summary.attach_cpu_seconds = cpu_stream - cpu_start;
  TimeOrderer orderer(static_cast<uint64_t>(absl::ToInt64Nanoseconds(options.reorder_window)));
  const absl::Time deadline = options.duration == absl::InfiniteDuration()
                                  ? absl::InfiniteFuture()
                                  : start + options.duration;
  std::vector<KernelPageEvent> got, ready;
  absl::Time next_progress = start + absl::Seconds(5);
  for (;;) {
    bool done;
    {
      absl::MutexLock lock(&mu);
      got.swap(incoming);
      done = reader_done;
    }
    summary.read += got.size();
    for (KernelPageEvent& e : got) orderer.Push(std::move(e));
    got.clear();
    ready.clear();
    if (done) {
      orderer.Drain(&ready);
    } else {
      orderer.PopReady(&ready);
    }
    for (const KernelPageEvent& e : ready) sender.Send(e);
    summary.sent += ready.size();
    if (done) break;
    const absl::Time now = absl::Now();
    if (now >= deadline && !g_stop.load()) RequestKernelRecordStop();
    if (now >= next_progress) {
      next_progress = now + absl::Seconds(5);
      err << "record: " << summary.read << " events read, " << summary.sent << " sent\n";
    }
    if (ready.empty()) {
      session->Flush();
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  reader.join();
  g_recorder.store(nullptr);
  const absl::Status finished = session->Finish();
  summary.seconds = absl::ToDoubleSeconds(absl::Now() - stream);
  summary.cpu_seconds = CpuSeconds() - cpu_stream;
  summary.perf = (*recorder)->stats();
  summary.late = orderer.late();
  summary.no_chain = sender.no_chain();
  summary.symbols = sender.symbolized_ips();
  summary.chains = sender.chains();
  if (!run_status.ok()) return run_status;
  if (!finished.ok()) return finished;
  absl::StatusOr<v1::Stats> after = client.GetStats();
  if (!after.ok()) return after.status();
  summary.implied_frees = Delta(after->implied_frees(), before->implied_frees());
  summary.implied_freed_pages = Delta(after->implied_freed_pages(), before->implied_freed_pages());
  summary.repaired_allocs = Delta(after->repaired_allocs(), before->repaired_allocs());
  summary.repaired_frees = Delta(after->repaired_frees(), before->repaired_frees());
  summary.ignored_frees = Delta(after->ignored_frees(), before->ignored_frees());
  summary.split_blocks = Delta(after->split_blocks(), before->split_blocks());
  return summary;
}

}  // namespace pageowner::client
