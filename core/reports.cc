#include "core/reports.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/kernel_flags.h"
#include "core/strings.h"

namespace pageowner {
namespace {

// The migratetypes /proc/pagetypeinfo prints on a kernel without CONFIG_CMA.
constexpr MigrateType kPrintedTypes[] = {MigrateType::kUnmovable, MigrateType::kMovable,
                                         MigrateType::kReclaimable, MigrateType::kHighAtomic,
                                         MigrateType::kIsolate};

// stack_trace_snprint / stack_trace_print with spaces = 0: " %pS\n" a frame.
void AppendFrames(absl::Span<const uint64_t> frames, const SymbolTable& symbols, std::string* out) {
  symbols.AppendStack(frames, " ", out);
}

}  // namespace

void AppendPageOwnerBlock(const PageOwner& p, absl::Span<const uint64_t> frames,
                          const SymbolTable& symbols, DumpFormat format, std::string* out) {
  const absl::string_view page_mt = Sv(MigrateTypeName(GfpMigrateType(p.gfp_mask)));
  const absl::string_view block_mt = Sv(MigrateTypeName(p.pageblock_migratetype));
  // An imported block prints its mask names as its own kernel did.
  const std::string mask =
      p.extras != nullptr && !p.extras->gfp_names.empty()
          ? absl::StrCat("0x", absl::Hex(p.gfp_mask), "(", p.extras->gfp_names, ")")
          : FormatGfpMask(p.gfp_mask);
  if (format == DumpFormat::k2016) {
    absl::StrAppend(out, "Page allocated via order ", p.order.raw(), ", mask ", mask, "\n");
    absl::StrAppend(out, "PFN ", p.pfn.raw(), " type ", page_mt, " Block ", p.pfn.pageblock(),
                    " type ", block_mt, " Flags ");
    if (p.extras != nullptr && !p.extras->flags_text.empty()) {
      absl::StrAppend(out, p.extras->flags_text, "\n");
    } else {
      absl::StrAppend(out, "0x", absl::Hex(p.page_flags), "(", FormatPageFlagNames(p.page_flags),
                      ")\n");
    }
    // 2016's snprint_stack_trace: " [<%p>] %pS\n", the address unhashed in 16 hex digits.
    for (uint64_t ip : frames) {
      absl::StrAppend(out, " [<", absl::Hex(ip, absl::kZeroPad16), ">] ");
      symbols.AppendFrame(ip, out);
      out->push_back('\n');
    }
    if (p.last_migrate_reason != MigrateReason::kNone) {
      absl::StrAppend(out, "Page has been migrated, last_migrate_reason: ",
                      Sv(MigrateReasonName(p.last_migrate_reason)), "\n");
    }
    out->push_back('\n');
    return;
  }
  absl::StrAppend(out, "Page allocated via order ", p.order.raw(), ", mask ", mask, ", pid ", p.pid,
                  ", tgid ", p.tgid, " (", p.comm, "), ts ", p.ts_ns, " ns");
  if (format == DumpFormat::kFreeTs) {
    absl::StrAppend(out, ", free_ts ", p.free_ts_ns, " ns\nPFN ", p.pfn.raw());
  } else {
    absl::StrAppend(out, "\nPFN 0x", absl::Hex(p.pfn.raw()));
  }
  absl::StrAppend(
      out, " type ", page_mt, " Block ", p.pfn.pageblock(), " type ", block_mt, " Flags ",
      p.extras != nullptr && !p.extras->flags_text.empty() ? p.extras->flags_text
                                                           : FormatPageFlags(p.page_flags),
      "\n");
  AppendFrames(frames, symbols, out);
  if (p.last_migrate_reason != MigrateReason::kNone) {
    absl::StrAppend(out, "Page has been migrated, last migrate reason: ",
                    Sv(MigrateReasonName(p.last_migrate_reason)), "\n");
  }
  // print_page_owner_memcg: the slab line, then the memcg line.
  if (p.extras != nullptr) {
    if (p.extras->slab_cache) out->append("Slab cache page\n");
    if (!p.extras->memcg.empty()) absl::StrAppend(out, p.extras->memcg, "\n");
  }
  out->push_back('\n');
}

std::string PageOwnerText(const Machine& m, DumpFormat format, Pfn start) {
  std::string out;
  m.ForEachOwnedBlock(start, [&](const PageOwner& p) {
    AppendPageOwnerBlock(p, m.depot().Fetch(p.handle), m.symbols(), format, &out);
    return true;
  });
  return out;
}

std::string DumpPageOwnerText(const PageOwner& p, absl::Span<const uint64_t> alloc_frames,
                              absl::Span<const uint64_t> free_frames, const SymbolTable& symbols) {
  if (!p.owner) return "page_owner info is not present (never set?)\n";
  std::string out = p.allocated ? "page_owner tracks the page as allocated\n"
                                : "page_owner tracks the page as freed\n";
  absl::StrAppend(&out, "page last allocated via order ", p.order.raw(), ", migratetype ",
                  Sv(MigrateTypeName(GfpMigrateType(p.gfp_mask))), ", gfp_mask ",
                  FormatGfpMask(p.gfp_mask), ", pid ", p.pid, ", tgid ", p.tgid, " (", p.comm,
                  "), ts ", p.ts_ns, ", free_ts ", p.free_ts_ns, "\n");
  if (!p.handle.valid()) {
    out += "page_owner allocation stack trace missing\n";
  } else {
    AppendFrames(alloc_frames, symbols, &out);
  }
  if (!p.free_handle.valid()) {
    out += "page_owner free stack trace missing\n";
  } else {
    absl::StrAppend(&out, "page last free pid ", p.free_pid, " tgid ", p.free_tgid,
                    " stack trace:\n");
    AppendFrames(free_frames, symbols, &out);
  }
  if (p.last_migrate_reason != MigrateReason::kNone) {
    absl::StrAppend(&out, "page has been migrated, last migrate reason: ",
                    Sv(MigrateReasonName(p.last_migrate_reason)), "\n");
  }
  return out;
}

absl::StatusOr<std::string> DumpPageOwner(const Machine& m, Pfn pfn) {
  absl::StatusOr<PageOwner> p = m.PageRecord(pfn);
  if (!p.ok()) return p.status();
  return DumpPageOwnerText(*p, m.depot().Fetch(p->handle), m.depot().Fetch(p->free_handle),
                           m.symbols());
}

void AppendStackEntry(const StackUsage& s, const SymbolTable& symbols, StacksView view,
                      std::string* out) {
  if (view != StacksView::kHandles) AppendFrames(s.frames, symbols, out);
  if (view != StacksView::kStacks) absl::StrAppend(out, "handle: ", s.handle.raw(), "\n");
  if (view != StacksView::kStacksHandles) {
    absl::StrAppend(out, "nr_base_pages: ", s.pages, "\n");
  }
  out->push_back('\n');
}

std::string ShowStacksText(const Machine& m, int64_t threshold, StacksView view) {
  std::string out;
  m.depot().ForEachOwnerStack([&](const StackUsage& s) {
    // stack_print: nothing for stacks below one page or below count_threshold.
    if (s.pages < 1 || s.pages < threshold) return;
    AppendStackEntry(s, m.symbols(), view, &out);
  });
  return out;
}

std::string StackDepotStatsText(const StackDepotStats& s) {
  return absl::StrCat(
      "pools: ", s.pools, "\n", "refcounted_allocations: ", s.refcounted_allocations, "\n",
      "refcounted_frees: ", s.refcounted_frees, "\n", "refcounted_in_use: ", s.refcounted_in_use,
      "\n", "freelist_size: ", s.freelist_size, "\n", "persistent_count: ", s.persistent_count,
      "\n", "persistent_bytes: ", s.persistent_bytes, "\n");
}

std::string MixedBlocksText(const std::vector<ZoneMixedBlocks>& zones) {
  std::string out = absl::StrFormat("%-23s", "Number of mixed blocks ");
  for (MigrateType mt : kPrintedTypes)
    absl::StrAppendFormat(&out, "%12s ", Sv(MigrateTypeName(mt)));
  out.push_back('\n');
  for (const ZoneMixedBlocks& z : zones) {
    absl::StrAppendFormat(&out, "Node %d, zone %8s ", 0, Sv(z.zone));
    for (MigrateType mt : kPrintedTypes) {
      absl::StrAppendFormat(&out, "%12lu ", z.count[static_cast<int>(mt)]);
    }
    out.push_back('\n');
  }
  return out;
}

}  // namespace pageowner
