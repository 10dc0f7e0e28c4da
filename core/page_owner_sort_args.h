// page_owner_sort's command line: the options of the kernel's tools/mm/page_owner_sort (6.12)
// and tools/vm/page_owner_sort (6.1), parsed as glibc's getopt_long parses them for the tool.
// The report itself is core/page_owner_sort.h.
#ifndef PAGEOWNER_CORE_PAGE_OWNER_SORT_ARGS_H_
#define PAGEOWNER_CORE_PAGE_OWNER_SORT_ARGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pageowner {

enum class PageOwnerSortVersion {
  k6_12,  // tools/mm/page_owner_sort.c of 6.12.117 (the default)
  k6_1,   // tools/vm/page_owner_sort.c of 6.1.192
};

// The tool's comparators.
enum class SortKey {
  kTimes,       // how many blocks a record merges (-t)
  kPages,       // base pages, sum of 2^order (-m)
  kPid,         // -p, --sort pid|p
  kTgid,        // -P, --sort tgid|tg
  kName,        // task comm, -n, --sort name|n
  kStacktrace,  // the block after its first line, -s, --sort stacktrace|st
  kAllocTs,     // ts, -a, --sort alloc_ts|at
  kText,        // the whole block, --sort txt|T
  kAllocator,   // CMA/SLAB/VMALLOC/OTHERS bits, --sort allocator|ator
  kFreeTs,      // 6.1 only: free_ts, -r, --sort free_ts|ft
};

struct SortField {
  SortKey key = SortKey::kTimes;
  bool descending = false;

  bool operator==(const SortField&) const = default;
};

// What --cull merges by (the tool always compares in this order, whatever the list order).
struct CullKeys {
  bool stacktrace = false;
  bool pid = false;
  bool tgid = false;
  bool name = false;
  bool released = false;  // 6.1 only: --cull free|f
  bool allocator = false;

  bool any() const { return stacktrace || pid || tgid || name || released || allocator; }
  bool operator==(const CullKeys&) const = default;
};

struct SortOptions {
  PageOwnerSortVersion version = PageOwnerSortVersion::k6_12;
  // The comparator chain, first key first (the tool's sort_condition). ParseSortArgs of the 6.12
  // tool always gives one key; 6.1 with no sort option gives none (records stay in cull order).
  std::vector<SortField> sort = {{SortKey::kTimes, /*descending=*/true}};
  // Filters; std::nullopt = not given. A given filter also adds its field to --cull records.
  std::optional<std::vector<int32_t>> pids;
  std::optional<std::vector<int32_t>> tgids;
  std::optional<std::vector<std::string>> names;
  bool filter_released = false;  // 6.1 only: -f
  CullKeys cull;
  bool debug = false;  // -d: the tool's "no matching pattern ..." messages on stderr
  // Non-option arguments, in order (the tool's <input> <output>; it needs two, we take none).
  std::vector<std::string> operands;

  bool operator==(const SortOptions&) const = default;
};

// Parses page_owner_sort's command line without argv[0], as glibc's getopt_long does for the
// tool (permuted operands, "--", grouped short options, --opt=value and --opt value, unique
// prefixes of long options). kInvalidArgument, with the line the tool prints on stderr, for what
// makes the tool exit(1): an unknown option or a missing argument (the tool then prints its usage),
// a bad --pid/--tgid/--cull/--sort list, and (6.12) more than one of -a -m -n -p -P -s -t. The
// first error in argument order is the one returned. Missing operands are not an error here.
// Thread-safety: a pure function.
absl::StatusOr<SortOptions> ParseSortArgs(
    const std::vector<std::string>& args,
    PageOwnerSortVersion version = PageOwnerSortVersion::k6_12);

// The 6.12 tool's usage text (it prints it on stdout before exiting on a bad command line).
std::string_view PageOwnerSortUsage();

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_PAGE_OWNER_SORT_ARGS_H_
