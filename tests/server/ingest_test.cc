#include "server/ingest.h"

#include <string>
#include <variant>

#include "gtest/gtest.h"
#include "tests/server/test_util.h"

namespace pageowner::server {
namespace {

using testing::BatchBuilder;

class IngestStreamTest : public ::testing::Test {
 protected:
  SymbolTable symbols_;
  IngestStream stream_{&symbols_, IngestLimits{.max_batch_events = 8}};
  PreparedBatch out_;
};

TEST_F(IngestStreamTest, TranslatesEveryKind) {
  BatchBuilder b(7);
  b.Stack(1, {{0xffffffff81000010, "alloc_pages+0x10/0x40"}, {0, "kmalloc+0x2/0x8"}})
      .Stack(2, std::vector<uint64_t>{0xffffffff81000100})
      .Task(1, 10, 11, "a-very-long-command-name")
      .AllocAt(64, 2, 1, 1, 100)
      .Free(64, 2, 2, 1, 200)
      .MigrateTo(8, 16, v1::MIGRATE_REASON_CONTIG_RANGE, 0, 0, 300);
  ASSERT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
  EXPECT_EQ(out_.sequence, 7u);
  ASSERT_EQ(out_.events.size(), 3u);
  for (const absl::Status& s : out_.prechecked) EXPECT_TRUE(s.ok()) << s;

  const auto& alloc = std::get<AllocEvent>(out_.events[0]);
  EXPECT_EQ(alloc.order.raw(), 2u);
  ASSERT_TRUE(alloc.pfn.has_value());
  EXPECT_EQ(alloc.pfn->raw(), 64u);
  EXPECT_EQ(alloc.pid, 10);
  EXPECT_EQ(alloc.tgid, 11);
  EXPECT_EQ(alloc.comm, "a-very-long-command-name");  // the machine cuts it to 15
  EXPECT_EQ(alloc.ts_ns, 100u);
  ASSERT_EQ(alloc.frames.size(), 2u);
  EXPECT_EQ(alloc.frames[0], 0xffffffff81000010u);
  EXPECT_EQ(symbols_.Name(0xffffffff81000010), "alloc_pages+0x10/0x40");
  // ip 0: the synthetic address of the symbol.
  EXPECT_EQ(alloc.frames[1], symbols_.SyntheticAddress("kmalloc+0x2/0x8"));

  const auto& free = std::get<FreeEvent>(out_.events[1]);
  EXPECT_EQ(free.pfn.raw(), 64u);
  EXPECT_EQ(free.order.raw(), 2u);
  ASSERT_EQ(free.frames.size(), 1u);
  EXPECT_EQ(free.ts_ns, 200u);

  const auto& migrate = std::get<MigrateEvent>(out_.events[2]);
  EXPECT_EQ(migrate.pfn.raw(), 8u);
  ASSERT_TRUE(migrate.target.has_value());
  EXPECT_EQ(migrate.target->raw(), 16u);
  EXPECT_EQ(migrate.reason, MigrateReason::kContigRange);
  EXPECT_TRUE(migrate.frames.empty());
  EXPECT_EQ(migrate.pid, 0);
}

TEST_F(IngestStreamTest, TranslatesImportsWithTheirExtras) {
  v1::EventBatch b;
  v1::StackDef* stack = b.add_stacks();
  stack->set_id(1);
  stack->add_frames()->set_symbol("get_page_from_freelist+0x121a/0x13b0");
  v1::ExtrasDef* def = b.add_extras();
  def->set_id(3);
  def->mutable_extras()->set_flags_text("0x0(zone=1)");
  def->mutable_extras()->set_memcg("Charged to memcg /");
  b.add_kind(v1::EVENT_KIND_IMPORT);
  b.add_pfn(0x1000);
  b.add_order(1);
  b.add_stack_id(1);
  b.add_reason(v1::MIGRATE_REASON_COMPACTION);
  b.add_free_ts_ns(5);
  b.add_pageblock_migratetype(v1::MIGRATE_TYPE_MOVABLE + 1);
  b.add_extras_id(3);
  ASSERT_TRUE(stream_.Prepare(b, &out_).ok());
  ASSERT_EQ(out_.events.size(), 1u);
  EXPECT_TRUE(out_.prechecked[0].ok());
  const auto& e = std::get<ImportEvent>(out_.events[0]);
  EXPECT_EQ(e.pfn.raw(), 0x1000u);
  EXPECT_EQ(e.order.raw(), 1u);
  EXPECT_EQ(e.free_ts_ns, 5u);
  EXPECT_EQ(e.last_migrate_reason, MigrateReason::kCompaction);
  EXPECT_EQ(e.pageblock_migratetype, MigrateType::kMovable);
  ASSERT_NE(e.extras, nullptr);
  EXPECT_EQ(e.extras->flags_text, "0x0(zone=1)");
  EXPECT_EQ(e.extras->memcg, "Charged to memcg /");

  // An extras id no batch defined: the batch is malformed.
  b.clear_extras();
  b.set_extras_id(0, 4);
  EXPECT_EQ(stream_.Prepare(b, &out_).message(),
            "malformed batch: event 0: extras id 4 is not defined in this stream");
}

TEST_F(IngestStreamTest, EmptyColumnsReadAsZeros) {
  v1::EventBatch b;
  b.add_kind(v1::EVENT_KIND_FREE);
  b.add_kind(v1::EVENT_KIND_FREE);
  b.add_pfn(4);
  b.add_pfn(8);
  ASSERT_TRUE(stream_.Prepare(b, &out_).ok());
  ASSERT_EQ(out_.events.size(), 2u);
  EXPECT_EQ(std::get<FreeEvent>(out_.events[1]).pfn.raw(), 8u);
  EXPECT_EQ(std::get<FreeEvent>(out_.events[1]).order.raw(), 0u);
}

TEST_F(IngestStreamTest, MalformedBatchesChangeNothing) {
  struct Case {
    const char* name;
    v1::EventBatch batch;
    const char* message;
  };
  std::vector<Case> cases;
  {
    BatchBuilder b;
    b.Alloc(0, 3);
    cases.push_back({"undefined stack", b.batch(), "stack id 3 is not defined"});
  }
  {
    BatchBuilder b;
    b.Stack(1, std::vector<uint64_t>{1}).Alloc(0, 1, 4);
    cases.push_back({"undefined task", b.batch(), "task id 4 is not defined"});
  }
  {
    BatchBuilder b;
    b.Stack(1, std::vector<uint64_t>{1}).Alloc(0, 1).Alloc(0, 1);
    b.mutable_batch().mutable_order()->RemoveLast();
    cases.push_back({"short column", b.batch(), "column order has 1 values for 2 events"});
  }
  {
    BatchBuilder b;
    b.Stack(1, std::vector<uint64_t>{1});
    for (int i = 0; i < 9; ++i) b.Alloc(0, 1);
    cases.push_back({"too many", b.batch(), "9 events, more than --max_batch_events=8"});
  }
  {
    BatchBuilder b;
    b.Event(v1::EVENT_KIND_UNSPECIFIED, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    cases.push_back({"unspecified kind", b.batch(), "EVENT_KIND_UNSPECIFIED"});
  }
  {
    BatchBuilder b;
    b.Stack(0, std::vector<uint64_t>{1});
    cases.push_back({"stack id 0", b.batch(), "stack definition has id 0"});
  }
  {
    BatchBuilder b;
    b.Task(0, 1, 1, "x");
    cases.push_back({"task id 0", b.batch(), "task definition has id 0"});
  }
  {
    BatchBuilder b;
    b.Stack(5, {{0, ""}});
    cases.push_back({"empty frame", b.batch(), "neither an ip nor a symbol"});
  }
  for (Case& c : cases) {
    // Each case also carries a definition that must not survive it.
    c.batch.add_stacks()->set_id(9);
    c.batch.mutable_stacks()->rbegin()->add_frames()->set_ip(0xffffffff81999999);
    c.batch.mutable_stacks()->rbegin()->mutable_frames(0)->set_symbol("must_not_register");
    const absl::Status s = stream_.Prepare(c.batch, &out_);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.message().find(c.message), absl::string_view::npos) << c.name << ": " << s;
    EXPECT_EQ(out_.malformed, s);
    EXPECT_TRUE(out_.events.empty());
    EXPECT_EQ(stream_.stack_definitions(), 0u) << c.name;
    EXPECT_EQ(stream_.task_definitions(), 0u) << c.name;
    EXPECT_EQ(symbols_.Name(0xffffffff81999999), "") << c.name;
  }
}

// The stream refuses alone only what does not convert (an unknown enum value or flag bit);
// what an event means (an allocation needs a stack, a migration a reason) is the machine's to
// check, and it answers those with the same INVALID_ARGUMENT.
TEST_F(IngestStreamTest, BadEventsFailAlone) {
  BatchBuilder b;
  b.Stack(1, std::vector<uint64_t>{1})
      .Alloc(0, 0)                                                // no stack
      .Migrate(4, v1::MIGRATE_REASON_NONE)                        // no reason
      .Event(v1::EVENT_KIND_MIGRATE, 0, 4, 0, 0, 0, 0, 0, 11, 0)  // unknown reason
      .Event(v1::EVENT_KIND_ALLOC, 0, 0, 0, 0, 1, 0, 0, 0, 32)    // unknown flag
      .Alloc(0, 1);
  ASSERT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
  ASSERT_EQ(out_.prechecked.size(), 5u);
  EXPECT_TRUE(out_.prechecked[0].ok());
  EXPECT_TRUE(out_.prechecked[1].ok());
  EXPECT_EQ(out_.prechecked[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out_.prechecked[2].message(), "unknown migrate reason 11");
  EXPECT_EQ(out_.prechecked[3].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(out_.prechecked[4].ok());

  MachineOptions options;
  options.pages = PageCount(4096);
  Machine machine(options);
  EXPECT_EQ(machine.Apply(out_.events[0]).status.message(),
            "an allocation needs at least one frame");
  EXPECT_EQ(machine.Apply(out_.events[1]).status.message(),
            "a migration needs a reason (it is none)");
}

TEST_F(IngestStreamTest, TrustedAndEarlyFlagsReachTheMachine) {
  BatchBuilder b;
  const uint32_t trusted = v1::EVENT_FLAG_TRUSTED;
  const uint32_t at = v1::EVENT_FLAG_AT_PFN;
  const uint32_t early = v1::EVENT_FLAG_EARLY;
  b.Stack(1, std::vector<uint64_t>{1})
      .Event(v1::EVENT_KIND_ALLOC, 3, 64, 0, 0, 0, 0, 9, 0, at | trusted | early)
      .Event(v1::EVENT_KIND_ALLOC, 0, 66, 0, 0, 1, 0, 10, 0, at | trusted)
      .Event(v1::EVENT_KIND_FREE, 0, 65, 0, 0, 0, 0, 11, 0, trusted)
      .Event(v1::EVENT_KIND_FREE, 0, 200, 0, 0, 0, 0, 12, 0, trusted)
      .Event(v1::EVENT_KIND_ALLOC, 0, 0, 0, 0, 0, 0, 0, 0, early);  // early needs AT_PFN
  ASSERT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
  ASSERT_EQ(out_.events.size(), 5u);
  for (const absl::Status& s : out_.prechecked) EXPECT_TRUE(s.ok()) << s;
  const AllocEvent& e0 = std::get<AllocEvent>(out_.events[0]);
  EXPECT_TRUE(e0.trusted);
  EXPECT_TRUE(e0.early);
  EXPECT_EQ(e0.pfn, Pfn(64));
  EXPECT_TRUE(std::get<AllocEvent>(out_.events[1]).trusted);
  EXPECT_FALSE(std::get<AllocEvent>(out_.events[1]).early);
  EXPECT_TRUE(std::get<FreeEvent>(out_.events[2]).trusted);

  MachineOptions options;
  options.pages = PageCount(4096);
  Machine machine(options);
  EXPECT_EQ(machine.Apply(out_.events[0]).handle, machine.early_handle());
  EXPECT_TRUE(machine.Apply(out_.events[1]).status.ok());  // splits the early block
  EXPECT_TRUE(machine.Apply(out_.events[2]).status.ok());  // a part of the early block
  EXPECT_TRUE(machine.Apply(out_.events[3]).status.ok());  // a free page: ignored
  EXPECT_EQ(machine.Apply(out_.events[4]).status.message(), "an early block needs a pfn");
  EXPECT_EQ(machine.counters().repaired_allocs, 1u);
  EXPECT_EQ(machine.counters().split_blocks, 2u);
  EXPECT_EQ(machine.counters().repaired_frees, 1u);
  EXPECT_EQ(machine.counters().ignored_frees, 1u);
}

TEST_F(IngestStreamTest, ReservedFlagReachesTheMachine) {
  BatchBuilder b;
  const uint32_t at = v1::EVENT_FLAG_AT_PFN;
  const uint32_t reserved = v1::EVENT_FLAG_RESERVED;
  b.Event(v1::EVENT_KIND_ALLOC, 4, 256, 0, 0, 0, 0, 9, 0, at | reserved)
      .Event(v1::EVENT_KIND_ALLOC, 0, 0, 0, 0, 0, 0, 0, 0, reserved)  // needs AT_PFN
      .Event(v1::EVENT_KIND_ALLOC, 0, 512, 0, 0, 0, 0, 0, 0, at | reserved | v1::EVENT_FLAG_EARLY);
  ASSERT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
  ASSERT_EQ(out_.events.size(), 3u);
  for (const absl::Status& s : out_.prechecked) EXPECT_TRUE(s.ok()) << s;
  const AllocEvent& e0 = std::get<AllocEvent>(out_.events[0]);
  EXPECT_TRUE(e0.reserved);
  EXPECT_FALSE(e0.trusted);
  EXPECT_EQ(e0.pfn, Pfn(256));

  MachineOptions options;
  options.pages = PageCount(4096);
  Machine machine(options);
  const EventResult r = machine.Apply(out_.events[0]);
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(machine.reserved_pages().raw(), 16u);
  EXPECT_EQ(machine.Apply(out_.events[1]).status.message(), "a reserved block needs a pfn");
  EXPECT_EQ(machine.Apply(out_.events[2]).status.message(),
            "a block cannot be both early and reserved");
}

TEST_F(IngestStreamTest, DefinitionsLastAcrossBatchesAndSurviveRedefinition) {
  BatchBuilder first;
  first.Stack(1, std::vector<uint64_t>{0x10, 0x20}).Task(1, 5, 5, "one").Alloc(0, 1, 1);
  ASSERT_TRUE(stream_.Prepare(first.batch(), &out_).ok());

  BatchBuilder second;
  second.Alloc(1, 1, 1);
  PreparedBatch second_out;
  ASSERT_TRUE(stream_.Prepare(second.batch(), &second_out).ok());
  const auto& a = std::get<AllocEvent>(second_out.events[0]);
  ASSERT_EQ(a.frames.size(), 2u);
  EXPECT_EQ(a.comm, "one");

  // Redefining ids replaces them for later batches; the earlier batch keeps what it pointed to.
  BatchBuilder third;
  third.Stack(1, std::vector<uint64_t>{0x30}).Task(1, 6, 6, "two").Alloc(0, 1, 1);
  PreparedBatch third_out;
  ASSERT_TRUE(stream_.Prepare(third.batch(), &third_out).ok());
  EXPECT_EQ(std::get<AllocEvent>(third_out.events[0]).frames.size(), 1u);
  EXPECT_EQ(std::get<AllocEvent>(third_out.events[0]).comm, "two");
  EXPECT_EQ(a.frames[1], 0x20u);
  EXPECT_EQ(a.comm, "one");
}

TEST_F(IngestStreamTest, AnUndefinedIdTakesBackTheBatchsDefinitions) {
  BatchBuilder first;
  first.Stack(1, std::vector<uint64_t>{0x10}).Task(1, 1, 1, "old");
  ASSERT_TRUE(stream_.Prepare(first.batch(), &out_).ok());
  BatchBuilder bad;
  bad.Stack(1, std::vector<uint64_t>{0x20, 0x30})
      .Stack(2, std::vector<uint64_t>{0x40})
      .Task(1, 2, 2, "new")
      .Alloc(0, 1, 1)
      .Alloc(0, 2, 1)
      .Alloc(0, 5, 1);
  const absl::Status s = stream_.Prepare(bad.batch(), &out_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("event 2: stack id 5 is not defined"), absl::string_view::npos) << s;
  EXPECT_TRUE(out_.events.empty());
  EXPECT_TRUE(out_.keepalive.empty());
  EXPECT_EQ(stream_.stack_definitions(), 1u);
  EXPECT_EQ(stream_.task_definitions(), 1u);
  BatchBuilder after;
  after.Alloc(0, 1, 1);
  ASSERT_TRUE(stream_.Prepare(after.batch(), &out_).ok());
  const auto& a = std::get<AllocEvent>(out_.events[0]);
  ASSERT_EQ(a.frames.size(), 1u);
  EXPECT_EQ(a.frames[0], 0x10u);
  EXPECT_EQ(a.comm, "old");
  BatchBuilder two;
  two.Alloc(0, 2);
  EXPECT_FALSE(stream_.Prepare(two.batch(), &out_).ok());
}

TEST(FillBatchResultTest, ColumnsAndMessages) {
  PreparedBatch batch;
  batch.sequence = 3;
  const EventResult results[] = {
      {absl::OkStatus(), Pfn(12), StackHandle(77)},
      {absl::FailedPreconditionError("double free"), Pfn(), StackHandle()},
  };
  v1::BatchResult r;
  FillBatchResult(batch, results, &r);
  EXPECT_EQ(r.sequence(), 3u);
  EXPECT_EQ(r.code(), 0);
  ASSERT_EQ(r.event_code_size(), 2);
  EXPECT_EQ(r.event_code(0), 0);
  EXPECT_EQ(r.event_code(1), 9);
  EXPECT_EQ(r.event_pfn(0), 12u);
  EXPECT_EQ(r.event_handle(0), 77u);
  EXPECT_EQ(r.event_pfn(1), 0u);
  EXPECT_EQ(r.event_message().size(), 1u);
  EXPECT_EQ(r.event_message().at(1), "double free");

  batch.malformed = absl::InvalidArgumentError("malformed batch: x");
  FillBatchResult(batch, {}, &r);
  EXPECT_EQ(r.code(), 3);
  EXPECT_EQ(r.message(), "malformed batch: x");
  EXPECT_EQ(r.event_code_size(), 0);
}

// Issue 10, finding 3: names of a refused batch were kept for good. Nothing of a refused batch
// is kept now: not its definitions, not the names of its frames (ip 0 or not).
TEST_F(IngestStreamTest, ARefusedBatchLeavesNoName) {
  BatchBuilder b;
  b.Stack(1, {{0, "only_in_a_refused_batch+0x1/0x2"}, {0xffffffff81555555, "named+0x0/0x8"}})
      .Alloc(0, 1, 7);  // task 7 is not defined
  const absl::Status s = stream_.Prepare(b.batch(), &out_);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "malformed batch: event 0: task id 7 is not defined in this stream");
  EXPECT_EQ(symbols_.name_bytes(), 0u);
  EXPECT_FALSE(symbols_.HasSyntheticAddress("only_in_a_refused_batch+0x1/0x2"));
  EXPECT_FALSE(symbols_.Named(0xffffffff81555555));
  EXPECT_EQ(stream_.stack_definitions(), 0u);
  EXPECT_EQ(stream_.definition_bytes(), 0u);
}

TEST_F(IngestStreamTest, SymbolsAndCommsAreBounded) {
  {
    BatchBuilder b;
    b.Stack(1, {{0xffffffff81000001, std::string(641, 'x')}});
    EXPECT_EQ(stream_.Prepare(b.batch(), &out_).message(),
              "malformed batch: stack 1: frame 0 has a symbol of 641 bytes (at most 640)");
  }
  {
    BatchBuilder b;
    b.Stack(1, {{0xffffffff81000001, std::string(640, 'x')}});
    EXPECT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
    EXPECT_EQ(symbols_.name_bytes(), 640u);
  }
  {
    BatchBuilder b;
    b.Task(1, 1, 1, std::string(65, 'c'));
    EXPECT_EQ(stream_.Prepare(b.batch(), &out_).message(),
              "malformed batch: task 1: a comm of 65 bytes (at most 64)");
  }
}

TEST(IngestLimitsTest, TheSymbolTableAndAStreamsDefinitionsAreBounded) {
  SymbolTable symbols;
  IngestStream a(&symbols, IngestLimits{.max_symbol_bytes = 100});
  IngestStream other(&symbols, IngestLimits{.max_symbol_bytes = 100});
  PreparedBatch out;
  BatchBuilder first;
  first.Stack(1, {{0xffffffff81000001, std::string(60, 'a')}});
  ASSERT_TRUE(a.Prepare(first.batch(), &out).ok());
  // The table is shared: another stream's 41 new bytes pass the 100.
  BatchBuilder second;
  second.Stack(1, {{0, std::string(41, 'b')}}).Alloc(0, 1);
  const absl::Status s = other.Prepare(second.batch(), &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(),
            "the batch's frames add 41 bytes of names to the daemon's 60; the limit is "
            "--max_symbol_bytes=100");
  EXPECT_EQ(symbols.name_bytes(), 60u);
  EXPECT_EQ(other.stack_definitions(), 0u);
  // A name the table already has costs nothing.
  BatchBuilder again;
  again.Stack(2, {{0xffffffff81000001, std::string(60, 'a')}});
  EXPECT_TRUE(other.Prepare(again.batch(), &out).ok());

  IngestStream small(&symbols, IngestLimits{.max_stream_definition_bytes = 100});
  BatchBuilder tasks;
  tasks.Task(1, 1, 1, "x").Task(2, 2, 2, "y").Task(3, 3, 3, "z").Task(4, 4, 4, "w");
  const absl::Status t = small.Prepare(tasks.batch(), &out);
  EXPECT_EQ(t.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(small.task_definitions(), 0u);
  BatchBuilder one;
  one.Task(1, 1, 1, "x");
  ASSERT_TRUE(small.Prepare(one.batch(), &out).ok());
  const uint64_t bytes = small.definition_bytes();
  EXPECT_GT(bytes, 0u);
  // Redefining an id gives its bytes back.
  ASSERT_TRUE(small.Prepare(one.batch(), &out).ok());
  EXPECT_EQ(small.definition_bytes(), bytes);
}

// Issue 10, finding 1: comm is bytes; cut to 15 bytes mid-character it stays exactly those bytes.
TEST_F(IngestStreamTest, CommBytesPassThroughUntouched) {
  const std::string comm = "Renderer Threa\xc3\x84x";  // 17 bytes of valid UTF-8
  BatchBuilder b;
  b.Stack(1, std::vector<uint64_t>{0x10}).Task(1, 5, 5, comm).Task(2, 6, 6, "\xff\xfe\xc3");
  b.Alloc(0, 1, 1).Alloc(0, 1, 2);
  ASSERT_TRUE(stream_.Prepare(b.batch(), &out_).ok());
  EXPECT_EQ(std::get<AllocEvent>(out_.events[0]).comm, comm);
  EXPECT_EQ(std::get<AllocEvent>(out_.events[1]).comm, "\xff\xfe\xc3");
}

}  // namespace
}  // namespace pageowner::server
