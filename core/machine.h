// Machine: the simulated machine (buddy allocator, stack depot, one page owner record a page) and
// the one place events are applied to it, with the semantics of the kernel's mm/page_owner.c.
#ifndef PAGEOWNER_CORE_MACHINE_H_
#define PAGEOWNER_CORE_MACHINE_H_

#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/buddy_allocator.h"
#include "core/snapshot.h"
#include "core/stack_depot.h"
#include "core/symbols.h"
#include "core/types.h"

namespace pageowner {

// TASK_COMM_LEN - 1: longer names are cut, as strscpy cuts them.
inline constexpr size_t kCommMax = 15;

struct MachineOptions {
  PageCount pages = PageCount(1 << 20);              // 4 GiB
  int stack_depth = kDefaultStackDepth;              // StackDepotOptions::max_depth
  uint32_t depot_max_pools = kDefaultDepotMaxPools;  // StackDepotOptions::max_pools
  bool tracking = true;                              // page_owner=on
  uint64_t boot_ts_ns = 0;                           // ts of the pages found allocated at start
};

// An allocation: __alloc_pages + __set_page_owner.
struct AllocEvent {
  Order order{};
  uint32_t gfp_mask = 0;
  absl::Span<const uint64_t> frames{};  // innermost first; at least one
  int32_t pid = 0;
  int32_t tgid = 0;
  std::string_view comm{};
  uint64_t ts_ns = 0;
  std::optional<Pfn> pfn{};  // place the block exactly here (replaying a real machine)
  // Optional: a handle this Machine returned earlier for the same frames (an ingest stream
  // caches one a stack). It is checked against the frames, so a stale hint only costs the
  // normal save; a good one skips the depot's hash lookup.
  StackHandle stack_hint{};
  // This happened on a real machine: applied over whatever the Machine believes of the range
  // (see "Trusted events" on Machine). Only an allocation at a pfn has anything to repair.
  bool trusted = false;
  // Attach (init_early_allocated_pages for a running machine): the block at `pfn` is in use
  // with no known owner; every page gets the early handle (see "Early blocks" on Machine).
  // `frames`, `gfp_mask`, `pid`, `tgid` and `comm` are ignored. REQUIRES `pfn`.
  bool early = false;
  // The block at `pfn` is not RAM on the machine this mirrors (a hole, memblock-reserved
  // memory, a gap of /proc/iomem): the allocator never hands it out and it gets no owner (see
  // "Reserved blocks" on Machine). `frames`, `gfp_mask`, `pid`, `tgid` and `comm` are ignored.
  // REQUIRES `pfn`; not with `early`.
  bool reserved = false;
};

// A free: __reset_page_owner + __free_pages. `frames` may be empty (no free stack known).
struct FreeEvent {
  Pfn pfn{};  // head of the block
  Order order{};
  absl::Span<const uint64_t> frames{};
  int32_t pid = 0;
  int32_t tgid = 0;
  uint64_t ts_ns = 0;
  // Optional: a handle this Machine returned earlier for the same frames (an ingest stream
  // caches one a stack). It is checked against the frames, so a stale hint only costs the
  // normal save; a good one skips the depot's hash lookup.
  StackHandle stack_hint{};
  // This happened on a real machine: applied over whatever the Machine believes of the range
  // (see "Trusted events" on Machine).
  bool trusted = false;
};

// A migration of the block headed by `pfn`: a target block of the same order and migratetype is
// allocated (at `target` when given), the owner is copied to it as __folio_copy_owner does, the
// reason is recorded on the target and the source is freed by the migrating task (`frames`,
// `pid`, `tgid`, `ts_ns` describe that free; `frames` may be empty).
struct MigrateEvent {
  Pfn pfn{};
  MigrateReason reason = MigrateReason::kCompaction;
  std::optional<Pfn> target{};
  absl::Span<const uint64_t> frames{};
  int32_t pid = 0;
  int32_t tgid = 0;
  uint64_t ts_ns = 0;
  // Optional: a handle this Machine returned earlier for the same frames (an ingest stream
  // caches one a stack). It is checked against the frames, so a stale hint only costs the
  // normal save; a good one skips the depot's hash lookup.
  StackHandle stack_hint{};
};

// What a real kernel printed for a block that the simulation does not derive itself, kept for
// imported blocks so that they print back byte for byte.
struct PrintedExtras {
  uint64_t page_flags = 0;  // the page's flags word, as that kernel printed it
  // Everything after "Flags " on the PFN line as that kernel printed it (its flag names differ
  // from ours: 6.1's bit 9 is "slab", 6.12's "workingset"); "" = derive from page_flags.
  std::string flags_text;
  std::string gfp_names;    // the %pGg text that kernel printed (its flag table); "" = ours
  bool slab_cache = false;  // the "Slab cache page" line
  std::string memcg;        // the memcg line without its newline ("Charged to memcg /"), or ""
  friend bool operator==(const PrintedExtras&, const PrintedExtras&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PrintedExtras& e) {
    return H::combine(std::move(h), e.page_flags, e.flags_text, e.gfp_names, e.slab_cache, e.memcg);
  }
};

// A block read from a real /sys/kernel/debug/page_owner dump, placed at its pfn with every
// field the dump gave.
struct ImportEvent {
  Pfn pfn{};
  Order order{};
  uint32_t gfp_mask = 0;
  absl::Span<const uint64_t> frames{};  // at least one
  int32_t pid = 0;
  int32_t tgid = 0;
  std::string_view comm{};
  uint64_t ts_ns = 0;
  uint64_t free_ts_ns = 0;  // dumps of about v6.2 print it; 0 otherwise
  MigrateReason last_migrate_reason = MigrateReason::kNone;
  // The pageblock's migratetype as the dump printed it ("Block N type T"); set on the allocator.
  std::optional<MigrateType> pageblock_migratetype{};
  const PrintedExtras* extras = nullptr;  // null: nothing beyond what we derive
  // Optional, as AllocEvent::stack_hint.
  StackHandle stack_hint{};
};

using Event = std::variant<AllocEvent, FreeEvent, MigrateEvent, ImportEvent>;

// What an event did: for an allocation the block's pfn and the handle stored; for a free the
// freed pfn and the free handle; for a migration the target pfn and the owner's handle.
struct EventResult {
  absl::Status status;
  Pfn pfn;
  StackHandle handle;
};

// One page's page_owner record, expanded to plain values (today's `struct page_owner` plus the
// page_ext flags), with what a report needs of the page itself.
struct PageOwner {
  Pfn pfn;
  Order order;
  uint32_t gfp_mask = 0;
  StackHandle handle;
  StackHandle free_handle;
  MigrateReason last_migrate_reason = MigrateReason::kNone;
  int32_t pid = 0;
  int32_t tgid = 0;
  std::string comm;
  uint64_t ts_ns = 0;
  uint64_t free_ts_ns = 0;
  int32_t free_pid = 0;
  int32_t free_tgid = 0;
  bool owner = false;      // PAGE_EXT_OWNER: ever set
  bool allocated = false;  // PAGE_EXT_OWNER_ALLOCATED: allocated now (per page_owner)
  bool reserved = false;   // not RAM on the machine mirrored (AllocEvent::reserved)
  MigrateType pageblock_migratetype = MigrateType::kMovable;
  uint64_t page_flags = 0;  // the page's flags word, as %pGp prints it
  // Set for imported blocks: what their kernel printed beyond our fields (page_flags above is
  // then the printed one). Valid until the next mutation of the Machine.
  const PrintedExtras* extras = nullptr;
};

// Counts of what happened, by kind and outcome.
struct MachineCounters {
  uint64_t allocs = 0;
  uint64_t frees = 0;
  uint64_t migrates = 0;
  uint64_t rejected = 0;  // events that returned an error and changed nothing
  uint64_t dummy_handle_uses = 0;
  uint64_t failure_handle_uses = 0;
  uint64_t early_handle_pages = 0;
  // Trusted events (see Machine): those that found the Machine's picture wrong and repaired it.
  uint64_t repaired_allocs = 0;  // allocations over allocated pages (rule T2)
  uint64_t repaired_frees = 0;   // frees not of exactly one allocated block (rule T5)
  uint64_t ignored_frees = 0;    // frees of pages all free already (rule T4): nothing changed
  uint64_t implied_frees = 0;    // blocks (or parts of blocks) freed implicitly by T2
  uint64_t implied_freed_pages = 0;
  uint64_t split_blocks = 0;  // allocated blocks cut by T2 or T5, their rest kept allocated
};

// Mixed pageblocks by the pageblock's migratetype, for one zone, as /proc/pagetypeinfo counts.
struct ZoneMixedBlocks {
  std::string_view zone;  // "DMA", "DMA32", "Normal"
  std::array<uint64_t, kNumMigrateTypes> count{};
};

// Heap bytes by part, for the memory table.
struct MachineMemory {
  size_t records = 0;    // the page owner records
  size_t allocator = 0;  // buddy state and free lists
  size_t depot = 0;      // stack depot pools and tables
  size_t contexts = 0;   // interned task/mask contexts
  size_t symbols = 0;
  size_t total() const { return records + allocator + depot + contexts + symbols; }
};

// The simulated machine.
//
// Invariants:
//  1. Every page belongs to exactly one block, free or allocated (the allocator's invariant).
//  2. For every stored stack, StackUsage::pages equals the number of pages whose record is
//     allocated with that handle; so over all stacks the pages sum to the tracked allocated
//     pages, special handles included. While tracking is on, every allocated page is tracked.
//  3. An event that returns an error changed nothing.
//  4. A freed page keeps its last owner (handle, order, mask, task, ts) and gains the free
//     handle, free pid/tgid and free ts.
//  5. The early handle's pages count on its stack (invariant 2) but the early stack is never
//     charged an allocation, so it is not on the owner list and show_stacks (StacksOwning)
//     does not list it, as the kernel's init_pages_in_zone never calls inc_stack_record_count.
//  6. A reserved page is allocated in the allocator and its record is not allocated: it is
//     the one kind of allocated page that is never tracked (invariant 2's exception).
//
// Trusted events (AllocEvent::trusted, FreeEvent::trusted): a real machine's events are facts.
// When the Machine's picture of their range is wrong (an event was lost, attach guessed, pages
// sat on a per-cpu list), the picture is repaired and the event applied; every repair is
// counted in MachineCounters. A range [P, P + 2^k) and a buddy block are either disjoint, or
// one holds the other (both are aligned powers of two). Errors that are the event's own (order
// above 10, a pfn or range beyond memory, no frames for a non-early allocation) are refused as
// for strict events. Strict (untrusted) events are never repaired.
//  T1. An allocation at P of order k whose range holds no allocated page: as a strict one.
//  T2. Otherwise, first every allocated block that lies inside the range is freed implicitly:
//      its records become freed with no free stack, free pid/tgid 0 and free ts the
//      allocation's ts_ns, and its pages leave their stacks (one implied_frees a block, its
//      pages in implied_freed_pages). An allocated block of order K > k that holds the range
//      is split (split_blocks + 1): the range's pages are freed implicitly as above (one
//      implied free of 2^k pages) and the rest stays allocated with its owner, as the K - k
//      buddy pieces around the range (orders k .. K-1, each aligned); the records of a piece
//      keep their handle, mask, task and ts, and an order above the piece's becomes the
//      piece's (an early block's order-0 records stay). Then the allocation is applied as T1.
//      Counted in repaired_allocs. The result is a strict allocation's (pfn P, the handle).
//  T3. A free at P of order k where P heads an allocated block of order k: as a strict one.
//  T4. A free whose range holds no allocated page: nothing changes (no free stack is saved);
//      OK with pfn P and no handle; counted in ignored_frees (a page allocated before attach
//      that attach took as free, a compaction target, a lost allocation).
//  T5. Otherwise every allocated page of the range is freed by this event (its free stack,
//      task and ts): blocks inside the range whole, and a block that holds the range split as
//      in T2 with the range's part freed. Counted in repaired_frees (and split_blocks). The
//      result: pfn P and the free handle.
// The depot's own pools live in simulated memory (the allocator's choice); a trusted allocation
// over one takes its pages like any block's (T2); the depot keeps its storage.
//
// Reserved blocks (AllocEvent::reserved, with a pfn): what the kernel never gives its buddy
// allocator (holes without a struct page, memblock-reserved pages, addresses that are not System
// RAM), placed so that the allocator never hands them out either. The block is taken at P as an
// allocation at a pfn (trusted or strict as the event says; a trusted one frees what it covers,
// T2) and each page is marked reserved, with no owner record: page_owner's init_pages_in_zone
// skips PageReserved pages, so SetTracking(on) gives them no early handle and the dump never
// lists them. Not counted in allocs; reserved_pages() counts them. A strict free or migration
// of a reserved page is refused (kFailedPrecondition); a trusted reserved allocation over pages
// that are all reserved already is OK and changes nothing (a second recording of the same
// machine says its holes again); a trusted allocation or free over one
// is a fact of the real machine (the kernel freed reserved memory into the buddy allocator, as
// free_reserved_area does): the range stops being reserved and the event applies as T2/T5.
//
// Early blocks (AllocEvent::early, with a pfn): the block is placed at P as an allocation at a
// pfn (trusted or strict as the event says) and, while tracking is on, each page gets an
// order-0 record with the early handle, mask 0, pid 0, tgid 0, comm "swapper" and ts ts_ns, as
// init_early_allocated_pages gives pages in use at boot; counted in allocs and
// early_handle_pages (2^k). A later strict free of the whole block frees it; a trusted free of a
// part splits it (T5).
//
// Thread-safety: the mutators (Alloc, Free, Migrate, Apply, SetTracking) must be called by one
// thread at a time, and the const queries must not run concurrently with a mutator (callers
// that serve queries while ingesting hold a reader-writer lock around the Machine). The depot
// itself is safe for concurrent use (depot()).
class Machine {
 public:
  // REQUIRES: options.pages >= 1, 1 <= stack_depth <= 64, 1 <= depot_max_pools <= 131071
  // (validate with ValidateOptions first).
  explicit Machine(const MachineOptions& options);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // kInvalidArgument naming the bad option, or OK.
  static absl::Status ValidateOptions(const MachineOptions& options);

  // Errors: kInvalidArgument (order above 10, no frames for an allocation that is neither early
  // nor reserved, early or reserved without a pfn, both early and reserved, pfn not aligned to
  // the order), kOutOfRange (pfn or range beyond memory),
  // kAlreadyExists (strict only: a page at the requested pfn is allocated), kResourceExhausted
  // (no free block big enough).
  absl::StatusOr<EventResult> Alloc(const AllocEvent& e);
  // Errors: kInvalidArgument (order above 10), kOutOfRange (pfn beyond memory), strict only:
  // kFailedPrecondition (the page is free, is reserved, is not the head of its block, or the
  // order differs).
  absl::StatusOr<EventResult> Free(const FreeEvent& e);
  // Errors: kInvalidArgument (no such reason), kOutOfRange (pfn or target beyond memory),
  // kFailedPrecondition (the page is free, reserved or not a block's head), kAlreadyExists (the
  // target range is in use), kResourceExhausted (no free block for the target).
  absl::StatusOr<EventResult> Migrate(const MigrateEvent& e);
  // Any of the three; the status is in the result.
  EventResult Apply(const Event& e);
  // Places an imported block. Errors as Alloc with a pfn; also kInvalidArgument for a
  // migratetype the allocator's free lists do not have (HighAtomic, CMA, Isolate).
  absl::StatusOr<EventResult> Import(const ImportEvent& e);

  // A hint to the CPU: the page record `e` will touch, for a caller that applies a batch and
  // knows the events ahead (pfns of frees and migrations are known before they run).
  void Prefetch(const Event& e) const;

  // page_owner on or off. Turning it on gives every allocated page that has no owner the early
  // handle (order 0, mask 0, pid 0, "swapper", ts `ts_ns`), as init_early_allocated_pages does.
  void SetTracking(bool on, uint64_t ts_ns);
  bool tracking() const { return tracking_; }

  // ---- Queries ----
  PageCount total_pages() const { return buddy_.total_pages(); }
  const BuddyAllocator& allocator() const { return buddy_; }
  StackDepot& depot() { return depot_; }
  const StackDepot& depot() const { return depot_; }
  SymbolTable& symbols() { return symbols_; }
  const SymbolTable& symbols() const { return symbols_; }

  // The record of exactly this page (tail pages included). kOutOfRange beyond memory.
  absl::StatusOr<PageOwner> PageRecord(Pfn pfn) const;
  // The record of the head of the allocated block holding pfn, or of pfn itself when the page
  // is free. kOutOfRange beyond memory.
  absl::StatusOr<PageOwner> BlockOwner(Pfn pfn) const;
  // Visits the records /sys/kernel/debug/page_owner prints, in pfn order from `start`: pages
  // that are allocated, have an owner and a handle, and are aligned to their record's order
  // (so tail pages are skipped). The visitor returns false to stop.
  void ForEachOwnedBlock(Pfn start, absl::FunctionRef<bool(const PageOwner&)> visit) const;
  // The frames of a handle, each as `%pS` prints it; empty for an unknown handle.
  std::vector<std::string> FormatStack(StackHandle handle) const;

  // "Number of mixed blocks" of /proc/pagetypeinfo, one entry a populated zone.
  std::vector<ZoneMixedBlocks> MixedBlocks() const;

  // The heads of the order-2 blocks the depot took for its pools, in the order it took them.
  absl::Span<const Pfn> depot_pool_pfns() const { return depot_pools_; }

  StackHandle dummy_handle() const { return dummy_handle_; }
  StackHandle failure_handle() const { return failure_handle_; }
  StackHandle early_handle() const { return early_handle_; }
  const MachineCounters& counters() const { return counters_; }
  // Pages whose record is allocated (what the per-stack counters sum to).
  PageCount tracked_pages() const { return PageCount(tracked_pages_); }
  // Pages placed by reserved allocations and not freed since (not RAM on the mirrored machine).
  PageCount reserved_pages() const { return PageCount(reserved_pages_); }
  MachineMemory MemoryUsage() const;

  // The return address __set_page_owner's call to save_stack leaves on the stack. A trace that
  // holds it is a recursive call from inside page_owner (the seed's check_recursive_alloc).
  uint64_t set_page_owner_ret_ip() const { return set_page_owner_ret_ip_; }

  // ---- Snapshots (core/snapshot.h) ----
  // Writes everything this Machine holds: the allocator, the symbol table, the depot, the page
  // records, the interned contexts and printed extras, the depot's pools, the special handles,
  // tracking and the counters. REQUIRES: no mutator runs, and no other thread changes the symbol
  // table or the depot meanwhile: call it on the writer thread between events with nothing else
  // naming frames, or in the forked child of a thread that forked inside WithSnapshotLocks.
  void SaveState(SnapshotWriter& w) const;
  // A Machine equal to the saved one: the same dump, stacks, stats and handles, and the same
  // results for the same later events. kFailedPrecondition when the state was saved by a
  // Machine of other options (the message names both); kDataLoss naming the first problem
  // when the bytes do not decode into a valid Machine (never a crash).
  static absl::StatusOr<std::unique_ptr<Machine>> LoadState(const MachineOptions& options,
                                                            SnapshotReader& r);
  // Runs fn with the symbol table's and the depot's locks held, so that a fork() in fn copies
  // them consistent although other threads may name frames (fork copies only its own thread).
  void WithSnapshotLocks(absl::FunctionRef<void()> fn) const;

 private:
  // Builds the parts and nothing in them (no special stacks, no tracking): the base of both the
  // public constructor and LoadState.
  struct EmptyTag {};
  Machine(const MachineOptions& options, EmptyTag);

  // The packed per-page record: 28 bytes (see MemoryUsage and README for the budget).
  struct __attribute__((packed, aligned(4))) Record {
    uint64_t ts_ns;
    uint64_t free_ts_ns;
    uint32_t handle;
    uint32_t actx;  // bit 31 allocated, bit 30 owner, bit 29 reserved, bits 0..28 alloc
                    // context id (0: none)
    uint32_t fctx;  // free context id (0: none)
  };
  static constexpr uint32_t kAllocatedBit = 1u << 31;
  static constexpr uint32_t kOwnerBit = 1u << 30;
  static constexpr uint32_t kReservedBit = 1u << 29;
  static constexpr uint32_t kCtxMask = kReservedBit - 1;

  // What repeats across allocations: the task, mask, order and migrate reason.
  struct AllocContext {
    int32_t pid = 0;
    int32_t tgid = 0;
    uint32_t gfp_mask = 0;
    uint8_t order = 0;
    int8_t reason = -1;
    std::array<char, kCommMax + 1> comm{};
    friend bool operator==(const AllocContext&, const AllocContext&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const AllocContext& c) {
      return H::combine(std::move(h), c.pid, c.tgid, c.gfp_mask, c.order, c.reason,
                        std::string_view(c.comm.data()));
    }
  };
  struct FreeContext {
    uint32_t free_handle = 0;
    int32_t free_pid = 0;
    int32_t free_tgid = 0;
    friend bool operator==(const FreeContext&, const FreeContext&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const FreeContext& c) {
      return H::combine(std::move(h), c.free_handle, c.free_pid, c.free_tgid);
    }
  };
  template <typename K>
  class Interner {
   public:
    Interner() { values_.emplace_back(); }  // id 0: none
    uint32_t Intern(const K& k);
    const K& Get(uint32_t id) const { return values_[id]; }
    // Ids 1.. in order (0 is "none").
    uint32_t size() const { return static_cast<uint32_t>(values_.size()); }
    size_t MemoryBytes() const;

   private:
    std::deque<K> values_;  // a deque: references stay valid as it grows
    absl::flat_hash_map<K, uint32_t> ids_;
  };

  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };

  // The caller's view while a stack is being saved, for the depot's pool allocation.
  struct SaveContext {
    absl::Span<const uint64_t> frames;
    uint32_t gfp_mask = 0;
    int32_t pid = 0;
    int32_t tgid = 0;
    std::string_view comm;
    uint64_t ts_ns = 0;
    StackHandle hint;
  };

  StackHandle SaveStack(const SaveContext& ctx);
  bool AllocateDepotPool();
  void SetOwner(Pfn head, Order order, StackHandle handle, uint32_t actx, uint64_t ts_ns);
  // With tracking on: saves the free stack (if any) and interns the free context; returns the
  // free handle and the context for ResetOwner. With tracking off: nothing to record.
  std::pair<StackHandle, std::optional<uint32_t>> SaveFree(absl::Span<const uint64_t> frames,
                                                           int32_t pid, int32_t tgid,
                                                           uint64_t ts_ns, StackHandle hint);
  // Clears the allocated flag of the block's pages and takes their pages off their stacks;
  // with `free_ctx` (tracking on) also records the free.
  void ResetOwner(Pfn head, Order order, std::optional<uint32_t> fctx, uint64_t ts_ns);
  // What FreeRange did.
  struct RangeFreed {
    uint64_t blocks = 0;  // blocks freed whole, and the parts cut out of larger blocks
    uint64_t pages = 0;
    uint64_t splits = 0;
  };
  // Trusted events' repair (T2, T5): makes every page of [head, head + 2^order) free, freeing
  // the blocks inside it and splitting a block that holds it; records the frees with `fctx`.
  // REQUIRES: head aligned to order, the range within memory.
  RangeFreed FreeRange(Pfn head, Order order, std::optional<uint32_t> fctx, uint64_t ts_ns);
  // Trusted events' own errors: kInvalidArgument when pfn is not aligned to order, kOutOfRange
  // when the range passes the end of memory.
  absl::Status CheckTrustedRange(Pfn pfn, Order order) const;
  // Whether any page of the range is allocated. REQUIRES as FreeRange.
  bool RangeHasAllocated(Pfn head, Order order) const;
  // Whether every page of the range is reserved. REQUIRES as FreeRange.
  bool RangeAllReserved(Pfn head, Order order) const;
  // Clears the reserved mark of the pages [first, first + n) that have it.
  void Unreserve(uint64_t first, uint64_t n);
  // Records order-0 early owners on the pages of the block at `head` (tracking on).
  void SetEarlyOwners(Pfn head, Order order, uint64_t ts_ns);
  uint32_t InternAlloc(int32_t pid, int32_t tgid, std::string_view comm, uint32_t gfp, Order order,
                       MigrateReason reason);
  PageOwner Expand(Pfn pfn, const Record& r) const;
  // Saves register_*_stack's stack: the function, its caller, and the boot path under them.
  StackHandle RegisterSpecialStack(std::string_view function, std::string_view caller);
  void InitEarlyAllocatedPages(uint64_t ts_ns);

  BuddyAllocator buddy_;
  SymbolTable symbols_;
  StackDepot depot_;
  std::unique_ptr<Record[], FreeDeleter> records_;  // calloc'd: untouched pages cost nothing
  Interner<AllocContext> alloc_contexts_;
  Interner<FreeContext> free_contexts_;
  Interner<PrintedExtras> extras_;
  absl::flat_hash_map<uint64_t, uint32_t> extras_by_head_;  // imported blocks only

  uint64_t set_page_owner_ret_ip_ = 0;
  std::vector<uint64_t> pool_frames_;  // the depot's own frames on a pool allocation
  std::vector<Pfn> depot_pools_;
  StackHandle dummy_handle_;
  StackHandle failure_handle_;
  StackHandle early_handle_;
  bool tracking_ = false;
  // Set while Import saves a stack: a depot pool then comes from the top of memory, so that it
  // does not take the place of a block the dump lists further on.
  bool importing_ = false;
  const SaveContext* saving_ = nullptr;  // set while SaveStack runs
  uint64_t tracked_pages_ = 0;
  uint64_t reserved_pages_ = 0;
  MachineCounters counters_;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_MACHINE_H_
