// Small value types for the numbers the core passes around: a page frame number, a block order,
// a page count, a stack handle. Each is its own type so that passing a handle where a pfn belongs
// does not compile. They are trivially copyable and as small as the integer they wrap.
#ifndef PAGEOWNER_CORE_TYPES_H_
#define PAGEOWNER_CORE_TYPES_H_

#include <compare>
#include <cstdint>
#include <string_view>

namespace pageowner {

inline constexpr uint64_t kPageSize = 4096;
// Highest buddy order (MAX_PAGE_ORDER in today's kernel): blocks of 1 to 1024 pages.
inline constexpr int kMaxOrder = 10;
// Pageblock order on x86_64: 2 MiB pageblocks, the unit of migratetype grouping.
inline constexpr int kPageblockOrder = 9;

// A number of 4 KiB base pages.
class PageCount {
 public:
  constexpr PageCount() = default;
  constexpr explicit PageCount(uint64_t n) : n_(n) {}
  constexpr uint64_t raw() const { return n_; }
  constexpr uint64_t in_bytes() const { return n_ * kPageSize; }
  constexpr PageCount& operator+=(PageCount o) {
    n_ += o.n_;
    return *this;
  }
  constexpr PageCount& operator-=(PageCount o) {
    n_ -= o.n_;
    return *this;
  }
  friend constexpr PageCount operator+(PageCount a, PageCount b) { return PageCount(a.n_ + b.n_); }
  friend constexpr PageCount operator-(PageCount a, PageCount b) { return PageCount(a.n_ - b.n_); }
  friend constexpr auto operator<=>(PageCount, PageCount) = default;

 private:
  uint64_t n_ = 0;
};

// A buddy order: a block of order k spans 2^k pages. Valid orders are 0..kMaxOrder; the type
// itself holds any small value so that an out-of-range order can be reported, not truncated.
class Order {
 public:
  constexpr Order() = default;
  constexpr explicit Order(unsigned k) : k_(k) {}
  constexpr unsigned raw() const { return k_; }
  constexpr bool valid() const { return k_ <= kMaxOrder; }
  constexpr PageCount pages() const { return PageCount(uint64_t{1} << k_); }
  friend constexpr auto operator<=>(Order, Order) = default;

 private:
  unsigned k_ = 0;
};

// A page frame number: the index of a 4 KiB page in the simulated machine.
class Pfn {
 public:
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t v) : v_(v) {}
  constexpr uint64_t raw() const { return v_; }
  // The pageblock (2^kPageblockOrder pages) this pfn lies in, as the kernel's `pfn >> 9`.
  constexpr uint64_t pageblock() const { return v_ >> kPageblockOrder; }
  // True when this pfn is the first page of a naturally aligned block of `order`.
  constexpr bool aligned_to(Order order) const {
    return (v_ & ((uint64_t{1} << order.raw()) - 1)) == 0;
  }
  friend constexpr Pfn operator+(Pfn p, PageCount n) { return Pfn(p.v_ + n.raw()); }
  friend constexpr PageCount operator-(Pfn a, Pfn b) { return PageCount(a.v_ - b.v_); }
  friend constexpr auto operator<=>(Pfn, Pfn) = default;

 private:
  uint64_t v_ = 0;
};

// A stack depot handle (depot_stack_handle_t). 0 names no stack.
class StackHandle {
 public:
  constexpr StackHandle() = default;
  constexpr explicit StackHandle(uint32_t v) : v_(v) {}
  constexpr uint32_t raw() const { return v_; }
  constexpr bool valid() const { return v_ != 0; }
  friend constexpr auto operator<=>(StackHandle, StackHandle) = default;

 private:
  uint32_t v_ = 0;
};

// The kernel's migratetypes, in the kernel's enum order (values are the kernel's).
enum class MigrateType : uint8_t {
  kUnmovable = 0,
  kMovable = 1,
  kReclaimable = 2,
  kHighAtomic = 3,
  kCma = 4,
  kIsolate = 5,
};
inline constexpr int kNumMigrateTypes = 6;
// The free-list types the simulated allocator keeps (the kernel's MIGRATE_PCPTYPES).
inline constexpr int kNumFreeListTypes = 3;

// `migratetype_names[]` of mm/page_alloc.c.
std::string_view MigrateTypeName(MigrateType mt);

// The kernel's `enum migrate_reason`, in its order; kNone is the record's -1.
enum class MigrateReason : int8_t {
  kNone = -1,
  kCompaction = 0,
  kMemoryFailure,
  kMemoryHotplug,
  kSyscallOrCpuset,
  kMempolicyMbind,
  kNumaMisplaced,
  kContigRange,
  kLongtermPin,
  kDemotion,
  kDamon,
};
inline constexpr int kNumMigrateReasons = 10;

// `migrate_reason_names[]` of mm/debug.c; "" for kNone.
std::string_view MigrateReasonName(MigrateReason reason);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_TYPES_H_
