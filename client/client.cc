#include "client/client.h"

#include <chrono>
#include <string>
#include <utility>

#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "wire/status.h"

namespace pageowner::client {
namespace {

void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return;
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

// One unary call with the client's deadline, its status converted.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> Unary(absl::Duration timeout, const Request& request, Method method) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, timeout);
  Response response;
  grpc::Status status = method(&ctx, request, &response);
  if (!status.ok()) return wire::FromGrpcStatus(status);
  return response;
}

}  // namespace

Client::Client(std::string_view target, ClientOptions options)
    : Client(
          [&] {
            // SortPages answers with a whole report: a dump-sized text (-a merges almost
            // nothing), well over gRPC's default 4 MiB.
            grpc::ChannelArguments args;
            args.SetMaxReceiveMessageSize(-1);
            return grpc::CreateCustomChannel(std::string(target),
                                             grpc::InsecureChannelCredentials(), args);
          }(),
          options) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : channel_(std::move(channel)), stub_(v1::PageOwner::NewStub(channel_)), options_(options) {}

Client::~Client() = default;

absl::StatusOr<v1::GetPageResponse> Client::GetPage(Pfn pfn) {
  v1::GetPageRequest request;
  request.set_pfn(pfn.raw());
  return Unary<v1::GetPageRequest, v1::GetPageResponse>(
      options_.timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->GetPage(c, q, r); });
}

absl::StatusOr<v1::Stack> Client::GetStack(StackHandle handle) {
  v1::GetStackRequest request;
  request.set_handle(handle.raw());
  return Unary<v1::GetStackRequest, v1::Stack>(
      options_.timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->GetStack(c, q, r); });
}

absl::StatusOr<v1::ListStacksResponse> Client::ListStacks(const v1::ListStacksRequest& request) {
  return Unary<v1::ListStacksRequest, v1::ListStacksResponse>(
      options_.timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->ListStacks(c, q, r); });
}

absl::StatusOr<v1::Stats> Client::GetStats() {
  return Unary<v1::GetStatsRequest, v1::Stats>(
      options_.timeout, v1::GetStatsRequest(),
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->GetStats(c, q, r); });
}

absl::StatusOr<v1::SortResponse> Client::SortPages(const v1::SortRequest& request) {
  return Unary<v1::SortRequest, v1::SortResponse>(
      options_.whole_machine_timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->SortPages(c, q, r); });
}

absl::StatusOr<v1::GetProfileResponse> Client::GetProfile(const v1::GetProfileRequest& request) {
  return Unary<v1::GetProfileRequest, v1::GetProfileResponse>(
      options_.whole_machine_timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->GetProfile(c, q, r); });
}

absl::StatusOr<v1::SetTrackingResponse> Client::SetTracking(bool on, uint64_t ts_ns) {
  v1::SetTrackingRequest request;
  request.set_on(on);
  request.set_ts_ns(ts_ns);
  return Unary<v1::SetTrackingRequest, v1::SetTrackingResponse>(
      options_.timeout, request,
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->SetTracking(c, q, r); });
}

absl::StatusOr<v1::SnapshotResponse> Client::Snapshot() {
  return Unary<v1::SnapshotRequest, v1::SnapshotResponse>(
      options_.timeout, v1::SnapshotRequest(),
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->Snapshot(c, q, r); });
}

absl::StatusOr<v1::ResetResponse> Client::Reset() {
  return Unary<v1::ResetRequest, v1::ResetResponse>(
      options_.timeout, v1::ResetRequest(),
      [&](grpc::ClientContext* c, const auto& q, auto* r) { return stub_->Reset(c, q, r); });
}

absl::Status Client::ListPages(const v1::ListPagesRequest& request,
                               absl::FunctionRef<bool(const v1::ListPagesResponse&)> visit) {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::ListPagesResponse>> reader =
      stub_->ListPages(&ctx, request);
  v1::ListPagesResponse chunk;
  bool stopped = false;
  while (reader->Read(&chunk)) {
    if (!visit(chunk)) {
      stopped = true;
      ctx.TryCancel();
      while (reader->Read(&chunk)) {
      }
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return absl::OkStatus();
  return wire::FromGrpcStatus(status);
}

std::unique_ptr<Session> Client::StartSession(SessionOptions options) {
  return std::make_unique<Session>(channel_, std::move(options));
}

}  // namespace pageowner::client
