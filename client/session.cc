#include "client/session.h"

#include <atomic>
#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "pageowner/v1/pageowner.pb.h"
#include "wire/convert.h"
#include "wire/status.h"

namespace pageowner::client {
namespace {

// Bits of Session::batch_nonzero_: the optional columns that have a value other than 0. A column
// whose values are all 0 is left empty on the wire, which the protocol reads as all zeros.
constexpr uint32_t kOrderColumn = 1 << 0;
constexpr uint32_t kPfnColumn = 1 << 1;
constexpr uint32_t kTargetColumn = 1 << 2;
constexpr uint32_t kGfpColumn = 1 << 3;
constexpr uint32_t kStackColumn = 1 << 4;
constexpr uint32_t kTaskColumn = 1 << 5;
constexpr uint32_t kTsColumn = 1 << 6;
constexpr uint32_t kReasonColumn = 1 << 7;
constexpr uint32_t kFlagsColumn = 1 << 8;
constexpr uint32_t kFreeTsColumn = 1 << 9;
constexpr uint32_t kBlockMtColumn = 1 << 10;
constexpr uint32_t kExtrasColumn = 1 << 11;

// A StackDef or TaskDef costs about this much on the wire besides its strings.
constexpr size_t kDefinitionOverhead = 8;
constexpr size_t kFrameOverhead = 12;

void AppendRaw(std::string* out, const void* p, size_t n) {
  out->append(static_cast<const char*>(p), n);
}

}  // namespace

// The reactor of the Ingest call. The producer thread submits filled batches; gRPC's threads
// write them one at a time, read the answers and turn them into results.
//
// The call is kept open by one hold for the writing side, removed once nothing more will be
// written (the stream closed, or Finish sent WritesDone), so OnDone never runs while a write may
// still start. Start* calls are made without holding mu_, since gRPC may run a reaction inline.
class Session::Stream final : public grpc::ClientBidiReactor<v1::EventBatch, v1::BatchResult> {
 public:
  Stream(const std::shared_ptr<grpc::Channel>& channel, const SessionOptions& options)
      : stub_(v1::PageOwner::NewStub(channel)),
        max_in_flight_(options.max_in_flight == 0 ? 1 : options.max_in_flight),
        on_results_(options.on_results) {
    stub_->async()->Ingest(&context_, this);
    AddHold();
    StartRead(&answer_);
    StartCall();
  }

  ~Stream() override {
    bool done;
    {
      absl::MutexLock lock(&mu_);
      done = done_;
    }
    if (!done) {
      context_.TryCancel();
      Close();
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&done_));
    }
  }

  // A message to fill, from the pool when one is free.
  std::unique_ptr<v1::EventBatch> TakeMessage() {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) return std::make_unique<v1::EventBatch>();
    std::unique_ptr<v1::EventBatch> m = std::move(free_.back());
    free_.pop_back();
    return m;
  }

  // Queues `batch` (its events are seqs [first_seq, first_seq + count)) for sending, blocking
  // while max_in_flight batches are unanswered. When the stream has already ended, the batch's
  // events get failed results at once.
  void Submit(std::unique_ptr<v1::EventBatch> batch, uint64_t first_seq, size_t count) {
    Action action;
    bool queued = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Stream::CanSubmit));
      if (!closed_) {
        in_flight_.push_back(InFlight{batch->sequence(), first_seq, count});
        queue_.push_back(std::move(batch));
        queued = true;
        action = NextAction();
      } else {
        Recycle(std::move(batch));
      }
    }
    Perform(action);
    if (queued) return;
    // The stream is over: wait until OnDone has delivered its own failures, so results stay in
    // order, then fail this batch with the final status.
    absl::Status why;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&done_));
      why = EndStatus();
    }
    Fail(first_seq, count, why);
  }

  // No more batches: send WritesDone once the queue is empty, and wait until OnDone.
  absl::Status Finish() {
    Close();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return wire::FromGrpcStatus(final_);
  }

  // Results for events that were never sent.
  void Fail(uint64_t first_seq, size_t count, const absl::Status& why) {
    std::vector<IngestResult> results(count);
    for (size_t i = 0; i < count; ++i) {
      results[i].seq = first_seq + i;
      results[i].code = why.code();
      results[i].message = std::string(why.message());
    }
    Deliver(std::move(results));
  }

  size_t Poll(std::vector<IngestResult>* out) {
    absl::MutexLock lock(&mu_);
    const size_t n = ready_.size();
    for (IngestResult& r : ready_) out->push_back(std::move(r));
    ready_.clear();
    return n;
  }

  uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }

  // ---- Reactions (gRPC's threads) ----

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      Recycle(std::move(writing_msg_));
      if (!ok) closed_ = true;  // the call is over; the read side will say how
      action = NextAction();
    }
    Perform(action);
  }

  void OnWritesDoneDone(bool /*ok*/) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      action = NextAction();
    }
    Perform(action);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Action action;
      {
        absl::MutexLock lock(&mu_);
        closed_ = true;
        action = NextAction();
      }
      Perform(action);
      return;
    }
    InFlight batch;
    bool expected = false;
    {
      absl::MutexLock lock(&mu_);
      if (!in_flight_.empty()) {
        batch = in_flight_.front();
        in_flight_.pop_front();
        expected = true;
      }
    }
    if (!expected) {
      // An answer to nothing: the daemon does not follow the protocol. End the call.
      {
        absl::MutexLock lock(&mu_);
        protocol_error_ = absl::InternalError(
            absl::StrCat("the daemon answered batch ", answer_.sequence(), " that was never sent"));
      }
      context_.TryCancel();
    } else {
      Deliver(ResultsFor(batch));
    }
    StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override {
    std::deque<InFlight> unanswered;
    absl::Status why;
    {
      absl::MutexLock lock(&mu_);
      final_ = status;
      closed_ = true;
      unanswered.swap(in_flight_);
      why = EndStatus();
    }
    for (const InFlight& b : unanswered) Fail(b.first_seq, b.count, why);
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

 private:
  struct InFlight {
    uint64_t sequence = 0;
    uint64_t first_seq = 0;
    size_t count = 0;
  };
  struct Action {
    enum Kind { kNone, kWrite, kWritesDone, kRemoveHold } kind = kNone;
    const v1::EventBatch* msg = nullptr;
  };

  bool CanSubmit() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || in_flight_.size() < max_in_flight_;
  }

  // What the writing side does next. The caller performs it after unlocking.
  Action NextAction() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || hold_removed_) return {};
    if (closed_) {
      // Nothing more can be written; queued batches stay in in_flight_ and fail in OnDone.
      while (!queue_.empty()) {
        Recycle(std::move(queue_.front()));
        queue_.pop_front();
      }
      hold_removed_ = true;
      return {Action::kRemoveHold};
    }
    if (!queue_.empty()) {
      writing_msg_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      return {Action::kWrite, writing_msg_.get()};
    }
    if (closing_) {
      if (!writes_done_sent_) {
        writes_done_sent_ = true;
        writing_ = true;
        return {Action::kWritesDone};
      }
      hold_removed_ = true;
      return {Action::kRemoveHold};
    }
    return {};
  }

  void Perform(const Action& a) {
    switch (a.kind) {
      case Action::kNone:
        break;
      case Action::kWrite:
        StartWrite(a.msg);
        break;
      case Action::kWritesDone:
        StartWritesDone();
        break;
      case Action::kRemoveHold:
        RemoveHold();
        break;
    }
  }

  void Close() {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      action = NextAction();
    }
    Perform(action);
  }

  void Recycle(std::unique_ptr<v1::EventBatch> m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (m == nullptr) return;
    m->Clear();  // keeps the columns' capacity and the cleared definitions for reuse
    free_.push_back(std::move(m));
  }

  // The status for events the stream will never answer.
  absl::Status EndStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!protocol_error_.ok()) return protocol_error_;
    absl::Status s = wire::FromGrpcStatus(final_);
    if (!s.ok()) return s;
    return absl::AbortedError("the stream ended before this event was answered");
  }

  std::vector<IngestResult> ResultsFor(const InFlight& b) {
    std::vector<IngestResult> out(b.count);
    const v1::BatchResult& a = answer_;
    const bool batch_failed = a.code() != 0;
    const absl::Status batch_status = wire::StatusFromRpc(a.code(), a.message());
    const bool mismatch = a.sequence() != b.sequence;
    for (size_t i = 0; i < b.count; ++i) {
      IngestResult& r = out[i];
      r.seq = b.first_seq + i;
      if (mismatch) {
        r.code = absl::StatusCode::kInternal;
        r.message =
            absl::StrCat("the daemon answered batch ", a.sequence(), " for batch ", b.sequence);
        continue;
      }
      if (batch_failed) {
        r.code = batch_status.code();
        r.message = std::string(batch_status.message());
        continue;
      }
      if (static_cast<int>(i) >= a.event_code_size()) {
        r.code = absl::StatusCode::kInternal;
        r.message =
            absl::StrCat("the daemon answered ", a.event_code_size(), " events of ", b.count);
        continue;
      }
      r.code = wire::CodeFromRpc(a.event_code(static_cast<int>(i)));
      if (static_cast<int>(i) < a.event_pfn_size()) r.pfn = Pfn(a.event_pfn(static_cast<int>(i)));
      if (static_cast<int>(i) < a.event_handle_size()) {
        r.handle = StackHandle(a.event_handle(static_cast<int>(i)));
      }
      if (r.code != absl::StatusCode::kOk) {
        auto it = a.event_message().find(static_cast<uint32_t>(i));
        if (it != a.event_message().end()) r.message = it->second;
      }
    }
    return out;
  }

  // Hands results on, in order: deliveries never overlap (one read at a time, then OnDone, then
  // submissions after OnDone).
  void Deliver(std::vector<IngestResult> results) {
    delivered_.fetch_add(results.size(), std::memory_order_relaxed);
    if (on_results_) {
      on_results_(results);
      return;
    }
    absl::MutexLock lock(&mu_);
    for (IngestResult& r : results) ready_.push_back(std::move(r));
  }

  std::unique_ptr<v1::PageOwner::Stub> stub_;
  grpc::ClientContext context_;
  const size_t max_in_flight_;
  const std::function<void(absl::Span<const IngestResult>)> on_results_;
  v1::BatchResult answer_;                            // touched by the read reactions only
  absl::Status protocol_error_ ABSL_GUARDED_BY(mu_);  // set by a read reaction before OnDone
  std::atomic<uint64_t> delivered_{0};

  absl::Mutex mu_;
  std::deque<std::unique_ptr<v1::EventBatch>> queue_ ABSL_GUARDED_BY(mu_);  // to be written
  std::unique_ptr<v1::EventBatch> writing_msg_ ABSL_GUARDED_BY(mu_);        // being written
  std::vector<std::unique_ptr<v1::EventBatch>> free_ ABSL_GUARDED_BY(mu_);  // for reuse
  std::deque<InFlight> in_flight_ ABSL_GUARDED_BY(mu_);  // submitted, not yet answered
  std::deque<IngestResult> ready_ ABSL_GUARDED_BY(mu_);  // for Poll
  bool writing_ ABSL_GUARDED_BY(mu_) = false;            // a write or WritesDone is running
  bool closing_ ABSL_GUARDED_BY(mu_) = false;            // Finish: WritesDone after the queue
  bool writes_done_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // nothing more can be written
  bool hold_removed_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone has run
  grpc::Status final_ ABSL_GUARDED_BY(mu_);
};

Session::Session(std::shared_ptr<grpc::Channel> channel, SessionOptions options)
    : options_(std::move(options)) {
  stream_ = std::make_unique<Stream>(channel, options_);
  batch_ = stream_->TakeMessage();
}

Session::~Session() = default;

StackId Session::InternStack(absl::Span<const Frame> frames) {
  key_.clear();
  for (const Frame& f : frames) {
    const uint32_t n = static_cast<uint32_t>(f.symbol.size());
    AppendRaw(&key_, &f.ip, sizeof(f.ip));
    AppendRaw(&key_, &n, sizeof(n));
    key_.append(f.symbol);
  }
  auto [it, inserted] = stack_ids_.try_emplace(key_, static_cast<uint32_t>(stacks_.size() + 1));
  if (inserted) stacks_.push_back(StackEntry{std::vector<Frame>(frames.begin(), frames.end())});
  return StackId(it->second);
}

TaskId Session::InternTask(const Task& task) {
  key_.clear();
  AppendRaw(&key_, &task.pid, sizeof(task.pid));
  AppendRaw(&key_, &task.tgid, sizeof(task.tgid));
  key_.append(task.comm);
  auto [it, inserted] = task_ids_.try_emplace(key_, static_cast<uint32_t>(tasks_.size() + 1));
  if (inserted) tasks_.push_back(TaskEntry{task.pid, task.tgid, std::string(task.comm)});
  return TaskId(it->second);
}

StackId Session::Resolve(const StackRef& ref) {
  if (!ref.by_frames()) return ref.id();
  return ref.frames().empty() ? StackId() : InternStack(ref.frames());
}

TaskId Session::Resolve(const TaskRef& ref) {
  return ref.by_value() ? InternTask(ref.task()) : ref.id();
}

uint64_t Session::Alloc(const AllocSpec& e) {
  return Add(v1::EVENT_KIND_ALLOC, e.order.raw(), e.pfn ? e.pfn->raw() : 0, 0, e.gfp_mask,
             Resolve(e.stack), Resolve(e.task), e.ts_ns, v1::MIGRATE_REASON_NONE,
             (e.pfn ? uint32_t{v1::EVENT_FLAG_AT_PFN} : 0u) |
                 (e.trusted ? uint32_t{v1::EVENT_FLAG_TRUSTED} : 0u) |
                 (e.early ? uint32_t{v1::EVENT_FLAG_EARLY} : 0u) |
                 (e.reserved ? uint32_t{v1::EVENT_FLAG_RESERVED} : 0u));
}

uint64_t Session::Free(const FreeSpec& e) {
  return Add(v1::EVENT_KIND_FREE, e.order.raw(), e.pfn.raw(), 0, 0, Resolve(e.stack),
             Resolve(e.task), e.ts_ns, v1::MIGRATE_REASON_NONE,
             e.trusted ? uint32_t{v1::EVENT_FLAG_TRUSTED} : 0u);
}

uint64_t Session::Migrate(const MigrateSpec& e) {
  return Add(v1::EVENT_KIND_MIGRATE, 0, e.pfn.raw(), e.target ? e.target->raw() : 0, 0,
             Resolve(e.stack), Resolve(e.task), e.ts_ns, wire::ToProto(e.reason),
             e.target ? uint32_t{v1::EVENT_FLAG_AT_TARGET} : 0u);
}

uint64_t Session::Import(const ImportSpec& e) {
  const uint32_t extras_id = finished_ ? 0 : InternExtras(e.extras);
  return Add(v1::EVENT_KIND_IMPORT, e.order.raw(), e.pfn.raw(), 0, e.gfp_mask, Resolve(e.stack),
             Resolve(e.task), e.ts_ns, wire::ToProto(e.last_migrate_reason), 0, e.free_ts_ns,
             wire::ToBatchMigratetype(e.pageblock_migratetype), extras_id);
}

uint32_t Session::InternExtras(const PrintedExtras* extras) {
  if (extras == nullptr) return 0;
  auto [it, inserted] =
      extras_ids_.try_emplace(*extras, static_cast<uint32_t>(extras_ids_.size() + 1));
  if (inserted) {
    // Defined in the batch being filled, which the event that uses it joins.
    v1::ExtrasDef* def = batch_->add_extras();
    def->set_id(it->second);
    wire::ToProto(*extras, def->mutable_extras());
    batch_definition_bytes_ += kDefinitionOverhead + extras->flags_text.size() +
                               extras->gfp_names.size() + extras->memcg.size();
  }
  return it->second;
}

void Session::DefineStack(StackId id) {
  StackEntry& s = stacks_[id.raw() - 1];
  v1::StackDef* def = batch_->add_stacks();
  def->set_id(id.raw());
  size_t bytes = kDefinitionOverhead;
  for (const Frame& f : s.frames) {
    v1::Frame* out = def->add_frames();
    out->set_ip(f.ip);
    // The daemon keeps the first name of an address, so one mention a stream is enough.
    if (!f.symbol.empty() && (f.ip == 0 || named_ips_.insert(f.ip).second)) {
      out->set_symbol(f.symbol);
      bytes += f.symbol.size();
    }
    bytes += kFrameOverhead;
  }
  s.sent = true;
  batch_definition_bytes_ += bytes;
  ++stats_.stacks_sent;
}

void Session::DefineTask(TaskId id) {
  TaskEntry& t = tasks_[id.raw() - 1];
  v1::TaskDef* def = batch_->add_tasks();
  def->set_id(id.raw());
  def->set_pid(t.pid);
  def->set_tgid(t.tgid);
  def->set_comm(t.comm);
  t.sent = true;
  batch_definition_bytes_ += kDefinitionOverhead + t.comm.size();
  ++stats_.tasks_sent;
}

uint64_t Session::Add(int kind, uint32_t order, uint64_t pfn, uint64_t target_pfn,
                      uint32_t gfp_mask, StackId stack, TaskId task, uint64_t ts_ns, int reason,
                      uint32_t flags, uint64_t free_ts_ns, uint32_t block_mt, uint32_t extras_id) {
  const uint64_t seq = next_seq_++;
  ++stats_.events;
  if (finished_) {
    stream_->Fail(seq, 1,
                  absl::FailedPreconditionError("the session was finished before this event"));
    return seq;
  }
  // Ids not handed out by this session are sent as they are; the daemon refuses the batch.
  if (stack.valid() && stack.raw() <= stacks_.size() && !stacks_[stack.raw() - 1].sent) {
    DefineStack(stack);
  }
  if (task.valid() && task.raw() <= tasks_.size() && !tasks_[task.raw() - 1].sent) {
    DefineTask(task);
  }
  v1::EventBatch& b = *batch_;
  b.add_kind(static_cast<v1::EventKind>(kind));
  b.add_order(order);
  b.add_pfn(pfn);
  b.add_target_pfn(target_pfn);
  b.add_gfp_mask(gfp_mask);
  b.add_stack_id(stack.raw());
  b.add_task_id(task.raw());
  b.add_ts_ns(ts_ns);
  b.add_reason(static_cast<v1::MigrateReason>(reason));
  b.add_flags(flags);
  b.add_free_ts_ns(free_ts_ns);
  b.add_pageblock_migratetype(block_mt);
  b.add_extras_id(extras_id);
  batch_nonzero_ |= (order ? kOrderColumn : 0) | (pfn ? kPfnColumn : 0) |
                    (target_pfn ? kTargetColumn : 0) | (gfp_mask ? kGfpColumn : 0) |
                    (stack.valid() ? kStackColumn : 0) | (task.valid() ? kTaskColumn : 0) |
                    (ts_ns ? kTsColumn : 0) | (reason ? kReasonColumn : 0) |
                    (flags ? kFlagsColumn : 0) | (free_ts_ns ? kFreeTsColumn : 0) |
                    (block_mt ? kBlockMtColumn : 0) | (extras_id ? kExtrasColumn : 0);
  ++batch_events_;
  if (batch_events_ >= options_.batch_events ||
      batch_definition_bytes_ >= options_.batch_definition_bytes) {
    Submit();
  }
  return seq;
}

void Session::Submit() {
  if (batch_events_ == 0) return;
  v1::EventBatch& b = *batch_;
  if (!(batch_nonzero_ & kOrderColumn)) b.clear_order();
  if (!(batch_nonzero_ & kPfnColumn)) b.clear_pfn();
  if (!(batch_nonzero_ & kTargetColumn)) b.clear_target_pfn();
  if (!(batch_nonzero_ & kGfpColumn)) b.clear_gfp_mask();
  if (!(batch_nonzero_ & kStackColumn)) b.clear_stack_id();
  if (!(batch_nonzero_ & kTaskColumn)) b.clear_task_id();
  if (!(batch_nonzero_ & kTsColumn)) b.clear_ts_ns();
  if (!(batch_nonzero_ & kReasonColumn)) b.clear_reason();
  if (!(batch_nonzero_ & kFlagsColumn)) b.clear_flags();
  if (!(batch_nonzero_ & kFreeTsColumn)) b.clear_free_ts_ns();
  if (!(batch_nonzero_ & kBlockMtColumn)) b.clear_pageblock_migratetype();
  if (!(batch_nonzero_ & kExtrasColumn)) b.clear_extras_id();
  b.set_sequence(next_batch_sequence_++);
  const uint64_t first_seq = next_seq_ - batch_events_;
  const size_t count = batch_events_;
  ++stats_.batches;
  std::unique_ptr<v1::EventBatch> next = stream_->TakeMessage();
  std::swap(next, batch_);
  batch_events_ = 0;
  batch_definition_bytes_ = 0;
  batch_nonzero_ = 0;
  stream_->Submit(std::move(next), first_seq, count);
}

void Session::Flush() {
  if (!finished_) Submit();
}

absl::Status Session::Finish() {
  if (finished_) return final_status_;
  Submit();
  finished_ = true;
  final_status_ = stream_->Finish();
  return final_status_;
}

size_t Session::Poll(std::vector<IngestResult>* out) { return stream_->Poll(out); }

SessionStats Session::stats() const {
  SessionStats s = stats_;
  s.results = stream_->delivered();
  return s;
}

uint64_t AddWorkloadEvent(Session* session, const WorkloadEvent& e, StackId stack, TaskId task) {
  switch (e.kind) {
    case WorkloadKind::kAlloc:
      return session->Alloc({.order = e.order,
                             .gfp_mask = e.gfp_mask,
                             .stack = stack,
                             .task = task,
                             .ts_ns = e.ts_ns,
                             .pfn = std::nullopt});
    case WorkloadKind::kFree:
      return session->Free(
          {.pfn = e.pfn, .order = e.order, .stack = stack, .task = task, .ts_ns = e.ts_ns});
    case WorkloadKind::kMigrate:
      break;
  }
  return session->Migrate({.pfn = e.pfn,
                           .reason = e.reason,
                           .target = std::nullopt,
                           .stack = stack,
                           .task = task,
                           .ts_ns = e.ts_ns});
}

}  // namespace pageowner::client
