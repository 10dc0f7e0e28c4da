#include "wire/convert.h"

#include <vector>

#include "gtest/gtest.h"

namespace pageowner::wire {
namespace {

TEST(MigrateReasonTest, TheWireShiftsTheKernelsEnumByOne) {
  EXPECT_EQ(ToProto(MigrateReason::kNone), v1::MIGRATE_REASON_NONE);
  EXPECT_EQ(ToProto(MigrateReason::kCompaction), v1::MIGRATE_REASON_COMPACTION);
  EXPECT_EQ(ToProto(MigrateReason::kDamon), v1::MIGRATE_REASON_DAMON);
  for (int r = 0; r <= kNumMigrateReasons; ++r) {
    absl::StatusOr<MigrateReason> back = MigrateReasonFromProto(r);
    ASSERT_TRUE(back.ok()) << r;
    EXPECT_EQ(ToProto(*back), r);
  }
  EXPECT_EQ(MigrateReasonFromProto(11).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MigrateReasonFromProto(11).status().message(), "unknown migrate reason 11");
  EXPECT_EQ(MigrateReasonFromProto(-1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(MigrateTypeTest, RecordsCarryTheEnumAndBatchesTheEnumPlusOne) {
  EXPECT_EQ(ToProto(MigrateType::kMovable), v1::MIGRATE_TYPE_MOVABLE);
  EXPECT_EQ(*MigrateTypeFromProto(v1::MIGRATE_TYPE_ISOLATE), MigrateType::kIsolate);
  EXPECT_EQ(MigrateTypeFromProto(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ToBatchMigratetype(std::nullopt), 0u);
  EXPECT_EQ(ToBatchMigratetype(MigrateType::kUnmovable), 1u);
  EXPECT_EQ(*BatchMigratetypeFromProto(0), std::nullopt);
  EXPECT_EQ(*BatchMigratetypeFromProto(3), MigrateType::kReclaimable);
  EXPECT_EQ(BatchMigratetypeFromProto(7).status().message(),
            "unknown pageblock migratetype 7 (MigrateType + 1)");
}

TEST(EnumTest, DumpFormatsAndStackOrdersRoundTrip) {
  for (DumpFormat f : {DumpFormat::kToday, DumpFormat::kFreeTs, DumpFormat::k2016}) {
    EXPECT_EQ(*DumpFormatFromProto(ToProto(f)), f);
  }
  EXPECT_EQ(ToProto(DumpFormat::kFreeTs), v1::DUMP_FORMAT_FREE_TS);
  EXPECT_EQ(DumpFormatFromProto(3).status().message(), "unknown dump format 3");
  for (StackOrder o : {StackOrder::kPages, StackOrder::kAllocations, StackOrder::kNewest}) {
    EXPECT_EQ(*StackOrderFromProto(ToProto(o)), o);
  }
  EXPECT_EQ(StackOrderFromProto(9).status().message(), "unknown stack sort 9");
}

TEST(PageRecordTest, EveryFieldRoundTrips) {
  const PrintedExtras extras{.page_flags = 0x4000,
                             .flags_text = "0x4000(head|node=0|zone=1)",
                             .gfp_names = "GFP_KERNEL",
                             .slab_cache = true,
                             .memcg = "Charged to memcg /"};
  PageOwner p;
  p.pfn = Pfn(0x1068);
  p.order = Order(3);
  p.gfp_mask = 0xd2cc0;
  p.handle = StackHandle(77);
  p.free_handle = StackHandle(78);
  p.last_migrate_reason = MigrateReason::kLongtermPin;
  p.pid = 12;
  p.tgid = 13;
  p.comm = "kworker/u8:1";
  p.ts_ns = 1001;
  p.free_ts_ns = 1002;
  p.free_pid = 14;
  p.free_tgid = 15;
  p.owner = true;
  p.allocated = false;
  p.pageblock_migratetype = MigrateType::kReclaimable;
  p.page_flags = 0x200;
  p.extras = &extras;
  v1::PageRecord r;
  ToProto(p, &r);
  EXPECT_EQ(r.pfn(), 0x1068u);
  EXPECT_EQ(r.last_migrate_reason(), v1::MIGRATE_REASON_LONGTERM_PIN);
  EXPECT_EQ(r.pageblock_migratetype(), v1::MIGRATE_TYPE_RECLAIMABLE);
  EXPECT_EQ(r.printed().memcg(), "Charged to memcg /");
  PrintedExtras storage;
  const PageOwner q = FromProto(r, &storage);
  EXPECT_EQ(q.pfn, p.pfn);
  EXPECT_EQ(q.order, p.order);
  EXPECT_EQ(q.gfp_mask, p.gfp_mask);
  EXPECT_EQ(q.handle, p.handle);
  EXPECT_EQ(q.free_handle, p.free_handle);
  EXPECT_EQ(q.last_migrate_reason, p.last_migrate_reason);
  EXPECT_EQ(q.pid, 12);
  EXPECT_EQ(q.tgid, 13);
  EXPECT_EQ(q.comm, "kworker/u8:1");
  EXPECT_EQ(q.ts_ns, 1001u);
  EXPECT_EQ(q.free_ts_ns, 1002u);
  EXPECT_EQ(q.free_pid, 14);
  EXPECT_EQ(q.free_tgid, 15);
  EXPECT_TRUE(q.owner);
  EXPECT_FALSE(q.allocated);
  EXPECT_EQ(q.pageblock_migratetype, MigrateType::kReclaimable);
  EXPECT_EQ(q.page_flags, 0x200u);
  ASSERT_EQ(q.extras, &storage);
  EXPECT_EQ(storage, extras);
}

TEST(PageRecordTest, NoExtrasLeavesThePointerNull) {
  PageOwner p;
  p.last_migrate_reason = MigrateReason::kNone;
  v1::PageRecord r;
  ToProto(p, &r);
  EXPECT_FALSE(r.has_printed());
  EXPECT_EQ(r.last_migrate_reason(), v1::MIGRATE_REASON_NONE);
  PrintedExtras storage;
  EXPECT_EQ(FromProto(r, &storage).extras, nullptr);
  r.set_last_migrate_reason(static_cast<v1::MigrateReason>(42));  // a newer daemon's reason
  EXPECT_EQ(FromProto(r, &storage).last_migrate_reason, MigrateReason::kNone);
}

TEST(StackTest, FramesPrintAsTheDaemonNamesThemAndComeBackNamed) {
  SymbolTable daemon;
  ASSERT_TRUE(daemon.Register(0xffffffff81000010, "post_alloc_hook+0x10/0x80"));
  const std::vector<uint64_t> frames = {0xffffffff81000010, 0xffffffff81000123};
  const StackUsage usage{StackHandle(5), frames, 8, 3};
  v1::Stack s;
  ToProto(usage, daemon, &s);
  EXPECT_EQ(s.handle(), 5u);
  ASSERT_EQ(s.frames_size(), 2);
  EXPECT_EQ(s.frames(0).symbol(), "post_alloc_hook+0x10/0x80");
  EXPECT_EQ(s.frames(1).symbol(), "0xffffffff81000123");
  EXPECT_EQ(s.pages(), 8);
  EXPECT_EQ(s.allocations(), 3u);
  EXPECT_NE(s.content_id(), 0u);

  SymbolTable client;
  const ReceivedStack got = FromProto(s, &client);
  EXPECT_EQ(got.handle, StackHandle(5));
  EXPECT_EQ(got.ips, frames);
  EXPECT_EQ(client.FormatFrame(frames[0]), "post_alloc_hook+0x10/0x80");
  EXPECT_EQ(client.FormatFrame(frames[1]), "0xffffffff81000123");
  EXPECT_EQ(got.usage().pages, 8);
}

TEST(ListPagesRequestTest, FiltersAndErrors) {
  v1::ListPagesRequest r;
  r.set_start_pfn(10);
  r.set_end_pfn(20);
  r.set_state(v1::PAGE_STATE_FREED);
  r.set_comm("dd");
  r.set_order(2);
  r.set_limit(5);
  absl::StatusOr<PageScanRequest> got = FromProto(r);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->start, Pfn(10));
  EXPECT_EQ(got->end, Pfn(20));
  EXPECT_EQ(got->filter.state, PageState::kFreed);
  EXPECT_EQ(got->filter.comm, "dd");
  EXPECT_EQ(got->filter.order, Order(2));
  EXPECT_FALSE(got->filter.pid.has_value());
  EXPECT_EQ(got->limit, 5u);
  r.set_order(11);
  EXPECT_EQ(FromProto(r).status().message(), "order 11 is above the maximum order 10");
  r.clear_order();
  r.set_state(static_cast<v1::PageState>(7));
  EXPECT_EQ(FromProto(r).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pageowner::wire
