// Client: the query calls of the PageOwner service, each returning absl::Status(Or). What the
// daemon sends becomes core values through the wire library (wire/convert.h).
#ifndef PAGEOWNER_CLIENT_CLIENT_H_
#define PAGEOWNER_CLIENT_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/session.h"
#include "core/machine.h"
#include "core/stack_depot.h"
#include "core/symbols.h"
#include "core/types.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "pageowner/v1/pageowner.pb.h"
#include "wire/convert.h"

namespace pageowner::client {

struct ClientOptions {
  // Deadline of each unary call; absl::InfiniteDuration() for none. Streams have none.
  absl::Duration timeout = absl::Seconds(30);
  // Deadline of the calls that walk the whole machine and answer with all of it (SortPages,
  // GetProfile): a sort of a full 4 GiB machine is a report of ~150 MB and takes tens of seconds
  // on a busy host.
  absl::Duration whole_machine_timeout = absl::Minutes(10);
};

// Thread-safety: every method may be called from any thread (gRPC stubs are thread-safe).
class Client {
 public:
  // A plaintext channel to `target` ("host:port"); it connects on first use.
  explicit Client(std::string_view target, ClientOptions options = {});
  explicit Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The owner of the block holding `pfn`. Errors: kOutOfRange beyond memory; transport errors.
  absl::StatusOr<v1::GetPageResponse> GetPage(Pfn pfn);
  // Errors: kNotFound for a handle that names no stack.
  absl::StatusOr<v1::Stack> GetStack(StackHandle handle);
  absl::StatusOr<v1::ListStacksResponse> ListStacks(const v1::ListStacksRequest& request);
  absl::StatusOr<v1::Stats> GetStats();
  // page_owner_sort in the daemon. Errors: kInvalidArgument for arguments the tool refuses.
  absl::StatusOr<v1::SortResponse> SortPages(const v1::SortRequest& request);
  // `ts_ns` 0: the daemon's clock stamps the early pages.
  absl::StatusOr<v1::SetTrackingResponse> SetTracking(bool on, uint64_t ts_ns = 0);
  // Admin: empties the daemon's machine. Errors: kFailedPrecondition while ingest streams are
  // open or the daemon keeps a write-ahead log.
  absl::StatusOr<v1::ResetResponse> Reset();
  // Admin: a snapshot now, answered once it is durable.
  absl::StatusOr<v1::SnapshotResponse> Snapshot();
  // The gzipped pprof heap profile. Errors: kInvalidArgument for an order above 10.
  absl::StatusOr<v1::GetProfileResponse> GetProfile(const v1::GetProfileRequest& request);

  // Streams ListPages, calling `visit` for each chunk in order (the chunk is reused after visit
  // returns). `visit` returns false to stop: the call is then cancelled and OK returned.
  absl::Status ListPages(const v1::ListPagesRequest& request,
                         absl::FunctionRef<bool(const v1::ListPagesResponse&)> visit);

  // A new Ingest stream on this client's channel.
  std::unique_ptr<Session> StartSession(SessionOptions options = {});

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PageOwner::Stub> stub_;
  ClientOptions options_;
};

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_CLIENT_H_
