// PageOwnerService::ListPages: the server-streaming reactor over core's PageScan.
//
// The reader lock is taken per slice (at most kScanPerHold records visited, or pages walked),
// never across the stream; a chunk is written when it holds kChunkRecords records or about
// kChunkBytes bytes, when the scan ends, or after kScanPerChunk records or pages were looked at
// (then it may hold no page, but next_pfn has moved on). Each chunk is scanned only after the
// previous one was written, so a slow reader holds no lock and no more than one chunk.
#include <atomic>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/queries.h"
#include "server/reactor_util.h"
#include "server/service.h"
#include "wire/convert.h"
#include "wire/status.h"

namespace pageowner::server {

class PageOwnerService::ListPagesReactor final
    : public grpc::ServerWriteReactor<v1::ListPagesResponse> {
 public:
  static constexpr int kChunkRecords = 4096;
  static constexpr size_t kChunkBytes = 1 << 20;
  static constexpr uint64_t kScanPerHold = 16384;
  static constexpr uint64_t kScanPerChunk = 1 << 20;

  // Call Start() once registered.
  ListPagesReactor(PageOwnerService* service, const v1::ListPagesRequest& request)
      : service_(service), machine_(service->machine_) {
    absl::StatusOr<PageScanRequest> r = wire::FromProto(request);
    if (!r.ok()) {
      init_ = r.status();
      return;
    }
    absl::StatusOr<PageScan> scan = PageScan::Create(machine_->total_pages(), *r);
    if (!scan.ok()) {
      init_ = scan.status();
      return;
    }
    scan_.emplace(*std::move(scan));
  }

  void Start() {
    if (!init_.ok()) {
      Finish(wire::ToGrpcStatus(init_));
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
  // Scans the next chunk and writes it, or finishes.
  void Next() {
    if (draining_.load(std::memory_order_relaxed)) {
      Finish(grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("pageownerd is shutting down; resume from pfn ", scan_->next().raw())));
      return;
    }
    chunk_.Clear();
    chunk_bytes_ = 0;
    uint64_t scanned = 0;
    while (!scan_->done() && !ChunkFull() && scanned < kScanPerChunk) {
      scanned += machine_->Read([this](const Machine& m) {
        return scan_->Step(m, kScanPerHold, [&](const PageOwner& p) {
          Add(m, p);
          return !ChunkFull();
        });
      });
    }
    chunk_.set_next_pfn(scan_->next().raw());
    if (!scan_->done()) {
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

  // Adds a record, and its stack the first time this stream meets it.
  void Add(const Machine& m, const PageOwner& p) {
    wire::ToProto(p, chunk_.add_pages());
    chunk_bytes_ += 64 + p.comm.size();
    if (p.handle.valid() && sent_stacks_.insert(p.handle.raw()).second) {
      v1::Stack* s = chunk_.add_stacks();
      wire::ToProto(m.depot().Usage(p.handle), m.symbols(), s);
      chunk_bytes_ += s->ByteSizeLong();
    }
  }

  PageOwnerService* const service_;
  SharedMachine* const machine_;
  std::atomic<bool> draining_{false};
  absl::Status init_;
  std::optional<PageScan> scan_;  // set when init_ is OK
  absl::flat_hash_set<uint32_t> sent_stacks_;
  v1::ListPagesResponse chunk_;
  size_t chunk_bytes_ = 0;
};

grpc::ServerWriteReactor<v1::ListPagesResponse>* PageOwnerService::ListPages(
    grpc::CallbackServerContext* /*context*/, const v1::ListPagesRequest* request) {
  if (recovering()) {
    return new FinishedReactor<grpc::ServerWriteReactor<v1::ListPagesResponse>>(
        wire::ToGrpcStatus(RecoveringStatus()));
  }
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

void PageOwnerService::DrainListingsLocked() {
  for (ListPagesReactor* r : listings_) r->Drain();
}

}  // namespace pageowner::server
