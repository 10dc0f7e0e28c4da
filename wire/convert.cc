#include "wire/convert.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "core/content_id.h"

namespace pageowner::wire {

v1::MigrateReason ToProto(MigrateReason reason) {
  return static_cast<v1::MigrateReason>(static_cast<int>(reason) + 1);  // kNone (-1) -> NONE
}

absl::StatusOr<MigrateReason> MigrateReasonFromProto(int reason) {
  if (reason < 0 || reason > kNumMigrateReasons) {
    return absl::InvalidArgumentError(absl::StrCat("unknown migrate reason ", reason));
  }
  return static_cast<MigrateReason>(reason - 1);
}

v1::MigrateType ToProto(MigrateType type) { return static_cast<v1::MigrateType>(type); }

absl::StatusOr<MigrateType> MigrateTypeFromProto(int type) {
  if (type < 0 || type >= kNumMigrateTypes) {
    return absl::InvalidArgumentError(absl::StrCat("unknown migratetype ", type));
  }
  return static_cast<MigrateType>(type);
}

uint32_t ToBatchMigratetype(std::optional<MigrateType> type) {
  return type.has_value() ? static_cast<uint32_t>(*type) + 1 : 0;
}

absl::StatusOr<std::optional<MigrateType>> BatchMigratetypeFromProto(uint32_t value) {
  if (value == 0) return std::optional<MigrateType>();
  if (value > static_cast<uint32_t>(kNumMigrateTypes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown pageblock migratetype ", value, " (MigrateType + 1)"));
  }
  return std::optional<MigrateType>(static_cast<MigrateType>(value - 1));
}

v1::DumpFormat ToProto(DumpFormat format) {
  switch (format) {
    case DumpFormat::kFreeTs:
      return v1::DUMP_FORMAT_FREE_TS;
    case DumpFormat::k2016:
      return v1::DUMP_FORMAT_2016;
    case DumpFormat::kToday:
      break;
  }
  return v1::DUMP_FORMAT_TODAY;
}

absl::StatusOr<DumpFormat> DumpFormatFromProto(int format) {
  switch (format) {
    case v1::DUMP_FORMAT_TODAY:
      return DumpFormat::kToday;
    case v1::DUMP_FORMAT_FREE_TS:
      return DumpFormat::kFreeTs;
    case v1::DUMP_FORMAT_2016:
      return DumpFormat::k2016;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown dump format ", format));
  }
}

v1::StackSort ToProto(StackOrder order) {
  switch (order) {
    case StackOrder::kAllocations:
      return v1::STACK_SORT_ALLOCATIONS;
    case StackOrder::kNewest:
      return v1::STACK_SORT_NEWEST;
    case StackOrder::kPages:
      break;
  }
  return v1::STACK_SORT_PAGES;
}

absl::StatusOr<StackOrder> StackOrderFromProto(int sort) {
  switch (sort) {
    case v1::STACK_SORT_PAGES:
      return StackOrder::kPages;
    case v1::STACK_SORT_ALLOCATIONS:
      return StackOrder::kAllocations;
    case v1::STACK_SORT_NEWEST:
      return StackOrder::kNewest;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown stack sort ", sort));
  }
}

void ToProto(const PrintedExtras& x, v1::PrintedExtras* out) {
  out->set_page_flags(x.page_flags);
  out->set_flags_text(x.flags_text);
  out->set_gfp_names(x.gfp_names);
  out->set_slab_cache(x.slab_cache);
  out->set_memcg(x.memcg);
}

PrintedExtras FromProto(const v1::PrintedExtras& x) {
  return PrintedExtras{.page_flags = x.page_flags(),
                       .flags_text = x.flags_text(),
                       .gfp_names = x.gfp_names(),
                       .slab_cache = x.slab_cache(),
                       .memcg = x.memcg()};
}

void ToProto(const PageOwner& p, v1::PageRecord* out) {
  out->set_pfn(p.pfn.raw());
  out->set_order(p.order.raw());
  out->set_gfp_mask(p.gfp_mask);
  out->set_handle(p.handle.raw());
  out->set_free_handle(p.free_handle.raw());
  out->set_last_migrate_reason(ToProto(p.last_migrate_reason));
  out->set_pid(p.pid);
  out->set_tgid(p.tgid);
  out->set_comm(p.comm);
  out->set_ts_ns(p.ts_ns);
  out->set_free_ts_ns(p.free_ts_ns);
  out->set_free_pid(p.free_pid);
  out->set_free_tgid(p.free_tgid);
  out->set_owner(p.owner);
  out->set_allocated(p.allocated);
  out->set_reserved(p.reserved);
  out->set_pageblock_migratetype(ToProto(p.pageblock_migratetype));
  out->set_page_flags(p.page_flags);
  if (p.extras != nullptr) ToProto(*p.extras, out->mutable_printed());
}

PageOwner FromProto(const v1::PageRecord& r, PrintedExtras* storage) {
  PageOwner p;
  p.pfn = Pfn(r.pfn());
  p.order = Order(r.order());
  p.gfp_mask = r.gfp_mask();
  p.handle = StackHandle(r.handle());
  p.free_handle = StackHandle(r.free_handle());
  p.last_migrate_reason =
      MigrateReasonFromProto(r.last_migrate_reason()).value_or(MigrateReason::kNone);
  p.pid = r.pid();
  p.tgid = r.tgid();
  p.comm = r.comm();
  p.ts_ns = r.ts_ns();
  p.free_ts_ns = r.free_ts_ns();
  p.free_pid = r.free_pid();
  p.free_tgid = r.free_tgid();
  p.owner = r.owner();
  p.allocated = r.allocated();
  p.reserved = r.reserved();
  p.pageblock_migratetype = static_cast<MigrateType>(r.pageblock_migratetype());
  p.page_flags = r.page_flags();
  if (r.has_printed()) {
    *storage = FromProto(r.printed());
    p.extras = storage;
  }
  return p;
}

void ToProto(const StackUsage& s, const SymbolTable& symbols, v1::Stack* out) {
  out->set_handle(s.handle.raw());
  // The content id hashes the printed frames, which are at hand here.
  ContentIdHasher content_id;
  for (uint64_t ip : s.frames) {
    v1::Frame* f = out->add_frames();
    f->set_ip(ip);
    f->set_symbol(symbols.FormatFrame(ip));
    content_id.AddFrame(f->symbol());
  }
  out->set_content_id(content_id.id());
  out->set_pages(s.pages);
  out->set_allocations(s.allocations);
}

StackUsage ReceivedStack::usage() const {
  return StackUsage{handle, absl::MakeConstSpan(ips), pages, allocations};
}

ReceivedStack FromProto(const v1::Stack& stack, SymbolTable* symbols) {
  ReceivedStack out;
  out.handle = StackHandle(stack.handle());
  out.pages = stack.pages();
  out.allocations = stack.allocations();
  out.ips.reserve(stack.frames_size());
  for (const v1::Frame& f : stack.frames()) {
    out.ips.push_back(f.ip());
    const std::string& name = f.symbol();
    if (!name.empty() && name.rfind("0x", 0) != 0) symbols->Register(f.ip(), name);
  }
  return out;
}

absl::StatusOr<PageScanRequest> FromProto(const v1::ListPagesRequest& r) {
  PageScanRequest out;
  out.start = Pfn(r.start_pfn());
  if (r.end_pfn() != 0) out.end = Pfn(r.end_pfn());
  switch (r.state()) {
    case v1::PAGE_STATE_ALLOCATED:
      out.filter.state = PageState::kAllocated;
      break;
    case v1::PAGE_STATE_FREED:
      out.filter.state = PageState::kFreed;
      break;
    case v1::PAGE_STATE_ANY:
      out.filter.state = PageState::kAny;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("unknown page state ", r.state()));
  }
  if (r.has_pid()) out.filter.pid = r.pid();
  if (r.has_tgid()) out.filter.tgid = r.tgid();
  if (r.has_comm()) out.filter.comm = r.comm();
  if (r.has_handle()) out.filter.handle = StackHandle(r.handle());
  if (r.has_order()) {
    if (r.order() > static_cast<uint32_t>(kMaxOrder)) {
      return absl::InvalidArgumentError(
          absl::StrCat("order ", r.order(), " is above the maximum order ", kMaxOrder));
    }
    out.filter.order = Order(r.order());
  }
  out.limit = r.limit();
  return out;
}

absl::StatusOr<PageFilter> FromProto(const v1::GetProfileRequest& r) {
  PageFilter out;
  if (r.has_pid()) out.pid = r.pid();
  if (r.has_comm()) out.comm = r.comm();
  if (r.has_order()) {
    if (r.order() > static_cast<uint32_t>(kMaxOrder)) {
      return absl::InvalidArgumentError(
          absl::StrCat("order ", r.order(), " is above the maximum order ", kMaxOrder));
    }
    out.order = Order(r.order());
  }
  return out;
}

void ToProto(const PageReport& report, const SymbolTable& symbols, v1::GetPageResponse* out) {
  ToProto(report.owner, out->mutable_page());
  out->set_block_head(report.block_head.raw());
  out->set_block_order(report.block_order.raw());
  out->set_page_owner_text(report.page_owner_text);
  out->set_dump_page_owner_text(report.dump_page_owner_text);
  if (report.alloc_stack.has_value()) {
    ToProto(*report.alloc_stack, symbols, out->mutable_alloc_stack());
  }
  if (report.free_stack.has_value()) {
    ToProto(*report.free_stack, symbols, out->mutable_free_stack());
  }
}

void MachineStatsToProto(const Machine& m, v1::Stats* r) {
  const BuddyAllocator& a = m.allocator();
  r->set_total_pages(m.total_pages().raw());
  r->set_free_pages(a.free_pages().raw());
  r->set_allocated_pages(a.allocated_pages().raw());
  r->set_tracked_pages(m.tracked_pages().raw());
  r->set_reserved_pages(m.reserved_pages().raw());
  r->set_tracking(m.tracking());
  for (unsigned order = 0; order <= static_cast<unsigned>(kMaxOrder); ++order) {
    r->add_free_blocks_unmovable(a.FreeBlockCount(Order(order), MigrateType::kUnmovable));
    r->add_free_blocks_movable(a.FreeBlockCount(Order(order), MigrateType::kMovable));
    r->add_free_blocks_reclaimable(a.FreeBlockCount(Order(order), MigrateType::kReclaimable));
  }
  r->set_fallback_steals(a.fallback_steals());
  const StackDepotStats depot = m.depot().stats();
  r->set_depot_pools(depot.pools);
  r->set_depot_persistent_count(depot.persistent_count);
  r->set_depot_persistent_bytes(depot.persistent_bytes);
  r->set_depot_truncated(depot.truncated);
  r->set_depot_failed(depot.failed);
  const MachineCounters& c = m.counters();
  r->set_dummy_handle_uses(c.dummy_handle_uses);
  r->set_failure_handle_uses(c.failure_handle_uses);
  r->set_early_handle_pages(c.early_handle_pages);
  r->set_allocs(c.allocs);
  r->set_frees(c.frees);
  r->set_migrates(c.migrates);
  r->set_rejected(c.rejected);
  r->set_repaired_allocs(c.repaired_allocs);
  r->set_repaired_frees(c.repaired_frees);
  r->set_ignored_frees(c.ignored_frees);
  r->set_implied_frees(c.implied_frees);
  r->set_implied_freed_pages(c.implied_freed_pages);
  r->set_split_blocks(c.split_blocks);
  const size_t bytes = m.MemoryUsage().total();
  r->set_metadata_bytes(bytes);
  r->set_metadata_bytes_per_page(static_cast<double>(bytes) /
                                 static_cast<double>(m.total_pages().raw()));
  r->set_stackdepot_stats_text(StackDepotStatsText(depot));
  r->set_mixed_blocks_text(MixedBlocksText(m.MixedBlocks()));
}

void ToProto(const SortReport& report, v1::SortResponse* out) {
  out->set_output(report.output);
  out->set_stdout_text(report.stdout_text);
  out->set_stderr_text(report.stderr_text);
  out->set_loaded(report.loaded);
  out->set_records(report.records);
  out->set_completed(report.completed);
}

}  // namespace pageowner::wire
