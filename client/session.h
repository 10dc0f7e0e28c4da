// Session: one Ingest stream. It batches alloc, free and migrate events into the columnar
// EventBatch, interns stacks and tasks into stream-local ids (a stack's frames cross the wire once
// per stream, in the batch of the first event that uses it), keeps a bounded number of batches in
// flight, and hands back one result per event, in the order the events were added.
#ifndef PAGEOWNER_CLIENT_SESSION_H_
#define PAGEOWNER_CLIENT_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/machine.h"
#include "core/types.h"
#include "core/workload.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace pageowner {
namespace v1 {
class EventBatch;
}  // namespace v1

namespace client {

// One return address of a stack, innermost first, as the caller knows it.
struct Frame {
  // The return address; 0 when unknown (then `symbol` must be set, and the daemon derives a
  // stable address from it).
  uint64_t ip = 0;
  // The frame as %pS prints it ("func+0x1a/0x50"); empty when unknown.
  std::string symbol;
};

// The task an event is charged to. `comm` is copied when interned.
struct Task {
  int32_t pid = 0;
  int32_t tgid = 0;
  std::string_view comm;
};

// A stream-local stack id from Session::InternStack; 0 means "no stack".
class StackId {
 public:
  constexpr StackId() = default;
  constexpr explicit StackId(uint32_t v) : v_(v) {}
  constexpr uint32_t raw() const { return v_; }
  constexpr bool valid() const { return v_ != 0; }
  friend constexpr bool operator==(StackId, StackId) = default;

 private:
  uint32_t v_ = 0;
};

// A stream-local task id from Session::InternTask; 0 means pid 0, tgid 0, comm "".
class TaskId {
 public:
  constexpr TaskId() = default;
  constexpr explicit TaskId(uint32_t v) : v_(v) {}
  constexpr uint32_t raw() const { return v_; }
  constexpr bool valid() const { return v_ != 0; }
  friend constexpr bool operator==(TaskId, TaskId) = default;

 private:
  uint32_t v_ = 0;
};

// How an event names its stack: by an id InternStack returned (the fast path), or by its frames,
// which the session interns by content. Holds a view: the frames must outlive the Add call.
class StackRef {
 public:
  StackRef() = default;
  StackRef(StackId id) : id_(id) {}                                                // NOLINT
  StackRef(absl::Span<const Frame> frames) : frames_(frames), by_frames_(true) {}  // NOLINT
  StackRef(const std::vector<Frame>& frames)                                       // NOLINT
      : frames_(frames), by_frames_(true) {}

  bool by_frames() const { return by_frames_; }
  StackId id() const { return id_; }
  absl::Span<const Frame> frames() const { return frames_; }

 private:
  StackId id_;
  absl::Span<const Frame> frames_;
  bool by_frames_ = false;
};

// How an event names its task: by an id InternTask returned, or by value (interned).
class TaskRef {
 public:
  TaskRef() = default;
  TaskRef(TaskId id) : id_(id) {}                              // NOLINT
  TaskRef(const Task& task) : task_(task), by_value_(true) {}  // NOLINT

  bool by_value() const { return by_value_; }
  TaskId id() const { return id_; }
  const Task& task() const { return task_; }

 private:
  TaskId id_;
  Task task_;
  bool by_value_ = false;
};

// An allocation (__alloc_pages + __set_page_owner).
struct AllocSpec {
  Order order;
  uint32_t gfp_mask = 0;
  StackRef stack;  // the daemon requires one
  TaskRef task;
  uint64_t ts_ns = 0;
  std::optional<Pfn> pfn;  // place the block exactly here; unset: the allocator chooses
  // EVENT_FLAG_TRUSTED: a real machine's allocation, applied over what the daemon believes.
  bool trusted = false;
  // EVENT_FLAG_EARLY: attach; the block at `pfn` (required) gets the early handle; `stack`,
  // `task` and `gfp_mask` may be left empty.
  bool early = false;
  // EVENT_FLAG_RESERVED: the block at `pfn` (required) is not RAM on the machine mirrored; the
  // daemon never hands it out. `stack`, `task` and `gfp_mask` may be left empty.
  bool reserved = false;
};

// A free of the block headed by `pfn`; `order` must be the block's order (unless trusted).
struct FreeSpec {
  Pfn pfn;
  Order order;
  StackRef stack;  // the free stack; none is allowed
  TaskRef task;
  uint64_t ts_ns = 0;
  // EVENT_FLAG_TRUSTED: a real machine's free, applied over what the daemon believes.
  bool trusted = false;
};

// A migration of the block headed by `pfn` to a new block (at `target` when set).
struct MigrateSpec {
  Pfn pfn;
  MigrateReason reason = MigrateReason::kCompaction;  // never kNone
  std::optional<Pfn> target;
  StackRef stack;  // the migrating task's stack; none is allowed
  TaskRef task;
  uint64_t ts_ns = 0;
};

// A block read from a real page_owner dump, placed at `pfn` (EVENT_KIND_IMPORT).
struct ImportSpec {
  Pfn pfn;
  Order order;
  uint32_t gfp_mask = 0;
  StackRef stack;  // the daemon requires one
  TaskRef task;
  uint64_t ts_ns = 0;
  uint64_t free_ts_ns = 0;
  MigrateReason last_migrate_reason = MigrateReason::kNone;
  std::optional<MigrateType> pageblock_migratetype;
  // What the kernel printed beyond the record (interned by content, sent once a stream); null
  // for none. Read during the Import call only.
  const PrintedExtras* extras = nullptr;
};

// What became of one event.
struct IngestResult {
  uint64_t seq = 0;  // the event's number in its session: 0 for the first event added
  absl::StatusCode code = absl::StatusCode::kOk;
  Pfn pfn;              // alloc: the block; free: the freed pfn; migrate: the target; 0 on error
  StackHandle handle;   // alloc: the handle stored; free: the free handle; migrate: the owner's
  std::string message;  // empty when OK
  bool ok() const { return code == absl::StatusCode::kOk; }
};

struct SessionOptions {
  // Events a batch, at least 1; keep it at most the daemon's --max_batch_events, or every batch
  // is refused whole.
  size_t batch_events = 4096;
  // A batch is also sent early once the stack and task definitions it carries reach this size,
  // so that a burst of new stacks stays well under gRPC's message size limit.
  size_t batch_definition_bytes = 1 << 20;
  // Batches sent (or queued to be sent) and not yet answered, at least 1. When that many are in
  // flight, the call that fills the next batch blocks until the daemon answers one: backpressure.
  size_t max_in_flight = 8;
  // If set, results are handed here, a batch at a time in event order, and Poll returns nothing.
  // It runs on a gRPC thread or inside Add/Flush/Finish, never two calls at once; it must not call
  // back into the session. If unset, results queue up until Poll takes them.
  std::function<void(absl::Span<const IngestResult>)> on_results;
};

// Counters of one session.
struct SessionStats {
  uint64_t events = 0;       // events added
  uint64_t batches = 0;      // batches submitted
  uint64_t stacks_sent = 0;  // stack definitions sent
  uint64_t tasks_sent = 0;   // task definitions sent
  uint64_t results = 0;      // results delivered
};

// Invariants:
//  1. Every added event gets exactly one result, and results come in the order of `seq`. Events
//     the daemon never answered (the stream broke, or was cancelled) get the stream's status, or
//     ABORTED when the stream ended cleanly without answering them.
//  2. A stack or task id is defined on the wire at most once per stream, in the batch of the
//     first event that references it; a symbol is sent at most once per address.
//  3. At most max_in_flight batches are unanswered at any time.
//
// Thread-safety: the producer side (Intern*, Alloc, Free, Migrate, Flush, Finish, Poll, stats)
// is for one thread at a time. Results are produced on gRPC's threads (see on_results).
// Destroying a session that was not finished cancels its stream; its unanswered events then get
// CANCELLED results.
class Session {
 public:
  // Opens the Ingest stream on `channel`. Errors (the daemon unreachable, ...) show up as failed
  // results and in Finish.
  Session(std::shared_ptr<grpc::Channel> channel, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The stream-local id of a stack (the same frames give the same id). Nothing is sent until an
  // event uses it. REQUIRES: frames non-empty.
  StackId InternStack(absl::Span<const Frame> frames);
  // The stream-local id of a task (the same pid, tgid and comm give the same id).
  TaskId InternTask(const Task& task);

  // Add an event to the current batch and return its seq. Sends the batch when it is full, and
  // then may block while max_in_flight batches are unanswered. After Finish, the event is not
  // sent and its result is FAILED_PRECONDITION.
  uint64_t Alloc(const AllocSpec& e);
  uint64_t Free(const FreeSpec& e);
  uint64_t Migrate(const MigrateSpec& e);
  uint64_t Import(const ImportSpec& e);

  // Sends the current batch now, even if it is not full (may block like Alloc). Does not wait
  // for its answer.
  void Flush();

  // Sends what is left, closes the sending side, waits until every event has its result and
  // returns the stream's final status. Idempotent.
  absl::Status Finish();

  // Appends the results that have arrived (all of them, in order) to `out`; returns how many.
  // Never blocks for the daemon.
  size_t Poll(std::vector<IngestResult>* out);

  SessionStats stats() const;

 private:
  class Stream;  // the gRPC reactor: everything that runs on gRPC's threads

  struct StackEntry {
    std::vector<Frame> frames;
    bool sent = false;
  };
  struct TaskEntry {
    int32_t pid = 0;
    int32_t tgid = 0;
    std::string comm;
    bool sent = false;
  };

  StackId Resolve(const StackRef& ref);
  TaskId Resolve(const TaskRef& ref);
  // Appends one event's columns (and any definitions it needs first) and sends the batch when it
  // is full.
  uint64_t Add(int kind, uint32_t order, uint64_t pfn, uint64_t target_pfn, uint32_t gfp_mask,
               StackId stack, TaskId task, uint64_t ts_ns, int reason, uint32_t flags,
               uint64_t free_ts_ns = 0, uint32_t block_mt = 0, uint32_t extras_id = 0);
  // The stream-local id of printed extras (0 for null), defined in the current batch the first
  // time.
  uint32_t InternExtras(const PrintedExtras* extras);
  void DefineStack(StackId id);
  void DefineTask(TaskId id);
  void Submit();

  const SessionOptions options_;
  std::unique_ptr<Stream> stream_;

  // Producer-side state.
  std::unique_ptr<v1::EventBatch> batch_;  // the batch being filled
  size_t batch_events_ = 0;
  size_t batch_definition_bytes_ = 0;
  uint32_t batch_nonzero_ = 0;  // bit per optional column: some value in it is not 0
  uint64_t next_seq_ = 0;
  uint64_t next_batch_sequence_ = 1;
  bool finished_ = false;
  absl::Status final_status_;
  SessionStats stats_;

  std::vector<StackEntry> stacks_;                           // by id - 1
  std::vector<TaskEntry> tasks_;                             // by id - 1
  absl::flat_hash_map<std::string, uint32_t> stack_ids_;     // frames, encoded -> id
  absl::flat_hash_map<std::string, uint32_t> task_ids_;      // pid, tgid, comm, encoded -> id
  absl::flat_hash_set<uint64_t> named_ips_;                  // addresses whose symbol was sent
  absl::flat_hash_map<PrintedExtras, uint32_t> extras_ids_;  // extras -> id (sent with the id)
  std::string key_;                                          // scratch for the encodings
};

// Adds a synthetic workload event (core/workload.h) to `session` with the stack and task ids the
// session interned for the workload's stacks and tasks; returns its event sequence number.
uint64_t AddWorkloadEvent(Session* session, const WorkloadEvent& e, StackId stack, TaskId task);

}  // namespace client
}  // namespace pageowner

#endif  // PAGEOWNER_CLIENT_SESSION_H_
