#include "client/session.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/client/fake_service.h"

namespace pageowner::client {
namespace {

using ::pageowner::testing::FakePageOwner;
using ::pageowner::testing::FakeServer;

std::vector<Frame> MakeStack(int n, const std::string& prefix, uint64_t base = 0xffffffff81000000) {
  std::vector<Frame> frames;
  for (int i = 0; i < n; ++i) {
    frames.push_back(
        {base + static_cast<uint64_t>(i) * 0x40, absl::StrCat(prefix, i, "+0x1a/0x40")});
  }
  return frames;
}

AllocSpec SomeAlloc(StackRef stack, TaskRef task = TaskRef()) {
  return AllocSpec{.order = Order(0),
                   .gfp_mask = 0xcc0,
                   .stack = stack,
                   .task = task,
                   .ts_ns = 5,
                   .pfn = std::nullopt};
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : server_(&service_) {}

  std::unique_ptr<Session> Start(size_t batch_events, size_t max_in_flight = 8) {
    SessionOptions o;
    o.batch_events = batch_events;
    o.max_in_flight = max_in_flight;
    return std::make_unique<Session>(server_.channel(), std::move(o));
  }

  // Every StackDef over all batches, by id.
  absl::flat_hash_map<uint32_t, int> StackDefinitions() {
    absl::flat_hash_map<uint32_t, int> defs;
    for (const v1::EventBatch& b : service_.batches()) {
      for (const v1::StackDef& d : b.stacks()) ++defs[d.id()];
    }
    return defs;
  }

  FakePageOwner service_;
  FakeServer server_;
};

TEST_F(SessionTest, InternsStacksAndTasksOncePerStream) {
  auto session = Start(/*batch_events=*/3);
  const std::vector<Frame> a = MakeStack(4, "a_");
  const std::vector<Frame> b = MakeStack(4, "b_", 0xffffffff82000000);
  const StackId ida = session->InternStack(a);
  EXPECT_EQ(session->InternStack(a), ida);
  const StackId idb = session->InternStack(b);
  EXPECT_NE(idb, ida);
  const TaskId t1 = session->InternTask({10, 10, "bash"});
  EXPECT_EQ(session->InternTask({10, 10, "bash"}), t1);
  EXPECT_NE(session->InternTask({10, 11, "bash"}), t1);

  // Seven events over three batches, all on stacks a and b, by id and by frames.
  for (int i = 0; i < 7; ++i) {
    if (i % 2 == 0) {
      session->Alloc(SomeAlloc(a, Task{10, 10, "bash"}));
    } else {
      session->Alloc(SomeAlloc(idb, t1));
    }
  }
  ASSERT_TRUE(session->Finish().ok());

  const std::vector<v1::EventBatch> batches = service_.batches();
  ASSERT_EQ(batches.size(), 3u);
  // Each stack defined exactly once, in the batch of its first use (batch 1 uses both).
  absl::flat_hash_map<uint32_t, int> defs = StackDefinitions();
  EXPECT_EQ(defs.size(), 2u);
  EXPECT_EQ(defs[ida.raw()], 1);
  EXPECT_EQ(defs[idb.raw()], 1);
  EXPECT_EQ(batches[0].stacks_size(), 2);
  EXPECT_EQ(batches[1].stacks_size(), 0);
  // The task is defined once too; the never-used task (10, 11) is never sent.
  int task_defs = 0;
  for (const auto& batch : batches) task_defs += batch.tasks_size();
  EXPECT_EQ(task_defs, 1);
  EXPECT_EQ(batches[0].tasks(0).comm(), "bash");
  // Later batches reference the same ids.
  for (const auto& batch : batches) {
    for (uint32_t id : batch.stack_id()) EXPECT_TRUE(id == ida.raw() || id == idb.raw());
  }
  const SessionStats stats = session->stats();
  EXPECT_EQ(stats.stacks_sent, 2u);
  EXPECT_EQ(stats.tasks_sent, 1u);
  EXPECT_EQ(stats.events, 7u);
  EXPECT_EQ(stats.results, 7u);
}

TEST_F(SessionTest, SendsEachSymbolOncePerAddress) {
  auto session = Start(16);
  std::vector<Frame> a = MakeStack(3, "f_");
  std::vector<Frame> b = a;
  b.push_back({0, "only_a_name+0x1/0x2"});  // no address: its name always goes
  std::vector<Frame> c = b;
  c[0].ip = 0xffffffff90000000;  // a new innermost frame; the rest are shared
  c[0].symbol = "other+0x1/0x10";
  session->Alloc(SomeAlloc(a));
  session->Alloc(SomeAlloc(b));
  session->Alloc(SomeAlloc(c));
  ASSERT_TRUE(session->Finish().ok());
  const auto batches = service_.batches();
  ASSERT_EQ(batches.size(), 1u);
  ASSERT_EQ(batches[0].stacks_size(), 3);
  const v1::StackDef& da = batches[0].stacks(0);
  const v1::StackDef& db = batches[0].stacks(1);
  const v1::StackDef& dc = batches[0].stacks(2);
  for (const v1::Frame& f : da.frames()) EXPECT_FALSE(f.symbol().empty());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(db.frames(i).symbol().empty()) << i;
  EXPECT_EQ(db.frames(3).ip(), 0u);
  EXPECT_EQ(db.frames(3).symbol(), "only_a_name+0x1/0x2");
  EXPECT_EQ(dc.frames(0).symbol(), "other+0x1/0x10");
  EXPECT_EQ(dc.frames(3).symbol(), "only_a_name+0x1/0x2");
}

TEST_F(SessionTest, ColumnsAreFullLengthOrEmpty) {
  auto session = Start(8);
  const std::vector<Frame> s = MakeStack(2, "s_");
  session->Alloc(SomeAlloc(s, Task{1, 1, "init"}));
  session->Alloc({.order = Order(2),
                  .gfp_mask = 0x140dca,
                  .stack = s,
                  .task = TaskRef(),
                  .ts_ns = 7,
                  .pfn = Pfn(0x1000)});
  session->Free(
      {.pfn = Pfn(0x1000), .order = Order(2), .stack = StackRef(), .task = TaskRef(), .ts_ns = 9});
  session->Migrate({.pfn = Pfn(0x2000),
                    .reason = MigrateReason::kNumaMisplaced,
                    .target = Pfn(0x3000),
                    .stack = s,
                    .task = TaskRef(),
                    .ts_ns = 11});
  ASSERT_TRUE(session->Finish().ok());
  const auto batches = service_.batches();
  ASSERT_EQ(batches.size(), 1u);
  const v1::EventBatch& b = batches[0];
  ASSERT_EQ(b.kind_size(), 4);
  EXPECT_EQ(b.kind(0), v1::EVENT_KIND_ALLOC);
  EXPECT_EQ(b.kind(2), v1::EVENT_KIND_FREE);
  EXPECT_EQ(b.kind(3), v1::EVENT_KIND_MIGRATE);
  for (int n :
       {b.order_size(), b.pfn_size(), b.target_pfn_size(), b.gfp_mask_size(), b.stack_id_size(),
        b.task_id_size(), b.ts_ns_size(), b.reason_size(), b.flags_size()}) {
    EXPECT_EQ(n, 4);
  }
  EXPECT_EQ(b.pfn(0), 0u);
  EXPECT_EQ(b.pfn(1), 0x1000u);
  EXPECT_EQ(b.flags(0), 0u);
  EXPECT_EQ(b.flags(1), static_cast<uint32_t>(v1::EVENT_FLAG_AT_PFN));
  EXPECT_EQ(b.flags(3), static_cast<uint32_t>(v1::EVENT_FLAG_AT_TARGET));
  EXPECT_EQ(b.target_pfn(3), 0x3000u);
  EXPECT_EQ(b.reason(3), v1::MIGRATE_REASON_NUMA_MISPLACED);
  EXPECT_EQ(b.reason(0), v1::MIGRATE_REASON_NONE);
  EXPECT_EQ(b.stack_id(2), 0u);  // a free without a stack
  EXPECT_EQ(b.task_id(0), 1u);
  EXPECT_EQ(b.task_id(1), 0u);
  EXPECT_EQ(b.ts_ns(3), 11u);

  // A batch where a column is all zeros leaves it empty.
  service_.set_answer(nullptr);
  auto second = Start(8);
  second->Alloc(SomeAlloc(s));
  second->Alloc(SomeAlloc(s));
  ASSERT_TRUE(second->Finish().ok());
  // A copy: batches() returns a vector by value, which dies at the end of the statement.
  const v1::EventBatch c = service_.batches().back();
  EXPECT_EQ(c.kind_size(), 2);
  EXPECT_EQ(c.stack_id_size(), 2);
  EXPECT_EQ(c.order_size(), 0);
  EXPECT_EQ(c.pfn_size(), 0);
  EXPECT_EQ(c.target_pfn_size(), 0);
  EXPECT_EQ(c.task_id_size(), 0);
  EXPECT_EQ(c.reason_size(), 0);
  EXPECT_EQ(c.flags_size(), 0);
  // A new stream defines its stacks again.
  EXPECT_EQ(c.stacks_size(), 1);
}

TEST_F(SessionTest, BatchBoundariesAndFlush) {
  auto session = Start(4);
  const std::vector<Frame> s = MakeStack(2, "s_");
  for (int i = 0; i < 6; ++i) session->Alloc(SomeAlloc(s));
  session->Flush();  // sends the 2 left over
  for (int i = 0; i < 5; ++i) session->Alloc(SomeAlloc(s));
  ASSERT_TRUE(session->Finish().ok());
  const auto batches = service_.batches();
  std::vector<int> sizes;
  std::vector<uint64_t> sequences;
  for (const auto& b : batches) {
    sizes.push_back(b.kind_size());
    sequences.push_back(b.sequence());
  }
  EXPECT_EQ(sizes, (std::vector<int>{4, 2, 4, 1}));
  EXPECT_EQ(sequences, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(session->stats().batches, 4u);
  // Flush with nothing pending sends nothing.
  EXPECT_EQ(service_.batches_received(), 4);
}

TEST_F(SessionTest, LargeDefinitionsSendTheBatchEarly) {
  SessionOptions o;
  o.batch_events = 1000;
  o.batch_definition_bytes = 1024;
  Session session(server_.channel(), o);
  for (int i = 0; i < 20; ++i) {
    std::vector<Frame> s = MakeStack(8, absl::StrCat("long_function_name_number_", i, "_"),
                                     0xffffffff81000000 + static_cast<uint64_t>(i) * 0x10000);
    session.Alloc(SomeAlloc(s));
  }
  ASSERT_TRUE(session.Finish().ok());
  // About 420 bytes a stack: a batch goes every third new stack.
  EXPECT_GE(service_.batches_received(), 6);
  int events = 0;
  for (const auto& b : service_.batches()) events += b.kind_size();
  EXPECT_EQ(events, 20);
}

TEST_F(SessionTest, ResultsComeInOrderWithCodes) {
  // Every third event fails; pfns and handles echo the event's index in the stream.
  int index = 0;
  service_.set_answer([&index](const v1::EventBatch& b, v1::BatchResult* r) {
    for (int i = 0; i < b.kind_size(); ++i, ++index) {
      const bool fail = index % 3 == 2;
      r->add_event_code(fail ? static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION) : 0);
      r->add_event_pfn(fail ? 0 : 5000 + index);
      r->add_event_handle(fail ? 0 : 77);
      if (fail) (*r->mutable_event_message())[i] = absl::StrCat("event ", index, " failed");
    }
  });
  auto session = Start(5, 2);
  const std::vector<Frame> s = MakeStack(2, "s_");
  std::vector<IngestResult> results;
  for (int i = 0; i < 53; ++i) {
    EXPECT_EQ(session->Alloc(SomeAlloc(s)), static_cast<uint64_t>(i));
    session->Poll(&results);
  }
  ASSERT_TRUE(session->Finish().ok());
  session->Poll(&results);
  ASSERT_EQ(results.size(), 53u);
  for (int i = 0; i < 53; ++i) {
    const IngestResult& r = results[i];
    EXPECT_EQ(r.seq, static_cast<uint64_t>(i));
    if (i % 3 == 2) {
      EXPECT_EQ(r.code, absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(r.message, absl::StrCat("event ", i, " failed"));
      EXPECT_EQ(r.pfn, Pfn(0));
    } else {
      EXPECT_TRUE(r.ok()) << i;
      EXPECT_EQ(r.pfn, Pfn(5000 + i));
      EXPECT_EQ(r.handle, StackHandle(77));
      EXPECT_TRUE(r.message.empty());
    }
  }
  EXPECT_EQ(session->Poll(&results), 0u);
}

TEST_F(SessionTest, CallbackGetsResultsInOrder) {
  std::vector<uint64_t> seqs;
  std::atomic<int> calls{0};
  SessionOptions o;
  o.batch_events = 7;
  o.on_results = [&](absl::Span<const IngestResult> rs) {
    ++calls;
    for (const IngestResult& r : rs) seqs.push_back(r.seq);
  };
  Session session(server_.channel(), o);
  const std::vector<Frame> s = MakeStack(2, "s_");
  for (int i = 0; i < 100; ++i) session.Alloc(SomeAlloc(s));
  ASSERT_TRUE(session.Finish().ok());
  ASSERT_EQ(seqs.size(), 100u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i);
  EXPECT_EQ(calls.load(), 15);  // 14 full batches and the last 2
  std::vector<IngestResult> none;
  EXPECT_EQ(session.Poll(&none), 0u);
}

TEST_F(SessionTest, AFailedBatchFailsEachOfItsEvents) {
  service_.set_answer([](const v1::EventBatch& b, v1::BatchResult* r) {
    if (b.sequence() == 2) {
      r->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      r->set_message("stack id 9 is not defined in this stream");
      return;
    }
    for (int i = 0; i < b.kind_size(); ++i) r->add_event_code(0);
  });
  auto session = Start(3);
  const std::vector<Frame> s = MakeStack(2, "s_");
  for (int i = 0; i < 9; ++i) session->Alloc(SomeAlloc(s));
  ASSERT_TRUE(session->Finish().ok());  // the stream goes on
  std::vector<IngestResult> results;
  session->Poll(&results);
  ASSERT_EQ(results.size(), 9u);
  for (int i = 0; i < 9; ++i) {
    if (i >= 3 && i < 6) {
      EXPECT_EQ(results[i].code, absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(results[i].message, "stack id 9 is not defined in this stream");
    } else {
      EXPECT_TRUE(results[i].ok());
    }
  }
}

TEST_F(SessionTest, BackpressureBlocksTheProducerUntilTheDaemonAnswers) {
  service_.Hold();
  auto session = Start(/*batch_events=*/4, /*max_in_flight=*/2);
  const std::vector<Frame> s = MakeStack(2, "s_");
  // In a struct: clang ignores ABSL_GUARDED_BY on a local variable.
  struct Progress {
    absl::Mutex mu;
    int added ABSL_GUARDED_BY(mu) = 0;
  } p;
  std::thread producer([&] {
    for (int i = 0; i < 20; ++i) {
      session->Alloc(SomeAlloc(s));
      absl::MutexLock lock(&p.mu);
      ++p.added;
    }
  });
  // Two batches (8 events) may be in flight; the 12th event fills the third batch and blocks.
  // Nothing is answered while held, so a third batch or a 12th return would break the bound.
  EXPECT_TRUE(service_.AwaitBatchesReceived(2, absl::Seconds(10)));
  {
    absl::MutexLock lock(&p.mu);
    auto eleven = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p.mu) { return p.added >= 11; };
    EXPECT_TRUE(p.mu.AwaitWithTimeout(absl::Condition(&eleven), absl::Seconds(10)));
    EXPECT_EQ(p.added, 11);
  }
  EXPECT_EQ(service_.batches_received(), 2);
  service_.Release();
  producer.join();
  EXPECT_EQ(service_.batches_received_while_held(), 2);
  {
    absl::MutexLock lock(&p.mu);
    EXPECT_EQ(p.added, 20);
  }
  ASSERT_TRUE(session->Finish().ok());
  std::vector<IngestResult> results;
  session->Poll(&results);
  ASSERT_EQ(results.size(), 20u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].seq, i);
    EXPECT_TRUE(results[i].ok());
  }
}

TEST_F(SessionTest, FinishReturnsTheStreamsStatusAndFailsUnansweredEvents) {
  service_.EndStreamAfter(2, grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "daemon full"));
  auto session = Start(2, 1);
  const std::vector<Frame> s = MakeStack(2, "s_");
  for (int i = 0; i < 10; ++i) session->Alloc(SomeAlloc(s));
  const absl::Status status = session->Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(), "daemon full");
  EXPECT_EQ(session->Finish(), status);  // idempotent
  std::vector<IngestResult> results;
  session->Poll(&results);
  ASSERT_EQ(results.size(), 10u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].seq, i);
    if (i < 4) {
      EXPECT_TRUE(results[i].ok()) << i;
    } else {
      EXPECT_EQ(results[i].code, absl::StatusCode::kResourceExhausted) << i;
    }
  }
  // After Finish an event is refused locally.
  const uint64_t seq = session->Alloc(SomeAlloc(s));
  EXPECT_EQ(seq, 10u);
  results.clear();
  session->Poll(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code, absl::StatusCode::kFailedPrecondition);
}

TEST(SessionNoServerTest, AnUnreachableDaemonFailsEveryEvent) {
  // A port nobody listens on: bind one, then close it.
  int port = 0;
  {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
    close(fd);
  }
  Client client(absl::StrCat("127.0.0.1:", port));
  SessionOptions o;
  o.batch_events = 2;
  auto session = client.StartSession(o);
  for (int i = 0; i < 5; ++i) session->Alloc(SomeAlloc(MakeStack(1, "x_")));
  const absl::Status status = session->Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  std::vector<IngestResult> results;
  session->Poll(&results);
  ASSERT_EQ(results.size(), 5u);
  for (const IngestResult& r : results) EXPECT_EQ(r.code, absl::StatusCode::kUnavailable);
}

TEST_F(SessionTest, DestroyingWithoutFinishCancels) {
  service_.Hold();
  {
    auto session = Start(2, 4);
    const std::vector<Frame> s = MakeStack(2, "s_");
    for (int i = 0; i < 4; ++i) session->Alloc(SomeAlloc(s));
    // Both batches reached the service and wait for their answers (a call cancelled before the
    // channel connected would never reach it).
    ASSERT_TRUE(service_.AwaitBatchesReceived(2, absl::Seconds(10)));
  }  // must not hang
  // The stream was cancelled, not finished: the service's reactor saw OnCancel.
  EXPECT_TRUE(service_.AwaitStreamsCancelled(1, absl::Seconds(10)));
  EXPECT_EQ(service_.streams_cancelled(), 1);
  service_.Release();
}

}  // namespace
}  // namespace pageowner::client
