// PageOwnerService: the pageowner.v1.PageOwner service on gRPC's callback API. Every handler
// does the same three steps: validate and translate the request, call the core under the
// machine's lock, translate the result (statuses through to_grpc_status.h).
#ifndef PAGEOWNER_SERVER_SERVICE_H_
#define PAGEOWNER_SERVER_SERVICE_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "server/ingest.h"
#include "server/limits.h"
#include "server/shared_machine.h"
#include "server/snapshotter.h"

namespace pageowner::server {

struct ServiceOptions {
  // Events a batch may hold; a longer batch is malformed (--max_batch_events).
  uint32_t max_batch_events = kDefaultMaxBatchEvents;
  uint64_t max_symbol_bytes = kDefaultMaxSymbolBytes;                       // IngestLimits
  uint64_t max_stream_definition_bytes = kDefaultMaxStreamDefinitionBytes;  // IngestLimits
  // Ingest streams open at once; one more is refused with RESOURCE_EXHAUSTED.
  uint32_t max_streams = kDefaultMaxStreams;

  IngestLimits ingest_limits() const {
    return IngestLimits{.max_batch_events = max_batch_events,
                        .max_symbol_bytes = max_symbol_bytes,
                        .max_stream_definition_bytes = max_stream_definition_bytes};
  }
};

// Threading: reactions run on gRPC's callback threads and never wait on a condition; the only
// waits are the machine's reader lock in queries (held for one query, or one ListPages slice)
// and, in SetTracking, its writer lock. Ingest batches are validated and translated on the
// callback thread that read them, then applied by the IngestWriter's one thread, so several
// streams ingest at once without a callback thread ever waiting for another stream's batch.
//
// Backpressure: an Ingest stream reads its next batch while earlier ones are applied or their
// answers written, up to kMaxBatchesInFlight batches read and not yet answered; then it stops
// reading until an answer has been written, so a client that does not read its answers is
// slowed by gRPC flow control instead of growing the daemon's memory. At most one write is
// outstanding per stream; further answers wait in a queue of at most that many.
//
// Shutdown: BeginDrain, AwaitDrained, then stop the gRPC server, then StopWriter.
// The callback service with Ingest taking its messages as bytes (the reactor parses them, so
// that a message it cannot parse ends the stream with INVALID_ARGUMENT).
using PageOwnerServiceBase = v1::PageOwner::WithRawCallbackMethod_Ingest<
    v1::PageOwner::WithCallbackMethod_GetPage<v1::PageOwner::WithCallbackMethod_GetStack<
        v1::PageOwner::WithCallbackMethod_ListPages<v1::PageOwner::WithCallbackMethod_ListStacks<
            v1::PageOwner::WithCallbackMethod_GetStats<v1::PageOwner::WithCallbackMethod_SortPages<
                v1::PageOwner::WithCallbackMethod_SetTracking<
                    v1::PageOwner::WithCallbackMethod_GetProfile<
                        v1::PageOwner::WithCallbackMethod_Reset<
                            v1::PageOwner::WithCallbackMethod_Snapshot<
                                v1::PageOwner::Service>>>>>>>>>>>;

class PageOwnerService final : public PageOwnerServiceBase {
 public:
  static constexpr int kMaxBatchesInFlight = 4;

  PageOwnerService(SharedMachine* machine, const ServiceOptions& options);
  ~PageOwnerService() override;
  PageOwnerService(const PageOwnerService&) = delete;
  PageOwnerService& operator=(const PageOwnerService&) = delete;

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Ingest(
      grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* GetPage(grpc::CallbackServerContext* context,
                                    const v1::GetPageRequest* request,
                                    v1::GetPageResponse* response) override;
  grpc::ServerUnaryReactor* GetStack(grpc::CallbackServerContext* context,
                                     const v1::GetStackRequest* request,
                                     v1::Stack* response) override;
  grpc::ServerWriteReactor<v1::ListPagesResponse>* ListPages(
      grpc::CallbackServerContext* context, const v1::ListPagesRequest* request) override;
  grpc::ServerUnaryReactor* ListStacks(grpc::CallbackServerContext* context,
                                       const v1::ListStacksRequest* request,
                                       v1::ListStacksResponse* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const v1::GetStatsRequest* request,
                                     v1::Stats* response) override;
  grpc::ServerUnaryReactor* SetTracking(grpc::CallbackServerContext* context,
                                        const v1::SetTrackingRequest* request,
                                        v1::SetTrackingResponse* response) override;
  grpc::ServerUnaryReactor* SortPages(grpc::CallbackServerContext* context,
                                      const v1::SortRequest* request,
                                      v1::SortResponse* response) override;
  // The heap profile in pprof's format (server/pprof.h), walked a slice at a time.
  grpc::ServerUnaryReactor* GetProfile(grpc::CallbackServerContext* context,
                                       const v1::GetProfileRequest* request,
                                       v1::GetProfileResponse* response) override;

  // Admin: an empty machine of the same options (SharedMachine::Reset). FAILED_PRECONDITION
  // while Ingest streams are open or a write-ahead log is kept.
  grpc::ServerUnaryReactor* Reset(grpc::CallbackServerContext* context,
                                  const v1::ResetRequest* request,
                                  v1::ResetResponse* response) override;

  // Admin: a snapshot now (Snapshotter::Request), answered once durable. FAILED_PRECONDITION
  // without a data dir (no AttachSnapshotter).
  grpc::ServerUnaryReactor* Snapshot(grpc::CallbackServerContext* context,
                                     const v1::SnapshotRequest* request,
                                     v1::SnapshotResponse* response) override;

  // Shutdown, first step: new Ingest and ListPages streams are refused with UNAVAILABLE; each
  // open Ingest stream reads no further batch, answers the batches it has read and then ends
  // with UNAVAILABLE (or OK if its client had already closed its side); each open ListPages
  // stream ends with UNAVAILABLE after the chunk it is writing (whose next_pfn is where to
  // resume). Unary queries are still served. Idempotent.
  void BeginDrain() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until no Ingest or ListPages stream is open or `deadline` passes; true when none
  // is open.
  bool AwaitDrained(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  // Shutdown, last step, once the gRPC server has stopped: answers what is queued and ends the
  // writer thread.
  void StopWriter() { writer_.Stop(); }
  // While the daemon recovers its state from `data_dir` (the port is open, the machine is not
  // ready): every rpc is answered UNAVAILABLE saying so. Before the server starts.
  void BeginRecovery(const std::string& data_dir);
  // Recovery is over: calls are served. Everything attached before it is visible to them.
  void EndRecovery() { recovering_.store(false, std::memory_order_release); }
  bool recovering() const { return recovering_.load(std::memory_order_acquire); }

  // Logs every batch and SetTracking to `wal` (IngestWriter::AttachLog); before serving.
  void AttachLog(Wal* wal) { writer_.AttachLog(wal); }
  // Serves the Snapshot rpc with `snapshotter`, which outlives the gRPC server; before serving.
  void AttachSnapshotter(Snapshotter* snapshotter) { snapshotter_ = snapshotter; }
  // Runs fn on the ingest writer between batches (IngestWriter::RunOnWriter).
  void RunOnWriter(const std::function<void()>& fn) { writer_.RunOnWriter(fn); }

  const IngestCounters& counters() const { return counters_; }

 private:
  class IngestReactor;
  class ListPagesReactor;

  absl::Status DoSortPages(const v1::SortRequest& request, v1::SortResponse* response);
  // UNAVAILABLE naming the data dir being recovered.
  absl::Status RecoveringStatus() const;

  // Drain's steps (BeginDrain), each beside its reactor: references to the open Ingest
  // streams, their drain (dropping the references), and the drain of the ListPages streams.
  std::vector<IngestReactor*> RefIngestStreamsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void DrainIngestStreams(const std::vector<IngestReactor*>& streams);
  void DrainListingsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Unregister(IngestReactor* reactor) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(ListPagesReactor* reactor) ABSL_LOCKS_EXCLUDED(mu_);

  SharedMachine* const machine_;
  const ServiceOptions options_;
  IngestCounters counters_;
  IngestWriter writer_;
  Snapshotter* snapshotter_ = nullptr;
  std::atomic<bool> recovering_{false};
  std::string recovering_dir_;  // set before serving, read after

  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<IngestReactor*> open_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<ListPagesReactor*> listings_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_SERVICE_H_
