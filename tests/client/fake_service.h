// A small in-process PageOwner service for the client's tests: an Ingest that records every batch
// and answers as the test says (or holds its answers back), and queries served from a core
// Machine the test fills directly. Not the daemon: just enough to test the client against.
#ifndef PAGEOWNER_TESTS_CLIENT_FAKE_SERVICE_H_
#define PAGEOWNER_TESTS_CLIENT_FAKE_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/machine.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"

namespace pageowner::testing {

class FakeIngestReactor;

class FakePageOwner final : public v1::PageOwner::CallbackService {
 public:
  // Builds the answer to a batch. The default answers every event OK with pfn 1000 + its index
  // in the stream and the event's stack id as the handle.
  using AnswerFn = std::function<void(const v1::EventBatch&, v1::BatchResult*)>;

  FakePageOwner();
  ~FakePageOwner() override;

  void set_answer(AnswerFn fn) {
    absl::MutexLock lock(&mu_);
    answer_ = std::move(fn);
  }
  // After answering `batches` batches of a stream, end it with `status` at the next batch.
  void EndStreamAfter(int batches, grpc::Status status) {
    absl::MutexLock lock(&mu_);
    end_after_ = batches;
    end_status_ = std::move(status);
  }
  // While held, answers are kept back; Release sends them.
  void Hold() {
    absl::MutexLock lock(&mu_);
    batches_while_held_ = 0;
    held_ = true;
  }
  void Release();
  bool held() const { return held_; }
  // Batches received since the last Hold() while answers were held back: a session that keeps
  // its max_in_flight bound sends no more than that many before an answer comes.
  int batches_received_while_held() const {
    absl::MutexLock lock(&mu_);
    return batches_while_held_;
  }

  // Every batch received, in order, over all streams.
  std::vector<v1::EventBatch> batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  int batches_received() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(batches_.size());
  }
  // Waits until at least `n` batches have been received; false after `timeout`.
  bool AwaitBatchesReceived(int n, absl::Duration timeout) const;

  // Ingest streams the client cancelled (OnCancel on a stream that had not finished).
  void NoteCancelled() {
    absl::MutexLock lock(&mu_);
    ++streams_cancelled_;
  }
  int streams_cancelled() const {
    absl::MutexLock lock(&mu_);
    return streams_cancelled_;
  }
  // Waits until at least `n` streams were cancelled; false after `timeout`.
  bool AwaitStreamsCancelled(int n, absl::Duration timeout) const;

  // The machine the queries read; set before serving them. ListPages sends this many records a
  // chunk.
  void set_machine(const Machine* m) { machine_ = m; }
  void set_chunk_pages(int n) { chunk_pages_ = n; }

  // Called by a stream's reactor: records `batch` and builds its answer, or says to end the
  // stream with `*end`.
  void Handle(const v1::EventBatch& batch, uint64_t* next_pfn, v1::BatchResult* answer,
              std::optional<grpc::Status>* end);

  grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult>* Ingest(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* GetPage(grpc::CallbackServerContext* ctx, const v1::GetPageRequest* req,
                                    v1::GetPageResponse* resp) override;
  grpc::ServerUnaryReactor* GetStack(grpc::CallbackServerContext* ctx,
                                     const v1::GetStackRequest* req, v1::Stack* resp) override;
  grpc::ServerWriteReactor<v1::ListPagesResponse>* ListPages(
      grpc::CallbackServerContext* ctx, const v1::ListPagesRequest* req) override;
  grpc::ServerUnaryReactor* ListStacks(grpc::CallbackServerContext* ctx,
                                       const v1::ListStacksRequest* req,
                                       v1::ListStacksResponse* resp) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const v1::GetStatsRequest* req, v1::Stats* resp) override;

 private:
  mutable absl::Mutex mu_;
  AnswerFn answer_ ABSL_GUARDED_BY(mu_);
  int end_after_ ABSL_GUARDED_BY(mu_) = -1;
  grpc::Status end_status_ ABSL_GUARDED_BY(mu_);
  int answered_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::EventBatch> batches_ ABSL_GUARDED_BY(mu_);
  int batches_while_held_ ABSL_GUARDED_BY(mu_) = 0;
  int streams_cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  // Reactors live as long as the service, so Release may poke any of them.
  std::vector<std::unique_ptr<FakeIngestReactor>> reactors_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> held_{false};
  const Machine* machine_ = nullptr;
  int chunk_pages_ = 64;
};

// A server on a free loopback port with `service`, and a channel to it.
class FakeServer {
 public:
  explicit FakeServer(grpc::Service* service);
  ~FakeServer();
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::string address() const;

 private:
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace pageowner::testing

#endif  // PAGEOWNER_TESTS_CLIENT_FAKE_SERVICE_H_
