// The PageOwner service in process: a real Server on a free loopback port, real stubs, and a
// local Machine fed the same batches as the exact expectation of every answer.
#include "server/service.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/kernel_flags.h"
#include "core/machine.h"
#include "core/reports.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/ingest.h"
#include "server/shared_machine.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using namespace testing;  // NOLINT: the helpers of test_util.h
using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr uint64_t kPages = 16384;  // 64 MiB

std::vector<std::pair<uint64_t, std::string>> Frames(int seed, int depth = 4) {
  std::vector<std::pair<uint64_t, std::string>> frames;
  for (int i = 0; i < depth; ++i) {
    frames.push_back({0xffffffff81000000ULL + seed * 0x10000 + i * 0x40,
                      absl::StrCat("func", seed, "_", i, "+0x", i, "/0x100")});
  }
  return frames;
}

int ProtoReason(MigrateReason r) { return r == MigrateReason::kNone ? 0 : static_cast<int>(r) + 1; }

void ExpectRecord(const PageOwner& want, const v1::PageRecord& got) {
  SCOPED_TRACE(absl::StrCat("pfn ", want.pfn.raw()));
  EXPECT_EQ(got.pfn(), want.pfn.raw());
  EXPECT_EQ(got.order(), want.order.raw());
  EXPECT_EQ(got.gfp_mask(), want.gfp_mask);
  EXPECT_EQ(got.handle(), want.handle.raw());
  EXPECT_EQ(got.free_handle(), want.free_handle.raw());
  EXPECT_EQ(got.last_migrate_reason(), ProtoReason(want.last_migrate_reason));
  EXPECT_EQ(got.pid(), want.pid);
  EXPECT_EQ(got.tgid(), want.tgid);
  EXPECT_EQ(got.comm(), want.comm);
  EXPECT_EQ(got.ts_ns(), want.ts_ns);
  EXPECT_EQ(got.free_ts_ns(), want.free_ts_ns);
  EXPECT_EQ(got.free_pid(), want.free_pid);
  EXPECT_EQ(got.free_tgid(), want.free_tgid);
  EXPECT_EQ(got.owner(), want.owner);
  EXPECT_EQ(got.allocated(), want.allocated);
  EXPECT_EQ(got.pageblock_migratetype(), static_cast<int>(want.pageblock_migratetype));
  EXPECT_EQ(got.page_flags(), want.page_flags);
}

void ExpectStack(const Machine& m, StackHandle h, const v1::Stack& got) {
  const StackUsage want = m.depot().Usage(h);
  EXPECT_EQ(got.handle(), h.raw());
  ASSERT_EQ(got.frames_size(), static_cast<int>(want.frames.size()));
  for (int i = 0; i < got.frames_size(); ++i) {
    EXPECT_EQ(got.frames(i).ip(), want.frames[i]);
    EXPECT_EQ(got.frames(i).symbol(), m.symbols().FormatFrame(want.frames[i]));
  }
  EXPECT_EQ(got.pages(), want.pages);
  EXPECT_EQ(got.allocations(), want.allocations);
}

// One Ingest stream to the server, and the same batches applied to a local Machine through the
// same translation; every answer is checked against the local result.
class World {
 public:
  World(v1::PageOwner::Stub* stub, const ServerOptions& options)
      : local_(options.machine),
        stream_(&local_.symbols(), IngestLimits{.max_batch_events = options.max_batch_events}),
        rw_(stub->Ingest(&context_)) {}
  ~World() {
    rw_->WritesDone();
    EXPECT_TRUE(rw_->Finish().ok());
  }

  v1::BatchResult Run(const v1::EventBatch& batch) {
    v1::BatchResult got;
    EXPECT_TRUE(rw_->Write(batch));
    EXPECT_TRUE(rw_->Read(&got));
    PreparedBatch p;
    if (!stream_.Prepare(batch, &p).ok()) {
      EXPECT_EQ(got.code(), kInvalidArgument);
      return got;
    }
    EXPECT_EQ(got.code(), kOk) << got.message();
    EXPECT_EQ(got.sequence(), batch.sequence());
    EXPECT_EQ(got.event_code_size(), batch.kind_size());
    for (int i = 0; i < batch.kind_size() && i < got.event_code_size(); ++i) {
      const EventResult want = p.prechecked[i].ok()
                                   ? local_.Apply(p.events[i])
                                   : EventResult{p.prechecked[i], Pfn(), StackHandle()};
      EXPECT_EQ(got.event_code(i), static_cast<int>(want.status.code()))
          << "event " << i << ": " << want.status;
      EXPECT_EQ(got.event_pfn(i), want.pfn.raw()) << "event " << i;
      EXPECT_EQ(got.event_handle(i), want.handle.raw()) << "event " << i;
      if (!want.status.ok()) {
        EXPECT_EQ(got.event_message().at(i), want.status.message());
      } else {
        EXPECT_FALSE(got.event_message().contains(i));
      }
    }
    return got;
  }
  v1::BatchResult Run(const BatchBuilder& b) { return Run(b.batch()); }

  Machine& local() { return local_; }

 private:
  Machine local_;
  IngestStream stream_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::EventBatch, v1::BatchResult>> rw_;
};

class ServiceTest : public ::testing::Test {
 protected:
  void Start(const ServerOptions& options) {
    options_ = options;
    server_ = StartServer(options);
    ASSERT_NE(server_, nullptr);
    channel_ = Channel(server_->bound_port());
    stub_ = v1::PageOwner::NewStub(channel_);
  }
  void Start() { Start(SmallOptions(kPages)); }

  v1::Stats Stats() {
    grpc::ClientContext context;
    v1::Stats stats;
    const grpc::Status s = stub_->GetStats(&context, v1::GetStatsRequest(), &stats);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return stats;
  }
  grpc::Status GetPage(uint64_t pfn, v1::GetPageResponse* out) {
    grpc::ClientContext context;
    v1::GetPageRequest request;
    request.set_pfn(pfn);
    return stub_->GetPage(&context, request, out);
  }
  grpc::Status GetStack(uint32_t handle, v1::Stack* out) {
    grpc::ClientContext context;
    v1::GetStackRequest request;
    request.set_handle(handle);
    return stub_->GetStack(&context, request, out);
  }
  v1::ListStacksResponse ListStacks(int64_t threshold, v1::StackSort sort, uint32_t top) {
    grpc::ClientContext context;
    v1::ListStacksRequest request;
    request.set_threshold(threshold);
    request.set_sort(sort);
    request.set_top(top);
    v1::ListStacksResponse out;
    const grpc::Status s = stub_->ListStacks(&context, request, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  v1::SetTrackingResponse SetTracking(bool on, uint64_t ts) {
    grpc::ClientContext context;
    v1::SetTrackingRequest request;
    request.set_on(on);
    request.set_ts_ns(ts);
    v1::SetTrackingResponse out;
    const grpc::Status s = stub_->SetTracking(&context, request, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  ServerOptions options_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PageOwner::Stub> stub_;
};

// ---- Ingest ----

TEST_F(ServiceTest, IngestEveryKindAndReadItBack) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder b(41);
  b.Stack(1, Frames(1)).Stack(2, Frames(2)).Task(1, 100, 101, "worker");
  b.AllocAt(64, 2, 1, 1, 5000)
      .Alloc(0, 1, 1, 5001)
      .MigrateTo(64, 128, v1::MIGRATE_REASON_COMPACTION, 2, 1, 5002)
      .Free(128, 2, 2, 1, 5003);
  const v1::BatchResult r = w.Run(b);
  ASSERT_EQ(r.event_code_size(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.event_code(i), kOk);
  EXPECT_EQ(r.sequence(), 41u);
  EXPECT_EQ(r.event_pfn(0), 64u);
  EXPECT_EQ(r.event_pfn(2), 128u);
  EXPECT_EQ(r.event_pfn(3), 128u);
  EXPECT_NE(r.event_handle(0), 0u);
  EXPECT_EQ(r.event_handle(2), r.event_handle(0));  // the owner's handle moved with the pages
  EXPECT_NE(r.event_handle(3), 0u);                 // the free stack
  EXPECT_NE(r.event_handle(3), r.event_handle(0));
  EXPECT_TRUE(r.event_message().empty());

  v1::Stack stack;
  ASSERT_TRUE(GetStack(r.event_handle(0), &stack).ok());
  ExpectStack(w.local(), StackHandle(r.event_handle(0)), stack);
  EXPECT_EQ(stack.pages(), 1);  // the order-2 block was migrated and freed; the order-0 remains
  EXPECT_EQ(stack.allocations(), 2u);
  ASSERT_EQ(stack.frames_size(), 4);
  EXPECT_EQ(stack.frames(1).ip(), Frames(1)[1].first);
  EXPECT_EQ(stack.frames(1).symbol(), Frames(1)[1].second);

  v1::GetPageResponse page;
  ASSERT_TRUE(GetPage(129, &page).ok());
  EXPECT_TRUE(page.page().owner());
  EXPECT_FALSE(page.page().allocated());
  EXPECT_EQ(page.page().free_handle(), r.event_handle(3));
  EXPECT_EQ(page.page().last_migrate_reason(), v1::MIGRATE_REASON_COMPACTION);
  EXPECT_EQ(page.page_owner_text(), "");
  EXPECT_EQ(page.dump_page_owner_text().rfind("page_owner tracks the page as freed\n", 0), 0u);
  ExpectStack(w.local(), StackHandle(r.event_handle(3)), page.free_stack());
}

TEST_F(ServiceTest, EveryEventErrorCodeAndABadEventFailsAlone) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder b(1);
  b.Stack(1, Frames(1));
  b.Alloc(11, 1)                                                  // 0: order above 10
      .AllocAt(kPages, 0, 1)                                      // 1: pfn beyond memory
      .AllocAt(512, 1, 1)                                         // 2: OK
      .AllocAt(512, 0, 1)                                         // 3: occupied
      .Free(513, 0)                                               // 4: not the head of its block
      .Free(512, 1)                                               // 5: OK
      .Free(512, 1)                                               // 6: double free
      .Free(1 << 20, 0)                                           // 7: beyond memory
      .Migrate(512, v1::MIGRATE_REASON_COMPACTION)                // 8: the page is free
      .Migrate(99999, v1::MIGRATE_REASON_COMPACTION)              // 9: beyond memory
      .AllocAt(600, 0, 1)                                         // 10: OK
      .Migrate(600, v1::MIGRATE_REASON_NONE)                      // 11: no reason
      .MigrateTo(600, 600, v1::MIGRATE_REASON_NUMA_MISPLACED)     // 12: target in use
      .Alloc(0, 0)                                                // 13: no stack
      .Free(600, 11)                                              // 14: order above 10
      .Free(600, 1)                                               // 15: wrong order
      .Event(v1::EVENT_KIND_ALLOC, 0, 0, 0, 0, 1, 0, 0, 0, 0x80)  // 16: unknown flag bit
      .Alloc(0, 1);                                               // 17: OK
  const v1::BatchResult r = w.Run(b);
  const std::vector<int32_t> want = {kInvalidArgument,
                                     kOutOfRange,
                                     kOk,
                                     kAlreadyExists,
                                     kFailedPrecondition,
                                     kOk,
                                     kFailedPrecondition,
                                     kOutOfRange,
                                     kFailedPrecondition,
                                     kOutOfRange,
                                     kOk,
                                     kInvalidArgument,
                                     kAlreadyExists,
                                     kInvalidArgument,
                                     kInvalidArgument,
                                     kFailedPrecondition,
                                     kInvalidArgument,
                                     kOk};
  ASSERT_EQ(r.event_code_size(), static_cast<int>(want.size()));
  int failures = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(r.event_code(i), want[i]) << "event " << i << ": " << r.event_message().count(i);
    if (want[i] != kOk) {
      ++failures;
      EXPECT_FALSE(r.event_message().at(i).empty()) << i;
      EXPECT_EQ(r.event_pfn(i), 0u);
      EXPECT_EQ(r.event_handle(i), 0u);
    }
  }
  EXPECT_EQ(r.event_pfn(2), 512u);
  EXPECT_EQ(r.event_pfn(10), 600u);
  const v1::Stats stats = Stats();
  EXPECT_EQ(stats.rejected(), static_cast<uint64_t>(failures));
  EXPECT_EQ(stats.allocs(), 3u);
  EXPECT_EQ(stats.frees(), 1u);
  EXPECT_EQ(stats.migrates(), 0u);
}

TEST_F(ServiceTest, ResourceExhaustedWhenMemoryIsFull) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder big(1);
  big.Stack(1, Frames(1));
  for (int i = 0; i < 17; ++i) big.Alloc(10, 1);
  const v1::BatchResult r = w.Run(big);
  int ok = 0;
  for (int i = 0; i < r.event_code_size(); ++i) {
    if (r.event_code(i) == kOk) {
      ++ok;
    } else {
      EXPECT_EQ(r.event_code(i), kResourceExhausted) << i;
      EXPECT_NE(r.event_message().at(i).find(""), std::string::npos);
    }
  }
  EXPECT_EQ(ok, 15);  // 16 blocks of order 10; the depot's first pool broke one
  // Fill the rest a page at a time until nothing is left.
  uint64_t seq = 2;
  for (;;) {
    BatchBuilder small(seq++);
    for (int i = 0; i < 1024; ++i) small.Alloc(0, 1);
    const v1::BatchResult s = w.Run(small);
    if (s.event_code(1023) != kOk) {
      EXPECT_EQ(s.event_code(1023), kResourceExhausted);
      break;
    }
    ASSERT_LT(seq, 10u);
  }
  EXPECT_EQ(Stats().free_pages(), 0u);
}

TEST_F(ServiceTest, MalformedBatchesAreRefusedWholeAndTheStreamGoesOn) {
  Start();
  BatchBuilder good(1);
  good.Stack(1, Frames(1)).Alloc(0, 1);
  BatchBuilder undefined_stack(2);
  undefined_stack.Stack(2, Frames(2)).Alloc(0, 2).Alloc(0, 7);
  BatchBuilder undefined_task(3);
  undefined_task.Alloc(0, 1, 9);
  BatchBuilder short_column(4);
  short_column.Alloc(0, 1).Alloc(0, 1);
  short_column.mutable_batch().mutable_gfp_mask()->RemoveLast();
  BatchBuilder too_many(5);
  for (int i = 0; i < 1025; ++i) too_many.Alloc(0, 1);
  BatchBuilder unspecified(6);
  unspecified.Alloc(0, 1).Event(v1::EVENT_KIND_UNSPECIFIED, 0, 0, 0, 0, 1, 0, 0, 0, 0);
  BatchBuilder uses_dropped_definition(7);
  uses_dropped_definition.Alloc(0, 2);  // stack 2 came with a malformed batch: never defined
  BatchBuilder good_again(8);
  good_again.Alloc(0, 1).Alloc(1, 1);

  const IngestOutcome out =
      Ingest(stub_.get(), {good.batch(), undefined_stack.batch(), undefined_task.batch(),
                           short_column.batch(), too_many.batch(), unspecified.batch(),
                           uses_dropped_definition.batch(), good_again.batch()});
  ASSERT_TRUE(out.status.ok()) << out.status.error_message();
  ASSERT_EQ(out.results.size(), 8u);
  const std::vector<std::string> messages = {
      "",
      "event 1: stack id 7 is not defined in this stream",
      "event 0: task id 9 is not defined in this stream",
      "column gfp_mask has 1 values for 2 events",
      "1025 events, more than --max_batch_events=1024",
      "event 1: kind 0 (EVENT_KIND_UNSPECIFIED) is not ALLOC, FREE, MIGRATE or IMPORT",
      "event 0: stack id 2 is not defined in this stream",
      ""};
  for (size_t i = 0; i < out.results.size(); ++i) {
    const v1::BatchResult& r = out.results[i];
    EXPECT_EQ(r.sequence(), i + 1);
    if (messages[i].empty()) {
      EXPECT_EQ(r.code(), kOk) << i;
      EXPECT_EQ(r.message(), "");
      continue;
    }
    EXPECT_EQ(r.code(), kInvalidArgument) << i;
    EXPECT_NE(r.message().find(messages[i]), std::string::npos) << r.message();
    EXPECT_EQ(r.event_code_size(), 0);
    EXPECT_EQ(r.event_pfn_size(), 0);
    EXPECT_EQ(r.event_handle_size(), 0);
    EXPECT_TRUE(r.event_message().empty());
  }
  ASSERT_EQ(out.results[7].event_code_size(), 2);
  EXPECT_EQ(out.results[7].event_code(0), kOk);
  EXPECT_EQ(out.results[7].event_handle(0), out.results[0].event_handle(0));
  const v1::Stats stats = Stats();
  EXPECT_EQ(stats.allocs(), 3u);  // nothing of a malformed batch was applied
  EXPECT_EQ(stats.rejected(), 0u);
  EXPECT_EQ(stats.batches(), 8u);
  EXPECT_EQ(stats.batches_rejected(), 6u);
}

TEST_F(ServiceTest, DefinitionsAreStreamLocalAndReusedAcrossBatches) {
  Start();
  grpc::ClientContext context;
  auto rw = stub_->Ingest(&context);
  const auto run = [&](const BatchBuilder& b) {
    EXPECT_TRUE(rw->Write(b.batch()));
    v1::BatchResult r;
    EXPECT_TRUE(rw->Read(&r));
    return r;
  };
  // ip 0 with a symbol: a synthetic address; an ip with a symbol names it; a bare ip prints
  // as an address.
  BatchBuilder first(1);
  first.Stack(1, {{0, "from_a_dump+0x10/0x20"}, {0xffffffff81abc000, "named+0x0/0x8"}})
      .Stack(2, std::vector<uint64_t>{0xffffffff81abcdef})
      .Task(1, 7, 8, "one")
      .Alloc(0, 1, 1);
  const v1::BatchResult r1 = run(first);
  BatchBuilder second(2);
  second.Alloc(0, 1, 1).Alloc(0, 2, 1);
  const v1::BatchResult r2 = run(second);
  BatchBuilder third(3);
  third.Stack(1, Frames(9)).Alloc(0, 1);  // redefinition
  const v1::BatchResult r3 = run(third);
  rw->WritesDone();
  ASSERT_TRUE(rw->Finish().ok());

  ASSERT_EQ(r1.code(), kOk);
  ASSERT_EQ(r2.code(), kOk);
  ASSERT_EQ(r3.code(), kOk);
  EXPECT_EQ(r2.event_handle(0), r1.event_handle(0));  // same stack, same handle
  EXPECT_NE(r2.event_handle(1), r1.event_handle(0));
  EXPECT_NE(r3.event_handle(0), r1.event_handle(0));

  v1::Stack s;
  ASSERT_TRUE(GetStack(r1.event_handle(0), &s).ok());
  ASSERT_EQ(s.frames_size(), 2);
  SymbolTable fresh;
  EXPECT_EQ(s.frames(0).ip(), fresh.SyntheticAddress("from_a_dump+0x10/0x20"));
  EXPECT_EQ(s.frames(0).symbol(), "from_a_dump+0x10/0x20");
  EXPECT_EQ(s.frames(1).ip(), 0xffffffff81abc000u);
  EXPECT_EQ(s.frames(1).symbol(), "named+0x0/0x8");
  EXPECT_EQ(s.pages(), 2);
  EXPECT_EQ(s.allocations(), 2u);
  ASSERT_TRUE(GetStack(r2.event_handle(1), &s).ok());
  ASSERT_EQ(s.frames_size(), 1);
  EXPECT_EQ(s.frames(0).symbol(), "0xffffffff81abcdef");

  v1::GetPageResponse page;
  ASSERT_TRUE(GetPage(r2.event_pfn(0), &page).ok());
  EXPECT_EQ(page.page().pid(), 7);
  EXPECT_EQ(page.page().tgid(), 8);
  EXPECT_EQ(page.page().comm(), "one");

  // Another stream does not see these ids.
  BatchBuilder other(1);
  other.Alloc(0, 1);
  const v1::BatchResult r = IngestOne(stub_.get(), other.batch());
  EXPECT_EQ(r.code(), kInvalidArgument);
  EXPECT_NE(r.message().find("stack id 1 is not defined"), std::string::npos);
}

// Issue 10, finding 4: the streams' memory is bounded as a whole: past --max_streams a new
// stream is refused with RESOURCE_EXHAUSTED while the open ones and queries are served.
TEST_F(ServiceTest, StreamsPastMaxStreamsAreRefused) {
  ServerOptions options = SmallOptions(kPages);
  options.max_streams = 2;
  Start(options);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::EventBatch, v1::BatchResult>>> open;
  for (int i = 0; i < 2; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    open.push_back(stub_->Ingest(contexts.back().get()));
    BatchBuilder b(i);
    ASSERT_TRUE(open.back()->Write(b.batch()));
    v1::BatchResult r;
    ASSERT_TRUE(open.back()->Read(&r));  // answered: the stream is registered
  }
  grpc::ClientContext third_context;
  auto third = stub_->Ingest(&third_context);
  v1::BatchResult r;
  EXPECT_FALSE(third->Read(&r));
  const grpc::Status refused = third->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(refused.error_message(),
            "2 Ingest streams are open, the daemon's limit (--max_streams=2); retry when one has "
            "ended");
  EXPECT_EQ(Stats().streams_open(), 2u);
  for (auto& s : open) {
    s->WritesDone();
    EXPECT_TRUE(s->Finish().ok());
  }
  // One slot is free again.
  grpc::ClientContext again_context;
  auto again = stub_->Ingest(&again_context);
  BatchBuilder b(9);
  ASSERT_TRUE(again->Write(b.batch()));
  ASSERT_TRUE(again->Read(&r));
  EXPECT_EQ(r.sequence(), 9u);
  again->WritesDone();
  EXPECT_TRUE(again->Finish().ok());
}

TEST_F(ServiceTest, ListStacksIncludeEmptyListsFreeStacks) {
  Start();
  BatchBuilder b;
  b.Stack(1, std::vector<uint64_t>{0xffffffff81000010})
      .Stack(2, std::vector<uint64_t>{0xffffffff81000020});
  b.AllocAt(64, 0, 1).Free(64, 0, 2);
  World w(stub_.get(), options_);
  w.Run(b);
  grpc::ClientContext context;
  v1::ListStacksRequest request;
  request.set_include_empty(true);
  request.set_sort(v1::STACK_SORT_NEWEST);
  v1::ListStacksResponse out;
  ASSERT_TRUE(stub_->ListStacks(&context, request, &out).ok());
  ASSERT_GE(out.stacks_size(), 2);
  EXPECT_EQ(out.stacks(0).frames(0).ip(), 0xffffffff81000020u);  // the free stack, newest
  EXPECT_EQ(out.stacks(0).pages(), 0);
  EXPECT_EQ(out.stacks(1).frames(0).ip(), 0xffffffff81000010u);
  EXPECT_EQ(out.stacks(1).allocations(), 1u);
  EXPECT_EQ(static_cast<uint64_t>(out.stacks_size()), Stats().depot_persistent_count());
  const v1::ListStacksResponse owners = ListStacks(0, v1::STACK_SORT_NEWEST, 0);
  for (const v1::Stack& s : owners.stacks()) {
    EXPECT_NE(s.frames(0).ip(), 0xffffffff81000020u);  // the default lists owners only
  }
}

TEST_F(ServiceTest, TaskCommIsCutTo15Bytes) {
  Start();
  BatchBuilder b;
  b.Stack(1, Frames(1)).Task(1, 1, 1, "0123456789abcdefXYZ").Alloc(0, 1, 1);
  const v1::BatchResult r = IngestOne(stub_.get(), b.batch());
  v1::GetPageResponse page;
  ASSERT_TRUE(GetPage(r.event_pfn(0), &page).ok());
  EXPECT_EQ(page.page().comm(), "0123456789abcde");
}

TEST_F(ServiceTest, SeveralStreamsAtOnce) {
  Start();
  constexpr int kStreams = 4;
  constexpr int kBatches = 10;
  constexpr int kEvents = 100;
  const uint64_t allocated_before = Stats().allocated_pages();
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kStreams; ++t) {
    threads.emplace_back([&, t] {
      grpc::ClientContext context;
      auto rw = stub_->Ingest(&context);
      std::vector<uint64_t> previous;
      for (int batch = 0; batch < kBatches; ++batch) {
        BatchBuilder b(batch);
        if (batch == 0) b.Stack(1, Frames(t)).Task(1, 1000 + t, 1000 + t, absl::StrCat("t", t));
        for (uint64_t pfn : previous) b.Free(pfn, 0, 1, 1);
        for (int i = 0; i < kEvents; ++i) b.Alloc(0, 1, 1, batch);
        v1::BatchResult r;
        if (!rw->Write(b.batch()) || !rw->Read(&r) || r.code() != kOk) {
          ++failures;
          break;
        }
        previous.clear();
        for (int i = 0; i < r.event_code_size(); ++i) {
          if (r.event_code(i) != kOk) ++failures;
          if (i >= r.event_code_size() - kEvents) previous.push_back(r.event_pfn(i));
        }
      }
      rw->WritesDone();
      if (!rw->Finish().ok()) ++failures;
    });
  }
  // Queries run meanwhile.
  std::thread reader([&] {
    while (!done) {
      v1::GetPageResponse page;
      if (!GetPage(100, &page).ok()) ++failures;
      ListStacks(0, v1::STACK_SORT_PAGES, 3);
    }
  });
  for (std::thread& t : threads) t.join();
  done = true;
  reader.join();
  EXPECT_EQ(failures, 0);
  v1::Stats stats = Stats();
  EXPECT_EQ(stats.allocs(), uint64_t{kStreams} * kBatches * kEvents);
  EXPECT_EQ(stats.frees(), uint64_t{kStreams} * (kBatches - 1) * kEvents);
  EXPECT_EQ(stats.rejected(), 0u);
  EXPECT_EQ(stats.batches(), uint64_t{kStreams} * kBatches);
  EXPECT_EQ(stats.allocated_pages() - allocated_before, uint64_t{kStreams} * kEvents);
  // Each stream's stack owns its last batch's pages.
  const v1::ListStacksResponse stacks = ListStacks(kEvents, v1::STACK_SORT_PAGES, 0);
  int streams_stacks = 0;
  for (const v1::Stack& s : stacks.stacks()) {
    if (s.allocations() == uint64_t{kBatches} * kEvents) {
      ++streams_stacks;
      EXPECT_EQ(s.pages(), kEvents);
    }
  }
  EXPECT_EQ(streams_stacks, kStreams);
  for (int i = 0; i < 100 && stats.streams_open() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    stats = Stats();
  }
  EXPECT_EQ(stats.streams_open(), 0u);
}

TEST_F(ServiceTest, AClientThatDoesNotReadIsHeldBackAndGetsEveryAnswerInOrder) {
  ServerOptions options = SmallOptions(kPages);
  options.max_batch_events = 32768;
  Start(options);
  constexpr int kBatches = 12;
  grpc::ClientContext context;
  auto rw = stub_->Ingest(&context);
  // Frees of free pages: every event fails, so every answer is large (a message an event).
  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      BatchBuilder batch(b);
      for (int i = 0; i < 32768; ++i) batch.Free(i % kPages, 0);
      if (!rw->Write(batch.batch())) break;
    }
    rw->WritesDone();
  });
  absl::SleepFor(absl::Milliseconds(700));
  const uint64_t read_while_blocked = Stats().batches();
  EXPECT_LT(read_while_blocked, uint64_t{kBatches});
  EXPECT_LE(read_while_blocked, uint64_t{PageOwnerService::kMaxBatchesInFlight} + 3);
  v1::BatchResult r;
  int answers = 0;
  while (rw->Read(&r)) {
    EXPECT_EQ(r.sequence(), static_cast<uint64_t>(answers));
    EXPECT_EQ(r.event_code_size(), 32768);
    EXPECT_EQ(r.event_code(0), kFailedPrecondition);
    ++answers;
  }
  writer.join();
  EXPECT_TRUE(rw->Finish().ok());
  EXPECT_EQ(answers, kBatches);
}

// ---- Queries ----

TEST_F(ServiceTest, GetPageMatchesTheCoreText) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder b(1);
  b.Stack(1, Frames(1, 8)).Stack(2, Frames(2)).Task(1, 42, 40, "kworker/0:1");
  b.AllocAt(1024, 3, 1, 1, 123456789, kGfpHighuserMovable)
      .Alloc(0, 2, 1, 123456790, kGfpKernel)
      .AllocAt(2048, 1, 1, 1, 7)
      .Migrate(2048, v1::MIGRATE_REASON_NUMA_MISPLACED, 2, 1, 8)
      .AllocAt(3000, 0, 1, 1, 10)
      .Free(3000, 0, 2, 1, 11);
  const v1::BatchResult r = w.Run(b);
  const Machine& m = w.local();
  const std::vector<uint64_t> pfns = {
      1024, 1027, 1031, r.event_pfn(1), 2048, 2049, r.event_pfn(3), r.event_pfn(3) + 1,
      3000, 5000, 0};
  for (uint64_t pfn : pfns) {
    SCOPED_TRACE(absl::StrCat("GetPage ", pfn));
    v1::GetPageResponse page;
    ASSERT_TRUE(GetPage(pfn, &page).ok());
    const PageOwner owner = m.BlockOwner(Pfn(pfn)).value();
    ExpectRecord(owner, page.page());
    const std::optional<AllocatedBlock> block = m.allocator().BlockContaining(Pfn(pfn));
    EXPECT_EQ(page.block_head(), block ? block->head.raw() : pfn);
    EXPECT_EQ(page.block_order(), block ? block->order.raw() : 0u);
    std::string text;
    if (block && owner.owner && owner.allocated && owner.handle.valid()) {
      AppendPageOwnerBlock(owner, m.depot().Fetch(owner.handle), m.symbols(), DumpFormat::kToday,
                           &text);
    }
    EXPECT_EQ(page.page_owner_text(), text);
    EXPECT_EQ(page.dump_page_owner_text(), DumpPageOwner(m, Pfn(pfn)).value());
    EXPECT_EQ(page.has_alloc_stack(), owner.handle.valid());
    if (owner.handle.valid()) ExpectStack(m, owner.handle, page.alloc_stack());
    EXPECT_EQ(page.has_free_stack(), owner.free_handle.valid());
    if (owner.free_handle.valid()) ExpectStack(m, owner.free_handle, page.free_stack());
  }
  // A tail page shows its block, exactly as the full dump prints it.
  v1::GetPageResponse head, tail;
  ASSERT_TRUE(GetPage(1024, &head).ok());
  ASSERT_TRUE(GetPage(1030, &tail).ok());
  EXPECT_EQ(tail.page_owner_text(), head.page_owner_text());
  EXPECT_EQ(head.page_owner_text().rfind("Page allocated via order 3, mask ", 0), 0u);
  EXPECT_NE(PageOwnerText(m, DumpFormat::kToday).find(head.page_owner_text()), std::string::npos);
  EXPECT_EQ(tail.block_head(), 1024u);
  EXPECT_EQ(tail.block_order(), 3u);

  v1::GetPageResponse bad;
  const grpc::Status beyond = GetPage(kPages, &bad);
  EXPECT_EQ(beyond.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_NE(beyond.error_message().find("beyond memory"), std::string::npos);
  EXPECT_EQ(GetPage(~uint64_t{0}, &bad).error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(ServiceTest, GetStackOfAnUnknownHandleIsNotFound) {
  Start();
  BatchBuilder b;
  b.Stack(1, Frames(1)).Alloc(0, 1);
  const v1::BatchResult r = IngestOne(stub_.get(), b.batch());
  v1::Stack s;
  for (uint32_t handle : {0u, 0xdeadbeefu, r.event_handle(0) + (1u << 17), 0x7fffu}) {
    const grpc::Status status = GetStack(handle, &s);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << handle;
    EXPECT_NE(status.error_message().find(absl::StrCat("stack handle ", handle)),
              std::string::npos);
  }
  EXPECT_TRUE(GetStack(r.event_handle(0), &s).ok());
}

// A machine with several thousand records: allocations of three stacks by two tasks, some
// freed, some migrated.
class ListPagesTest : public ServiceTest {
 protected:
  void SetUp() override {
    Start();
    world_ = std::make_unique<World>(stub_.get(), options_);
    std::vector<std::pair<uint64_t, uint32_t>> blocks;  // pfn, order
    uint64_t seq = 0;
    for (int round = 0; round < 6; ++round) {
      BatchBuilder b(seq++);
      if (round == 0) {
        b.Stack(1, Frames(1)).Stack(2, Frames(2)).Stack(3, Frames(3));
        b.Task(1, 10, 10, "alpha").Task(2, 20, 21, "beta");
      }
      for (int i = 0; i < 900; ++i) {
        const int n = round * 900 + i;
        b.Alloc(n % 13 == 0 ? 2 : 0, 1 + n % 3, 1 + n % 2, n);
      }
      const v1::BatchResult r = world_->Run(b);
      for (int i = 0; i < r.event_code_size(); ++i) {
        ASSERT_EQ(r.event_code(i), kOk);
        blocks.push_back({r.event_pfn(i), (round * 900 + i) % 13 == 0 ? 2u : 0u});
      }
    }
    BatchBuilder frees(seq++);
    for (size_t i = 0; i < blocks.size(); i += 7)
      frees.Free(blocks[i].first, blocks[i].second, 3, 2, 99);
    world_->Run(frees);
    BatchBuilder migrates(seq++);
    for (size_t i = 3; i < blocks.size(); i += 11) {
      if (i % 7 != 0) migrates.Migrate(blocks[i].first, v1::MIGRATE_REASON_COMPACTION, 0, 1, 100);
    }
    world_->Run(migrates);
  }

  // What the local machine holds for a request (state, filters, range, limit).
  std::vector<PageOwner> Expected(const v1::ListPagesRequest& r) {
    const Machine& m = world_->local();
    std::vector<PageOwner> out;
    const uint64_t end = r.end_pfn() == 0 ? kPages : r.end_pfn();
    for (uint64_t pfn = r.start_pfn(); pfn < end; ++pfn) {
      const PageOwner p = m.PageRecord(Pfn(pfn)).value();
      if (!p.owner || !Pfn(pfn).aligned_to(p.order)) continue;
      const bool allocated = p.allocated && p.handle.valid();
      const bool freed = !p.allocated;
      if (r.state() == v1::PAGE_STATE_ALLOCATED && !allocated) continue;
      if (r.state() == v1::PAGE_STATE_FREED && !freed) continue;
      if (r.has_pid() && p.pid != r.pid()) continue;
      if (r.has_tgid() && p.tgid != r.tgid()) continue;
      if (r.has_comm() && p.comm != r.comm()) continue;
      if (r.has_handle() && p.handle.raw() != r.handle()) continue;
      if (r.has_order() && p.order.raw() != r.order()) continue;
      out.push_back(p);
      if (r.limit() != 0 && out.size() == r.limit()) break;
    }
    return out;
  }

  // Lists, checks the stream's shape and returns the records.
  std::vector<v1::PageRecord> List(const v1::ListPagesRequest& r, size_t* chunks = nullptr) {
    grpc::Status status;
    const std::vector<v1::ListPagesResponse> got = ListPages(stub_.get(), r, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (chunks != nullptr) *chunks = got.size();
    std::vector<v1::PageRecord> records;
    std::set<uint32_t> sent;
    uint64_t last_next = r.start_pfn();
    for (const v1::ListPagesResponse& chunk : got) {
      EXPECT_GE(chunk.next_pfn(), last_next);
      last_next = chunk.next_pfn();
      for (const v1::Stack& s : chunk.stacks()) {
        EXPECT_TRUE(sent.insert(s.handle()).second) << "stack " << s.handle() << " sent twice";
        ExpectStack(world_->local(), StackHandle(s.handle()), s);
      }
      for (const v1::PageRecord& p : chunk.pages()) {
        EXPECT_TRUE(sent.contains(p.handle())) << "stack " << p.handle() << " not sent before";
        EXPECT_LT(p.pfn(), chunk.next_pfn());
        if (!records.empty()) {
          EXPECT_GT(p.pfn(), records.back().pfn());
        }
        records.push_back(p);
      }
    }
    return records;
  }

  void ExpectList(const v1::ListPagesRequest& r) {
    const std::vector<PageOwner> want = Expected(r);
    const std::vector<v1::PageRecord> got = List(r);
    ASSERT_EQ(got.size(), want.size()) << r.ShortDebugString();
    for (size_t i = 0; i < got.size(); ++i) ExpectRecord(want[i], got[i]);
  }

  std::unique_ptr<World> world_;
};

TEST_F(ListPagesTest, AllAllocatedRecordsInPfnOrderInChunks) {
  v1::ListPagesRequest r;
  const std::vector<PageOwner> want = Expected(r);
  ASSERT_GT(want.size(), 4096u);
  // Exactly what the kernel's page_owner file lists.
  std::vector<PageOwner> core;
  world_->local().ForEachOwnedBlock(Pfn(0), [&](const PageOwner& p) {
    core.push_back(p);
    return true;
  });
  ASSERT_EQ(core.size(), want.size());
  size_t chunks = 0;
  const std::vector<v1::PageRecord> got = List(r, &chunks);
  EXPECT_GE(chunks, 2u);
  ASSERT_EQ(got.size(), core.size());
  for (size_t i = 0; i < got.size(); ++i) ExpectRecord(core[i], got[i]);
}

TEST_F(ListPagesTest, ResumesFromNextPfn) {
  grpc::Status status;
  const std::vector<v1::ListPagesResponse> all = ListPages(stub_.get(), {}, &status);
  ASSERT_TRUE(status.ok());
  ASSERT_GE(all.size(), 2u);
  EXPECT_EQ(all.front().pages_size(), 4096);
  EXPECT_EQ(all.front().next_pfn(), all.front().pages(4095).pfn() + 1);
  EXPECT_EQ(all.back().next_pfn(), kPages);
  v1::ListPagesRequest rest;
  rest.set_start_pfn(all.front().next_pfn());
  std::vector<v1::PageRecord> expected;
  for (size_t c = 1; c < all.size(); ++c) {
    for (const v1::PageRecord& p : all[c].pages()) expected.push_back(p);
  }
  const std::vector<v1::PageRecord> got = List(rest);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_EQ(got[i].SerializeAsString(), expected[i].SerializeAsString());
  ExpectList(rest);
}

TEST_F(ListPagesTest, Filters) {
  v1::ListPagesRequest r;
  r.set_pid(20);
  ExpectList(r);
  r.Clear();
  r.set_tgid(21);
  ExpectList(r);
  r.Clear();
  r.set_comm("alpha");
  ExpectList(r);
  r.Clear();
  r.set_order(2);
  ExpectList(r);
  r.Clear();
  r.set_comm("nobody");
  EXPECT_TRUE(List(r).empty());
  // The handle of the second stack.
  v1::ListPagesRequest one;
  one.set_limit(2);
  const std::vector<v1::PageRecord> first = List(one);
  ASSERT_EQ(first.size(), 2u);
  r.Clear();
  r.set_handle(first[1].handle());
  ExpectList(r);
  r.set_pid(first[1].pid());
  r.set_order(0);
  ExpectList(r);
}

TEST_F(ListPagesTest, StatesRangeAndLimit) {
  v1::ListPagesRequest r;
  r.set_state(v1::PAGE_STATE_FREED);
  ASSERT_FALSE(Expected(r).empty());
  ExpectList(r);
  r.set_state(v1::PAGE_STATE_ANY);
  ExpectList(r);
  r.set_state(v1::PAGE_STATE_FREED);
  r.set_comm("beta");
  ExpectList(r);

  v1::ListPagesRequest range;
  range.set_start_pfn(700);
  range.set_end_pfn(1500);
  ExpectList(range);
  range.set_state(v1::PAGE_STATE_ANY);
  ExpectList(range);

  v1::ListPagesRequest limited;
  limited.set_limit(10);
  ExpectList(limited);
  grpc::Status status;
  const auto chunks = ListPages(stub_.get(), limited, &status);
  ASSERT_EQ(chunks.size(), 1u);
  ASSERT_EQ(chunks[0].pages_size(), 10);
  EXPECT_EQ(chunks[0].next_pfn(), chunks[0].pages(9).pfn() + 1);
  limited.set_limit(5000);
  limited.set_state(v1::PAGE_STATE_ANY);
  ExpectList(limited);

  v1::ListPagesRequest at_end;
  at_end.set_start_pfn(kPages);
  EXPECT_TRUE(List(at_end).empty());
}

TEST_F(ListPagesTest, BadRequests) {
  const auto code = [&](const v1::ListPagesRequest& r) {
    grpc::Status status;
    const auto chunks = ListPages(stub_.get(), r, &status);
    EXPECT_TRUE(chunks.empty());
    return status.error_code();
  };
  v1::ListPagesRequest r;
  r.set_order(11);
  EXPECT_EQ(code(r), grpc::StatusCode::INVALID_ARGUMENT);
  r.Clear();
  r.set_start_pfn(kPages + 1);
  EXPECT_EQ(code(r), grpc::StatusCode::OUT_OF_RANGE);
  r.Clear();
  r.set_start_pfn(100);
  r.set_end_pfn(50);
  EXPECT_EQ(code(r), grpc::StatusCode::INVALID_ARGUMENT);
  r.Clear();
  r.set_state(static_cast<v1::PageState>(7));
  EXPECT_EQ(code(r), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, ListStacksThresholdSortTop) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder b(1);
  b.Stack(1, Frames(1)).Stack(2, Frames(2)).Stack(3, Frames(3));
  for (int i = 0; i < 10; ++i) b.Alloc(0, 1);  // A: 10 pages, 10 allocations
  b.Alloc(3, 2);                               // B: 8 pages, 1 allocation
  b.AllocAt(4000, 0, 3).AllocAt(4001, 0, 3).AllocAt(4002, 0, 3);
  b.AllocAt(4003, 0, 3).Free(4000, 0).Free(4001, 0).Free(4002, 0);  // C: 1 page, 4 allocations
  const v1::BatchResult r = w.Run(b);
  const uint32_t a = r.event_handle(0), bh = r.event_handle(10), c = r.event_handle(11);
  const Machine& m = w.local();

  // Every stack that owns a page, most pages first; their pages are all the tracked pages.
  const v1::ListStacksResponse all = ListStacks(0, v1::STACK_SORT_PAGES, 0);
  int64_t sum = 0;
  std::set<uint32_t> listed;
  for (int i = 0; i < all.stacks_size(); ++i) {
    const v1::Stack& s = all.stacks(i);
    ExpectStack(m, StackHandle(s.handle()), s);
    EXPECT_GE(s.pages(), 1);
    if (i > 0) {
      EXPECT_LE(s.pages(), all.stacks(i - 1).pages());
    }
    sum += s.pages();
    listed.insert(s.handle());
  }
  EXPECT_EQ(all.total_pages(), sum);
  // The early stack owns pages (the depot's first pool) but, as in the kernel, is never charged
  // an allocation, so show_stacks' order does not list it.
  const v1::Stats st = Stats();
  EXPECT_GT(st.early_handle_pages(), 0u);
  EXPECT_FALSE(listed.contains(m.early_handle().raw()));
  EXPECT_EQ(static_cast<uint64_t>(sum) + st.early_handle_pages(), st.tracked_pages());
  EXPECT_TRUE(listed.contains(a) && listed.contains(bh) && listed.contains(c));
  EXPECT_EQ(all.stacks(0).handle(), a);

  // show_stacks' own order and threshold.
  const v1::ListStacksResponse newest = ListStacks(2, v1::STACK_SORT_NEWEST, 0);
  std::vector<uint32_t> want;
  m.depot().ForEachOwnerStack([&](const StackUsage& s) {
    if (s.pages >= 2) want.push_back(s.handle.raw());
  });
  ASSERT_EQ(newest.stacks_size(), static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(newest.stacks(i).handle(), want[i]);
  const auto pos = [&](uint32_t h) {
    return std::find(want.begin(), want.end(), h) - want.begin();
  };
  EXPECT_LT(pos(bh), pos(a));  // B was first charged after A

  const v1::ListStacksResponse by_allocs = ListStacks(0, v1::STACK_SORT_ALLOCATIONS, 2);
  ASSERT_EQ(by_allocs.stacks_size(), 2);
  EXPECT_EQ(by_allocs.stacks(0).handle(), a);
  EXPECT_EQ(by_allocs.stacks(0).allocations(), 10u);
  EXPECT_EQ(by_allocs.total_pages(), by_allocs.stacks(0).pages() + by_allocs.stacks(1).pages());

  const v1::ListStacksResponse top = ListStacks(0, v1::STACK_SORT_PAGES, 1);
  ASSERT_EQ(top.stacks_size(), 1);
  EXPECT_EQ(top.stacks(0).handle(), a);
  EXPECT_EQ(top.total_pages(), 10);

  const v1::ListStacksResponse nine = ListStacks(9, v1::STACK_SORT_PAGES, 0);
  for (const v1::Stack& s : nine.stacks()) EXPECT_GE(s.pages(), 9);
  EXPECT_EQ(nine.stacks(0).handle(), a);
  EXPECT_FALSE(std::any_of(nine.stacks().begin(), nine.stacks().end(),
                           [&](const v1::Stack& s) { return s.handle() == bh; }));

  grpc::ClientContext context;
  v1::ListStacksRequest bad;
  bad.set_sort(static_cast<v1::StackSort>(9));
  v1::ListStacksResponse out;
  EXPECT_EQ(stub_->ListStacks(&context, bad, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, GetStatsMatchesTheMachine) {
  Start();
  World w(stub_.get(), options_);
  BatchBuilder b(1);
  b.Stack(1, Frames(1, 20)).Stack(2, Frames(2));
  for (int i = 0; i < 50; ++i)
    b.Alloc(i % 3, 1 + i % 2, 0, 0, i % 2 ? kGfpKernel : kGfpHighuserMovable);
  b.Free(5000, 0);
  w.Run(b);
  const Machine& m = w.local();
  const v1::Stats s = Stats();
  EXPECT_EQ(s.total_pages(), kPages);
  EXPECT_EQ(s.free_pages(), m.allocator().free_pages().raw());
  EXPECT_EQ(s.allocated_pages(), m.allocator().allocated_pages().raw());
  EXPECT_EQ(s.tracked_pages(), m.tracked_pages().raw());
  EXPECT_TRUE(s.tracking());
  ASSERT_EQ(s.free_blocks_unmovable_size(), kMaxOrder + 1);
  ASSERT_EQ(s.free_blocks_movable_size(), kMaxOrder + 1);
  ASSERT_EQ(s.free_blocks_reclaimable_size(), kMaxOrder + 1);
  for (int o = 0; o <= kMaxOrder; ++o) {
    EXPECT_EQ(s.free_blocks_unmovable(o),
              m.allocator().FreeBlockCount(Order(o), MigrateType::kUnmovable));
    EXPECT_EQ(s.free_blocks_movable(o),
              m.allocator().FreeBlockCount(Order(o), MigrateType::kMovable));
    EXPECT_EQ(s.free_blocks_reclaimable(o),
              m.allocator().FreeBlockCount(Order(o), MigrateType::kReclaimable));
  }
  EXPECT_EQ(s.fallback_steals(), m.allocator().fallback_steals());
  const StackDepotStats depot = m.depot().stats();
  EXPECT_EQ(s.depot_pools(), depot.pools);
  EXPECT_EQ(s.depot_persistent_count(), depot.persistent_count);
  EXPECT_EQ(s.depot_persistent_bytes(), depot.persistent_bytes);
  EXPECT_EQ(s.depot_truncated(), 25u);  // 20-frame stack, depth 16: every save of it is cut
  EXPECT_EQ(s.depot_truncated(), depot.truncated);
  EXPECT_EQ(s.depot_failed(), depot.failed);
  EXPECT_EQ(s.dummy_handle_uses(), m.counters().dummy_handle_uses);
  EXPECT_EQ(s.failure_handle_uses(), m.counters().failure_handle_uses);
  EXPECT_EQ(s.early_handle_pages(), m.counters().early_handle_pages);
  EXPECT_EQ(s.allocs(), 50u);
  EXPECT_EQ(s.frees(), 0u);
  EXPECT_EQ(s.rejected(), 1u);
  EXPECT_EQ(s.batches(), 1u);
  EXPECT_EQ(s.batches_rejected(), 0u);
  EXPECT_EQ(s.streams_open(), 1u);  // the World's
  EXPECT_EQ(s.metadata_bytes(), m.MemoryUsage().total());
  EXPECT_DOUBLE_EQ(s.metadata_bytes_per_page(),
                   static_cast<double>(m.MemoryUsage().total()) / kPages);
  EXPECT_EQ(s.stackdepot_stats_text(), StackDepotStatsText(depot));
  EXPECT_EQ(s.mixed_blocks_text(), MixedBlocksText(m.MixedBlocks()));
}

TEST_F(ServiceTest, SetTrackingOffAndOn) {
  ServerOptions options = SmallOptions(kPages);
  options.machine.tracking = false;
  Start(options);
  BatchBuilder b;
  b.Stack(1, Frames(1)).AllocAt(100, 0, 1).AllocAt(104, 2, 1).AllocAt(200, 1, 1);
  const v1::BatchResult r = IngestOne(stub_.get(), b.batch());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r.event_code(i), kOk);
    EXPECT_EQ(r.event_handle(i), 0u);  // no owner while tracking is off
  }
  v1::Stats before = Stats();
  EXPECT_FALSE(before.tracking());
  EXPECT_EQ(before.tracked_pages(), 0u);
  v1::GetPageResponse page;
  ASSERT_TRUE(GetPage(105, &page).ok());
  EXPECT_FALSE(page.page().owner());
  EXPECT_EQ(page.page_owner_text(), "");

  const v1::SetTrackingResponse on = SetTracking(true, 777);
  EXPECT_TRUE(on.tracking());
  // Every allocated page, the depot's first pool included, gets the early handle.
  EXPECT_EQ(on.early_pages(), before.allocated_pages());
  EXPECT_EQ(on.early_pages(), 4u + 1 + 4 + 2);
  const v1::Stats after = Stats();
  EXPECT_TRUE(after.tracking());
  EXPECT_EQ(after.early_handle_pages(), on.early_pages());
  EXPECT_EQ(after.tracked_pages(), on.early_pages());
  ASSERT_TRUE(GetPage(105, &page).ok());
  EXPECT_TRUE(page.page().owner());
  EXPECT_TRUE(page.page().allocated());
  EXPECT_EQ(page.page().pfn(), 105u);  // early pages keep one record a page
  EXPECT_EQ(page.page().order(), 0u);
  EXPECT_EQ(page.page().ts_ns(), 777u);
  EXPECT_EQ(page.page().comm(), "swapper");
  ASSERT_EQ(page.alloc_stack().frames_size(), 4);
  EXPECT_EQ(page.alloc_stack().frames(0).symbol(), "register_early_stack+0x4b/0x80");

  EXPECT_EQ(SetTracking(true, 0).early_pages(), 0u);  // already on
  const v1::SetTrackingResponse off = SetTracking(false, 0);
  EXPECT_FALSE(off.tracking());
  EXPECT_EQ(off.early_pages(), 0u);
  BatchBuilder later;
  later.Stack(1, Frames(1)).Alloc(0, 1);
  EXPECT_EQ(IngestOne(stub_.get(), later.batch()).event_handle(0), 0u);
  EXPECT_FALSE(Stats().tracking());
}

// ---- Health, reflection, shutdown ----

HealthCheckResponse::ServingStatus Check(grpc::Channel* channel, const std::string& service) {
  auto health = Health::NewStub(std::shared_ptr<grpc::Channel>(channel, [](grpc::Channel*) {}));
  grpc::ClientContext context;
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status s = health->Check(&context, request, &response);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return response.status();
}

TEST_F(ServiceTest, HealthIsServing) {
  Start();
  EXPECT_EQ(Check(channel_.get(), ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check(channel_.get(), "pageowner.v1.PageOwner"), HealthCheckResponse::SERVING);
}

// Server reflection through a generic stub, with the reflection messages that libgrpc++_reflection
// registers in the generated descriptor pool.
TEST_F(ServiceTest, ReflectionListsTheServices) {
  Start();
  namespace pb = google::protobuf;
  const pb::Descriptor* request_type = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionRequest");
  const pb::Descriptor* response_type = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(request_type, nullptr);
  ASSERT_NE(response_type, nullptr);
  std::unique_ptr<pb::Message> request(
      pb::MessageFactory::generated_factory()->GetPrototype(request_type)->New());
  request->GetReflection()->SetString(request.get(), request_type->FindFieldByName("list_services"),
                                      "*");
  const std::string bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer out(&slice, 1);

  grpc::GenericStub generic(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  auto call = generic.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  const auto step = [&](int t) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, reinterpret_cast<void*>(t));
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  call->Write(out, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  grpc::ByteBuffer in;
  call->Read(&in, reinterpret_cast<void*>(4));
  ASSERT_TRUE(step(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  ASSERT_TRUE(step(5));
  EXPECT_TRUE(status.ok()) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }

  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(in.Dump(&slices).ok());
  std::string received;
  for (const grpc::Slice& s : slices)
    received.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::unique_ptr<pb::Message> response(
      pb::MessageFactory::generated_factory()->GetPrototype(response_type)->New());
  ASSERT_TRUE(response->ParseFromString(received));
  const std::string text = response->DebugString();
  EXPECT_NE(text.find("pageowner.v1.PageOwner"), std::string::npos) << text;
  EXPECT_NE(text.find("grpc.health.v1.Health"), std::string::npos) << text;
}

TEST_F(ServiceTest, ShutdownDrainsOpenStreamsThenRefuses) {
  Start();
  // A health watcher sees the change to NOT_SERVING.
  auto health = Health::NewStub(channel_);
  grpc::ClientContext watch_context;
  HealthCheckRequest watch_request;
  auto watch = health->Watch(&watch_context, watch_request);
  HealthCheckResponse seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::SERVING);

  grpc::ClientContext context;
  auto rw = stub_->Ingest(&context);
  BatchBuilder first(1);
  first.Stack(1, Frames(1)).Alloc(0, 1);
  ASSERT_TRUE(rw->Write(first.batch()));
  v1::BatchResult r;
  ASSERT_TRUE(rw->Read(&r));
  // Two more batches the server reads but whose answers we have not read yet.
  for (uint64_t seq : {2, 3}) {
    BatchBuilder b(seq);
    b.Alloc(0, 1).Alloc(1, 1);
    ASSERT_TRUE(rw->Write(b.batch()));
  }
  for (int i = 0; i < 200 && Stats().batches() < 3; ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(Stats().batches(), 3u);

  std::thread shutdown([&] { server_->Shutdown(); });
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.status(), HealthCheckResponse::NOT_SERVING);
  watch_context.TryCancel();
  // The batches read before the shutdown are answered, then the stream ends.
  for (uint64_t seq : {2, 3}) {
    ASSERT_TRUE(rw->Read(&r));
    EXPECT_EQ(r.sequence(), seq);
    EXPECT_EQ(r.code(), kOk);
    ASSERT_EQ(r.event_code_size(), 2);
    EXPECT_EQ(r.event_code(0), kOk);
    EXPECT_EQ(r.event_code(1), kOk);
  }
  EXPECT_FALSE(rw->Read(&r));
  const grpc::Status ended = rw->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(ended.error_message().find("shutting down"), std::string::npos);
  shutdown.join();

  // Nothing new is served.
  const IngestOutcome late = Ingest(stub_.get(), {first.batch()});
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(late.results.empty());
  grpc::ClientContext stats_context;
  stats_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::Stats stats;
  EXPECT_EQ(stub_->GetStats(&stats_context, v1::GetStatsRequest(), &stats).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  server_->Wait();  // returns at once
}

// The drain itself, on the service: while it runs, new streams are refused and queries served.
TEST(PageOwnerServiceTest, DrainRefusesNewStreamsAndServesQueries) {
  SharedMachine machine(SmallOptions(kPages).machine);
  PageOwnerService service(&machine, ServiceOptions{.max_batch_events = 1024});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(Channel(port));

  // A stream that is open but idle when the drain begins ends with UNAVAILABLE.
  grpc::ClientContext context;
  auto rw = stub->Ingest(&context);
  BatchBuilder b(1);
  b.Stack(1, Frames(1)).Alloc(0, 1);
  ASSERT_TRUE(rw->Write(b.batch()));
  v1::BatchResult r;
  ASSERT_TRUE(rw->Read(&r));
  EXPECT_EQ(r.code(), kOk);

  service.BeginDrain();
  EXPECT_FALSE(rw->Read(&r));
  EXPECT_EQ(rw->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(service.AwaitDrained(absl::Now() + absl::Seconds(5)));

  const IngestOutcome refused = Ingest(stub.get(), {b.batch()});
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.status.error_message(), "pageownerd is shutting down");
  grpc::Status list_status;
  EXPECT_TRUE(ListPages(stub.get(), {}, &list_status).empty());
  EXPECT_EQ(list_status.error_code(), grpc::StatusCode::UNAVAILABLE);

  grpc::ClientContext stats_context;
  v1::Stats stats;
  ASSERT_TRUE(stub->GetStats(&stats_context, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.allocs(), 1u);
  EXPECT_EQ(stats.batches(), 1u);
  EXPECT_EQ(stats.streams_open(), 0u);

  server->Shutdown();
  service.StopWriter();
}

// A ListPages stream open when the drain begins ends after the chunk it is writing, with
// UNAVAILABLE and the pfn to resume from (unless it had already sent everything).
TEST(PageOwnerServiceTest, DrainEndsListPagesWithAResumePoint) {
  SharedMachine machine(SmallOptions(kPages).machine);
  PageOwnerService service(&machine, ServiceOptions{.max_batch_events = 1024});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::PageOwner::NewStub(Channel(port));
  std::vector<v1::EventBatch> batches;
  for (int b = 0; b < 15; ++b) {
    BatchBuilder batch(b);
    if (b == 0) batch.Stack(1, Frames(1));
    for (int i = 0; i < 1024; ++i) batch.Alloc(0, 1, 0, b * 1024 + i);
    batches.push_back(batch.batch());
  }
  ASSERT_TRUE(Ingest(stub.get(), batches).status.ok());

  grpc::ClientContext context;
  auto reader = stub->ListPages(&context, v1::ListPagesRequest());
  v1::ListPagesResponse chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  uint64_t records = chunk.pages_size();
  uint64_t next = chunk.next_pfn();
  service.BeginDrain();
  while (reader->Read(&chunk)) {
    records += chunk.pages_size();
    next = chunk.next_pfn();
  }
  const grpc::Status status = reader->Finish();
  if (status.ok()) {
    EXPECT_EQ(next, kPages);  // it had already written every chunk
  } else {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(status.error_message(),
              absl::StrCat("pageownerd is shutting down; resume from pfn ", next));
    EXPECT_LT(next, kPages);
  }
  EXPECT_GE(records, 4096u);
  EXPECT_TRUE(service.AwaitDrained(absl::Now() + absl::Seconds(5)));
  server->Shutdown();
  service.StopWriter();
}

}  // namespace
}  // namespace pageowner::server
