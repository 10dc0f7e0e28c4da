// The kernel's text reports, byte for byte: /sys/kernel/debug/page_owner, dump_page_owner,
// page_owner_stacks/show_stacks (and 6.19's show_handles, show_stacks_handles), stackdepot stats
// and the mixed-block counts of /proc/pagetypeinfo. The block renderers work on plain records and
// frame addresses with a SymbolTable, so a client that streamed records and stacks can render
// the same text as the daemon.
#ifndef PAGEOWNER_CORE_REPORTS_H_
#define PAGEOWNER_CORE_REPORTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/machine.h"
#include "core/stack_depot.h"
#include "core/symbols.h"

namespace pageowner {

enum class DumpFormat {
  // Today's kernel (6.x): hex PFN, pid, tgid, comm, ts.
  kToday,
  // The 2016 kernel of the seed patch: decimal PFN, flags value and names, frames as
  // " [<address>] symbol", "last_migrate_reason".
  k2016,
  // Kernels of about v5.11 to v6.2 (6.1 among them): decimal PFN, pid, tgid, comm, and
  // "ts N ns, free_ts N ns".
  kFreeTs,
};

// One block of /sys/kernel/debug/page_owner, ending with its blank line.
void AppendPageOwnerBlock(const PageOwner& p, absl::Span<const uint64_t> frames,
                          const SymbolTable& symbols, DumpFormat format, std::string* out);

// The whole of /sys/kernel/debug/page_owner from `start`, in pfn order.
std::string PageOwnerText(const Machine& m, DumpFormat format, Pfn start = Pfn(0));

// __dump_page_owner's lines for one page record (the alloc and free stacks by handle).
std::string DumpPageOwnerText(const PageOwner& p, absl::Span<const uint64_t> alloc_frames,
                              absl::Span<const uint64_t> free_frames, const SymbolTable& symbols);
// The same for the page at pfn of a machine; kOutOfRange beyond memory.
absl::StatusOr<std::string> DumpPageOwner(const Machine& m, Pfn pfn);

enum class StacksView {
  kStacks,         // show_stacks: frames, "nr_base_pages: N"
  kHandles,        // show_handles: "handle: H", "nr_base_pages: N"
  kStacksHandles,  // show_stacks_handles: frames, "handle: H"
};

// One show_stacks entry (with its blank line).
void AppendStackEntry(const StackUsage& s, const SymbolTable& symbols, StacksView view,
                      std::string* out);
// page_owner_stacks/: the stacks that own at least max(1, threshold) base pages, newest first.
std::string ShowStacksText(const Machine& m, int64_t threshold, StacksView view);

// /sys/kernel/debug/stackdepot/stats.
std::string StackDepotStatsText(const StackDepotStats& s);

// The "Number of mixed blocks" table of /proc/pagetypeinfo (a kernel without CMA: five types).
std::string MixedBlocksText(const std::vector<ZoneMixedBlocks>& zones);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_REPORTS_H_
