#include "core/buddy_allocator.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/huge_pages.h"

namespace pageowner {
namespace {

// A page's state byte: bits 0-3 the block order (heads only), bits 4-5 the kind, bits 6-7 the
// migratetype an allocated block was requested for. A page inside a block reads 0.
constexpr uint8_t kOrderMask = 0x0f;
constexpr uint8_t kKindMask = 0x30;
constexpr uint8_t kKindInside = 0x00;
constexpr uint8_t kKindFree = 0x10;
constexpr uint8_t kKindAllocated = 0x20;
constexpr int kMtShift = 6;

constexpr uint8_t FreeByte(unsigned order) { return static_cast<uint8_t>(kKindFree | order); }
constexpr uint8_t AllocatedByte(unsigned order, int mt) {
  return static_cast<uint8_t>(kKindAllocated | order | (mt << kMtShift));
}
constexpr uint8_t Kind(uint8_t s) { return s & kKindMask; }
constexpr unsigned OrderOf(uint8_t s) { return s & kOrderMask; }
constexpr int MtOf(uint8_t s) { return s >> kMtShift; }

constexpr uint64_t Bit(uint64_t i) { return uint64_t{1} << (i & 63); }
constexpr uint64_t Pages(unsigned order) { return uint64_t{1} << order; }
constexpr uint64_t kPageblockPages = uint64_t{1} << kPageblockOrder;

constexpr int kUnmovable = static_cast<int>(MigrateType::kUnmovable);
constexpr int kMovable = static_cast<int>(MigrateType::kMovable);
constexpr int kReclaimable = static_cast<int>(MigrateType::kReclaimable);

// The kernel's fallbacks[] for the three free-list types.
constexpr std::array<std::array<int, 2>, kNumFreeListTypes> kFallbacks = {{
    {kReclaimable, kMovable},    // Unmovable
    {kReclaimable, kUnmovable},  // Movable
    {kUnmovable, kMovable},      // Reclaimable
}};

// Debian's Abseil has its own string_view, which StrCat takes and std::string_view is not.
absl::string_view TypeName(MigrateType mt) {
  const std::string_view name = MigrateTypeName(mt);
  return absl::string_view(name.data(), name.size());
}

// The free-list index of mt, or -1 when mt has no free lists here.
int ListIndex(MigrateType mt) {
  const int i = static_cast<int>(mt);
  return i < kNumFreeListTypes ? i : -1;
}

// can_steal_fallback: whether a requester of type mt may claim a pageblock when the fallback
// block found has order `order`.
bool MayClaim(unsigned order, int mt) {
  return order >= kPageblockOrder / 2 || mt == kUnmovable || mt == kReclaimable;
}

// A block order's words of the bitmap lie within one pageblock when 64 blocks fit in it.
constexpr bool WordWithinPageblock(unsigned order) { return order + 6 <= kPageblockOrder; }

// Number of set bits of `bits` at positions [lo, hi).
uint64_t CountBits(const uint64_t* bits, uint64_t lo, uint64_t hi) {
  uint64_t n = 0;
  while (lo < hi) {
    const uint64_t end = std::min(hi, (lo | 63) + 1);
    uint64_t word = bits[lo >> 6] >> (lo & 63);
    if (end - lo < 64) word &= (uint64_t{1} << (end - lo)) - 1;
    n += std::popcount(word);
    lo = end;
  }
  return n;
}

}  // namespace

template <typename T>
BuddyAllocator::ZeroedArray<T>::ZeroedArray(size_t n)
    : data_(static_cast<T*>(std::calloc(n == 0 ? 1 : n, sizeof(T)))), size_(n) {
  if (data_ == nullptr) std::abort();  // out of memory, as operator new would end
  AdviseHugePages(data_.get(), n * sizeof(T));
}

// Stored state bytes are XORed with the boot layout's byte at max-order-aligned pfns, which
// always head a block (no block is larger): zeroed memory then reads as "a free max-order block
// at every 1024th pfn and inside pages between", so boot writes none of the per-page bytes.
uint8_t BuddyAllocator::State(uint64_t pfn) const {
  return state_[pfn] ^ ((pfn & (Pages(kMaxOrder) - 1)) == 0 ? FreeByte(kMaxOrder) : 0);
}

void BuddyAllocator::SetState(uint64_t pfn, uint8_t s) {
  state_[pfn] = s ^ ((pfn & (Pages(kMaxOrder) - 1)) == 0 ? FreeByte(kMaxOrder) : 0);
}

BuddyAllocator::BuddyAllocator(PageCount pages)
    : pages_(pages.raw()),
      state_(pages.raw()),
      pageblock_mt_((pages_ + kPageblockPages - 1) >> kPageblockOrder,
                    static_cast<uint8_t>(kMovable)) {
  assert(pages_ >= 1);
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    FreeArea& area = areas_[k];
    const uint64_t words = ((pages_ >> k) + 63) / 64;
    area.bits = ZeroedArray<uint64_t>(words);
    for (auto& levels : area.summary) {
      uint64_t n = words;
      do {
        n = std::max<uint64_t>(1, (n + 63) / 64);
        levels.emplace_back(n, 0);
      } while (n > 1);
    }
  }
  // Boot: max-order blocks, whose head bytes already read free (see State), then the tail in
  // descending aligned blocks.
  const uint64_t full_blocks = pages_ >> kMaxOrder;
  FreeArea& top = areas_[kMaxOrder];
  for (uint64_t w = 0; w * 64 < full_blocks; ++w) {
    const uint64_t n = std::min<uint64_t>(64, full_blocks - w * 64);
    top.bits[w] = n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
    SummarySet(top, kMovable, w);
  }
  free_count_[kMovable][kMaxOrder] = full_blocks;
  uint64_t head = full_blocks << kMaxOrder;
  for (int k = kMaxOrder - 1; k >= 0; --k) {
    if (pages_ & Pages(k)) {
      AddFree(head, k);
      head += Pages(k);
    }
  }
  assert(head == pages_);
  free_pages_ = pages_;
}

BuddyAllocator::Block BuddyAllocator::FindBlock(uint64_t pfn) const {
  assert(pfn < pages_);
  // The block holding pfn starts at pfn aligned down to its order; the first candidate head that
  // really is a head of at least the candidate's order is it (invariants 1 and 2).
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    const uint64_t head = pfn & ~(Pages(k) - 1);
    const uint8_t s = State(head);
    if (Kind(s) != kKindInside && OrderOf(s) >= k) {
      return Block{head, OrderOf(s), Kind(s) == kKindFree};
    }
  }
  assert(false && "page belongs to no block");
  return Block{pfn, 0, true};
}

bool BuddyAllocator::WordHasList(unsigned order, uint64_t word, int mt) const {
  for (uint64_t x = areas_[order].bits[word]; x != 0; x &= x - 1) {
    const uint64_t pos = word * 64 + std::countr_zero(x);
    if (ListOf(pos << order) == mt) return true;
    if (WordWithinPageblock(order)) return false;  // every block of the word has this type
  }
  return false;
}

void BuddyAllocator::SummarySet(FreeArea& area, int mt, uint64_t word) {
  uint64_t i = word;
  for (auto& level : area.summary[mt]) {
    uint64_t& w = level[i >> 6];
    const bool was_empty = w == 0;
    w |= Bit(i);
    if (!was_empty) return;
    i >>= 6;
  }
}

void BuddyAllocator::SummaryClear(FreeArea& area, int mt, uint64_t word) {
  uint64_t i = word;
  for (auto& level : area.summary[mt]) {
    uint64_t& w = level[i >> 6];
    w &= ~Bit(i);
    if (w != 0) return;
    i >>= 6;
  }
}

void BuddyAllocator::RefreshSummary(unsigned order, uint64_t word, int mt) {
  FreeArea& area = areas_[order];
  const bool marked = (area.summary[mt][0][word >> 6] & Bit(word)) != 0;
  const bool has = WordHasList(order, word, mt);
  if (has && !marked) SummarySet(area, mt, word);
  if (!has && marked) SummaryClear(area, mt, word);
}

void BuddyAllocator::AddFree(uint64_t head, unsigned order) {
  assert(head % Pages(order) == 0 && head + Pages(order) <= pages_);
  FreeArea& area = areas_[order];
  const uint64_t pos = head >> order;
  const int mt = ListOf(head);
  SetState(head, FreeByte(order));
  area.bits[pos >> 6] |= Bit(pos);
  ++free_count_[mt][order];
  SummarySet(area, mt, pos >> 6);
}

void BuddyAllocator::RemoveFree(uint64_t head, unsigned order) {
  assert(State(head) == FreeByte(order));
  FreeArea& area = areas_[order];
  const uint64_t pos = head >> order;
  const int mt = ListOf(head);
  area.bits[pos >> 6] &= ~Bit(pos);
  --free_count_[mt][order];
  if (!WordHasList(order, pos >> 6, mt)) SummaryClear(area, mt, pos >> 6);
}

std::optional<uint64_t> BuddyAllocator::FindFirstFree(unsigned order, int mt) const {
  const FreeArea& area = areas_[order];
  const auto& levels = area.summary[mt];
  uint64_t i = 0;
  for (size_t l = levels.size(); l-- > 0;) {
    const uint64_t w = levels[l][i];
    if (w == 0) return std::nullopt;  // only the top level can be empty
    i = i * 64 + std::countr_zero(w);
  }
  for (uint64_t x = area.bits[i]; x != 0; x &= x - 1) {
    const uint64_t head = (i * 64 + std::countr_zero(x)) << order;
    if (ListOf(head) == mt) return head;
  }
  assert(false && "summary bit set for a word without a block of its type");
  return std::nullopt;
}

void BuddyAllocator::SplitAndMark(uint64_t head, unsigned block_order, uint64_t pfn, unsigned order,
                                  int mt) {
  assert(pfn >= head && pfn + Pages(order) <= head + Pages(block_order));
  for (unsigned k = block_order; k > order;) {
    --k;
    // Keep the half holding pfn; the other half goes on its own pageblock's list.
    if (pfn >= head + Pages(k)) {
      AddFree(head, k);
      head += Pages(k);
    } else {
      AddFree(head + Pages(k), k);
    }
  }
  assert(head == pfn);
  SetState(pfn, AllocatedByte(order, mt));
  ++alloc_count_[mt][order];
}

absl::Status BuddyAllocator::SetPageblockMigrateType(uint64_t pageblock, MigrateType mt) {
  if (static_cast<int>(mt) >= kNumFreeListTypes) {
    return absl::InvalidArgumentError(
        "pageblock migratetype must be Unmovable, Movable or Reclaimable");
  }
  if (pageblock >= num_pageblocks()) {
    return absl::OutOfRangeError(absl::StrCat("pageblock ", pageblock, " is beyond memory"));
  }
  SetPageblockType(pageblock, static_cast<int>(mt));
  return absl::OkStatus();
}

void BuddyAllocator::SetPageblockType(uint64_t pageblock, int mt) {
  const int old = pageblock_mt_[pageblock];
  if (old == mt) return;
  pageblock_mt_[pageblock] = static_cast<uint8_t>(mt);
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    // Block positions of order k whose heads lie in this pageblock.
    uint64_t lo, hi;
    if (k <= kPageblockOrder) {
      lo = pageblock << (kPageblockOrder - k);
      hi = (pageblock + 1) << (kPageblockOrder - k);
    } else {
      const unsigned shift = k - kPageblockOrder;
      if (pageblock & ((uint64_t{1} << shift) - 1)) continue;
      lo = pageblock >> shift;
      hi = lo + 1;
    }
    hi = std::min(hi, pages_ >> k);
    if (lo >= hi) continue;
    const uint64_t moved = CountBits(areas_[k].bits.data(), lo, hi);
    if (moved == 0) continue;
    free_count_[old][k] -= moved;
    free_count_[mt][k] += moved;
    for (uint64_t w = lo >> 6; w <= (hi - 1) >> 6; ++w) {
      RefreshSummary(k, w, old);
      RefreshSummary(k, w, mt);
    }
  }
}

std::optional<uint64_t> BuddyAllocator::AllocateSmallest(unsigned order, int mt) {
  for (unsigned k = order; k <= kMaxOrder; ++k) {
    if (free_count_[mt][k] == 0) continue;
    const std::optional<uint64_t> head = FindFirstFree(k, mt);
    assert(head.has_value());
    RemoveFree(*head, k);
    SplitAndMark(*head, k, *head, order, mt);
    return head;
  }
  return std::nullopt;
}

std::optional<uint64_t> BuddyAllocator::AllocateFallback(unsigned order, int mt) {
  const auto first_fallback = [&](unsigned k) {
    for (int fallback : kFallbacks[mt]) {
      if (free_count_[fallback][k] > 0) return fallback;
    }
    return -1;
  };
  for (int k = kMaxOrder; k >= static_cast<int>(order); --k) {
    unsigned found = k;
    int fallback = first_fallback(found);
    if (fallback < 0) continue;
    const bool may_claim = MayClaim(found, mt);
    if (!may_claim && mt == kMovable && found > order) {
      // A Movable request that cannot claim splits the smallest fallback block rather than the
      // largest: its pages can be migrated away later, so it fragments nothing for good.
      found = order;
      while ((fallback = first_fallback(found)) < 0) ++found;
    }
    const std::optional<uint64_t> head = FindFirstFree(found, fallback);
    assert(head.has_value());
    return StealFallbackBlock(*head, found, order, mt, may_claim);
  }
  return std::nullopt;
}

uint64_t BuddyAllocator::StealFallbackBlock(uint64_t head, unsigned block_order, unsigned order,
                                            int mt, bool may_claim) {
  if (block_order >= kPageblockOrder) {
    RemoveFree(head, block_order);
    for (uint64_t pb = head >> kPageblockOrder; pb < (head + Pages(block_order)) >> kPageblockOrder;
         ++pb) {
      SetPageblockType(pb, mt);
    }
    ++steals_;
    SplitAndMark(head, block_order, head, order, mt);
    return head;
  }
  const uint64_t pageblock = head >> kPageblockOrder;
  const uint64_t start = pageblock << kPageblockOrder;
  // A pageblock cut by the end of memory is never claimed (the kernel's zone boundary check).
  if (may_claim && start + kPageblockPages <= pages_) {
    uint64_t free = 0;
    uint64_t movable = 0;
    for (uint64_t p = start; p < start + kPageblockPages;) {
      const uint8_t s = State(p);
      assert(Kind(s) != kKindInside);
      if (Kind(s) == kKindFree) {
        free += Pages(OrderOf(s));
      } else if (MtOf(s) == kMovable) {
        movable += Pages(OrderOf(s));
      }
      p += Pages(OrderOf(s));
    }
    const int block_type = pageblock_mt_[pageblock];
    uint64_t alike = 0;
    if (mt == kMovable) {
      alike = movable;
    } else if (block_type == kMovable) {
      alike = kPageblockPages - free - movable;
    }
    if (free + alike >= kPageblockPages / 2) {
      SetPageblockType(pageblock, mt);
      ++steals_;
      const std::optional<uint64_t> got = AllocateSmallest(order, mt);
      assert(got.has_value());
      return *got;
    }
  }
  // Take the block without touching the pageblock's type: a mixed pageblock.
  RemoveFree(head, block_order);
  SplitAndMark(head, block_order, head, order, mt);
  return head;
}

absl::StatusOr<Pfn> BuddyAllocator::Allocate(Order order, MigrateType mt) {
  if (!order.valid()) {
    return absl::InvalidArgumentError(absl::StrCat("order ", order.raw(), " exceeds ", kMaxOrder));
  }
  const int list = ListIndex(mt);
  if (list < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("migratetype ", TypeName(mt), " has no free lists"));
  }
  std::optional<uint64_t> head = AllocateSmallest(order.raw(), list);
  if (!head) head = AllocateFallback(order.raw(), list);
  if (!head) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free block of order >= ", order.raw(), " (", free_pages_, " pages free)"));
  }
  free_pages_ -= Pages(order.raw());
  return Pfn(*head);
}

absl::Status BuddyAllocator::AllocateAt(Pfn pfn, Order order, MigrateType mt) {
  if (!order.valid()) {
    return absl::InvalidArgumentError(absl::StrCat("order ", order.raw(), " exceeds ", kMaxOrder));
  }
  const int list = ListIndex(mt);
  if (list < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("migratetype ", TypeName(mt), " has no free lists"));
  }
  if (!pfn.aligned_to(order)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pfn ", pfn.raw(), " is not aligned to order ", order.raw()));
  }
  const uint64_t p = pfn.raw();
  const uint64_t n = Pages(order.raw());
  if (p >= pages_ || pages_ - p < n) {
    return absl::OutOfRangeError(
        absl::StrCat("pfns [", p, ", ", p + n, ") pass the end of memory (", pages_, " pages)"));
  }
  const Block block = FindBlock(p);
  if (!block.free) {
    return absl::AlreadyExistsError(absl::StrCat("pfn ", p, " lies in the allocated block at pfn ",
                                                 block.head, " of order ", block.order));
  }
  if (block.order < order.raw()) {
    // By invariant 3 the range holds an allocated block; name the first.
    for (uint64_t q = block.head + Pages(block.order); q < p + n;) {
      const uint8_t s = State(q);
      if (Kind(s) == kKindAllocated) {
        return absl::AlreadyExistsError(absl::StrCat("pfns [", p, ", ", p + n,
                                                     ") overlap the allocated block at pfn ", q,
                                                     " of order ", OrderOf(s)));
      }
      q += Pages(OrderOf(s));
    }
    assert(false && "wholly free aligned range split over several free blocks");
  }
  RemoveFree(block.head, block.order);
  SplitAndMark(block.head, block.order, p, order.raw(), list);
  free_pages_ -= n;
  return absl::OkStatus();
}

absl::Status BuddyAllocator::Free(Pfn pfn, Order order) {
  if (!order.valid()) {
    return absl::InvalidArgumentError(absl::StrCat("order ", order.raw(), " exceeds ", kMaxOrder));
  }
  const uint64_t p = pfn.raw();
  if (p >= pages_) {
    return absl::OutOfRangeError(
        absl::StrCat("pfn ", p, " is beyond the end of memory (", pages_, " pages)"));
  }
  const uint8_t s = State(p);
  if (Kind(s) != kKindAllocated) {
    const Block block = FindBlock(p);
    if (block.free) {
      return absl::FailedPreconditionError(
          absl::StrCat("double free: pfn ", p, " is free (in the free block at pfn ", block.head,
                       " of order ", block.order, ")"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("pfn ", p,
                     " is not the head of an allocated block: it lies inside the block "
                     "at pfn ",
                     block.head, " of order ", block.order));
  }
  if (OrderOf(s) != order.raw()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "order mismatch: the block at pfn ", p, " has order ", OrderOf(s), ", not ", order.raw()));
  }
  free_pages_ += Pages(order.raw());
  --alloc_count_[MtOf(s)][order.raw()];
  uint64_t head = p;
  unsigned k = order.raw();
  for (; k < kMaxOrder; ++k) {
    const uint64_t buddy = head ^ Pages(k);
    if (buddy + Pages(k) > pages_ || State(buddy) != FreeByte(k)) break;
    RemoveFree(buddy, k);
    SetState(std::max(head, buddy), kKindInside);
    head = std::min(head, buddy);
  }
  AddFree(head, k);
  return absl::OkStatus();
}

std::optional<AllocatedBlock> BuddyAllocator::BlockContaining(Pfn pfn) const {
  if (pfn.raw() >= pages_) return std::nullopt;
  const Block block = FindBlock(pfn.raw());
  if (block.free) return std::nullopt;
  return AllocatedBlock{Pfn(block.head), Order(block.order)};
}

std::optional<MigrateType> BuddyAllocator::AllocationMigrateType(Pfn pfn) const {
  if (pfn.raw() >= pages_) return std::nullopt;
  const Block block = FindBlock(pfn.raw());
  if (block.free) return std::nullopt;
  return static_cast<MigrateType>(MtOf(State(block.head)));
}

MigrateType BuddyAllocator::PageblockMigrateType(uint64_t pageblock) const {
  assert(pageblock < pageblock_mt_.size());
  return static_cast<MigrateType>(pageblock_mt_[pageblock]);
}

uint64_t BuddyAllocator::FreeBlockCount(Order order, MigrateType mt) const {
  const int list = ListIndex(mt);
  if (!order.valid() || list < 0) return 0;
  return free_count_[list][order.raw()];
}

uint64_t BuddyAllocator::AllocatedBlockCount(Order order, MigrateType mt) const {
  const int list = ListIndex(mt);
  if (!order.valid() || list < 0) return 0;
  return alloc_count_[list][order.raw()];
}

void BuddyAllocator::ForEachAllocatedBlock(Pfn start,
                                           absl::FunctionRef<bool(AllocatedBlock)> visit) const {
  if (start.raw() >= pages_) return;
  const Block first = FindBlock(start.raw());
  uint64_t p = first.head < start.raw() ? first.head + Pages(first.order) : first.head;
  while (p < pages_) {
    const uint8_t s = State(p);
    assert(Kind(s) != kKindInside);
    if (Kind(s) == kKindAllocated && !visit(AllocatedBlock{Pfn(p), Order(OrderOf(s))})) return;
    p += Pages(OrderOf(s));
  }
}

size_t BuddyAllocator::MemoryBytes() const {
  size_t bytes = state_.size() + pageblock_mt_.capacity();
  for (const FreeArea& area : areas_) {
    bytes += area.bits.size() * sizeof(uint64_t);
    for (const auto& levels : area.summary) {
      bytes += levels.capacity() * sizeof(levels[0]);
      for (const auto& level : levels) bytes += level.capacity() * sizeof(uint64_t);
    }
  }
  return bytes;
}

absl::Status BuddyAllocator::CheckInvariants() const {
  const auto fail = [](auto&&... parts) { return absl::InternalError(absl::StrCat(parts...)); };
  std::array<std::array<uint64_t, kMaxOrder + 1>, kNumFreeListTypes> counts{};
  std::array<std::array<uint64_t, kMaxOrder + 1>, kNumFreeListTypes> allocated{};
  uint64_t free = 0;
  for (uint64_t p = 0; p < pages_;) {
    const uint8_t s = State(p);
    const unsigned k = OrderOf(s);
    if (Kind(s) != kKindFree && Kind(s) != kKindAllocated) {
      return fail("pfn ", p, " should head a block but reads ", int{s});
    }
    if (k > kMaxOrder || p % Pages(k) != 0 || p + Pages(k) > pages_) {
      return fail("block at pfn ", p, " of order ", k, " is misaligned or passes the end");
    }
    for (uint64_t q = p + 1; q < p + Pages(k); ++q) {
      if (State(q) != kKindInside) {
        return fail("pfn ", q, " inside block ", p, " reads ", int{State(q)});
      }
    }
    const bool bit = (areas_[k].bits[(p >> k) >> 6] & Bit(p >> k)) != 0;
    if (Kind(s) == kKindFree) {
      if (MtOf(s) != 0) return fail("free block at pfn ", p, " carries a migratetype");
      if (!bit) return fail("free block at pfn ", p, " of order ", k, " is on no list");
      const uint64_t buddy = p ^ Pages(k);
      if (k < kMaxOrder && buddy + Pages(k) <= pages_ && State(buddy) == FreeByte(k)) {
        return fail("free buddies at pfns ", p, " and ", buddy, " of order ", k);
      }
      ++counts[ListOf(p)][k];
      free += Pages(k);
    } else {
      if (MtOf(s) >= kNumFreeListTypes) return fail("block at pfn ", p, " has a bad migratetype");
      if (bit) return fail("allocated block at pfn ", p, " is on a free list");
      ++allocated[MtOf(s)][k];
    }
    p += Pages(k);
  }
  if (free != free_pages_) return fail("free pages ", free, " but counter says ", free_pages_);
  if (counts != free_count_) return fail("per-list counts disagree with the blocks");
  if (allocated != alloc_count_) return fail("allocated block counts disagree with the blocks");
  for (uint64_t pb = 0; pb < pageblock_mt_.size(); ++pb) {
    if (pageblock_mt_[pb] >= kNumFreeListTypes) return fail("pageblock ", pb, " has a bad type");
  }
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    const FreeArea& area = areas_[k];
    uint64_t set = 0;
    for (uint64_t w = 0; w < area.bits.size(); ++w) {
      for (uint64_t x = area.bits[w]; x != 0; x &= x - 1) {
        const uint64_t head = (w * 64 + std::countr_zero(x)) << k;
        if (head >= pages_ || State(head) != FreeByte(k)) {
          return fail("order ", k, " bit for pfn ", head, " names no free block");
        }
        ++set;
      }
    }
    uint64_t listed = 0;
    for (int mt = 0; mt < kNumFreeListTypes; ++mt) {
      listed += free_count_[mt][k];
      const auto& levels = area.summary[mt];
      for (size_t l = 0; l < levels.size(); ++l) {
        const uint64_t below = l == 0 ? area.bits.size() : levels[l - 1].size();
        for (uint64_t i = 0; i < levels[l].size() * 64; ++i) {
          bool want = false;
          if (i < below) want = l == 0 ? WordHasList(k, i, mt) : levels[l - 1][i] != 0;
          if (((levels[l][i >> 6] & Bit(i)) != 0) != want) {
            return fail("summary of order ", k, " type ", mt, " level ", l, " bit ", i,
                        " is stale");
          }
        }
      }
    }
    if (set != listed) return fail("order ", k, " has ", set, " bits but ", listed, " listed");
  }
  return absl::OkStatus();
}

void BuddyAllocator::SaveState(SnapshotWriter& w) const {
  w.Tag(SnapshotTag("BUDY"));
  w.U64(pages_);
  w.U64(steals_);
  w.U64(pageblock_mt_.size());
  w.Bytes(pageblock_mt_.data(), pageblock_mt_.size());
  // The stored bytes as they are (XORed with the boot layout): an untouched run is zero.
  w.SparseBytes(state_.data(), state_.size());
}

absl::Status BuddyAllocator::LoadState(SnapshotReader& r) {
  r.ExpectTag(SnapshotTag("BUDY"), "allocator");
  const uint64_t pages = r.U64();
  const uint64_t steals = r.U64();
  const uint64_t pageblocks = r.U64();
  if (r.ok() && (pages != pages_ || pageblocks != pageblock_mt_.size())) {
    r.Fail(absl::StrCat("allocator of ", pages, " pages and ", pageblocks,
                        " pageblocks; this one has ", pages_, " and ", pageblock_mt_.size()));
  }
  if (!r.ok()) return r.status();
  std::vector<uint8_t> types(pageblocks);
  r.Bytes(types.data(), types.size());
  for (uint64_t pb = 0; pb < types.size() && r.ok(); ++pb) {
    if (types[pb] >= kNumFreeListTypes)
      r.Fail(absl::StrCat("pageblock ", pb, " has type ", int{types[pb]}));
  }
  // state_ is as calloc left it except for the boot's tail blocks, which the loop below rewrites
  // from the saved bytes; zero it first so that a sparse block reads as the saved zeros.
  for (uint64_t p = (pages_ >> kMaxOrder) << kMaxOrder; p < pages_; ++p) state_[p] = 0;
  r.SparseBytes(&state_[0], state_.size());
  if (!r.ok()) return r.status();
  pageblock_mt_ = std::move(types);
  steals_ = steals;

  // The free lists, from scratch.
  for (FreeArea& area : areas_) {
    for (uint64_t w = 0; w < area.bits.size(); ++w) area.bits[w] = 0;
    for (auto& levels : area.summary) {
      for (auto& level : levels) std::fill(level.begin(), level.end(), 0);
    }
  }
  free_count_ = {};
  alloc_count_ = {};
  free_pages_ = 0;
  const auto bad = [&](auto&&... parts) {
    r.Fail(absl::StrCat("allocator: ", parts...));
    return r.status();
  };
  for (uint64_t p = 0; p < pages_;) {
    const uint8_t s = State(p);
    const unsigned k = OrderOf(s);
    if (Kind(s) != kKindFree && Kind(s) != kKindAllocated) {
      return bad("pfn ", p, " should head a block but reads ", int{s});
    }
    if (k > kMaxOrder || p % Pages(k) != 0 || p + Pages(k) > pages_) {
      return bad("block at pfn ", p, " of order ", k, " is misaligned or passes the end");
    }
    for (uint64_t q = p + 1; q < p + Pages(k); ++q) {
      if (State(q) != kKindInside)
        return bad("pfn ", q, " inside block ", p, " reads ", int{State(q)});
    }
    if (Kind(s) == kKindFree) {
      if (MtOf(s) != 0) return bad("free block at pfn ", p, " carries a migratetype");
      const uint64_t buddy = p ^ Pages(k);
      if (k < kMaxOrder && buddy < p && State(buddy) == FreeByte(k)) {
        return bad("free buddies at pfns ", buddy, " and ", p, " of order ", k);
      }
      const uint64_t pos = p >> k;
      areas_[k].bits[pos >> 6] |= Bit(pos);
      ++free_count_[ListOf(p)][k];
      free_pages_ += Pages(k);
    } else {
      if (MtOf(s) >= kNumFreeListTypes) return bad("block at pfn ", p, " has a bad migratetype");
      ++alloc_count_[MtOf(s)][k];
    }
    p += Pages(k);
  }
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    FreeArea& area = areas_[k];
    for (uint64_t w = 0; w < area.bits.size(); ++w) {
      if (area.bits[w] == 0) continue;
      for (int mt = 0; mt < kNumFreeListTypes; ++mt) {
        if (WordHasList(k, w, mt)) SummarySet(area, mt, w);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace pageowner
