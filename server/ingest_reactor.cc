// PageOwnerService::Ingest: the bidirectional stream's reactor. Batches are prepared on the
// callback thread that read them and applied by the service's one IngestWriter.
#include <atomic>
#include <cassert>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "server/reactor_util.h"
#include "server/service.h"
#include "wire/status.h"

namespace pageowner::server {

// ---------------------------------------------------------------------------------------------
// Ingest
//
// Lifetime: the reactor is referenced by gRPC (until OnDone) and by each batch it has handed to
// the writer (until the writer's callback returns); the last Unref deletes it. Finish is called
// exactly once, when no batch is in flight and no write is outstanding, so no answer is ever
// written after it.
class PageOwnerService::IngestReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit IngestReactor(PageOwnerService* service)
      : service_(service),
        stream_(&service->machine_->symbols(), service->options_.ingest_limits()) {
    service_->counters_.streams_open.fetch_add(1, std::memory_order_relaxed);
    StartRead(&read_buffer_);
  }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void OnReadDone(bool ok) override {
    // The stream's messages arrive as bytes and are parsed here: gRPC's own parse would report
    // a message it cannot decode like the client's half-close, and the stream would end OK.
    grpc::Status parsed;
    if (ok) {
      parsed = grpc::SerializationTraits<v1::EventBatch>::Deserialize(&read_buffer_, &request_);
      ++batches_read_;
    }
    if (!ok || !parsed.ok()) {
      bool finish;
      {
        absl::MutexLock lock(&mu_);
        read_busy_ = false;
        read_done_ = true;
        if (!parsed.ok()) {
          unparsable_ = absl::StrCat(
              "message ", batches_read_, " of the stream is not an EventBatch (",
              parsed.error_message(), "); the batches before it were answered, none after it read");
        }
        finish = ShouldFinishLocked();
      }
      if (!parsed.ok()) {
        service_->counters_.batches.fetch_add(1, std::memory_order_relaxed);
        service_->counters_.batches_rejected.fetch_add(1, std::memory_order_relaxed);
      }
      if (finish) End();
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
            wire::ToRpcCode(prepared.code()));
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
    if (read_more) StartRead(&read_buffer_);
  }

  void OnWriteDone(bool ok) override {
    const grpc::ByteBuffer* next = nullptr;
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
    if (read_more) StartRead(&read_buffer_);
    if (finish) End();
  }

  void OnDone() override {
    ReleaseSlot();  // already done unless the call ended without End
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
    if (finish) End();
  }

 private:
  ~IngestReactor() override = default;

  static grpc::ByteBuffer Serialize(const v1::BatchResult& result) {
    grpc::ByteBuffer out;
    bool own = false;
    const grpc::Status s =
        grpc::SerializationTraits<v1::BatchResult>::Serialize(result, &out, &own);
    // A message we built always serializes; a failure would be a bug in protobuf.
    assert(s.ok());
    (void)s;
    return out;
  }

  // Runs on the writer thread.
  void OnAnswered(v1::BatchResult result, PreparedBatch used) {
    const grpc::ByteBuffer* write = nullptr;
    bool finish = false;
    {
      absl::MutexLock lock(&mu_);
      if (spare_.size() < kSpareBatches) spare_.push_back(std::move(used));
      if (write_failed_) {
        --in_flight_;
        finish = ShouldFinishLocked();
      } else {
        queue_.push_back(Serialize(result));
        if (!writing_) {
          writing_ = true;
          write = &queue_.front();
        }
      }
    }
    if (write != nullptr) StartWrite(write);
    if (finish) End();
  }

  // The stream's slot under --max_streams is given back before its status is sent, so a client
  // that has seen its stream end can open the next one at once.
  void ReleaseSlot() {
    if (released_.exchange(true, std::memory_order_acq_rel)) return;
    service_->Unregister(this);
    service_->counters_.streams_open.fetch_sub(1, std::memory_order_relaxed);
  }

  void End() {
    ReleaseSlot();
    Finish(final_status_);
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
    } else if (!unparsable_.empty()) {
      final_status_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, unparsable_);
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
  std::atomic<bool> released_{false};
  // Touched only by the read path (one read or its preparation at a time).
  grpc::ByteBuffer read_buffer_;
  v1::EventBatch request_;
  uint64_t batches_read_ = 0;
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
  std::deque<grpc::ByteBuffer> queue_ ABSL_GUARDED_BY(mu_);
  // Set when a message could not be parsed: the stream ends with INVALID_ARGUMENT saying so.
  std::string unparsable_ ABSL_GUARDED_BY(mu_);
  // Answered batches whose buffers the next reads reuse.
  static constexpr size_t kSpareBatches = 2;
  std::vector<PreparedBatch> spare_ ABSL_GUARDED_BY(mu_);
  grpc::Status final_status_;  // set once, under mu_, before Finish
};

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* PageOwnerService::Ingest(
    grpc::CallbackServerContext* /*context*/) {
  if (recovering()) {
    return new FinishedReactor<grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>>(
        wire::ToGrpcStatus(RecoveringStatus()));
  }
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return new FinishedReactor<grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>>(
        ShuttingDown());
  }
  if (open_.size() >= options_.max_streams) {
    counters_.streams_refused.fetch_add(1, std::memory_order_relaxed);
    return new FinishedReactor<grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>>(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat(open_.size(),
                                  " Ingest streams are open, the daemon's limit "
                                  "(--max_streams=",
                                  options_.max_streams, "); retry when one has ended")));
  }
  auto* reactor = new IngestReactor(this);
  open_.insert(reactor);
  return reactor;
}

void PageOwnerService::Unregister(IngestReactor* reactor) {
  absl::MutexLock lock(&mu_);
  open_.erase(reactor);
}

std::vector<PageOwnerService::IngestReactor*> PageOwnerService::RefIngestStreamsLocked() {
  std::vector<IngestReactor*> open;
  for (IngestReactor* r : open_) {
    r->Ref();  // OnDone may run as soon as the lock is released
    open.push_back(r);
  }
  return open;
}

void PageOwnerService::DrainIngestStreams(const std::vector<IngestReactor*>& streams) {
  for (IngestReactor* r : streams) {
    r->Drain();
    r->Unref();
  }
}

}  // namespace pageowner::server
