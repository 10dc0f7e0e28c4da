#include "core/strings.h"
#include "server/ingest.h"

#include <optional>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "wire/status.h"
#include "wire/convert.h"

namespace pageowner::server {
namespace {


constexpr uint32_t kKnownFlags = v1::EVENT_FLAG_AT_PFN | v1::EVENT_FLAG_AT_TARGET;

// Value i of a column that is empty (all zeros) or one value a event.
template <typename T>
T At(const google::protobuf::RepeatedField<T>& column, int i) {
  return column.empty() ? T{} : column.Get(i);
}

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed batch: ", Sv(what)));
}

}  // namespace

IngestStream::IngestStream(SymbolTable* symbols, uint32_t max_batch_events)
    : symbols_(symbols), max_batch_events_(max_batch_events) {}

absl::Status IngestStream::Validate(const v1::EventBatch& b) const {
  const int n = b.kind_size();
  if (static_cast<uint64_t>(n) > max_batch_events_) {
    return Malformed(absl::StrCat(n, " events, more than --max_batch_events=", max_batch_events_));
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
    }
  }
  for (const v1::TaskDef& def : b.tasks()) {
    if (def.id() == 0) return Malformed("a task definition has id 0 (ids start at 1)");
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

void IngestStream::Define(const v1::EventBatch& b) {
  undo_stacks_.clear();
  undo_tasks_.clear();
  undo_extras_.clear();
  for (const v1::ExtrasDef& def : b.extras()) {
    auto value = std::make_shared<const PrintedExtras>(wire::FromProto(def.extras()));
    auto [it, inserted] = extras_.try_emplace(def.id());
    undo_extras_.push_back({def.id(), inserted ? std::nullopt : std::optional(it->second)});
    it->second = Entry<PrintedExtras>{std::move(value), 0};
  }
  for (const v1::StackDef& def : b.stacks()) {
    auto stack = std::make_shared<StackDefinition>();
    stack->frames.reserve(def.frames_size());
    for (const v1::Frame& f : def.frames()) {
      // A name-only frame needs its address now; named addresses are registered on Commit.
      stack->frames.push_back(f.ip() != 0 ? f.ip() : symbols_->SyntheticAddress(f.symbol()));
    }
    auto [it, inserted] = stacks_.try_emplace(def.id());
    undo_stacks_.push_back({def.id(), inserted ? std::nullopt : std::optional(it->second)});
    it->second = Entry<StackDefinition>{std::move(stack), 0};
  }
  for (const v1::TaskDef& def : b.tasks()) {
    auto [it, inserted] = tasks_.try_emplace(def.id());
    undo_tasks_.push_back({def.id(), inserted ? std::nullopt : std::optional(it->second)});
    it->second =
        Entry<Task>{std::make_shared<const Task>(Task{def.pid(), def.tgid(), def.comm()}), 0};
  }
}

void IngestStream::Commit(const v1::EventBatch& b) {
  for (const v1::StackDef& def : b.stacks()) {
    for (const v1::Frame& f : def.frames()) {
      if (f.ip() != 0) symbols_->Register(f.ip(), f.symbol());  // an empty name is ignored
    }
  }
}

void IngestStream::Undo() {
  for (auto it = undo_stacks_.rbegin(); it != undo_stacks_.rend(); ++it) {
    if (it->second.has_value()) {
      stacks_[it->first] = *it->second;
    } else {
      stacks_.erase(it->first);
    }
  }
  for (auto it = undo_tasks_.rbegin(); it != undo_tasks_.rend(); ++it) {
    if (it->second.has_value()) {
      tasks_[it->first] = *it->second;
    } else {
      tasks_.erase(it->first);
    }
  }
  for (auto it = undo_extras_.rbegin(); it != undo_extras_.rend(); ++it) {
    if (it->second.has_value()) {
      extras_[it->first] = *it->second;
    } else {
      extras_.erase(it->first);
    }
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

const PrintedExtras* IngestStream::ExtrasOf(uint32_t id, PreparedBatch* out, bool* defined) {
  *defined = true;
  if (id == 0) return nullptr;
  auto it = extras_.find(id);
  if (it == extras_.end()) {
    *defined = false;
    return nullptr;
  }
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
  if (!out->malformed.ok()) return out->malformed;
  Define(b);
  // An undefined id is found while translating; then the batch's definitions are taken back.
  const auto undefined = [&](const char* what, int i, uint32_t id) {
    Undo();
    out->Clear();
    out->malformed = Malformed(
        absl::StrCat("event ", i, ": ", what, " id ", id, " is not defined in this stream"));
    return out->malformed;
  };

  const int n = b.kind_size();
  out->events.reserve(n);
  out->hints.reserve(n);
  out->prechecked.resize(n);
  for (int i = 0; i < n; ++i) {
    const uint32_t flags = At(b.flags(), i);
    const uint32_t stack_id = At(b.stack_id(), i);
    const StackDefinition* stack = StackOf(stack_id, out);
    if (stack == nullptr) return undefined("stack", i, stack_id);
    const uint32_t task_id = At(b.task_id(), i);
    const Task* task_def = TaskOf(task_id, out);
    if (task_def == nullptr) return undefined("task", i, task_id);
    const Task& task = *task_def;
    const absl::Span<const uint64_t> frames = stack->frames;
    out->hints.push_back(stack_id != 0 ? &stack->handle_hint : nullptr);
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
        out->events.emplace_back(e);
        break;
      }
      case v1::EVENT_KIND_IMPORT: {
        const uint32_t extras_id = At(b.extras_id(), i);
        bool defined = true;
        const PrintedExtras* extras = ExtrasOf(extras_id, out, &defined);
        if (!defined) return undefined("extras", i, extras_id);
        const absl::StatusOr<MigrateReason> reason = wire::MigrateReasonFromProto(At(b.reason(), i));
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
                                           .ts_ns = At(b.ts_ns(), i)});
        break;
      default: {  // EVENT_KIND_MIGRATE (Validate let no other kind through)
        // NONE converts to kNone, which the machine refuses for a migration.
        const absl::StatusOr<MigrateReason> reason = wire::MigrateReasonFromProto(At(b.reason(), i));
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
  Commit(b);
  return absl::OkStatus();
}

void FillBatchResult(const PreparedBatch& batch, absl::Span<const EventResult> results,
                     v1::BatchResult* out) {
  out->Clear();
  out->set_sequence(batch.sequence);
  if (!batch.malformed.ok()) {
    out->set_code(wire::ToRpcCode(batch.malformed.code()));
    out->set_message(std::string(batch.malformed.message()));
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
      (*out->mutable_event_message())[static_cast<uint32_t>(i)] = std::string(r.status.message());
    }
  }
}

IngestWriter::IngestWriter(SharedMachine* machine, IngestCounters* counters)
    : machine_(machine), counters_(counters), thread_([this] { Run(); }) {}

IngestWriter::~IngestWriter() { Stop(); }

void IngestWriter::Submit(PreparedBatch batch, Done done) {
  Job job{std::move(batch), std::move(done)};
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(std::move(job));
      return;
    }
  }
  Process(job);
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
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(job);
  }
}

void IngestWriter::Run() {
  for (;;) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](IngestWriter* w)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return !w->queue_.empty() || w->stopping_; },
          this));
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Process(job);
  }
}

void IngestWriter::Process(Job& job) {
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
  v1::BatchResult result;
  FillBatchResult(job.batch, results, &result);
  job.batch.Clear();  // the definitions may go before the answer is written
  job.done(std::move(result), std::move(job.batch));
}

}  // namespace pageowner::server
