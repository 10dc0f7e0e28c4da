#include "tests/client/fake_service.h"

#include <algorithm>
#include <deque>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "core/queries.h"
#include "wire/convert.h"
#include "wire/status.h"

namespace pageowner::testing {

// One Ingest stream. Start* calls are made outside mu_ (gRPC may run a reaction inline).
class FakeIngestReactor final : public grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult> {
 public:
  explicit FakeIngestReactor(FakePageOwner* service) : service_(service) { StartRead(&in_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
      }
      Pump();
      return;
    }
    v1::BatchResult answer;
    std::optional<grpc::Status> end;
    service_->Handle(in_, &next_pfn_, &answer, &end);
    {
      absl::MutexLock lock(&mu_);
      if (end) {
        end_ = std::move(end);
      } else {
        pending_.push_back(std::move(answer));
      }
    }
    Pump();
    if (!end) StartRead(&in_);
  }

  void OnWriteDone(bool /*ok*/) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    service_->NoteCancelled();
    Pump();
  }

  void OnDone() override {}

  // Sends what may be sent now, or finishes.
  void Pump() {
    enum { kNone, kWrite, kFinish } what = kNone;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (end_) {
        finished_ = true;
        what = kFinish;
        status = *end_;
      } else if (!pending_.empty() && !service_->held()) {
        out_ = std::move(pending_.front());
        pending_.pop_front();
        writing_ = true;
        what = kWrite;
      } else if (reads_done_ && pending_.empty()) {
        finished_ = true;
        what = kFinish;
      }
    }
    if (what == kWrite) StartWrite(&out_);
    if (what == kFinish) Finish(status);
  }

 private:
  FakePageOwner* const service_;
  v1::EventBatch in_;
  uint64_t next_pfn_ = 1000;
  absl::Mutex mu_;
  std::deque<v1::BatchResult> pending_ ABSL_GUARDED_BY(mu_);
  v1::BatchResult out_;
  std::optional<grpc::Status> end_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

namespace {

class ChunkWriter final : public grpc::ServerWriteReactor<v1::ListPagesResponse> {
 public:
  explicit ChunkWriter(std::vector<v1::ListPagesResponse> chunks) : chunks_(std::move(chunks)) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ < chunks_.size()) {
      StartWrite(&chunks_[next_++]);
    } else {
      Finish(grpc::Status::OK);
    }
  }
  std::vector<v1::ListPagesResponse> chunks_;
  size_t next_ = 0;
};

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, grpc::Status status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(std::move(status));
  return r;
}

grpc::Status NoMachine() { return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no machine"); }

}  // namespace

FakePageOwner::FakePageOwner() = default;
FakePageOwner::~FakePageOwner() = default;

void FakePageOwner::Release() {
  held_ = false;
  std::vector<FakeIngestReactor*> reactors;
  {
    absl::MutexLock lock(&mu_);
    for (auto& r : reactors_) reactors.push_back(r.get());
  }
  for (FakeIngestReactor* r : reactors) r->Pump();
}

bool FakePageOwner::AwaitBatchesReceived(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto received = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(batches_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&received), timeout);
}

bool FakePageOwner::AwaitStreamsCancelled(int n, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto cancelled = [this, n]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_cancelled_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&cancelled), timeout);
}

void FakePageOwner::Handle(const v1::EventBatch& batch, uint64_t* next_pfn, v1::BatchResult* answer,
                           std::optional<grpc::Status>* end) {
  absl::MutexLock lock(&mu_);
  batches_.push_back(batch);
  if (held_) ++batches_while_held_;
  if (end_after_ >= 0 && answered_ >= end_after_) {
    *end = end_status_;
    return;
  }
  ++answered_;
  answer->set_sequence(batch.sequence());
  if (answer_) {
    answer_(batch, answer);
    return;
  }
  for (int i = 0; i < batch.kind_size(); ++i) {
    answer->add_event_code(0);
    answer->add_event_pfn((*next_pfn)++);
    answer->add_event_handle(batch.stack_id_size() ? batch.stack_id(i) : 0);
  }
}

grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult>* FakePageOwner::Ingest(
    grpc::CallbackServerContext* /*ctx*/) {
  auto r = std::make_unique<FakeIngestReactor>(this);
  FakeIngestReactor* raw = r.get();
  absl::MutexLock lock(&mu_);
  reactors_.push_back(std::move(r));
  return raw;
}

grpc::ServerUnaryReactor* FakePageOwner::GetPage(grpc::CallbackServerContext* ctx,
                                                 const v1::GetPageRequest* req,
                                                 v1::GetPageResponse* resp) {
  if (machine_ == nullptr) return Done(ctx, NoMachine());
  absl::StatusOr<PageReport> report = QueryPage(*machine_, Pfn(req->pfn()));
  if (!report.ok()) return Done(ctx, wire::ToGrpcStatus(report.status()));
  wire::ToProto(*report, machine_->symbols(), resp);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* FakePageOwner::GetStack(grpc::CallbackServerContext* ctx,
                                                  const v1::GetStackRequest* req, v1::Stack* resp) {
  if (machine_ == nullptr) return Done(ctx, NoMachine());
  if (!machine_->depot().Contains(StackHandle(req->handle()))) {
    return Done(ctx, grpc::Status(grpc::StatusCode::NOT_FOUND,
                                  absl::StrCat("stack handle ", req->handle(), " is unknown")));
  }
  wire::ToProto(machine_->depot().Usage(StackHandle(req->handle())), machine_->symbols(), resp);
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerWriteReactor<v1::ListPagesResponse>* FakePageOwner::ListPages(
    grpc::CallbackServerContext* /*ctx*/, const v1::ListPagesRequest* req) {
  std::vector<v1::ListPagesResponse> chunks;
  absl::flat_hash_set<uint32_t> sent;
  if (machine_ != nullptr) {
    machine_->ForEachOwnedBlock(Pfn(req->start_pfn()), [&](const PageOwner& p) {
      if (chunks.empty() || chunks.back().pages_size() >= chunk_pages_) chunks.emplace_back();
      v1::ListPagesResponse& c = chunks.back();
      wire::ToProto(p, c.add_pages());
      if (sent.insert(p.handle.raw()).second) {
        wire::ToProto(machine_->depot().Usage(p.handle), machine_->symbols(), c.add_stacks());
      }
      c.set_next_pfn(p.pfn.raw() + p.order.pages().raw());
      return true;
    });
  }
  return new ChunkWriter(std::move(chunks));
}

grpc::ServerUnaryReactor* FakePageOwner::ListStacks(grpc::CallbackServerContext* ctx,
                                                    const v1::ListStacksRequest* req,
                                                    v1::ListStacksResponse* resp) {
  if (machine_ == nullptr) return Done(ctx, NoMachine());
  absl::StatusOr<StackOrder> order = wire::StackOrderFromProto(req->sort());
  if (!order.ok()) return Done(ctx, wire::ToGrpcStatus(order.status()));
  std::vector<StackUsage> stacks = req->include_empty()
                                       ? AllStacks(machine_->depot())
                                       : StacksOwning(machine_->depot(), req->threshold());
  OrderStacks(*order, req->top(), &stacks);
  for (const StackUsage& s : stacks) {
    wire::ToProto(s, machine_->symbols(), resp->add_stacks());
    resp->set_total_pages(resp->total_pages() + s.pages);
  }
  return Done(ctx, grpc::Status::OK);
}

grpc::ServerUnaryReactor* FakePageOwner::GetStats(grpc::CallbackServerContext* ctx,
                                                  const v1::GetStatsRequest* /*req*/,
                                                  v1::Stats* resp) {
  if (machine_ == nullptr) return Done(ctx, NoMachine());
  wire::MachineStatsToProto(*machine_, resp);
  return Done(ctx, grpc::Status::OK);
}

FakeServer::FakeServer(grpc::Service* service) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.RegisterService(service);
  server_ = builder.BuildAndStart();
  channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
}

FakeServer::~FakeServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_->Wait();
}

std::string FakeServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

}  // namespace pageowner::testing
