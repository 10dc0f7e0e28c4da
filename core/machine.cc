#include "core/machine.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/huge_pages.h"
#include "core/kernel_flags.h"
#include "core/status_macros.h"

namespace pageowner {
namespace {

// The frames under the three special stacks, as the 6.12 kernel prints early pages.
constexpr std::string_view kInitFrames[] = {"mm_core_init+0x9b/0x110", "start_kernel+0x2a5/0x810"};
// What the depot's own pool allocation runs through before re-entering the page allocator.
constexpr std::string_view kPoolFrames[] = {
    "get_page_from_freelist+0x121a/0x13b0", "__alloc_pages_noprof+0x198/0x1060",
    "depot_alloc_pool+0x56/0xe0", "stack_depot_save_flags+0x2f1/0x720", "save_stack+0x8e/0xe0"};
constexpr std::string_view kSetPageOwnerRet = "__set_page_owner+0x3b/0x160";
// The depot keeps the caller's reclaim behaviour but allocates unmovable kernel memory.
constexpr uint32_t kPoolGfpFilter = kGfpKernel | kGfpAtomic | kGfpNowarn;

absl::Status BadOrder(Order order) {
  return absl::InvalidArgumentError(
      absl::StrCat("order ", order.raw(), " is above the maximum order ", kMaxOrder));
}

absl::Status BeyondMemory(const char* what, Pfn pfn, PageCount pages) {
  return absl::OutOfRangeError(absl::StrCat(what, " ", pfn.raw(), " (0x", absl::Hex(pfn.raw()),
                                            ") is beyond memory (", pages.raw(), " pages)"));
}

}  // namespace

template <typename K>
uint32_t Machine::Interner<K>::Intern(const K& k) {
  auto [it, inserted] = ids_.try_emplace(k, static_cast<uint32_t>(values_.size()));
  if (inserted) {
    values_.push_back(k);
    assert(values_.size() <= kCtxMask);
  }
  return it->second;
}

template <typename K>
size_t Machine::Interner<K>::MemoryBytes() const {
  return values_.size() * sizeof(K) + ids_.capacity() * (sizeof(K) + sizeof(uint32_t) + 1);
}

absl::Status Machine::ValidateOptions(const MachineOptions& o) {
  if (o.pages.raw() == 0) return absl::InvalidArgumentError("memory must hold at least one page");
  if (o.pages.raw() > (uint64_t{1} << 32)) {
    return absl::InvalidArgumentError("memory above 16 TiB (2^32 pages) is not supported");
  }
  if (o.stack_depth < 1 || o.stack_depth > StackDepot::kMaxStackDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("stack depth ", o.stack_depth, " is outside 1..", StackDepot::kMaxStackDepth));
  }
  if (o.depot_max_pools < 1 || o.depot_max_pools > StackDepot::kMaxPoolsLimit) {
    return absl::InvalidArgumentError(absl::StrCat("depot pool limit ", o.depot_max_pools,
                                                   " is outside 1..", StackDepot::kMaxPoolsLimit));
  }
  return absl::OkStatus();
}

Machine::Machine(const MachineOptions& options, EmptyTag)
    : buddy_(options.pages),
      depot_(StackDepotOptions{.max_depth = options.stack_depth,
                               .max_pools = options.depot_max_pools,
                               .memory_pages = options.pages.raw()},
             [this](uint32_t) { return AllocateDepotPool(); }),
      records_(static_cast<Record*>(std::calloc(options.pages.raw(), sizeof(Record)))) {
  assert(ValidateOptions(options).ok());
  if (records_ == nullptr) throw std::bad_alloc();
  AdviseHugePages(records_.get(), options.pages.raw() * sizeof(Record));
}

Machine::Machine(const MachineOptions& options) : Machine(options, EmptyTag{}) {
  set_page_owner_ret_ip_ = symbols_.SyntheticAddress(kSetPageOwnerRet);
  for (std::string_view f : kPoolFrames) pool_frames_.push_back(symbols_.SyntheticAddress(f));
  pool_frames_.push_back(set_page_owner_ret_ip_);
  // init_page_owner: the special stacks are saved before page_owner is on, so the depot's first
  // pool is an untracked allocation that turns into early pages below.
  dummy_handle_ =
      RegisterSpecialStack("register_dummy_stack+0x4b/0x80", "init_page_owner+0x22/0x290");
  failure_handle_ =
      RegisterSpecialStack("register_failure_stack+0x4b/0x80", "init_page_owner+0x2b/0x290");
  early_handle_ =
      RegisterSpecialStack("register_early_stack+0x4b/0x80", "init_page_owner+0x34/0x290");
  if (options.tracking) SetTracking(true, options.boot_ts_ns);
}

Machine::~Machine() = default;

StackHandle Machine::RegisterSpecialStack(std::string_view function, std::string_view caller) {
  std::vector<uint64_t> frames = {symbols_.SyntheticAddress(function),
                                  symbols_.SyntheticAddress(caller)};
  for (std::string_view f : kInitFrames) frames.push_back(symbols_.SyntheticAddress(f));
  const StackHandle h = depot_.Save(frames);
  assert(h.valid());
  return h;
}

StackHandle Machine::SaveStack(const SaveContext& ctx) {
  if (ctx.hint.valid()) {
    // The hint is good when its stored frames are these frames, as the depot would cut them.
    const absl::Span<const uint64_t> want =
        ctx.frames.first(std::min<size_t>(ctx.frames.size(), depot_.max_depth()));
    const absl::Span<const uint64_t> got = depot_.Fetch(ctx.hint);
    if (got.size() == want.size() && std::equal(got.begin(), got.end(), want.begin())) {
      if (ctx.frames.size() > want.size()) depot_.CountTruncation();
      return ctx.hint;
    }
  }
  // check_recursive_alloc: save_stack's own return address twice in the trace means this
  // allocation comes from inside page_owner (the depot's pool). The trace here is that address
  // followed by ctx.frames, so one more occurrence in the frames is the second.
  if (std::find(ctx.frames.begin(), ctx.frames.end(), set_page_owner_ret_ip_) != ctx.frames.end()) {
    ++counters_.dummy_handle_uses;
    return dummy_handle_;
  }
  const SaveContext* outer = std::exchange(saving_, &ctx);
  StackHandle h = depot_.Save(ctx.frames);
  saving_ = outer;
  if (!h.valid()) {
    ++counters_.failure_handle_uses;
    h = failure_handle_;
  }
  return h;
}

bool Machine::AllocateDepotPool() {
  // An order-2 allocation from the simulated allocator, through the same path as any other:
  // when page_owner is on, its owner is set with a trace that holds the depot's frames above
  // the caller's, so save_stack sees recursion and gives the dummy handle.
  const Order order(2);
  absl::StatusOr<Pfn> pfn = absl::NotFoundError("");
  if (importing_) {
    // The highest free order-2 block: imported dumps fill memory from its start.
    for (uint64_t at = (total_pages().raw() & ~uint64_t{3}); at >= 4 && !pfn.ok();) {
      at -= 4;
      if (buddy_.AllocateAt(Pfn(at), order, MigrateType::kUnmovable).ok()) pfn = Pfn(at);
    }
  }
  if (!pfn.ok()) pfn = buddy_.Allocate(order, MigrateType::kUnmovable);
  if (!pfn.ok()) return false;
  depot_pools_.push_back(*pfn);
  if (!tracking_) return true;
  SaveContext pool;
  std::vector<uint64_t> trace = pool_frames_;
  uint32_t gfp = kGfpKernel;
  if (saving_ != nullptr) {
    trace.insert(trace.end(), saving_->frames.begin(), saving_->frames.end());
    gfp = (saving_->gfp_mask & kPoolGfpFilter) | kGfpNowarn;
    pool = *saving_;
  }
  pool.frames = trace;
  pool.gfp_mask = gfp;
  pool.hint = StackHandle();
  const StackHandle h = SaveStack(pool);
  SetOwner(*pfn, order, h,
           InternAlloc(pool.pid, pool.tgid, pool.comm, gfp, order, MigrateReason::kNone),
           pool.ts_ns);
  return true;
}

uint32_t Machine::InternAlloc(int32_t pid, int32_t tgid, std::string_view comm, uint32_t gfp,
                              Order order, MigrateReason reason) {
  AllocContext c;
  c.pid = pid;
  c.tgid = tgid;
  c.gfp_mask = gfp;
  c.order = static_cast<uint8_t>(order.raw());
  c.reason = static_cast<int8_t>(reason);
  const size_t n = std::min(comm.size(), kCommMax);
  if (n > 0) std::memcpy(c.comm.data(), comm.data(), n);
  return alloc_contexts_.Intern(c);
}

void Machine::SetOwner(Pfn head, Order order, StackHandle handle, uint32_t actx, uint64_t ts_ns) {
  const uint64_t n = order.pages().raw();
  Record* r = &records_[head.raw()];
  for (uint64_t i = 0; i < n; ++i) {
    r[i].handle = handle.raw();
    r[i].actx = actx | kOwnerBit | kAllocatedBit;
    r[i].ts_ns = ts_ns;
  }
  // Invariant 5: the early stack owns pages but is never charged an allocation.
  if (handle == early_handle_) {
    depot_.AddPages(handle, static_cast<int64_t>(n));
  } else {
    depot_.Charge(handle, static_cast<int64_t>(n));
  }
  tracked_pages_ += n;
}

void Machine::SetEarlyOwners(Pfn head, Order order, uint64_t ts_ns) {
  const uint32_t actx = InternAlloc(0, 0, "swapper", 0, Order(0), MigrateReason::kNone);
  const uint64_t n = order.pages().raw();
  for (uint64_t i = 0; i < n; ++i)
    SetOwner(Pfn(head.raw() + i), Order(0), early_handle_, actx, ts_ns);
  counters_.early_handle_pages += n;
}

bool Machine::RangeHasAllocated(Pfn head, Order order) const {
  const uint64_t end = head.raw() + order.pages().raw();
  for (uint64_t q = head.raw(); q < end;) {
    const std::optional<AllocatedBlock> b = buddy_.BlockContaining(Pfn(q));
    if (b.has_value()) return true;
    ++q;
  }
  return false;
}

bool Machine::RangeAllReserved(Pfn head, Order order) const {
  const uint64_t end = head.raw() + order.pages().raw();
  for (uint64_t q = head.raw(); q < end; ++q) {
    if ((records_[q].actx & kReservedBit) == 0) return false;
  }
  return true;
}

Machine::RangeFreed Machine::FreeRange(Pfn head, Order order, std::optional<uint32_t> fctx,
                                       uint64_t ts_ns) {
  RangeFreed out;
  const uint64_t begin = head.raw();
  const uint64_t end = begin + order.pages().raw();
  for (uint64_t q = begin; q < end;) {
    const std::optional<AllocatedBlock> b = buddy_.BlockContaining(Pfn(q));
    if (!b.has_value()) {
      ++q;
      continue;
    }
    const uint64_t bn = b->order.pages().raw();
    if (b->head.raw() >= begin && b->head.raw() + bn <= end) {  // inside the range: freed whole
      ResetOwner(b->head, b->order, fctx, ts_ns);
      Unreserve(b->head.raw(), bn);
      const absl::Status freed = buddy_.Free(b->head, b->order);
      assert(freed.ok());
      (void)freed;
      ++out.blocks;
      out.pages += bn;
      q = b->head.raw() + bn;
      continue;
    }
    // Aligned ranges nest: this block holds the whole range. Free the range's part and keep the
    // rest allocated as the buddy pieces around it, each with its owner's records.
    assert(b->head.raw() <= begin && b->head.raw() + bn >= end);
    const std::optional<MigrateType> mt = buddy_.AllocationMigrateType(b->head);
    assert(mt.has_value());
    ResetOwner(head, order, fctx, ts_ns);
    Unreserve(begin, end - begin);
    const absl::Status freed = buddy_.Free(b->head, b->order);
    assert(freed.ok());
    (void)freed;
    uint64_t cur = b->head.raw();
    for (unsigned j = b->order.raw(); j > order.raw(); --j) {
      uint32_t last_in = 0, last_out = 0;  // a block's records share one context, mostly
      const uint64_t half = uint64_t{1} << (j - 1);
      uint64_t piece = cur + half;
      if (begin >= cur + half) {
        piece = cur;
        cur += half;
      }
      const absl::Status taken = buddy_.AllocateAt(Pfn(piece), Order(j - 1), *mt);
      assert(taken.ok());
      (void)taken;
      for (uint64_t i = 0; i < half; ++i) {
        Record& r = records_[piece + i];
        if ((r.actx & kOwnerBit) == 0) continue;
        const uint32_t in = r.actx & kCtxMask;
        if (in != last_in) {
          const AllocContext& a = alloc_contexts_.Get(in);
          last_in = in;
          last_out = a.order <= j - 1
                         ? in
                         : InternAlloc(a.pid, a.tgid, a.comm.data(), a.gfp_mask, Order(j - 1),
                                       static_cast<MigrateReason>(a.reason));
        }
        r.actx = (r.actx & ~kCtxMask) | last_out;
      }
    }
    ++out.blocks;
    ++out.splits;
    out.pages += end - begin;
    break;
  }
  return out;
}

std::pair<StackHandle, std::optional<uint32_t>> Machine::SaveFree(absl::Span<const uint64_t> frames,
                                                                  int32_t pid, int32_t tgid,
                                                                  uint64_t ts_ns,
                                                                  StackHandle hint) {
  if (!tracking_) return {StackHandle(), std::nullopt};
  StackHandle free_handle;
  if (!frames.empty()) {
    // __reset_page_owner saves with GFP_NOWAIT | __GFP_NOWARN.
    free_handle =
        SaveStack(SaveContext{frames, kGfpNowait | kGfpNowarn, pid, tgid, {}, ts_ns, hint});
  }
  return {free_handle, free_contexts_.Intern(FreeContext{free_handle.raw(), pid, tgid})};
}

void Machine::ResetOwner(Pfn head, Order order, std::optional<uint32_t> fctx, uint64_t ts_ns) {
  if (!extras_by_head_.empty()) extras_by_head_.erase(head.raw());
  const uint64_t n = order.pages().raw();
  Record* r = &records_[head.raw()];
  // Take the pages off their stacks, a run of equal handles at a time (early blocks hold one
  // record a page).
  uint32_t run_handle = 0;
  int64_t run = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if ((r[i].actx & kAllocatedBit) == 0) continue;
    if (r[i].handle != run_handle && run > 0) {
      depot_.AddPages(StackHandle(run_handle), -run);
      run = 0;
    }
    run_handle = r[i].handle;
    ++run;
    --tracked_pages_;
    r[i].actx &= ~kAllocatedBit;
    if (fctx.has_value()) {
      r[i].fctx = *fctx;
      r[i].free_ts_ns = ts_ns;
    }
  }
  if (run > 0) depot_.AddPages(StackHandle(run_handle), -run);
}

void Machine::Unreserve(uint64_t first, uint64_t n) {
  if (reserved_pages_ == 0) return;
  for (uint64_t p = first; p < first + n; ++p) {
    if (records_[p].actx & kReservedBit) {
      records_[p].actx &= ~kReservedBit;
      --reserved_pages_;
    }
  }
}

absl::Status Machine::CheckTrustedRange(Pfn pfn, Order order) const {
  const uint64_t n = order.pages().raw();
  if ((pfn.raw() & (n - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("pfn ", pfn.raw(), " (0x", absl::Hex(pfn.raw()),
                                                   ") is not aligned to order ", order.raw()));
  }
  if (pfn.raw() + n > total_pages().raw()) {
    return absl::OutOfRangeError(absl::StrCat("pfns ", pfn.raw(), "..", pfn.raw() + n - 1,
                                              " pass the end of memory (", total_pages().raw(),
                                              " pages)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<EventResult> Machine::Alloc(const AllocEvent& e) {
  if (!e.order.valid()) return BadOrder(e.order);
  if (e.early && !e.pfn.has_value()) {
    return absl::InvalidArgumentError("an early block needs a pfn");
  }
  if (e.reserved && !e.pfn.has_value()) {
    return absl::InvalidArgumentError("a reserved block needs a pfn");
  }
  if (e.reserved && e.early) {
    return absl::InvalidArgumentError("a block cannot be both early and reserved");
  }
  if (e.frames.empty() && !e.early && !e.reserved) {
    return absl::InvalidArgumentError("an allocation needs at least one frame");
  }
  const bool ownerless = e.early || e.reserved;
  const MigrateType mt = GfpMigrateType(ownerless ? 0 : e.gfp_mask);
  Pfn pfn;
  if (e.pfn.has_value()) {
    if (e.pfn->raw() >= total_pages().raw()) return BeyondMemory("pfn", *e.pfn, total_pages());
    if (e.trusted) {
      // T2: the Machine's picture of the range gives way; the event's own errors first.
      if (absl::Status s = CheckTrustedRange(*e.pfn, e.order); !s.ok()) return s;
      if (e.reserved && RangeAllReserved(*e.pfn, e.order)) {  // said again: nothing to do
        return EventResult{absl::OkStatus(), *e.pfn, StackHandle()};
      }
      if (RangeHasAllocated(*e.pfn, e.order)) {
        std::optional<uint32_t> fctx;
        if (tracking_) fctx = free_contexts_.Intern(FreeContext{0, 0, 0});
        const RangeFreed f = FreeRange(*e.pfn, e.order, fctx, e.ts_ns);
        ++counters_.repaired_allocs;
        counters_.implied_frees += f.blocks;
        counters_.implied_freed_pages += f.pages;
        counters_.split_blocks += f.splits;
      }
    }
    absl::Status s = buddy_.AllocateAt(*e.pfn, e.order, mt);
    if (!s.ok()) {
      if (s.code() == absl::StatusCode::kAlreadyExists &&
          (records_[e.pfn->raw()].actx & kReservedBit)) {
        return absl::AlreadyExistsError(absl::StrCat(
            "pfn ", e.pfn->raw(), " (0x", absl::Hex(e.pfn->raw()), ") is reserved (not RAM)"));
      }
      return s;
    }
    pfn = *e.pfn;
    if (e.reserved) {
      const uint64_t n = e.order.pages().raw();
      for (uint64_t i = 0; i < n; ++i) records_[pfn.raw() + i].actx |= kReservedBit;
      reserved_pages_ += n;
      return EventResult{absl::OkStatus(), pfn, StackHandle()};
    }
  } else {
    absl::StatusOr<Pfn> p = buddy_.Allocate(e.order, mt);
    if (!p.ok()) return p.status();
    pfn = *p;
  }
  ++counters_.allocs;
  if (!tracking_) return EventResult{absl::OkStatus(), pfn, StackHandle()};
  if (e.early) {
    SetEarlyOwners(pfn, e.order, e.ts_ns);
    return EventResult{absl::OkStatus(), pfn, early_handle_};
  }
  const SaveContext ctx{e.frames, e.gfp_mask, e.pid, e.tgid, e.comm, e.ts_ns, e.stack_hint};
  const StackHandle h = SaveStack(ctx);
  SetOwner(pfn, e.order, h,
           InternAlloc(e.pid, e.tgid, e.comm, e.gfp_mask, e.order, MigrateReason::kNone), e.ts_ns);
  return EventResult{absl::OkStatus(), pfn, h};
}

absl::StatusOr<EventResult> Machine::Free(const FreeEvent& e) {
  if (!e.order.valid()) return BadOrder(e.order);
  if (e.pfn.raw() >= total_pages().raw()) return BeyondMemory("pfn", e.pfn, total_pages());
  if (e.trusted) {
    if (absl::Status s = CheckTrustedRange(e.pfn, e.order); !s.ok()) return s;
    const std::optional<AllocatedBlock> b = buddy_.BlockContaining(e.pfn);
    if (!b.has_value() || b->head != e.pfn || b->order != e.order ||
        (records_[e.pfn.raw()].actx & kReservedBit)) {
      if (!RangeHasAllocated(e.pfn, e.order)) {  // T4
        ++counters_.ignored_frees;
        return EventResult{absl::OkStatus(), e.pfn, StackHandle()};
      }
      // T5: this event frees every allocated page of its range.
      ++counters_.frees;
      ++counters_.repaired_frees;
      const auto [free_handle, fctx] = SaveFree(e.frames, e.pid, e.tgid, e.ts_ns, e.stack_hint);
      counters_.split_blocks += FreeRange(e.pfn, e.order, fctx, e.ts_ns).splits;
      return EventResult{absl::OkStatus(), e.pfn, free_handle};
    }
  }
  if (records_[e.pfn.raw()].actx & kReservedBit) {
    return absl::FailedPreconditionError(absl::StrCat("cannot free pfn ", e.pfn.raw(), " (0x",
                                                      absl::Hex(e.pfn.raw()),
                                                      "): it is reserved (not RAM)"));
  }
  // The allocator checks the block (double free, tail page, wrong order) and changes nothing
  // when it is wrong; the free stack is saved after, so a depot pool taken for it may reuse
  // the block just freed (the kernel saves it just before).
  absl::Status s = buddy_.Free(e.pfn, e.order);
  if (!s.ok()) return s;
  ++counters_.frees;
  const auto [free_handle, fctx] = SaveFree(e.frames, e.pid, e.tgid, e.ts_ns, e.stack_hint);
  ResetOwner(e.pfn, e.order, fctx, e.ts_ns);
  return EventResult{absl::OkStatus(), e.pfn, free_handle};
}

absl::StatusOr<EventResult> Machine::Migrate(const MigrateEvent& e) {
  const int reason = static_cast<int>(e.reason);
  if (e.reason == MigrateReason::kNone) {
    return absl::InvalidArgumentError("a migration needs a reason (it is none)");
  }
  if (reason < 0 || reason >= kNumMigrateReasons) {
    return absl::InvalidArgumentError(absl::StrCat("migrate reason ", reason, " is unknown"));
  }
  if (e.pfn.raw() >= total_pages().raw()) return BeyondMemory("pfn", e.pfn, total_pages());
  if (e.target.has_value() && e.target->raw() >= total_pages().raw()) {
    return BeyondMemory("target pfn", *e.target, total_pages());
  }
  const std::optional<AllocatedBlock> block = buddy_.BlockContaining(e.pfn);
  if (!block.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot migrate pfn ", e.pfn.raw(), ": the page is free"));
  }
  if (records_[e.pfn.raw()].actx & kReservedBit) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot migrate pfn ", e.pfn.raw(), ": it is reserved (not RAM)"));
  }
  if (block->head != e.pfn) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot migrate pfn ", e.pfn.raw(), ": not the head of its block (head ",
                     block->head.raw(), ", order ", block->order.raw(), ")"));
  }
  const Record& src_head = records_[e.pfn.raw()];
  const MigrateType mt =
      (src_head.actx & kOwnerBit)
          ? GfpMigrateType(alloc_contexts_.Get(src_head.actx & kCtxMask).gfp_mask)
          : buddy_.PageblockMigrateType(e.pfn.pageblock());
  Pfn target;
  if (e.target.has_value()) {
    absl::Status s = buddy_.AllocateAt(*e.target, block->order, mt);
    if (!s.ok()) return s;
    target = *e.target;
  } else {
    absl::StatusOr<Pfn> p = buddy_.Allocate(block->order, mt);
    if (!p.ok()) return p.status();
    target = *p;
  }
  ++counters_.migrates;
  // __folio_copy_owner: the target takes the source's owner (handle, order, mask, task, ts) and
  // its free pid/tgid/ts with no free handle; the reason is recorded on the target. The pages
  // move from source to target under the same handle, so no stack's count changes.
  const uint64_t n = block->order.pages().raw();
  Record* src = &records_[e.pfn.raw()];
  Record* dst = &records_[target.raw()];
  for (uint64_t i = 0; i < n; ++i) {
    dst[i] = src[i];
    if ((src[i].actx & kOwnerBit) == 0) continue;
    const AllocContext& a = alloc_contexts_.Get(src[i].actx & kCtxMask);
    const uint32_t actx =
        InternAlloc(a.pid, a.tgid, a.comm.data(), a.gfp_mask, Order(a.order), e.reason);
    dst[i].actx = (src[i].actx & ~kCtxMask) | actx;
    const FreeContext& f = free_contexts_.Get(src[i].fctx);
    dst[i].fctx = free_contexts_.Intern(FreeContext{0, f.free_pid, f.free_tgid});
  }
  // The source is freed by the migrating task; its pages leave the stacks they held and the
  // target's pages join them, which leaves every stack's count as it was.
  const auto [free_handle, fctx] = SaveFree(e.frames, e.pid, e.tgid, e.ts_ns, e.stack_hint);
  for (uint64_t i = 0; i < n; ++i) {
    if (dst[i].actx & kAllocatedBit) {
      depot_.AddPages(StackHandle(dst[i].handle), 1);
      ++tracked_pages_;
    }
  }
  if (auto it = extras_by_head_.find(e.pfn.raw()); it != extras_by_head_.end()) {
    extras_by_head_[target.raw()] = it->second;
  }
  ResetOwner(e.pfn, block->order, fctx, e.ts_ns);
  absl::Status freed = buddy_.Free(e.pfn, block->order);
  assert(freed.ok());
  (void)freed;
  return EventResult{absl::OkStatus(), target, StackHandle(dst[0].handle)};
}

absl::StatusOr<EventResult> Machine::Import(const ImportEvent& e) {
  if (!e.order.valid()) return BadOrder(e.order);
  if (e.frames.empty()) return absl::InvalidArgumentError("an imported block needs a frame");
  if (e.pfn.raw() >= total_pages().raw()) return BeyondMemory("pfn", e.pfn, total_pages());
  if (e.pageblock_migratetype.has_value() &&
      static_cast<int>(*e.pageblock_migratetype) >= kNumFreeListTypes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pageblock type ", MigrateTypeName(*e.pageblock_migratetype).data(), " is not simulated"));
  }
  const int reason = static_cast<int>(e.last_migrate_reason);
  if (reason < -1 || reason >= kNumMigrateReasons) {
    return absl::InvalidArgumentError(absl::StrCat("migrate reason ", reason, " is unknown"));
  }
  absl::Status s = buddy_.AllocateAt(e.pfn, e.order, GfpMigrateType(e.gfp_mask));
  if (!s.ok()) return s;
  if (e.pageblock_migratetype.has_value()) {
    absl::Status set = buddy_.SetPageblockMigrateType(e.pfn.pageblock(), *e.pageblock_migratetype);
    assert(set.ok());
    (void)set;
  }
  ++counters_.allocs;
  const SaveContext ctx{e.frames, e.gfp_mask, e.pid, e.tgid, e.comm, e.ts_ns, e.stack_hint};
  importing_ = true;
  const StackHandle h = SaveStack(ctx);
  importing_ = false;
  SetOwner(e.pfn, e.order, h,
           InternAlloc(e.pid, e.tgid, e.comm, e.gfp_mask, e.order, e.last_migrate_reason), e.ts_ns);
  if (e.free_ts_ns != 0) {
    for (uint64_t i = 0; i < e.order.pages().raw(); ++i)
      records_[e.pfn.raw() + i].free_ts_ns = e.free_ts_ns;
  }
  if (e.extras != nullptr) extras_by_head_[e.pfn.raw()] = extras_.Intern(*e.extras);
  return EventResult{absl::OkStatus(), e.pfn, h};
}

void Machine::Prefetch(const Event& e) const {
  const std::optional<Pfn> pfn =
      std::visit([](const auto& ev) -> std::optional<Pfn> { return ev.pfn; }, e);
  if (pfn.has_value() && pfn->raw() < total_pages().raw()) {
    __builtin_prefetch(&records_[pfn->raw()], 1);
  }
}

EventResult Machine::Apply(const Event& e) {
  absl::StatusOr<EventResult> r = std::visit(
      [this](const auto& ev) -> absl::StatusOr<EventResult> {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, AllocEvent>) {
          return Alloc(ev);
        } else if constexpr (std::is_same_v<T, FreeEvent>) {
          return Free(ev);
        } else if constexpr (std::is_same_v<T, ImportEvent>) {
          return Import(ev);
        } else {
          return Migrate(ev);
        }
      },
      e);
  if (!r.ok()) {
    ++counters_.rejected;
    return EventResult{r.status(), Pfn(), StackHandle()};
  }
  return *std::move(r);
}

void Machine::SetTracking(bool on, uint64_t ts_ns) {
  if (on == tracking_) return;
  tracking_ = on;
  if (on) InitEarlyAllocatedPages(ts_ns);
}

void Machine::InitEarlyAllocatedPages(uint64_t ts_ns) {
  // init_pages_in_zone: every allocated page without an owner gets the early handle, one order-0
  // record a page, mask 0, from the task that turned page_owner on (the idle task at boot). The
  // kernel does it once, at boot, when no page has a record yet; here tracking can go off and on,
  // and a page freed while tracked and allocated again while not keeps a stale freed record.
  // That page has no owner now either, so it is every allocated page whose record is not
  // allocated that gets the early handle (invariant 2: while tracking is on, every allocated
  // page is tracked).
  const uint32_t actx = InternAlloc(0, 0, "swapper", 0, Order(0), MigrateReason::kNone);
  // SetOwner keeps the early stack off the owner list (invariant 5).
  buddy_.ForEachAllocatedBlock(Pfn(0), [&](AllocatedBlock b) {
    const uint64_t n = b.order.pages().raw();
    for (uint64_t i = 0; i < n; ++i) {
      const Pfn pfn(b.head.raw() + i);
      if (records_[pfn.raw()].actx & (kAllocatedBit | kReservedBit)) continue;
      SetOwner(pfn, Order(0), early_handle_, actx, ts_ns);
      ++counters_.early_handle_pages;
    }
    return true;
  });
}

PageOwner Machine::Expand(Pfn pfn, const Record& r) const {
  PageOwner p;
  p.pfn = pfn;
  p.owner = (r.actx & kOwnerBit) != 0;
  p.allocated = (r.actx & kAllocatedBit) != 0;
  p.reserved = (r.actx & kReservedBit) != 0;
  p.pageblock_migratetype = buddy_.PageblockMigrateType(pfn.pageblock());
  if (p.owner) {
    const AllocContext& a = alloc_contexts_.Get(r.actx & kCtxMask);
    p.order = Order(a.order);
    p.gfp_mask = a.gfp_mask;
    p.last_migrate_reason = static_cast<MigrateReason>(a.reason);
    p.pid = a.pid;
    p.tgid = a.tgid;
    p.comm = a.comm.data();
    p.handle = StackHandle(r.handle);
    p.ts_ns = r.ts_ns;
  }
  const FreeContext& f = free_contexts_.Get(r.fctx);
  p.free_handle = StackHandle(f.free_handle);
  p.free_pid = f.free_pid;
  p.free_tgid = f.free_tgid;
  p.free_ts_ns = r.free_ts_ns;
  p.page_flags = SimulatedPageFlags(pfn, p.order, p.gfp_mask);
  if (!extras_by_head_.empty()) {
    if (auto it = extras_by_head_.find(pfn.raw()); it != extras_by_head_.end()) {
      p.extras = &extras_.Get(it->second);
      p.page_flags = p.extras->page_flags;
    }
  }
  return p;
}

absl::StatusOr<PageOwner> Machine::PageRecord(Pfn pfn) const {
  if (pfn.raw() >= total_pages().raw()) return BeyondMemory("pfn", pfn, total_pages());
  return Expand(pfn, records_[pfn.raw()]);
}

absl::StatusOr<PageOwner> Machine::BlockOwner(Pfn pfn) const {
  if (pfn.raw() >= total_pages().raw()) return BeyondMemory("pfn", pfn, total_pages());
  const std::optional<AllocatedBlock> b = buddy_.BlockContaining(pfn);
  if (!b.has_value()) return Expand(pfn, records_[pfn.raw()]);
  // Early blocks keep one order-0 record a page: the page's own record is the owner then.
  const Record& head = records_[b->head.raw()];
  const Record& own = records_[pfn.raw()];
  const bool per_page = (own.actx & kOwnerBit) && own.handle == early_handle_.raw() &&
                        (head.actx & kOwnerBit) &&
                        alloc_contexts_.Get(head.actx & kCtxMask).order != b->order.raw();
  return per_page ? Expand(pfn, own) : Expand(b->head, head);
}

void Machine::ForEachOwnedBlock(Pfn start, absl::FunctionRef<bool(const PageOwner&)> visit) const {
  // Blocks that start before `start` but reach past it still print their pages from start on.
  const Pfn from(start.raw() & ~((uint64_t{1} << kMaxOrder) - 1));
  bool go = true;
  buddy_.ForEachAllocatedBlock(from, [&](AllocatedBlock b) {
    const uint64_t n = b.order.pages().raw();
    for (uint64_t i = 0; i < n && go; ++i) {
      const uint64_t pfn = b.head.raw() + i;
      if (pfn < start.raw()) continue;
      const Record& r = records_[pfn];
      if ((r.actx & (kOwnerBit | kAllocatedBit)) != (kOwnerBit | kAllocatedBit)) continue;
      if (r.handle == 0) continue;
      const unsigned rec_order = alloc_contexts_.Get(r.actx & kCtxMask).order;
      if ((pfn & ((uint64_t{1} << rec_order) - 1)) != 0) continue;
      go = visit(Expand(Pfn(pfn), r));
    }
    return go;
  });
}

std::vector<std::string> Machine::FormatStack(StackHandle handle) const {
  std::vector<std::string> out;
  for (uint64_t ip : depot_.Fetch(handle)) out.push_back(symbols_.FormatFrame(ip));
  return out;
}

std::vector<ZoneMixedBlocks> Machine::MixedBlocks() const {
  // pagetypeinfo_showmixedcount_print: in each pageblock, skip free blocks and pages page_owner
  // does not hold as allocated; the first allocated page whose mask's migratetype differs from
  // the pageblock's counts the block once (CMA counts as Movable).
  struct Zone {
    std::string_view name;
    uint64_t start, end;
  };
  const uint64_t pages = total_pages().raw();
  const Zone zones[] = {
      {"DMA", 0, std::min<uint64_t>(pages, kZoneDma32StartPfn)},
      {"DMA32", kZoneDma32StartPfn, std::min<uint64_t>(pages, kZoneNormalStartPfn)},
      {"Normal", kZoneNormalStartPfn, pages}};
  std::vector<ZoneMixedBlocks> out;
  const uint64_t block_pages = uint64_t{1} << kPageblockOrder;
  for (const Zone& z : zones) {
    if (z.start >= z.end) continue;
    ZoneMixedBlocks zm{.zone = z.name};
    for (uint64_t pfn = z.start; pfn < z.end;) {
      const uint64_t block_end = std::min((pfn / block_pages + 1) * block_pages, z.end);
      const MigrateType block_mt = buddy_.PageblockMigrateType(pfn >> kPageblockOrder);
      while (pfn < block_end) {
        const std::optional<AllocatedBlock> b = buddy_.BlockContaining(Pfn(pfn));
        if (!b.has_value()) {
          ++pfn;  // free: step a page (free blocks are skipped page by page for simplicity)
          continue;
        }
        const Record& r = records_[pfn];
        if ((r.actx & kAllocatedBit) == 0) {
          ++pfn;
          continue;
        }
        const AllocContext& a = alloc_contexts_.Get(r.actx & kCtxMask);
        if (GfpMigrateType(a.gfp_mask) != block_mt) {
          const MigrateType counted =
              block_mt == MigrateType::kCma ? MigrateType::kMovable : block_mt;
          ++zm.count[static_cast<int>(counted)];
          pfn = block_end;
          break;
        }
        pfn += uint64_t{1} << a.order;
      }
      pfn = block_end;
    }
    out.push_back(zm);
  }
  return out;
}

MachineMemory Machine::MemoryUsage() const {
  MachineMemory m;
  m.records = total_pages().raw() * sizeof(Record);
  m.allocator = buddy_.MemoryBytes();
  m.depot = depot_.MemoryBytes();
  m.contexts = alloc_contexts_.MemoryBytes() + free_contexts_.MemoryBytes() +
               extras_.MemoryBytes() + extras_by_head_.capacity() * (sizeof(uint64_t) * 2 + 1);
  m.symbols = symbols_.MemoryBytes();
  return m;
}

namespace {

// MachineCounters as written: every field, in declaration order.
constexpr int kCounterFields = 13;
static_assert(sizeof(MachineCounters) == kCounterFields * sizeof(uint64_t),
              "a new MachineCounters field must be added to the snapshot (and the format "
              "version raised)");

}  // namespace

void Machine::SaveState(SnapshotWriter& w) const {
  const uint64_t pages = total_pages().raw();
  w.Tag(SnapshotTag("MACH"));
  w.U64(pages);
  w.U32(static_cast<uint32_t>(depot_.max_depth()));
  w.U32(depot_.max_pools());
  buddy_.SaveState(w);
  symbols_.SaveState(w);
  depot_.SaveState(w);

  w.Tag(SnapshotTag("ACTX"));
  w.U64(alloc_contexts_.size() - 1);
  for (uint32_t id = 1; id < alloc_contexts_.size(); ++id) {
    const AllocContext& c = alloc_contexts_.Get(id);
    w.Pod(c.pid);
    w.Pod(c.tgid);
    w.U32(c.gfp_mask);
    w.U8(c.order);
    w.Pod(c.reason);
    w.Bytes(c.comm.data(), c.comm.size());
  }
  w.Tag(SnapshotTag("FCTX"));
  w.U64(free_contexts_.size() - 1);
  for (uint32_t id = 1; id < free_contexts_.size(); ++id) {
    const FreeContext& c = free_contexts_.Get(id);
    w.U32(c.free_handle);
    w.Pod(c.free_pid);
    w.Pod(c.free_tgid);
  }
  w.Tag(SnapshotTag("EXTR"));
  w.U64(extras_.size() - 1);
  for (uint32_t id = 1; id < extras_.size(); ++id) {
    const PrintedExtras& e = extras_.Get(id);
    w.U64(e.page_flags);
    w.String(e.flags_text);
    w.String(e.gfp_names);
    w.U8(e.slab_cache ? 1 : 0);
    w.String(e.memcg);
  }
  std::vector<std::pair<uint64_t, uint32_t>> by_head(extras_by_head_.begin(),
                                                     extras_by_head_.end());
  std::sort(by_head.begin(), by_head.end());
  w.U64(extras_by_head_.capacity());
  w.U64(by_head.size());
  for (const auto& [head, id] : by_head) {
    w.U64(head);
    w.U32(id);
  }

  w.Tag(SnapshotTag("RECS"));
  static_assert(sizeof(Record) == 28);
  w.SparseBytes(records_.get(), pages * sizeof(Record));

  w.Tag(SnapshotTag("MISC"));
  w.U64(set_page_owner_ret_ip_);
  w.U64(pool_frames_.size());
  for (uint64_t ip : pool_frames_) w.U64(ip);
  w.U64(depot_pools_.size());
  for (Pfn p : depot_pools_) w.U64(p.raw());
  w.U32(dummy_handle_.raw());
  w.U32(failure_handle_.raw());
  w.U32(early_handle_.raw());
  w.U8(tracking_ ? 1 : 0);
  w.U64(tracked_pages_);
  const MachineCounters& c = counters_;
  for (uint64_t v :
       {c.allocs, c.frees, c.migrates, c.rejected, c.dummy_handle_uses, c.failure_handle_uses,
        c.early_handle_pages, c.repaired_allocs, c.repaired_frees, c.ignored_frees, c.implied_frees,
        c.implied_freed_pages, c.split_blocks}) {
    w.U64(v);
  }
  w.Tag(SnapshotTag("END."));
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::LoadState(const MachineOptions& options,
                                                            SnapshotReader& r) {
  PO_RETURN_IF_ERROR(ValidateOptions(options));
  r.ExpectTag(SnapshotTag("MACH"), "machine");
  const uint64_t pages = r.U64();
  const uint32_t depth = r.U32();
  const uint32_t pools = r.U32();
  if (!r.ok()) return r.status();
  if (pages != options.pages.raw() || depth != static_cast<uint32_t>(options.stack_depth) ||
      pools != options.depot_max_pools) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the snapshot is of a machine of ", pages, " pages, stack depth ", depth, ", ", pools,
        " depot pools; this one has ", options.pages.raw(), " pages, stack depth ",
        options.stack_depth, ", ", options.depot_max_pools, " depot pools"));
  }
  std::unique_ptr<Machine> m(new Machine(options, EmptyTag{}));
  PO_RETURN_IF_ERROR(m->buddy_.LoadState(r));
  PO_RETURN_IF_ERROR(m->symbols_.LoadState(r));
  PO_RETURN_IF_ERROR(m->depot_.LoadState(r));

  const auto bad = [&](auto&&... parts) {
    r.Fail(absl::StrCat(parts...));
    return r.status();
  };
  r.ExpectTag(SnapshotTag("ACTX"), "allocation contexts");
  const uint64_t actx = r.Count(kCtxMask - 1, "allocation contexts");
  for (uint64_t i = 0; i < actx && r.ok(); ++i) {
    AllocContext c;
    c.pid = r.Pod<int32_t>();
    c.tgid = r.Pod<int32_t>();
    c.gfp_mask = r.U32();
    c.order = r.U8();
    c.reason = r.Pod<int8_t>();
    r.Bytes(c.comm.data(), c.comm.size());
    if (!r.ok()) break;
    if (c.order > kMaxOrder || c.comm.back() != '\0' ||
        m->alloc_contexts_.Intern(c) != static_cast<uint32_t>(i + 1)) {
      return bad("allocation context ", i + 1, " is out of range or a repeat");
    }
  }
  r.ExpectTag(SnapshotTag("FCTX"), "free contexts");
  const uint64_t fctx = r.Count(kCtxMask - 1, "free contexts");
  for (uint64_t i = 0; i < fctx && r.ok(); ++i) {
    FreeContext c;
    c.free_handle = r.U32();
    c.free_pid = r.Pod<int32_t>();
    c.free_tgid = r.Pod<int32_t>();
    if (!r.ok()) break;
    if ((c.free_handle != 0 && !m->depot_.Contains(StackHandle(c.free_handle))) ||
        m->free_contexts_.Intern(c) != static_cast<uint32_t>(i + 1)) {
      return bad("free context ", i + 1, " names no stack or is a repeat");
    }
  }
  r.ExpectTag(SnapshotTag("EXTR"), "printed extras");
  const uint64_t extras = r.Count(kCtxMask - 1, "printed extras");
  for (uint64_t i = 0; i < extras && r.ok(); ++i) {
    PrintedExtras e;
    e.page_flags = r.U64();
    e.flags_text = r.String(1 << 16);
    e.gfp_names = r.String(1 << 16);
    const uint8_t slab = r.U8();
    e.memcg = r.String(1 << 16);
    e.slab_cache = slab == 1;
    if (!r.ok()) break;
    if (slab > 1 || m->extras_.Intern(e) != static_cast<uint32_t>(i + 1)) {
      return bad("printed extras ", i + 1, " are malformed or a repeat");
    }
  }
  const uint64_t capacity = r.Count(uint64_t{1} << 40, "extras map capacity");
  const uint64_t heads = r.Count(pages, "imported block heads");
  if (capacity > 0 && r.ok()) m->extras_by_head_.reserve(capacity - capacity / 8);
  for (uint64_t i = 0; i < heads && r.ok(); ++i) {
    const uint64_t head = r.U64();
    const uint32_t id = r.U32();
    if (!r.ok()) break;
    if (head >= pages || id == 0 || id >= m->extras_.size() ||
        !m->extras_by_head_.emplace(head, id).second) {
      return bad("imported block ", i, " at pfn ", head, " is out of range or a repeat");
    }
  }

  r.ExpectTag(SnapshotTag("RECS"), "page records");
  r.SparseBytes(m->records_.get(), pages * sizeof(Record));
  if (!r.ok()) return r.status();
  uint64_t allocated = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const Record& rec = m->records_[p];
    if ((rec.actx & kCtxMask) >= m->alloc_contexts_.size() ||
        rec.fctx >= m->free_contexts_.size() ||
        (rec.handle != 0 && !m->depot_.Contains(StackHandle(rec.handle)))) {
      return bad("the record of pfn ", p, " names no context or stack");
    }
    if (rec.actx & kAllocatedBit) ++allocated;
    if (rec.actx & kReservedBit) {
      if ((rec.actx & kAllocatedBit) || !m->buddy_.BlockContaining(Pfn(p)).has_value()) {
        return bad("pfn ", p, " is reserved but tracked or free in the allocator");
      }
      ++m->reserved_pages_;
    }
  }

  r.ExpectTag(SnapshotTag("MISC"), "machine counters");
  m->set_page_owner_ret_ip_ = r.U64();
  const uint64_t frames = r.Count(StackDepot::kMaxStackDepth, "pool frames");
  for (uint64_t i = 0; i < frames && r.ok(); ++i) m->pool_frames_.push_back(r.U64());
  const uint64_t depot_pools = r.Count(pools + uint64_t{1}, "depot pools");
  for (uint64_t i = 0; i < depot_pools && r.ok(); ++i) {
    const Pfn p(r.U64());
    if (r.ok() && (p.raw() >= pages || !m->buddy_.IsAllocated(p))) {
      return bad("depot pool ", i, " at pfn ", p.raw(), " is not an allocated block");
    }
    m->depot_pools_.push_back(p);
  }
  m->dummy_handle_ = StackHandle(r.U32());
  m->failure_handle_ = StackHandle(r.U32());
  m->early_handle_ = StackHandle(r.U32());
  const uint8_t tracking = r.U8();
  m->tracked_pages_ = r.U64();
  uint64_t counters[kCounterFields];
  for (uint64_t& v : counters) v = r.U64();
  r.ExpectTag(SnapshotTag("END."), "end of machine");
  if (!r.ok()) return r.status();
  for (StackHandle h : {m->dummy_handle_, m->failure_handle_, m->early_handle_}) {
    if (!m->depot_.Contains(h)) return bad("special stack handle ", h.raw(), " names no stack");
  }
  if (tracking > 1) return bad("tracking flag ", int{tracking});
  if (allocated != m->tracked_pages_) {
    return bad("tracked pages ", m->tracked_pages_, " but ", allocated, " records are allocated");
  }
  m->tracking_ = tracking == 1;
  MachineCounters& c = m->counters_;
  uint64_t* fields[] = {&c.allocs,
                        &c.frees,
                        &c.migrates,
                        &c.rejected,
                        &c.dummy_handle_uses,
                        &c.failure_handle_uses,
                        &c.early_handle_pages,
                        &c.repaired_allocs,
                        &c.repaired_frees,
                        &c.ignored_frees,
                        &c.implied_frees,
                        &c.implied_freed_pages,
                        &c.split_blocks};
  static_assert(std::size(fields) == kCounterFields);
  for (size_t i = 0; i < std::size(fields); ++i) *fields[i] = counters[i];
  return m;
}

void Machine::WithSnapshotLocks(absl::FunctionRef<void()> fn) const {
  symbols_.WithLockHeld([&] { depot_.WithLocksHeld(fn); });
}

}  // namespace pageowner
