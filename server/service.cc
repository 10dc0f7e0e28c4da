#include "server/service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/content_id.h"
#include "core/page_owner_sort.h"
#include "core/reports.h"
#include "core/status_macros.h"
#include "server/to_grpc_status.h"

namespace pageowner::server {
namespace {

// ---- Conversions between core values and messages ----

v1::MigrateReason ToProto(MigrateReason r) {
  return r == MigrateReason::kNone ? v1::MIGRATE_REASON_NONE
                                   : static_cast<v1::MigrateReason>(static_cast<int>(r) + 1);
}

void ToProto(const PageOwner& p, v1::PageRecord* out) {
  out->set_pfn(p.pfn.raw());
  out->set_order(p.order.raw());
  out->set_gfp_mask(p.gfp_mask);
  out->set_handle(p.handle.raw());
  out->set_free_handle(p.free_handle.raw());
  out->set_last_migrate_reason(ToProto(p.last_migrate_reason));
  out->set_pid(p.pid);
  out->set_tgid(p.tgid);
  out->set_comm(p.comm);
  out->set_ts_ns(p.ts_ns);
  out->set_free_ts_ns(p.free_ts_ns);
  out->set_free_pid(p.free_pid);
  out->set_free_tgid(p.free_tgid);
  out->set_owner(p.owner);
  out->set_allocated(p.allocated);
  out->set_pageblock_migratetype(static_cast<v1::MigrateType>(p.pageblock_migratetype));
  out->set_page_flags(p.page_flags);
  if (p.extras != nullptr) {
    v1::PrintedExtras* x = out->mutable_printed();
    x->set_page_flags(p.extras->page_flags);
    x->set_flags_text(p.extras->flags_text);
    x->set_gfp_names(p.extras->gfp_names);
    x->set_slab_cache(p.extras->slab_cache);
    x->set_memcg(p.extras->memcg);
  }
}

void ToProto(const StackUsage& s, const SymbolTable& symbols, v1::Stack* out) {
  out->set_handle(s.handle.raw());
  // The content id hashes the printed frames, which are at hand here.
  ContentIdHasher content_id;
  for (uint64_t ip : s.frames) {
    v1::Frame* f = out->add_frames();
    f->set_ip(ip);
    f->set_symbol(symbols.FormatFrame(ip));
    content_id.AddFrame(f->symbol());
  }
  out->set_content_id(content_id.id());
  out->set_pages(s.pages);
  out->set_allocations(s.allocations);
}

// The daemon's clock for SetTracking: ns since the host booted (CLOCK_MONOTONIC), the closest
// user-space match for the kernel's local_clock().
uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

const grpc::Status& ShuttingDown() {
  static const grpc::Status* const kStatus =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE, "pageownerd is shutting down");
  return *kStatus;
}

// A reactor that only finishes the call with a status (a refused stream).
template <typename Base>
class FinishedReactor final : public Base {
 public:
  explicit FinishedReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Ingest
//
// Lifetime: the reactor is referenced by gRPC (until OnDone) and by each batch it has handed to
// the writer (until the writer's callback returns); the last Unref deletes it. Finish is called
// exactly once, when no batch is in flight and no write is outstanding, so no answer is ever
// written after it.
class PageOwnerService::IngestReactor final
    : public grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult> {
 public:
  explicit IngestReactor(PageOwnerService* service)
      : service_(service),
        stream_(&service->machine_->symbols(), service->options_.max_batch_events) {
    service_->counters_.streams_open.fetch_add(1, std::memory_order_relaxed);
    StartRead(&request_);
  }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      bool finish;
      {
        absl::MutexLock lock(&mu_);
        read_busy_ = false;
        read_done_ = true;
        finish = ShouldFinishLocked();
      }
      if (finish) Finish(final_status_);
      return;
    }
    PreparedBatch batch;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {  // read in a race with a drain that already ended the call: not answered
        read_busy_ = false;
        return;
      }
      ++in_flight_;
      if (!spare_.empty()) {
        batch = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    const absl::Status prepared = stream_.Prepare(request_, &batch);
    service_->counters_.batches.fetch_add(1, std::memory_order_relaxed);
    if (!prepared.ok()) {
      service_->counters_.batches_rejected.fetch_add(1, std::memory_order_relaxed);
      // Its events are answered with the batch's code.
      for (const int kind : request_.kind()) {
        const bool known = kind >= v1::EVENT_KIND_ALLOC && kind <= v1::EVENT_KIND_IMPORT;
        service_->counters_.CountEvent(
            known ? kind - v1::EVENT_KIND_ALLOC : IngestCounters::kOtherKind,
            ToRpcCode(prepared.code()));
      }
    }
    Ref();
    service_->writer_.Submit(std::move(batch), [this](v1::BatchResult result, PreparedBatch used) {
      OnAnswered(std::move(result), std::move(used));
      Unref();
    });
    bool read_more;
    {
      absl::MutexLock lock(&mu_);
      read_more = MayReadLocked();
      read_busy_ = read_more;
    }
    if (read_more) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    const v1::BatchResult* next = nullptr;
    bool read_more = false;
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      --in_flight_;
      if (!ok) {  // the call is broken: the remaining answers cannot be written
        write_failed_ = true;
        in_flight_ -= static_cast<int>(queue_.size());
        queue_.clear();
      } else if (!queue_.empty()) {
        writing_ = true;
        next = &queue_.front();
      }
      if (!read_busy_ && MayReadLocked()) read_more = read_busy_ = true;
      finish = ShouldFinishLocked();
    }
    if (next != nullptr) StartWrite(next);
    if (read_more) StartRead(&request_);
    if (finish) Finish(final_status_);
  }

  void OnDone() override {
    service_->Unregister(this);
    service_->counters_.streams_open.fetch_sub(1, std::memory_order_relaxed);
    Unref();
  }

  // Stops reading; ends the call once the batches read so far are answered.
  void Drain() {
    bool finish;
    {
      absl::MutexLock lock(&mu_);
      draining_ = true;
      finish = ShouldFinishLocked();
    }
    if (finish) Finish(final_status_);
  }

 private:
  ~IngestReactor() override = default;

  // Runs on the writer thread.
  void OnAnswered(v1::BatchResult result, PreparedBatch used) {
    const v1::BatchResult* write = nullptr;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (spare_.size() < kSpareBatches) spare_.push_back(std::move(used));
      if (write_failed_) {
        --in_flight_;
        finish = ShouldFinishLocked();
      } else {
        queue_.push_back(std::move(result));
        if (!writing_) {
          writing_ = true;
          write = &queue_.front();
        }
      }
    }
    if (write != nullptr) StartWrite(write);
    if (finish) Finish(final_status_);
  }

  bool MayReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !read_done_ && !draining_ && !write_failed_ && !finished_ &&
           in_flight_ < kMaxBatchesInFlight;
  }

  // True (once) when the call should be finished now; sets final_status_.
  bool ShouldFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || in_flight_ > 0 || writing_) return false;
    if (!read_done_ && !draining_ && !write_failed_) return false;
    finished_ = true;
    if (write_failed_) {
      final_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke");
    } else if (!read_done_) {
      final_status_ = grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          "pageownerd is shutting down: every batch answered was applied; later batches were "
          "not read");
    } else {
      final_status_ = grpc::Status::OK;
    }
    return true;
  }

  PageOwnerService* const service_;
  std::atomic<int> refs_{1};  // gRPC's, dropped in OnDone
  // Touched only by the read path (one read or its preparation at a time).
  v1::EventBatch request_;
  IngestStream stream_;

  absl::Mutex mu_;
  bool read_busy_ ABSL_GUARDED_BY(mu_) = true;   // a read is outstanding or being prepared
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;  // the client closed its side, or reads failed
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Batches read and not yet answered on the wire (with the writer or in queue_).
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Answers to write, in order; the front one is being written while writing_. A deque keeps
  // the front's address stable while answers are appended.
  std::deque<v1::BatchResult> queue_ ABSL_GUARDED_BY(mu_);
  // Answered batches whose buffers the next reads reuse.
  static constexpr size_t kSpareBatches = 2;
  std::vector<PreparedBatch> spare_ ABSL_GUARDED_BY(mu_);
  grpc::Status final_status_;  // set once, under mu_, before Finish
};

grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult>* PageOwnerService::Ingest(
    grpc::CallbackServerContext* /*context*/) {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return new FinishedReactor<grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult>>(
        ShuttingDown());
  }
  auto* reactor = new IngestReactor(this);
  open_.insert(reactor);
  return reactor;
}

void PageOwnerService::Unregister(IngestReactor* reactor) {
  absl::MutexLock lock(&mu_);
  open_.erase(reactor);
}

// ---------------------------------------------------------------------------------------------
// ListPages
//
// The reader lock is taken per slice (at most kScanPerHold records visited, or pages walked),
// never across the stream; a chunk is written when it holds kChunkRecords records or about
// kChunkBytes bytes, when the scan ends, or after kScanPerChunk records or pages were looked at
// (then it may hold no page, but next_pfn has moved on). Each chunk is scanned only after the
// previous one was written, so a slow reader holds no lock and no more than one chunk.
class PageOwnerService::ListPagesReactor final
    : public grpc::ServerWriteReactor<v1::ListPagesResponse> {
 public:
  static constexpr int kChunkRecords = 4096;
  static constexpr size_t kChunkBytes = 1 << 20;
  static constexpr uint64_t kScanPerHold = 16384;
  static constexpr uint64_t kScanPerChunk = 1 << 20;

  // Call Start() once registered.
  ListPagesReactor(PageOwnerService* service, const v1::ListPagesRequest& request)
      : service_(service), machine_(service->machine_), init_(Init(request)) {}

  void Start() {
    if (!init_.ok()) {
      Finish(ToGrpcStatus(init_));
      return;
    }
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
      return;
    }
    Next();
  }

  void OnDone() override {
    service_->Unregister(this);
    delete this;
  }

  // Ends the stream before its next chunk.
  void Drain() { draining_.store(true, std::memory_order_relaxed); }

 private:
  absl::Status Init(const v1::ListPagesRequest& r) {
    const uint64_t total = machine_->total_pages().raw();
    if (r.start_pfn() > total) {
      return absl::OutOfRangeError(
          absl::StrCat("start_pfn ", r.start_pfn(), " is beyond memory (", total, " pages)"));
    }
    end_pfn_ = r.end_pfn() == 0 ? total : std::min(r.end_pfn(), total);
    if (r.end_pfn() != 0 && r.end_pfn() < r.start_pfn()) {
      return absl::InvalidArgumentError(
          absl::StrCat("end_pfn ", r.end_pfn(), " is below start_pfn ", r.start_pfn()));
    }
    if (r.state() != v1::PAGE_STATE_ALLOCATED && r.state() != v1::PAGE_STATE_FREED &&
        r.state() != v1::PAGE_STATE_ANY) {
      return absl::InvalidArgumentError(absl::StrCat("unknown page state ", r.state()));
    }
    if (r.has_order() && r.order() > static_cast<uint32_t>(kMaxOrder)) {
      return absl::InvalidArgumentError(
          absl::StrCat("order ", r.order(), " is above the maximum order ", kMaxOrder));
    }
    next_pfn_ = r.start_pfn();
    state_ = r.state();
    if (r.has_pid()) pid_ = r.pid();
    if (r.has_tgid()) tgid_ = r.tgid();
    if (r.has_comm()) comm_ = r.comm();
    if (r.has_handle()) handle_ = r.handle();
    if (r.has_order()) order_ = r.order();
    limit_ = r.limit();
    return absl::OkStatus();
  }

  // Scans the next chunk and writes it, or finishes.
  void Next() {
    if (draining_.load(std::memory_order_relaxed)) {
      Finish(
          grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       absl::StrCat("pageownerd is shutting down; resume from pfn ", next_pfn_)));
      return;
    }
    chunk_.Clear();
    chunk_bytes_ = 0;
    uint64_t scanned = 0;
    while (!done_ && !ChunkFull() && scanned < kScanPerChunk) {
      scanned += machine_->Read([this](const Machine& m) { return ScanSlice(m); });
    }
    chunk_.set_next_pfn(next_pfn_);
    if (!done_) {
      StartWrite(&chunk_);
    } else if (chunk_.pages_size() > 0) {
      StartWriteAndFinish(&chunk_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      Finish(grpc::Status::OK);
    }
  }

  bool ChunkFull() const {
    return chunk_.pages_size() >= kChunkRecords || chunk_bytes_ >= kChunkBytes;
  }

  // One slice under the reader lock; returns the records visited or pages walked.
  uint64_t ScanSlice(const Machine& m) {
    if (state_ == v1::PAGE_STATE_ALLOCATED) {
      // The records /sys/kernel/debug/page_owner prints, skipping free memory quickly.
      uint64_t visited = 0;
      bool stopped = false;
      m.ForEachOwnedBlock(Pfn(next_pfn_), [&](const PageOwner& p) {
        stopped = true;
        if (p.pfn.raw() >= end_pfn_) {
          done_ = true;
          next_pfn_ = end_pfn_;
          return false;
        }
        if (visited >= kScanPerHold || ChunkFull()) {
          next_pfn_ = p.pfn.raw();
          return false;
        }
        ++visited;
        next_pfn_ = p.pfn.raw() + 1;
        if (Matches(p) && Add(m, p)) {
          done_ = true;
          return false;
        }
        stopped = ChunkFull();  // resume right after the chunk's last record
        return !stopped;
      });
      if (!stopped) {
        done_ = true;
        next_pfn_ = end_pfn_;
      }
      return visited;
    }
    // Freed records are not indexed: walk the pages.
    const uint64_t start = next_pfn_;
    const uint64_t slice_end = std::min(end_pfn_, start + kScanPerHold);
    uint64_t pfn = start;
    for (; pfn < slice_end && !ChunkFull(); ++pfn) {
      const absl::StatusOr<PageOwner> p = m.PageRecord(Pfn(pfn));
      if (!p.ok() || !p->owner || !Pfn(pfn).aligned_to(p->order)) continue;
      const bool allocated = p->allocated && p->handle.valid();
      const bool freed = !p->allocated;
      const bool state_matches = state_ == v1::PAGE_STATE_ANY     ? allocated || freed
                                 : state_ == v1::PAGE_STATE_FREED ? freed
                                                                  : allocated;
      if (state_matches && Matches(*p) && Add(m, *p)) {
        done_ = true;
        next_pfn_ = pfn + 1;
        return pfn + 1 - start;
      }
    }
    next_pfn_ = pfn;
    if (pfn >= end_pfn_) done_ = true;
    return pfn - start;
  }

  bool Matches(const PageOwner& p) const {
    return (!pid_ || p.pid == *pid_) && (!tgid_ || p.tgid == *tgid_) &&
           (!comm_ || p.comm == *comm_) && (!handle_ || p.handle.raw() == *handle_) &&
           (!order_ || p.order.raw() == *order_);
  }

  // Adds a record (and its stack, the first time); true when the limit is reached.
  bool Add(const Machine& m, const PageOwner& p) {
    v1::PageRecord* r = chunk_.add_pages();
    ToProto(p, r);
    chunk_bytes_ += 64 + p.comm.size();
    if (p.handle.valid() && sent_stacks_.insert(p.handle.raw()).second) {
      v1::Stack* s = chunk_.add_stacks();
      ToProto(m.depot().Usage(p.handle), m.symbols(), s);
      chunk_bytes_ += s->ByteSizeLong();
    }
    ++emitted_;
    return limit_ != 0 && emitted_ >= limit_;
  }

  PageOwnerService* const service_;
  SharedMachine* const machine_;
  std::atomic<bool> draining_{false};
  uint64_t next_pfn_ = 0;
  uint64_t end_pfn_ = 0;
  int state_ = v1::PAGE_STATE_ALLOCATED;
  std::optional<int32_t> pid_;
  std::optional<int32_t> tgid_;
  std::optional<std::string> comm_;
  std::optional<uint32_t> handle_;
  std::optional<uint32_t> order_;
  uint64_t limit_ = 0;
  uint64_t emitted_ = 0;
  bool done_ = false;
  absl::flat_hash_set<uint32_t> sent_stacks_;
  v1::ListPagesResponse chunk_;
  size_t chunk_bytes_ = 0;
  const absl::Status init_;  // last: Init fills the members above
};

grpc::ServerWriteReactor<v1::ListPagesResponse>* PageOwnerService::ListPages(
    grpc::CallbackServerContext* /*context*/, const v1::ListPagesRequest* request) {
  ListPagesReactor* reactor;
  {
    absl::MutexLock lock(&mu_);
    if (draining_) {
      return new FinishedReactor<grpc::ServerWriteReactor<v1::ListPagesResponse>>(ShuttingDown());
    }
    reactor = new ListPagesReactor(this, *request);
    listings_.insert(reactor);
  }
  reactor->Start();
  return reactor;
}

void PageOwnerService::Unregister(ListPagesReactor* reactor) {
  absl::MutexLock lock(&mu_);
  listings_.erase(reactor);
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void PageOwnerService::BeginDrain() {
  std::vector<IngestReactor*> open;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    for (IngestReactor* r : open_) {
      r->Ref();  // OnDone may run as soon as the lock is released
      open.push_back(r);
    }
    for (ListPagesReactor* r : listings_) r->Drain();
  }
  for (IngestReactor* r : open) {
    r->Drain();
    r->Unref();
  }
}

bool PageOwnerService::AwaitDrained(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(
                                   +[](PageOwnerService* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
                                     return s->open_.empty() && s->listings_.empty();
                                   },
                                   this),
                               deadline);
}

// ---------------------------------------------------------------------------------------------
// Unary queries

PageOwnerService::PageOwnerService(SharedMachine* machine, const ServiceOptions& options)
    : machine_(machine), options_(options), writer_(machine, &counters_) {}

PageOwnerService::~PageOwnerService() = default;

grpc::ServerUnaryReactor* PageOwnerService::GetPage(grpc::CallbackServerContext* context,
                                                    const v1::GetPageRequest* request,
                                                    v1::GetPageResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoGetPage(*request, response)));
  return reactor;
}

absl::Status PageOwnerService::DoGetPage(const v1::GetPageRequest& request,
                                         v1::GetPageResponse* response) {
  const Pfn pfn(request.pfn());
  return machine_->Read([&](const Machine& m) -> absl::Status {
    PO_ASSIGN_OR_RETURN(const PageOwner owner, m.BlockOwner(pfn));
    PO_ASSIGN_OR_RETURN(std::string dump, DumpPageOwner(m, pfn));
    const std::optional<AllocatedBlock> block = m.allocator().BlockContaining(pfn);
    ToProto(owner, response->mutable_page());
    response->set_block_head(block.has_value() ? block->head.raw() : pfn.raw());
    response->set_block_order(block.has_value() ? block->order.raw() : 0);
    if (block.has_value() && owner.owner && owner.allocated && owner.handle.valid()) {
      AppendPageOwnerBlock(owner, m.depot().Fetch(owner.handle), m.symbols(), DumpFormat::kToday,
                           response->mutable_page_owner_text());
    }
    response->set_dump_page_owner_text(std::move(dump));
    if (owner.handle.valid()) {
      ToProto(m.depot().Usage(owner.handle), m.symbols(), response->mutable_alloc_stack());
    }
    if (owner.free_handle.valid()) {
      ToProto(m.depot().Usage(owner.free_handle), m.symbols(), response->mutable_free_stack());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PageOwnerService::GetStack(grpc::CallbackServerContext* context,
                                                     const v1::GetStackRequest* request,
                                                     v1::Stack* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoGetStack(*request, response)));
  return reactor;
}

absl::Status PageOwnerService::DoGetStack(const v1::GetStackRequest& request, v1::Stack* response) {
  const StackHandle handle(request.handle());
  return machine_->Read([&](const Machine& m) -> absl::Status {
    if (!handle.valid() || !m.depot().Contains(handle)) {
      return absl::NotFoundError(
          absl::StrCat("stack handle ", handle.raw(), " names no stack in the depot"));
    }
    ToProto(m.depot().Usage(handle), m.symbols(), response);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* PageOwnerService::ListStacks(grpc::CallbackServerContext* context,
                                                       const v1::ListStacksRequest* request,
                                                       v1::ListStacksResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoListStacks(*request, response)));
  return reactor;
}

absl::Status PageOwnerService::DoListStacks(const v1::ListStacksRequest& request,
                                            v1::ListStacksResponse* response) {
  const int sort = request.sort();
  if (sort != v1::STACK_SORT_PAGES && sort != v1::STACK_SORT_ALLOCATIONS &&
      sort != v1::STACK_SORT_NEWEST) {
    return absl::InvalidArgumentError(absl::StrCat("unknown stack sort ", sort));
  }
  const int64_t threshold = std::max<int64_t>(1, request.threshold());
  // Usage values are copied under the lock; frames stay valid for the depot's lifetime.
  std::vector<StackUsage> stacks = machine_->Read([&](const Machine& m) {
    std::vector<StackUsage> out;
    m.depot().ForEachOwnerStack([&](const StackUsage& s) {
      if (s.pages >= threshold) out.push_back(s);
    });
    return out;
  });
  // Newest first is the depot's order; the sorts keep it among equals.
  if (sort == v1::STACK_SORT_PAGES) {
    std::stable_sort(stacks.begin(), stacks.end(),
                     [](const StackUsage& a, const StackUsage& b) { return a.pages > b.pages; });
  } else if (sort == v1::STACK_SORT_ALLOCATIONS) {
    std::stable_sort(stacks.begin(), stacks.end(), [](const StackUsage& a, const StackUsage& b) {
      return a.allocations > b.allocations;
    });
  }
  if (request.top() != 0 && stacks.size() > request.top()) stacks.resize(request.top());
  int64_t total = 0;
  for (const StackUsage& s : stacks) {
    ToProto(s, machine_->symbols(), response->add_stacks());
    total += s.pages;
  }
  response->set_total_pages(total);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* PageOwnerService::GetStats(grpc::CallbackServerContext* context,
                                                     const v1::GetStatsRequest* /*request*/,
                                                     v1::Stats* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoGetStats(response)));
  return reactor;
}

absl::Status PageOwnerService::DoGetStats(v1::Stats* r) {
  machine_->Read([&](const Machine& m) {
    const BuddyAllocator& a = m.allocator();
    r->set_total_pages(m.total_pages().raw());
    r->set_free_pages(a.free_pages().raw());
    r->set_allocated_pages(a.allocated_pages().raw());
    r->set_tracked_pages(m.tracked_pages().raw());
    r->set_tracking(m.tracking());
    for (unsigned order = 0; order <= static_cast<unsigned>(kMaxOrder); ++order) {
      r->add_free_blocks_unmovable(a.FreeBlockCount(Order(order), MigrateType::kUnmovable));
      r->add_free_blocks_movable(a.FreeBlockCount(Order(order), MigrateType::kMovable));
      r->add_free_blocks_reclaimable(a.FreeBlockCount(Order(order), MigrateType::kReclaimable));
    }
    r->set_fallback_steals(a.fallback_steals());
    const StackDepotStats depot = m.depot().stats();
    r->set_depot_pools(depot.pools);
    r->set_depot_persistent_count(depot.persistent_count);
    r->set_depot_persistent_bytes(depot.persistent_bytes);
    r->set_depot_truncated(depot.truncated);
    r->set_depot_failed(depot.failed);
    const MachineCounters& c = m.counters();
    r->set_dummy_handle_uses(c.dummy_handle_uses);
    r->set_failure_handle_uses(c.failure_handle_uses);
    r->set_early_handle_pages(c.early_handle_pages);
    r->set_allocs(c.allocs);
    r->set_frees(c.frees);
    r->set_migrates(c.migrates);
    r->set_rejected(c.rejected + counters_.events_invalid.load(std::memory_order_relaxed));
    const size_t bytes = m.MemoryUsage().total();
    r->set_metadata_bytes(bytes);
    r->set_metadata_bytes_per_page(static_cast<double>(bytes) /
                                   static_cast<double>(m.total_pages().raw()));
    r->set_stackdepot_stats_text(StackDepotStatsText(depot));
    r->set_mixed_blocks_text(MixedBlocksText(m.MixedBlocks()));
  });
  r->set_batches(counters_.batches.load(std::memory_order_relaxed));
  r->set_batches_rejected(counters_.batches_rejected.load(std::memory_order_relaxed));
  r->set_streams_open(counters_.streams_open.load(std::memory_order_relaxed));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* PageOwnerService::SetTracking(grpc::CallbackServerContext* context,
                                                        const v1::SetTrackingRequest* request,
                                                        v1::SetTrackingResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoSetTracking(*request, response)));
  return reactor;
}

absl::Status PageOwnerService::DoSetTracking(const v1::SetTrackingRequest& request,
                                             v1::SetTrackingResponse* response) {
  const uint64_t ts = request.ts_ns() != 0 ? request.ts_ns() : NowNs();
  machine_->Write([&](Machine& m) {
    const uint64_t before = m.counters().early_handle_pages;
    m.SetTracking(request.on(), ts);
    response->set_tracking(m.tracking());
    response->set_early_pages(m.counters().early_handle_pages - before);
  });
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* PageOwnerService::SortPages(grpc::CallbackServerContext* context,
                                                      const v1::SortRequest* request,
                                                      v1::SortResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(DoSortPages(*request, response)));
  return reactor;
}

absl::Status PageOwnerService::DoSortPages(const v1::SortRequest& request,
                                           v1::SortResponse* response) {
  const std::vector<std::string> args(request.args().begin(), request.args().end());
  PO_ASSIGN_OR_RETURN(SortOptions options, ParseSortArgs(args));
  if (!options.operands.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_owner_sort operands are not taken here (the daemon's blocks are the "
                     "input): ",
                     options.operands.front()));
  }
  DumpFormat format;
  switch (request.format()) {
    case v1::DUMP_FORMAT_TODAY:
      format = DumpFormat::kToday;
      break;
    case v1::DUMP_FORMAT_FREE_TS:
      format = DumpFormat::kFreeTs;
      break;
    case v1::DUMP_FORMAT_2016:
      format = DumpFormat::k2016;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown dump format ", request.format()));
  }
  // The blocks are rendered a slice at a time under the reader lock, as ListPages reads them,
  // so that ingest waits for one slice, not for the whole machine.
  constexpr int kBlocksPerHold = 16384;
  PageOwnerSorter sorter;
  std::string text;
  uint64_t next = 0;
  bool done = false;
  while (!done) {
    text.clear();
    done = true;
    machine_->Read([&](const Machine& m) {
      int n = 0;
      m.ForEachOwnedBlock(Pfn(next), [&](const PageOwner& p) {
        if (n++ == kBlocksPerHold) {
          next = p.pfn.raw();
          done = false;
          return false;
        }
        AppendPageOwnerBlock(p, m.depot().Fetch(p.handle), m.symbols(), format, &text);
        return true;
      });
    });
    sorter.AddText(text);
  }
  const SortReport report = sorter.Report(options);
  response->set_output(report.output);
  response->set_stdout_text(report.stdout_text);
  response->set_stderr_text(report.stderr_text);
  response->set_loaded(report.loaded);
  response->set_records(report.records);
  response->set_completed(report.completed);
  return absl::OkStatus();
}

}  // namespace pageowner::server
