// Helpers for the server tests: an EventBatch builder, a whole Ingest stream in one call, and a
// server on a free loopback port with a stub.
#ifndef PAGEOWNER_TESTS_SERVER_TEST_UTIL_H_
#define PAGEOWNER_TESTS_SERVER_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/kernel_flags.h"
#include "grpcpp/grpcpp.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "server/server.h"

namespace pageowner::server::testing {

// google.rpc.Code values, as BatchResult carries them.
inline constexpr int32_t kOk = 0;
inline constexpr int32_t kInvalidArgument = 3;
inline constexpr int32_t kNotFound = 5;
inline constexpr int32_t kAlreadyExists = 6;
inline constexpr int32_t kResourceExhausted = 8;
inline constexpr int32_t kFailedPrecondition = 9;
inline constexpr int32_t kOutOfRange = 11;

// Builds an EventBatch event by event, every column full length.
class BatchBuilder {
 public:
  explicit BatchBuilder(uint64_t sequence = 0) { batch_.set_sequence(sequence); }

  // A stack of frames given as (ip, symbol); ip 0 asks for a synthetic address.
  BatchBuilder& Stack(uint32_t id, const std::vector<std::pair<uint64_t, std::string>>& frames);
  // A stack of bare addresses.
  BatchBuilder& Stack(uint32_t id, const std::vector<uint64_t>& ips);
  BatchBuilder& Task(uint32_t id, int32_t pid, int32_t tgid, const std::string& comm);

  BatchBuilder& Alloc(uint32_t order, uint32_t stack, uint32_t task = 0, uint64_t ts = 0,
                      uint32_t gfp = kGfpKernel);
  BatchBuilder& AllocAt(uint64_t pfn, uint32_t order, uint32_t stack, uint32_t task = 0,
                        uint64_t ts = 0, uint32_t gfp = kGfpKernel);
  BatchBuilder& Free(uint64_t pfn, uint32_t order, uint32_t stack = 0, uint32_t task = 0,
                     uint64_t ts = 0);
  BatchBuilder& Migrate(uint64_t pfn, v1::MigrateReason reason, uint32_t stack = 0,
                        uint32_t task = 0, uint64_t ts = 0);
  BatchBuilder& MigrateTo(uint64_t pfn, uint64_t target, v1::MigrateReason reason,
                          uint32_t stack = 0, uint32_t task = 0, uint64_t ts = 0);
  // Any event, column by column.
  BatchBuilder& Event(int kind, uint32_t order, uint64_t pfn, uint64_t target_pfn, uint32_t gfp,
                      uint32_t stack, uint32_t task, uint64_t ts, int reason, uint32_t flags);

  int size() const { return batch_.kind_size(); }
  v1::EventBatch& mutable_batch() { return batch_; }
  const v1::EventBatch& batch() const { return batch_; }

 private:
  v1::EventBatch batch_;
};

// What one Ingest stream got back.
struct IngestOutcome {
  std::vector<v1::BatchResult> results;
  grpc::Status status;
};

// Runs one Ingest stream: writes every batch while a second thread reads the answers, closes
// the sending side, and returns the answers and the final status.
IngestOutcome Ingest(v1::PageOwner::Stub* stub, const std::vector<v1::EventBatch>& batches);
// The same for one batch; fails the test unless exactly one answer and OK come back.
v1::BatchResult IngestOne(v1::PageOwner::Stub* stub, const v1::EventBatch& batch);

// Every chunk of a ListPages stream, and its status.
std::vector<v1::ListPagesResponse> ListPages(v1::PageOwner::Stub* stub,
                                             const v1::ListPagesRequest& request,
                                             grpc::Status* status);

// Options of a small machine (64 MiB by default) listening on a free loopback port.
ServerOptions SmallOptions(uint64_t pages = 16384);
std::unique_ptr<Server> StartServer(const ServerOptions& options);
std::shared_ptr<grpc::Channel> Channel(int port);

}  // namespace pageowner::server::testing

#endif  // PAGEOWNER_TESTS_SERVER_TEST_UTIL_H_
