// The kernel's flag words as page_owner prints them: gfp masks (`%pGg`, with today's
// `__def_gfpflag_names` table and bits) and page flags (`%pGp`, with the layout of the 6.12
// x86_64 kernel that produced our sample dump).
#ifndef PAGEOWNER_CORE_KERNEL_FLAGS_H_
#define PAGEOWNER_CORE_KERNEL_FLAGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/types.h"

namespace pageowner {

// gfp bits of today's include/linux/gfp_types.h (x86_64: no KASAN_HW_TAGS, no LOCKDEP, so
// __GFP_SKIP_ZERO, __GFP_SKIP_KASAN and __GFP_NOLOCKDEP are 0; bit 0x200 is unused).
inline constexpr uint32_t kGfpDma = 0x1;
inline constexpr uint32_t kGfpHighmem = 0x2;
inline constexpr uint32_t kGfpDma32 = 0x4;
inline constexpr uint32_t kGfpMovable = 0x8;
inline constexpr uint32_t kGfpReclaimable = 0x10;
inline constexpr uint32_t kGfpHigh = 0x20;
inline constexpr uint32_t kGfpIo = 0x40;
inline constexpr uint32_t kGfpFs = 0x80;
inline constexpr uint32_t kGfpZero = 0x100;
inline constexpr uint32_t kGfpDirectReclaim = 0x400;
inline constexpr uint32_t kGfpKswapdReclaim = 0x800;
inline constexpr uint32_t kGfpWrite = 0x1000;
inline constexpr uint32_t kGfpNowarn = 0x2000;
inline constexpr uint32_t kGfpRetryMayfail = 0x4000;
inline constexpr uint32_t kGfpNofail = 0x8000;
inline constexpr uint32_t kGfpNoretry = 0x10000;
inline constexpr uint32_t kGfpMemalloc = 0x20000;
inline constexpr uint32_t kGfpComp = 0x40000;
inline constexpr uint32_t kGfpNomemalloc = 0x80000;
inline constexpr uint32_t kGfpHardwall = 0x100000;
inline constexpr uint32_t kGfpThisnode = 0x200000;
inline constexpr uint32_t kGfpAccount = 0x400000;
inline constexpr uint32_t kGfpZerotags = 0x800000;

// Today's composite masks (`__GFP_RECLAIM`, `GFP_*`).
inline constexpr uint32_t kGfpReclaim = kGfpDirectReclaim | kGfpKswapdReclaim;
inline constexpr uint32_t kGfpAtomic = kGfpHigh | kGfpKswapdReclaim;
inline constexpr uint32_t kGfpKernel = kGfpReclaim | kGfpIo | kGfpFs;
inline constexpr uint32_t kGfpKernelAccount = kGfpKernel | kGfpAccount;
inline constexpr uint32_t kGfpNowait = kGfpKswapdReclaim | kGfpNowarn;
inline constexpr uint32_t kGfpNoio = kGfpReclaim;
inline constexpr uint32_t kGfpNofs = kGfpReclaim | kGfpIo;
inline constexpr uint32_t kGfpUser = kGfpReclaim | kGfpIo | kGfpFs | kGfpHardwall;
inline constexpr uint32_t kGfpHighuser = kGfpUser | kGfpHighmem;
inline constexpr uint32_t kGfpHighuserMovable = kGfpHighuser | kGfpMovable;
inline constexpr uint32_t kGfpTranshugeLight =
    (kGfpHighuserMovable | kGfpComp | kGfpNomemalloc | kGfpNowarn) & ~kGfpReclaim;
inline constexpr uint32_t kGfpTranshuge = kGfpTranshugeLight | kGfpDirectReclaim;

// The names the kernel's `%pGg` prints for `mask` with today's table: composite names first in
// table order, then single bits, joined by '|'; a name is taken when all its bits are still in
// the mask, and its bits are then removed. Bits no name covers follow as one `0x...` number
// (after a '|' when a name precedes it). Returns "" for 0.
std::string FormatGfpNames(uint32_t mask);

// The kernel's `%#x(%pGg)`, e.g. "0xcc0(GFP_KERNEL)". Mask 0 prints as "0x0()", as the kernel's
// `%#x` does.
std::string FormatGfpMask(uint32_t mask);

// The inverse of FormatGfpNames, for dumps and ftrace `gfp_flags=` fields: '|'-separated names
// from today's table (composite or single, in any order) and `0x...` numbers (the printed
// remainder) are ORed together. "" and ftrace's "none" give 0. Surrounding ASCII whitespace is
// ignored. Names are read with today's values: a name whose value differs in the kernel that
// printed it (6.1's GFP_ATOMIC included __GFP_ATOMIC 0x200, its GFP_NOWAIT lacked __GFP_NOWARN)
// reads as today's value. Returns InvalidArgumentError naming the token for an unknown or empty
// token.
absl::StatusOr<uint32_t> ParseGfpNames(std::string_view names);

// The kernel's gfp_migratetype(): (mask & (__GFP_RECLAIMABLE|__GFP_MOVABLE)) >> 3, so
// __GFP_MOVABLE gives kMovable, __GFP_RECLAIMABLE kReclaimable, neither kUnmovable, and both
// kHighAtomic (a combination the kernel warns about).
MigrateType GfpMigrateType(uint32_t mask);

// Page flag bits of the 6.12 x86_64 kernel (enum pageflags; CONFIG_MMU=y, no MEMORY_FAILURE,
// no PAGE_IDLE_FLAG): bits 0..kNumPageFlags-1 carry flags; node and zone fields sit at the top.
inline constexpr int kPgLocked = 0;
inline constexpr int kPgWriteback = 1;
inline constexpr int kPgReferenced = 2;
inline constexpr int kPgUptodate = 3;
inline constexpr int kPgDirty = 4;
inline constexpr int kPgLru = 5;
inline constexpr int kPgHead = 6;
inline constexpr int kPgWaiters = 7;
inline constexpr int kPgActive = 8;
inline constexpr int kPgWorkingset = 9;
inline constexpr int kPgOwnerPriv1 = 10;
inline constexpr int kPgOwner2 = 11;
inline constexpr int kPgArch1 = 12;
inline constexpr int kPgReserved = 13;
inline constexpr int kPgPrivate = 14;
inline constexpr int kPgPrivate2 = 15;
inline constexpr int kPgReclaim = 16;
inline constexpr int kPgSwapbacked = 17;
inline constexpr int kPgUnevictable = 18;
inline constexpr int kPgMlocked = 19;
inline constexpr int kNumPageFlags = 20;  // NR_PAGEFLAGS

// Field layout (SPARSEMEM_VMEMMAP: no section field; no NUMA_BALANCING: no last_cpupid; no KASAN
// tags): NODES_SHIFT 6 at the top of the word, ZONES_SHIFT 2 below it.
inline constexpr int kPageFlagsNodeShift = 58;
inline constexpr int kPageFlagsNodeWidth = 6;
inline constexpr int kPageFlagsZoneShift = 56;
inline constexpr int kPageFlagsZoneWidth = 2;

// x86_64 zone numbers and the first pfn above each of the two low zones.
inline constexpr int kZoneDma = 0;
inline constexpr int kZoneDma32 = 1;
inline constexpr int kZoneNormal = 2;
inline constexpr uint64_t kZoneDma32StartPfn = 0x1000;     // 16 MiB
inline constexpr uint64_t kZoneNormalStartPfn = 0x100000;  // 4 GiB

// The 6.12 kernel's `%pGp`: "0x<hex>(" then the names of the set flag bits below kNumPageFlags in
// `__def_pageflag_names` order, then "node=N|zone=Z", all joined by '|', then ")"; e.g.
// "0x100000000000040(head|node=0|zone=1)" and "0x100000000000000(node=0|zone=1)".
std::string FormatPageFlags(uint64_t flags);

// The names of the page-flag bits alone, as the 2016 kernel's `%pGp` printed them (no value, no
// node or zone fields): "head|lru", "" when no flag bit is set.
std::string FormatPageFlagNames(uint64_t flags);

// The flags word of the head page of a block we simulate: node 0, the zone that holds `pfn` on
// x86_64 (DMA below pfn 0x1000, DMA32 below 0x100000, Normal above), and PG_head when
// `order` > 0 and `gfp_mask` has __GFP_COMP.
uint64_t SimulatedPageFlags(Pfn pfn, Order order, uint32_t gfp_mask);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_KERNEL_FLAGS_H_
