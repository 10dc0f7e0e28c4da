#include "tests/server/test_util.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pageowner::server::testing {

BatchBuilder& BatchBuilder::Stack(uint32_t id,
                                  const std::vector<std::pair<uint64_t, std::string>>& frames) {
  v1::StackDef* def = batch_.add_stacks();
  def->set_id(id);
  for (const auto& [ip, symbol] : frames) {
    v1::Frame* f = def->add_frames();
    f->set_ip(ip);
    f->set_symbol(symbol);
  }
  return *this;
}

BatchBuilder& BatchBuilder::Stack(uint32_t id, const std::vector<uint64_t>& ips) {
  v1::StackDef* def = batch_.add_stacks();
  def->set_id(id);
  for (uint64_t ip : ips) def->add_frames()->set_ip(ip);
  return *this;
}

BatchBuilder& BatchBuilder::Task(uint32_t id, int32_t pid, int32_t tgid, const std::string& comm) {
  v1::TaskDef* def = batch_.add_tasks();
  def->set_id(id);
  def->set_pid(pid);
  def->set_tgid(tgid);
  def->set_comm(comm);
  return *this;
}

BatchBuilder& BatchBuilder::Event(int kind, uint32_t order, uint64_t pfn, uint64_t target_pfn,
                                  uint32_t gfp, uint32_t stack, uint32_t task, uint64_t ts,
                                  int reason, uint32_t flags) {
  batch_.add_kind(static_cast<v1::EventKind>(kind));
  batch_.add_order(order);
  batch_.add_pfn(pfn);
  batch_.add_target_pfn(target_pfn);
  batch_.add_gfp_mask(gfp);
  batch_.add_stack_id(stack);
  batch_.add_task_id(task);
  batch_.add_ts_ns(ts);
  batch_.add_reason(static_cast<v1::MigrateReason>(reason));
  batch_.add_flags(flags);
  return *this;
}

BatchBuilder& BatchBuilder::Alloc(uint32_t order, uint32_t stack, uint32_t task, uint64_t ts,
                                  uint32_t gfp) {
  return Event(v1::EVENT_KIND_ALLOC, order, 0, 0, gfp, stack, task, ts, 0, 0);
}

BatchBuilder& BatchBuilder::AllocAt(uint64_t pfn, uint32_t order, uint32_t stack, uint32_t task,
                                    uint64_t ts, uint32_t gfp) {
  return Event(v1::EVENT_KIND_ALLOC, order, pfn, 0, gfp, stack, task, ts, 0, v1::EVENT_FLAG_AT_PFN);
}

BatchBuilder& BatchBuilder::Free(uint64_t pfn, uint32_t order, uint32_t stack, uint32_t task,
                                 uint64_t ts) {
  return Event(v1::EVENT_KIND_FREE, order, pfn, 0, 0, stack, task, ts, 0, 0);
}

BatchBuilder& BatchBuilder::Migrate(uint64_t pfn, v1::MigrateReason reason, uint32_t stack,
                                    uint32_t task, uint64_t ts) {
  return Event(v1::EVENT_KIND_MIGRATE, 0, pfn, 0, 0, stack, task, ts, reason, 0);
}

BatchBuilder& BatchBuilder::MigrateTo(uint64_t pfn, uint64_t target, v1::MigrateReason reason,
                                      uint32_t stack, uint32_t task, uint64_t ts) {
  return Event(v1::EVENT_KIND_MIGRATE, 0, pfn, target, 0, stack, task, ts, reason,
               v1::EVENT_FLAG_AT_TARGET);
}

IngestOutcome Ingest(v1::PageOwner::Stub* stub, const std::vector<v1::EventBatch>& batches) {
  grpc::ClientContext context;
  auto stream = stub->Ingest(&context);
  IngestOutcome out;
  std::thread reader([&] {
    v1::BatchResult result;
    while (stream->Read(&result)) out.results.push_back(result);
  });
  for (const v1::EventBatch& b : batches) {
    if (!stream->Write(b)) break;
  }
  stream->WritesDone();
  reader.join();
  out.status = stream->Finish();
  return out;
}

v1::BatchResult IngestOne(v1::PageOwner::Stub* stub, const v1::EventBatch& batch) {
  IngestOutcome out = Ingest(stub, {batch});
  EXPECT_TRUE(out.status.ok()) << out.status.error_message();
  EXPECT_EQ(out.results.size(), 1u);
  return out.results.empty() ? v1::BatchResult() : out.results[0];
}

std::vector<v1::ListPagesResponse> ListPages(v1::PageOwner::Stub* stub,
                                             const v1::ListPagesRequest& request,
                                             grpc::Status* status) {
  grpc::ClientContext context;
  auto reader = stub->ListPages(&context, request);
  std::vector<v1::ListPagesResponse> chunks;
  v1::ListPagesResponse chunk;
  while (reader->Read(&chunk)) chunks.push_back(chunk);
  *status = reader->Finish();
  return chunks;
}

ServerOptions SmallOptions(uint64_t pages) {
  ServerOptions o;
  o.listen_address = "127.0.0.1:0";
  o.machine.pages = PageCount(pages);
  o.machine.boot_ts_ns = 1000;
  o.max_batch_events = 1024;
  return o;
}

std::unique_ptr<Server> StartServer(const ServerOptions& options) {
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Create(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

std::shared_ptr<grpc::Channel> Channel(int port) {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
}

}  // namespace pageowner::server::testing
