#include "server/ingest.h"

#include <optional>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "core/status_macros.h"
#include "core/strings.h"
#include "server/failpoints.h"
#include "server/wal_record.h"
#include "wire/convert.h"
#include "wire/status.h"

namespace pageowner::server {
namespace {

constexpr uint32_t kKnownFlags = v1::EVENT_FLAG_AT_PFN | v1::EVENT_FLAG_AT_TARGET |
                                 v1::EVENT_FLAG_TRUSTED | v1::EVENT_FLAG_EARLY |
                                 v1::EVENT_FLAG_RESERVED;

// Value i of a column that is empty (all zeros) or one value a event.
template <typename T>
T At(const google::protobuf::RepeatedField<T>& column, int i) {
  return column.empty() ? T{} : column.Get(i);
}

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed batch: ", Sv(what)));
}

}  // namespace

IngestStream::IngestStream(SymbolTable* symbols, IngestLimits limits)
    : symbols_(symbols), limits_(limits) {}

absl::Status IngestStream::Validate(const v1::EventBatch& b) const {
  const int n = b.kind_size();
  if (static_cast<uint64_t>(n) > limits_.max_batch_events) {
    return Malformed(
        absl::StrCat(n, " events, more than --max_batch_events=", limits_.max_batch_events));
  }
  const std::pair<const char*, int> columns[] = {
      {"order", b.order_size()},
      {"pfn", b.pfn_size()},
      {"target_pfn", b.target_pfn_size()},
      {"gfp_mask", b.gfp_mask_size()},
      {"stack_id", b.stack_id_size()},
      {"task_id", b.task_id_size()},
      {"ts_ns", b.ts_ns_size()},
      {"reason", b.reason_size()},
      {"flags", b.flags_size()},
      {"free_ts_ns", b.free_ts_ns_size()},
      {"pageblock_migratetype", b.pageblock_migratetype_size()},
      {"extras_id", b.extras_id_size()}};
  for (const auto& [name, size] : columns) {
    if (size != 0 && size != n) {
      return Malformed(absl::StrCat("column ", name, " has ", size, " values for ", n,
                                    " events (it must be empty or have one a event)"));
    }
  }
  for (const v1::StackDef& def : b.stacks()) {
    if (def.id() == 0) return Malformed("a stack definition has id 0 (ids start at 1)");
    for (int j = 0; j < def.frames_size(); ++j) {
      const v1::Frame& f = def.frames(j);
      if (f.ip() == 0 && f.symbol().empty()) {
        return Malformed(
            absl::StrCat("stack ", def.id(), ": frame ", j, " has neither an ip nor a symbol"));
      }
      if (f.symbol().size() > kMaxSymbolBytes) {
        return Malformed(absl::StrCat("stack ", def.id(), ": frame ", j, " has a symbol of ",
                                      f.symbol().size(), " bytes (at most ", kMaxSymbolBytes, ")"));
      }
    }
  }
  for (const v1::TaskDef& def : b.tasks()) {
    if (def.id() == 0) return Malformed("a task definition has id 0 (ids start at 1)");
    if (def.comm().size() > kMaxCommBytes) {
      return Malformed(absl::StrCat("task ", def.id(), ": a comm of ", def.comm().size(),
                                    " bytes (at most ", kMaxCommBytes, ")"));
    }
  }
  for (const v1::ExtrasDef& def : b.extras()) {
    if (def.id() == 0) return Malformed("an extras definition has id 0 (ids start at 1)");
  }
  for (int i = 0; i < n; ++i) {
    const int kind = b.kind(i);
    if (kind != v1::EVENT_KIND_ALLOC && kind != v1::EVENT_KIND_FREE &&
        kind != v1::EVENT_KIND_MIGRATE && kind != v1::EVENT_KIND_IMPORT) {
      return Malformed(absl::StrCat("event ", i, ": kind ", kind,
                                    kind == 0 ? " (EVENT_KIND_UNSPECIFIED)" : "",
                                    " is not ALLOC, FREE, MIGRATE or IMPORT"));
    }
  }
  return absl::OkStatus();
}

absl::Status IngestStream::CheckReferences(const v1::EventBatch& b) const {
  // Definitions are few a batch; events many, mostly naming the same ids as the event before.
  absl::flat_hash_set<uint32_t> new_stacks, new_tasks, new_extras;
  for (const v1::StackDef& def : b.stacks()) new_stacks.insert(def.id());
  for (const v1::TaskDef& def : b.tasks()) new_tasks.insert(def.id());
  for (const v1::ExtrasDef& def : b.extras()) new_extras.insert(def.id());
  const auto check = [&](const auto& column, const auto& known, const auto& added,
                         const char* what) -> absl::Status {
    uint32_t last_ok = 0;
    for (int i = 0; i < column.size(); ++i) {
      const uint32_t id = column.Get(i);
      if (id == 0 || id == last_ok) continue;
      if (!known.contains(id) && !added.contains(id)) {
        return Malformed(
            absl::StrCat("event ", i, ": ", what, " id ", id, " is not defined in this stream"));
      }
      last_ok = id;
    }
    return absl::OkStatus();
  };
  PO_RETURN_IF_ERROR(check(b.stack_id(), stacks_, new_stacks, "stack"));
  PO_RETURN_IF_ERROR(check(b.task_id(), tasks_, new_tasks, "task"));
  return check(b.extras_id(), extras_, new_extras, "extras");
}

absl::Status IngestStream::CheckBudget(const v1::EventBatch& b) const {
  uint64_t names = 0;
  uint64_t bytes = 0;
  for (const v1::StackDef& def : b.stacks()) {
    bytes += sizeof(StackDefinition) + def.frames_size() * sizeof(uint64_t);
    for (const v1::Frame& f : def.frames()) {
      // A name the table already holds costs nothing more; a new one its bytes.
      if (!f.symbol().empty() &&
          (f.ip() == 0 ? !symbols_->HasSyntheticAddress(f.symbol()) : !symbols_->Named(f.ip()))) {
        names += f.symbol().size();
      }
    }
  }
  for (const v1::TaskDef& def : b.tasks()) bytes += sizeof(Task) + def.comm().size();
  for (const v1::ExtrasDef& def : b.extras()) {
    const v1::PrintedExtras& x = def.extras();
    bytes +=
        sizeof(PrintedExtras) + x.flags_text().size() + x.gfp_names().size() + x.memcg().size();
  }
  if (names > 0 && symbols_->name_bytes() + names > limits_.max_symbol_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the batch's frames add ", names, " bytes of names to the daemon's ",
        symbols_->name_bytes(), "; the limit is --max_symbol_bytes=", limits_.max_symbol_bytes));
  }
  if (definition_bytes_ + bytes > limits_.max_stream_definition_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the batch's definitions take the stream's ", definition_bytes_,
                     " bytes past "
                     "--max_stream_definition_bytes=",
                     limits_.max_stream_definition_bytes,
                     "; start another stream, or define fewer stacks and tasks"));
  }
  return absl::OkStatus();
}

void IngestStream::Define(const v1::EventBatch& b) {
  // Replacing a definition gives its bytes back; the batch's own size was checked as a whole.
  const auto put = [this](auto& map, uint32_t id, auto value, uint64_t bytes) {
    auto [it, inserted] = map.try_emplace(id);
    if (!inserted) definition_bytes_ -= it->second.bytes;
    definition_bytes_ += bytes;
    it->second.value = std::move(value);
    it->second.bytes = bytes;
    it->second.pinned_by = 0;
  };
  for (const v1::ExtrasDef& def : b.extras()) {
    const v1::PrintedExtras& x = def.extras();
    put(extras_, def.id(), std::make_shared<const PrintedExtras>(wire::FromProto(x)),
        sizeof(PrintedExtras) + x.flags_text().size() + x.gfp_names().size() + x.memcg().size());
  }
  for (const v1::StackDef& def : b.stacks()) {
    auto stack = std::make_shared<StackDefinition>();
    stack->frames.reserve(def.frames_size());
    for (const v1::Frame& f : def.frames()) {
      if (f.ip() == 0) {
        stack->frames.push_back(symbols_->SyntheticAddress(f.symbol()));
      } else {
        symbols_->Register(f.ip(), f.symbol());  // an empty name is ignored
        stack->frames.push_back(f.ip());
      }
    }
    put(stacks_, def.id(), std::move(stack),
        sizeof(StackDefinition) + def.frames_size() * sizeof(uint64_t));
  }
  for (const v1::TaskDef& def : b.tasks()) {
    put(tasks_, def.id(), std::make_shared<const Task>(Task{def.pid(), def.tgid(), def.comm()}),
        sizeof(Task) + def.comm().size());
  }
}

const StackDefinition* IngestStream::StackOf(uint32_t id, PreparedBatch* out) {
  static const StackDefinition kNoStack;
  if (id == 0) return &kNoStack;
  auto it = stacks_.find(id);
  if (it == stacks_.end()) return nullptr;
  Entry<StackDefinition>& e = it->second;
  if (e.pinned_by != batch_number_) {
    out->keepalive.push_back(e.value);
    e.pinned_by = batch_number_;
  }
  return e.value.get();
}

const IngestStream::Task* IngestStream::TaskOf(uint32_t id, PreparedBatch* out) {
  static const Task kNoTask;
  if (id == 0) return &kNoTask;
  auto it = tasks_.find(id);
  if (it == tasks_.end()) return nullptr;
  Entry<Task>& e = it->second;
  if (e.pinned_by != batch_number_) {
    out->keepalive.push_back(e.value);
    e.pinned_by = batch_number_;
  }
  return e.value.get();
}

const PrintedExtras* IngestStream::ExtrasOf(uint32_t id, PreparedBatch* out) {
  if (id == 0) return nullptr;
  auto it = extras_.find(id);
  if (it == extras_.end()) return nullptr;
  Entry<PrintedExtras>& e = it->second;
  if (e.pinned_by != batch_number_) {
    out->keepalive.push_back(e.value);
    e.pinned_by = batch_number_;
  }
  return e.value.get();
}

absl::Status IngestStream::Prepare(const v1::EventBatch& b, PreparedBatch* out) {
  ++batch_number_;
  out->Clear();
  out->sequence = b.sequence();
  out->malformed = Validate(b);
  if (out->malformed.ok()) out->malformed = CheckReferences(b);
  if (out->malformed.ok()) out->malformed = CheckBudget(b);
  if (!out->malformed.ok()) return out->malformed;
  Define(b);

  const int n = b.kind_size();
  out->events.reserve(n);
  out->hints.reserve(n);
  out->stacks.reserve(n);
  out->prechecked.resize(n);
  for (int i = 0; i < n; ++i) {
    const uint32_t flags = At(b.flags(), i);
    const uint32_t stack_id = At(b.stack_id(), i);
    // CheckReferences found every id defined.
    const StackDefinition* stack = StackOf(stack_id, out);
    const Task& task = *TaskOf(At(b.task_id(), i), out);
    const absl::Span<const uint64_t> frames = stack->frames;
    out->hints.push_back(stack_id != 0 ? &stack->handle_hint : nullptr);
    out->stacks.push_back(stack_id != 0 ? stack : nullptr);
    absl::Status& check = out->prechecked[i];
    if ((flags & ~kKnownFlags) != 0) {
      check = absl::InvalidArgumentError(
          absl::StrCat("unknown event flag bits 0x", absl::Hex(flags & ~kKnownFlags)));
    }
    switch (b.kind(i)) {
      case v1::EVENT_KIND_ALLOC: {
        AllocEvent e{.order = Order(At(b.order(), i)),
                     .gfp_mask = At(b.gfp_mask(), i),
                     .frames = frames,
                     .pid = task.pid,
                     .tgid = task.tgid,
                     .comm = task.comm,
                     .ts_ns = At(b.ts_ns(), i)};
        if (flags & v1::EVENT_FLAG_AT_PFN) e.pfn = Pfn(At(b.pfn(), i));
        e.trusted = (flags & v1::EVENT_FLAG_TRUSTED) != 0;
        e.early = (flags & v1::EVENT_FLAG_EARLY) != 0;
        e.reserved = (flags & v1::EVENT_FLAG_RESERVED) != 0;
        out->events.emplace_back(e);
        break;
      }
      case v1::EVENT_KIND_IMPORT: {
        const PrintedExtras* extras = ExtrasOf(At(b.extras_id(), i), out);
        const absl::StatusOr<MigrateReason> reason =
            wire::MigrateReasonFromProto(At(b.reason(), i));
        const absl::StatusOr<std::optional<MigrateType>> block_mt =
            wire::BatchMigratetypeFromProto(At(b.pageblock_migratetype(), i));
        if (check.ok()) check = reason.status();
        if (check.ok()) check = block_mt.status();
        ImportEvent e{.pfn = Pfn(At(b.pfn(), i)),
                      .order = Order(At(b.order(), i)),
                      .gfp_mask = At(b.gfp_mask(), i),
                      .frames = frames,
                      .pid = task.pid,
                      .tgid = task.tgid,
                      .comm = task.comm,
                      .ts_ns = At(b.ts_ns(), i),
                      .free_ts_ns = At(b.free_ts_ns(), i),
                      .last_migrate_reason = reason.value_or(MigrateReason::kNone),
                      .pageblock_migratetype = block_mt.value_or(std::nullopt),
                      .extras = extras};
        out->events.emplace_back(e);
        break;
      }
      case v1::EVENT_KIND_FREE:
        out->events.emplace_back(FreeEvent{.pfn = Pfn(At(b.pfn(), i)),
                                           .order = Order(At(b.order(), i)),
                                           .frames = frames,
                                           .pid = task.pid,
                                           .tgid = task.tgid,
                                           .ts_ns = At(b.ts_ns(), i),
                                           .trusted = (flags & v1::EVENT_FLAG_TRUSTED) != 0});
        break;
      default: {  // EVENT_KIND_MIGRATE (Validate let no other kind through)
        // NONE converts to kNone, which the machine refuses for a migration.
        const absl::StatusOr<MigrateReason> reason =
            wire::MigrateReasonFromProto(At(b.reason(), i));
        if (check.ok()) check = reason.status();
        MigrateEvent e{.pfn = Pfn(At(b.pfn(), i)),
                       .reason = reason.value_or(MigrateReason::kNone),
                       .frames = frames,
                       .pid = task.pid,
                       .tgid = task.tgid,
                       .ts_ns = At(b.ts_ns(), i)};
        if (flags & v1::EVENT_FLAG_AT_TARGET) e.target = Pfn(At(b.target_pfn(), i));
        out->events.emplace_back(e);
        break;
      }
    }
  }
  return absl::OkStatus();
}

void FillBatchResult(const PreparedBatch& batch, absl::Span<const EventResult> results,
                     v1::BatchResult* out) {
  out->Clear();
  out->set_sequence(batch.sequence);
  if (!batch.malformed.ok()) {
    out->set_code(wire::ToRpcCode(batch.malformed.code()));
    out->set_message(wire::WireMessage(batch.malformed.message()));
    return;
  }
  const int n = static_cast<int>(results.size());
  out->mutable_event_code()->Resize(n, 0);
  out->mutable_event_pfn()->Resize(n, 0);
  out->mutable_event_handle()->Resize(n, 0);
  int32_t* codes = out->mutable_event_code()->mutable_data();
  uint64_t* pfns = out->mutable_event_pfn()->mutable_data();
  uint32_t* handles = out->mutable_event_handle()->mutable_data();
  for (int i = 0; i < n; ++i) {
    const EventResult& r = results[i];
    if (r.status.ok()) {
      pfns[i] = r.pfn.raw();
      handles[i] = r.handle.raw();
    } else {
      codes[i] = wire::ToRpcCode(r.status.code());
      (*out->mutable_event_message())[static_cast<uint32_t>(i)] =
          wire::WireMessage(r.status.message());
    }
  }
}

IngestWriter::IngestWriter(SharedMachine* machine, IngestCounters* counters)
    : machine_(machine), counters_(counters), thread_([this] { Run(); }) {}

IngestWriter::~IngestWriter() { Stop(); }

void IngestWriter::AttachLog(Wal* wal) {
  absl::MutexLock lock(&mu_);
  wal_ = wal;
  syncer_ = std::thread([this] { SyncLoop(); });
}

void IngestWriter::Submit(PreparedBatch batch, Done done) {
  Job job{std::move(batch), std::move(done), std::nullopt};
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(std::move(job));
      return;
    }
  }
  Process(job);
}

void IngestWriter::SubmitTracking(bool on, uint64_t ts_ns, TrackingDone done) {
  Job job{PreparedBatch(), nullptr, Tracking{on, ts_ns, std::move(done)}};
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(std::move(job));
      return;
    }
  }
  Process(job);
}

void IngestWriter::RunOnWriter(const std::function<void()>& fn) {
  absl::Notification ran;
  const std::function<void()> run = [&] {
    fn();
    ran.Notify();
  };
  Job job;
  job.barrier = &run;
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(std::move(job));
      job.barrier = nullptr;
    }
  }
  if (job.barrier != nullptr) run();
  ran.WaitForNotification();
}

void IngestWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  thread_.join();
  // Batches submitted between the thread's last look and now.
  for (;;) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
      if (queue_.empty()) break;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(job);
  }
  if (syncer_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      syncer_stopping_ = true;
    }
    syncer_.join();
  }
}

void IngestWriter::Run() {
  std::vector<Job> group;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IngestWriter* w)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return !w->queue_.empty() || w->stopping_; },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      // Without a log, one batch at a time; with one, everything queued shares a write.
      // A RunOnWriter fn runs alone, between the jobs before and after it.
      do {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      } while (wal_ != nullptr && !queue_.empty() && group.back().barrier == nullptr &&
               queue_.front().barrier == nullptr);
    }
    if (group.front().barrier != nullptr) {
      (*group.front().barrier)();
    } else if (wal_ != nullptr) {
      ProcessGroup(group);
    } else {
      Process(group.front());
    }
    group.clear();
  }
}

void IngestWriter::Process(Job& job) {
  if (job.barrier != nullptr) {
    (*job.barrier)();
    return;
  }
  if (wal_ != nullptr) {
    std::vector<Job> group;
    group.push_back(std::move(job));
    ProcessGroup(group);
    return;
  }
  Ack ack;
  Apply(job, &ack);
  ack.job = std::move(job);
  std::vector<Ack> acks;
  acks.push_back(std::move(ack));
  Answer(acks);
}

void IngestWriter::Apply(Job& job, Ack* ack) {
  if (job.tracking.has_value()) {
    machine_->Write([&](Machine& m) {
      const uint64_t before = m.counters().early_handle_pages;
      m.SetTracking(job.tracking->on, job.tracking->ts_ns);
      ack->tracking_on = m.tracking();
      ack->early_pages = m.counters().early_handle_pages - before;
    });
    return;
  }
  std::vector<EventResult> results;
  if (job.batch.malformed.ok()) {
    machine_->ApplyBatch(absl::MakeSpan(job.batch.events), job.batch.prechecked, job.batch.hints,
                         &results);
    uint64_t invalid = 0;
    for (const absl::Status& s : job.batch.prechecked) invalid += s.ok() ? 0 : 1;
    if (invalid > 0) counters_->events_invalid.fetch_add(invalid, std::memory_order_relaxed);
    // Event's alternatives are the metric's kinds, in EventKind order.
    static_assert(std::variant_size_v<Event> == IngestCounters::kOtherKind);
    for (size_t i = 0; i < results.size(); ++i) {
      counters_->CountEvent(static_cast<int>(job.batch.events[i].index()),
                            wire::ToRpcCode(results[i].status.code()));
    }
  }
  FillBatchResult(job.batch, results, &ack->result);
  job.batch.Clear();  // the definitions may go before the answer is written
}

void IngestWriter::ProcessGroup(std::vector<Job>& jobs) {
  // One record a SetTracking and a batch with events for the machine; in submission order.
  std::string records;
  std::vector<uint64_t> new_names;
  uint64_t count = 0;
  const uint64_t first = wal_->next_seq();
  for (Job& job : jobs) {
    if (job.tracking.has_value()) {
      AppendTrackingRecord(first + count++, job.tracking->on, job.tracking->ts_ns, &records);
      continue;
    }
    if (!job.batch.malformed.ok()) continue;
    bool any = false;
    for (const absl::Status& s : job.batch.prechecked) any = any || s.ok();
    if (!any) continue;
    std::vector<bool>& logged = logged_scratch_;
    logged.assign(job.batch.events.size(), false);
    for (size_t i = 0; i < job.batch.stacks.size(); ++i) {
      const StackDefinition* d = job.batch.stacks[i];
      logged[i] = d != nullptr && d->logged.load(std::memory_order_relaxed);
    }
    AppendBatchRecord(first + count++, job.batch.events, job.batch.prechecked, machine_->symbols(),
                      wal_->names(), logged, &new_names, &records);
  }
  const absl::Status written = count > 0 ? wal_->Append(records, count) : absl::OkStatus();
  if (written.ok()) {
    for (uint64_t ip : new_names) wal_->names().Add(ip);
    for (const Job& job : jobs) {
      if (job.tracking.has_value() || !job.batch.malformed.ok()) continue;
      for (size_t i = 0; i < job.batch.stacks.size(); ++i) {
        const StackDefinition* d = job.batch.stacks[i];
        if (d != nullptr && job.batch.prechecked[i].ok()) {
          d->logged.store(true, std::memory_order_relaxed);
        }
      }
    }
  }
  std::vector<Ack> acks(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    Ack& ack = acks[i];
    Job& job = jobs[i];
    if (written.ok()) {
      Apply(job, &ack);
      ack.durable_seq = count > 0 ? first + count - 1 : 0;
    } else if (job.tracking.has_value()) {
      ack.status = written;
    } else {
      if (job.batch.malformed.ok()) {
        job.batch.malformed = absl::UnavailableError(
            absl::StrCat(written.message(), "; the batch was not applied, send it again"));
        for (const Event& e : job.batch.events) {
          counters_->CountEvent(static_cast<int>(e.index()),
                                wire::ToRpcCode(absl::StatusCode::kUnavailable));
        }
      }
      FillBatchResult(job.batch, {}, &ack.result);
      job.batch.Clear();
    }
    ack.job = std::move(job);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!syncer_stopping_ && syncer_.joinable()) {
      for (Ack& ack : acks) acks_.push_back(std::move(ack));
      return;
    }
  }
  Answer(acks);  // after Stop: on the caller's thread
}

void IngestWriter::SyncLoop() {
  std::vector<Ack> acks;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IngestWriter* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return !w->acks_.empty() || w->syncer_stopping_;
          },
          this));
      if (acks_.empty()) return;  // stopping, nothing left
      while (!acks_.empty()) {
        acks.push_back(std::move(acks_.front()));
        acks_.pop_front();
      }
    }
    Answer(acks);
    acks.clear();
  }
}

void IngestWriter::Answer(std::vector<Ack>& acks) {
  uint64_t durable = 0;
  for (const Ack& ack : acks) durable = std::max(durable, ack.durable_seq);
  if (durable > 0) {
    wal_->SyncTo(durable);  // one fdatasync for all of them
    MaybeCrash(Failpoint::kWalAfterFsync);
  }
  for (Ack& ack : acks) {
    if (ack.job.tracking.has_value()) {
      ack.job.tracking->done(ack.status, ack.tracking_on, ack.early_pages);
    } else {
      ack.job.done(std::move(ack.result), std::move(ack.job.batch));
    }
  }
}

}  // namespace pageowner::server
