// The real machine's page states from /proc/kpageflags and /proc/kpagecount (one u64 a pfn each),
// decoded into the blocks that are in use, for attaching a recording to a running kernel the way
// init_early_allocated_pages gives every page in use at boot the early handle.
//
// What the files say (fs/proc/page.c of today's kernel, bits from include/uapi/linux/
// kernel-page-flags.h and, from 32 up, the kernel-internal include/linux/kernel-page-flags.h):
//  - /proc/kpagecount is the page's *map count* (folio_precise_page_mapcount), not its reference
//    count: a slab, page-table or page-cache page that no process maps reads 0 like a free page.
//    So the map count alone never proves a page free; it is kept only for statistics.
//  - KPF_BUDDY is set on a free buddy block's head (PageBuddy) and, in today's kernels, on every
//    other page of a free block too (`page_count(page) == 0 && is_free_buddy_page(page)`). Older
//    kernels flagged only the head; DecodeOptions::infer_buddy_tails handles them.
//  - Pages on the per-cpu free lists are not buddy pages: no flag, count 0. They are
//    indistinguishable from an unmapped, flagless page in use and are decoded as in use.
//  - KPF_NOPAGE: no struct page (a hole); KPF_RESERVED: memblock-reserved, never handed out by the
//    buddy allocator, and skipped by page_owner's init_pages_in_zone. Neither is counted as RAM.
//  - KPF_COMPOUND_HEAD and the KPF_COMPOUND_TAIL pages after it form one compound page (folio,
//    THP, hugetlb, slab of order > 0).
#ifndef PAGEOWNER_CORE_KPAGEFLAGS_H_
#define PAGEOWNER_CORE_KPAGEFLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/buddy_allocator.h"
#include "core/iomem.h"
#include "core/types.h"

namespace pageowner {

// Bit numbers of a /proc/kpageflags word.
namespace kpf {
inline constexpr int kLocked = 0;
inline constexpr int kSlab = 7;
inline constexpr int kBuddy = 10;
inline constexpr int kMmap = 11;
inline constexpr int kAnon = 12;
inline constexpr int kCompoundHead = 15;
inline constexpr int kCompoundTail = 16;
inline constexpr int kHuge = 17;
inline constexpr int kHwPoison = 19;
inline constexpr int kNoPage = 20;
inline constexpr int kThp = 22;
inline constexpr int kOffline = 23;
inline constexpr int kPgtable = 26;
inline constexpr int kReserved = 32;  // include/linux/kernel-page-flags.h, not in the uapi header
constexpr uint64_t Bit(int b) { return uint64_t{1} << b; }
}  // namespace kpf

struct KpageDecodeOptions {
  // Older kernels flag only a free buddy block's head page KPF_BUDDY, and the block's order is
  // not exposed. When true, the flagless pages with count 0 that follow a KPF_BUDDY page are
  // taken as its tail: the run of such pages (head included), capped by the head's alignment
  // (at most 2^kMaxOrder pages), is cut down to its largest power of two, which is free; the
  // rest of the run is in use (order 0). Leave false for today's kernels, which flag every page
  // of a free block: there a flagless page is never a buddy tail.
  bool infer_buddy_tails = false;
  // A run of flagless, count-0 pages that covers a whole aligned block of 2^kMaxOrder pages is
  // not a per-cpu list (those hold far fewer pages): it is memory the buddy allocator was never
  // given (a zone's present pages beyond its managed pages, e.g. with deferred struct page
  // init: seen on this machine's 6.18 for 16 GiB of a 24 GiB guest) or a free area the kernel does
  // not flag. When true, such whole blocks count as flagless_free_pages, not in use. A driver's
  // non-compound allocation of 2^kMaxOrder pages looks the same and is then missed.
  bool flagless_max_order_blocks_are_free = true;
};

// The outcome of decoding one or more pfn ranges.
struct KpageScan {
  // The blocks in use, in pfn order, each naturally aligned with order <= kMaxOrder. A compound
  // page of 2^k aligned pages (k <= kMaxOrder) is one block; any other compound page (gigantic
  // hugetlb, a misaligned or odd-sized run, a run of tails whose head lies before the range) is
  // cut into the largest aligned power-of-two blocks that fit, lowest pfn first. Every other page
  // in use is an order-0 block.
  std::vector<AllocatedBlock> in_use;
  uint64_t in_use_pages = 0;
  uint64_t free_pages = 0;     // KPF_BUDDY pages (and inferred tails)
  uint64_t not_ram_pages = 0;  // KPF_NOPAGE or KPF_RESERVED
  // Those pages as runs of consecutive pfns, in pfn order (what record --kernel reserves).
  std::vector<PfnRange> not_ram;
  // In use but with no flag at all and count 0: per-cpu free list pages or flagless kernel
  // allocations; the decoding cannot tell them apart.
  uint64_t flagless_in_use_pages = 0;
  // Whole aligned 2^kMaxOrder blocks of flagless pages taken as free (see the option).
  uint64_t flagless_free_pages = 0;
  uint64_t compound_blocks_split = 0;  // compound pages that had to be cut into several blocks
};

// A streaming decoder: feed the flags and counts of consecutive pfns in chunks, then Finish.
//
// Thread-safety: not thread-safe.
class KpageDecoder {
 public:
  explicit KpageDecoder(KpageDecodeOptions options = {}) : options_(options) {}

  // Starts a new range at `first` (closing any previous one, as Finish does).
  void BeginRange(Pfn first);

  // Decodes the next flags.size() pfns of the current range.
  // REQUIRES: BeginRange was called; flags.size() == counts.size().
  void Feed(absl::Span<const uint64_t> flags, absl::Span<const uint64_t> counts);

  // Closes the current range (a free run or compound page reaching its end) and returns the
  // result of every range so far; the decoder is then empty.
  KpageScan Finish();

 private:
  void Page(Pfn pfn, uint64_t flags, uint64_t count);
  void CloseRun();
  void CloseCompound();
  void CloseFlagless();
  void EmitAligned(Pfn first, uint64_t pages);

  KpageDecodeOptions options_;
  KpageScan scan_;
  Pfn next_;
  bool in_range_ = false;
  // An open free run (infer_buddy_tails): head, pages so far, the most it may hold.
  bool run_open_ = false;
  Pfn run_head_;
  uint64_t run_len_ = 0, run_limit_ = 0;
  // An open compound page: head and pages so far; orphan when it started at a tail.
  bool compound_open_ = false;
  bool compound_orphan_ = false;
  Pfn compound_head_;
  uint64_t compound_len_ = 0;
  // An open run of flagless count-0 pages outside a free run.
  Pfn flagless_first_;
  uint64_t flagless_len_ = 0;
};

// The pages [first, first + pages) cut into the largest naturally aligned blocks of order at
// most kMaxOrder, lowest pfn first (a free range's buddy blocks).
std::vector<AllocatedBlock> AlignedBlocks(Pfn first, uint64_t pages);

// Decodes in-memory arrays for the pfns [first, first + flags.size()).
// REQUIRES: flags.size() == counts.size().
KpageScan DecodeKpages(Pfn first, absl::Span<const uint64_t> flags,
                       absl::Span<const uint64_t> counts, KpageDecodeOptions options = {});

// Reads `ranges` from the two files (default /proc/kpageflags and /proc/kpagecount) in chunks
// of `chunk_pages` pfns (both files are 8 bytes a pfn of the whole physical address space) and
// decodes them; each range is decoded on its own.
// Errors: kPermissionDenied when a file cannot be opened for want of privilege (CAP_SYS_ADMIN;
// the message names the file), kNotFound when a file does not exist (a kernel without
// CONFIG_PROC_PAGE_MONITOR), kOutOfRange when a file ends before a range does, kInternal for
// other read errors.
absl::StatusOr<KpageScan> ReadKpages(const std::vector<PfnRange>& ranges,
                                     KpageDecodeOptions options = {},
                                     const std::string& flags_path = "/proc/kpageflags",
                                     const std::string& counts_path = "/proc/kpagecount",
                                     size_t chunk_pages = 64 * 1024);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_KPAGEFLAGS_H_
