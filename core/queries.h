// Queries: what the daemon's read-only questions mean, over a Machine, so that the server's
// handlers only find, call and convert, and a test fake answers with the same code.
//  - PageScan: the records ListPages streams, in pfn order, filtered, resumable, in slices.
//  - StacksOwning / OrderStacks: show_stacks' selection and the sorts of ListStacks.
//  - QueryPage: everything GetPage answers about one pfn.
//  - RenderOwnedBlocks: the dump text of the allocated blocks, a slice at a time (SortPages).
//
// Thread-safety: every function reads the Machine and must not run concurrently with a mutator
// (callers hold the machine's reader lock); StacksOwning reads only the depot, which is safe.
#ifndef PAGEOWNER_CORE_QUERIES_H_
#define PAGEOWNER_CORE_QUERIES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/machine.h"
#include "core/reports.h"
#include "core/stack_depot.h"
#include "core/types.h"

namespace pageowner {

// Which records a page scan lists.
enum class PageState {
  kAllocated,  // what /sys/kernel/debug/page_owner lists
  kFreed,      // free pages that keep a last owner
  kAny,
};

// Filters on a record; each applies only when set.
struct PageFilter {
  PageState state = PageState::kAllocated;
  std::optional<int32_t> pid;
  std::optional<int32_t> tgid;
  std::optional<std::string> comm;
  std::optional<StackHandle> handle;
  std::optional<Order> order;

  // The field filters (not the state).
  bool Matches(const PageOwner& p) const;
};

struct PageScanRequest {
  Pfn start{};               // records with pfn >= start
  std::optional<Pfn> end{};  // stop before; nullopt: the end of memory
  PageFilter filter;
  uint64_t limit = 0;  // stop after this many records; 0: no limit
};

// A resumable scan over the page records, in pfn order.
//
// Allocated records are visited through ForEachOwnedBlock (free memory is skipped quickly);
// freed records are not indexed, so kFreed and kAny walk every page. A record is listed once, at
// the head page of its block (pages aligned to their record's order).
//
// Thread-safety: not thread-safe; Step reads the Machine (hold its reader lock for one Step).
class PageScan {
 public:
  // Errors: kOutOfRange for a start beyond memory; kInvalidArgument for an end below start or
  // an order filter above kMaxOrder.
  static absl::StatusOr<PageScan> Create(PageCount total_pages, const PageScanRequest& request);

  // Visits at most `budget` records (allocated scan) or pages (freed scan), calling `emit` for
  // each one that matches; `emit` returns false to pause the scan right after that record.
  // Returns the records or pages visited. Ends the scan (done()) at the end of the range or
  // when the limit is reached.
  uint64_t Step(const Machine& m, uint64_t budget, absl::FunctionRef<bool(const PageOwner&)> emit);

  bool done() const { return done_; }
  // Where the scan resumes (the pfn after the last record visited).
  Pfn next() const { return Pfn(next_); }

 private:
  PageScan() = default;
  uint64_t StepAllocated(const Machine& m, uint64_t budget,
                         absl::FunctionRef<bool(const PageOwner&)> emit);
  uint64_t StepPages(const Machine& m, uint64_t budget,
                     absl::FunctionRef<bool(const PageOwner&)> emit);
  // Counts an emitted record; true when the limit is now reached.
  bool Emitted();

  PageFilter filter_;
  uint64_t next_ = 0;
  uint64_t end_ = 0;
  uint64_t limit_ = 0;
  uint64_t emitted_ = 0;
  bool done_ = false;
};

// The orders ListStacks offers. Newest first is the depot's own order (show_stacks'); the
// other sorts keep it among equals.
enum class StackOrder { kPages, kAllocations, kNewest };

// The stacks owning at least max(1, threshold) pages now, newest first (show_stacks with
// count_threshold).
std::vector<StackUsage> StacksOwning(const StackDepot& depot, int64_t threshold);
// Every stored stack, whatever it owns (free stacks, stacks whose pages were all freed, the
// special stacks), newest first.
std::vector<StackUsage> AllStacks(const StackDepot& depot);
// Sorts `stacks` (stable) and keeps the first `top` (0: all).
void OrderStacks(StackOrder order, size_t top, std::vector<StackUsage>* stacks);

// Everything GetPage tells about one pfn.
struct PageReport {
  PageOwner owner;  // of the allocated block's head, or of the page itself when free
  Pfn block_head;   // the block holding the pfn; the pfn itself when it is free
  Order block_order;
  std::string page_owner_text;       // the block as the dump prints it; "" when free
  std::string dump_page_owner_text;  // dump_page_owner()'s lines
  std::optional<StackUsage> alloc_stack;
  std::optional<StackUsage> free_stack;
};

// Errors: kOutOfRange beyond memory.
absl::StatusOr<PageReport> QueryPage(const Machine& m, Pfn pfn);

// Appends, in `format`, the allocated blocks from *next on, at most `max_blocks` of them, and
// moves *next past them. Returns true when no block is left after them.
bool RenderOwnedBlocks(const Machine& m, DumpFormat format, int max_blocks, Pfn* next,
                       std::string* out);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_QUERIES_H_
