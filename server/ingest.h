// Ingest: the stream-local definitions of one Ingest stream, the translation of its columnar
// EventBatches into core events, and the one writer thread that applies the batches of every
// stream to the machine.
#ifndef PAGEOWNER_SERVER_INGEST_H_
#define PAGEOWNER_SERVER_INGEST_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/machine.h"
#include "core/symbols.h"
#include "pageowner/v1/pageowner.pb.h"
#include "server/limits.h"
#include "server/shared_machine.h"
#include "server/wal.h"

namespace pageowner::server {

// Ingest traffic, for GetStats.
struct IngestCounters {
  std::atomic<uint64_t> batches{0};           // batches read, malformed ones included
  std::atomic<uint64_t> batches_rejected{0};  // malformed batches
  std::atomic<uint64_t> streams_open{0};
  std::atomic<uint64_t> events_invalid{0};   // events refused before reaching the machine
  std::atomic<uint64_t> streams_refused{0};  // Ingest streams refused past --max_streams

  // Every event a stream carried, by kind and by the google.rpc.Code it was answered with (the
  // batch's INVALID_ARGUMENT for the events of a malformed batch), for /metrics.
  // Kind index: 0 alloc, 1 free, 2 migrate, 3 import (Event's alternatives, EventKind - 1),
  // kOtherKind for any other kind value (only a malformed batch carries one).
  static constexpr int kOtherKind = 4;
  static constexpr int kEventKinds = 5;
  static constexpr int kCodes = 17;  // google.rpc.Code 0..16
  std::array<std::array<std::atomic<uint64_t>, kCodes>, kEventKinds> events{};
  void CountEvent(int kind, int32_t code) {
    if (code < 0 || code >= kCodes) code = 2;  // UNKNOWN
    events[kind].at(code).fetch_add(1, std::memory_order_relaxed);
  }
};

// A stack definition of a stream: its frames, and the handle the machine last stored for them
// (a cache the machine checks before use, so a stale value only costs the normal lookup).
struct StackDefinition {
  std::vector<uint64_t> frames;
  mutable std::atomic<uint32_t> handle_hint{0};
  // Set by the ingest writer once a log record holding this stack was written: the log then has
  // every name its frames had (they were registered when it was defined, and the log's names
  // are never dropped), so later records need not look its frames up again.
  mutable std::atomic<bool> logged{false};
};

// One batch, validated and translated, waiting for the writer.
struct PreparedBatch {
  uint64_t sequence = 0;
  // Not OK (kInvalidArgument): the batch is malformed; answer with it and apply nothing.
  absl::Status malformed;
  std::vector<Event> events;
  // One a event: not OK when the event is invalid on its own (e.g. a migrate without a reason);
  // it then fails alone with this status and never reaches the machine.
  std::vector<absl::Status> prechecked;
  // One a event: the handle cache of the event's stack, null when it has none.
  std::vector<std::atomic<uint32_t>*> hints;
  // One a event: the definition of the event's stack, null when it has none.
  std::vector<const StackDefinition*> stacks;
  // The definitions the events' frames and comms point into, kept alive until the batch is
  // applied even if a later batch of the stream redefines their ids.
  std::vector<std::shared_ptr<const void>> keepalive;

  // Empties the batch but keeps its buffers' capacity.
  void Clear() {
    malformed = absl::OkStatus();
    events.clear();
    prechecked.clear();
    hints.clear();
    stacks.clear();
    keepalive.clear();
  }
};

// What one stream may send and keep (ServiceOptions fills it from the flags).
struct IngestLimits {
  uint32_t max_batch_events = kDefaultMaxBatchEvents;
  // Bytes of frame names the daemon keeps over all streams (the symbol table); a batch whose
  // new names would pass it is refused whole with kResourceExhausted.
  uint64_t max_symbol_bytes = kDefaultMaxSymbolBytes;
  // Bytes of definitions (frames, comms, printed extras) one stream keeps; a batch that would
  // pass it is refused whole with kResourceExhausted.
  uint64_t max_stream_definition_bytes = kDefaultMaxStreamDefinitionBytes;
};

// The definitions of one stream and the translation of its batches.
//
// A batch is malformed (kInvalidArgument), and then changes nothing (not the stream's
// definitions, not the names of addresses), when it has more events than max_batch_events, a
// column that is neither empty nor one value a event, an event kind that is not ALLOC, FREE,
// MIGRATE or IMPORT, a stack, task or extras definition with id 0, a frame with neither ip nor
// symbol, a symbol above kMaxSymbolBytes or a comm above kMaxCommBytes, or an event that names a
// stack, task or extras id that neither this batch nor an earlier batch of the stream defined.
// It is refused whole with kResourceExhausted, changing nothing either, when its names would
// take the symbol table past max_symbol_bytes or its definitions the stream past
// max_stream_definition_bytes. Everything is checked before anything is kept, so a refused
// batch leaves no trace. An id defined twice in one batch takes the last definition; a
// definition replaces the stream's earlier one for later events (events already prepared keep
// the one they saw).
//
// Thread-safety: not thread-safe; one stream's batches are prepared one at a time, in order.
class IngestStream {
 public:
  IngestStream(SymbolTable* symbols, IngestLimits limits);
  IngestStream(const IngestStream&) = delete;
  IngestStream& operator=(const IngestStream&) = delete;

  // Validates `batch`, adds its definitions to the stream and translates its events into
  // *out. Returns (and stores in out->malformed) the batch's error (see the class comment);
  // then out->events is empty and the stream is as it was.
  absl::Status Prepare(const v1::EventBatch& batch, PreparedBatch* out);

  size_t stack_definitions() const { return stacks_.size(); }
  size_t task_definitions() const { return tasks_.size(); }
  uint64_t definition_bytes() const { return definition_bytes_; }

 private:
  struct Task {
    int32_t pid = 0;
    int32_t tgid = 0;
    std::string comm;
  };
  // A definition, its size in bytes, and the batch that last pinned it in its keepalive.
  template <typename T>
  struct Entry {
    std::shared_ptr<const T> value;
    uint64_t bytes = 0;
    uint64_t pinned_by = 0;
  };

  // The checks that need no definition: sizes, columns, kinds, the definitions themselves.
  absl::Status Validate(const v1::EventBatch& batch) const;
  // Every id an event names is defined by this batch or an earlier one.
  absl::Status CheckReferences(const v1::EventBatch& batch) const;
  // The batch's new names and definitions fit the limits.
  absl::Status CheckBudget(const v1::EventBatch& batch) const;
  // Adds the batch's definitions and names their frames; only for a batch that passed the
  // checks above.
  void Define(const v1::EventBatch& batch);
  // Stack `id` (no frames for 0), pinned in `out`; null when `id` is not defined.
  const StackDefinition* StackOf(uint32_t id, PreparedBatch* out);
  // The task `id` (pid 0, tgid 0, "" for 0), pinned in `out`; null when not defined.
  const Task* TaskOf(uint32_t id, PreparedBatch* out);
  // The printed extras `id`, pinned in `out`; null for 0 (and when not defined).
  const PrintedExtras* ExtrasOf(uint32_t id, PreparedBatch* out);

  SymbolTable* const symbols_;
  const IngestLimits limits_;
  uint64_t batch_number_ = 0;
  uint64_t definition_bytes_ = 0;
  absl::flat_hash_map<uint32_t, Entry<StackDefinition>> stacks_;
  absl::flat_hash_map<uint32_t, Entry<Task>> tasks_;
  absl::flat_hash_map<uint32_t, Entry<PrintedExtras>> extras_;
};

// Fills *out with the answer to `batch`: the malformed status, or one code, pfn and handle a
// event (`results` is ignored for a malformed batch; otherwise one a event).
void FillBatchResult(const PreparedBatch& batch, absl::Span<const EventResult> results,
                     v1::BatchResult* out);

// The one writer: a thread that applies the prepared batches of every stream to the machine in
// the order they were submitted, and hands each answer to its callback.
//
// With a write-ahead log (AttachLog), the writer takes every batch queued at once (a group),
// writes their records with one write, applies them, and hands the answers to a second thread,
// the syncer, which makes the group durable with one fdatasync (shared with the groups written
// meanwhile) and only then calls their callbacks, in submission order. A group whose write
// fails is answered UNAVAILABLE with the reason, and nothing of it is applied. So the machine
// may be ahead of the disk, never the answers; the log stays in apply order.
//
// Thread-safety: Submit and SubmitTracking may be called from any thread; `done` runs on the
// writer thread (the syncer thread with a log) and must not block (it queues a gRPC write).
class IngestWriter {
 public:
  // Gets the answer, and the batch back (events cleared, definitions released) so that its
  // buffers can be reused for a later batch.
  using Done = std::function<void(v1::BatchResult, PreparedBatch)>;
  // SetTracking's answer: OK with the tracking state after it and the pages given the early
  // handle, or the log's UNAVAILABLE (then nothing changed).
  using TrackingDone = std::function<void(absl::Status, bool tracking, uint64_t early_pages)>;

  IngestWriter(SharedMachine* machine, IngestCounters* counters);
  // Stop()s.
  ~IngestWriter();
  IngestWriter(const IngestWriter&) = delete;
  IngestWriter& operator=(const IngestWriter&) = delete;

  // Logs every batch and SetTracking to `wal` from now on. REQUIRES: nothing submitted yet;
  // `wal` outlives the writer's Stop.
  void AttachLog(Wal* wal) ABSL_LOCKS_EXCLUDED(mu_);
  bool logging() const { return wal_ != nullptr; }

  void Submit(PreparedBatch batch, Done done) ABSL_LOCKS_EXCLUDED(mu_);
  // SetTracking(on, ts_ns) in the batches' order (and log).
  void SubmitTracking(bool on, uint64_t ts_ns, TrackingDone done) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs fn on the writer thread after every batch submitted before it was applied and before
  // any submitted after (fn sees the machine and the log at one record boundary); returns once
  // fn ran. After Stop, runs fn on the caller's thread.
  void RunOnWriter(const std::function<void()>& fn) ABSL_LOCKS_EXCLUDED(mu_);
  // Applies and answers what is queued, then ends the thread. A batch submitted afterwards is
  // applied on the caller's thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Tracking {
    bool on = false;
    uint64_t ts_ns = 0;
    TrackingDone done;
  };
  struct Job {
    PreparedBatch batch;
    Done done;
    std::optional<Tracking> tracking;                // a SetTracking instead of a batch
    const std::function<void()>* barrier = nullptr;  // RunOnWriter's fn instead of a batch
  };
  // An answer waiting for its record to be durable.
  struct Ack {
    Job job;
    v1::BatchResult result;
    absl::Status status;       // of a SetTracking
    bool tracking_on = false;  // after a SetTracking
    uint64_t early_pages = 0;
    uint64_t durable_seq = 0;  // 0: nothing to wait for
  };
  void Run();
  void Process(Job& job);
  // Applies job (which must be a batch or a SetTracking) and fills its answer.
  void Apply(Job& job, Ack* ack);
  // With a log: writes the group's records, applies it, queues the answers for the syncer.
  void ProcessGroup(std::vector<Job>& jobs);
  void SyncLoop();
  // Makes the acks durable and answers them in order.
  void Answer(std::vector<Ack>& acks);

  SharedMachine* const machine_;
  IngestCounters* const counters_;
  Wal* wal_ = nullptr;
  std::vector<bool> logged_scratch_;  // ProcessGroup's, on the writer thread
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Ack> acks_ ABSL_GUARDED_BY(mu_);
  bool syncer_stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::thread syncer_;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_INGEST_H_
