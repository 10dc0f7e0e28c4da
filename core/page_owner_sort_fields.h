// What page_owner_sort reads out of one block of a page_owner dump: the tool's POSIX regular
// expressions (regcomp with REG_EXTENDED | REG_NEWLINE, matched as glibc's regexec does: the
// leftmost start, then the longest match) and the conversions it applies to their groups
// (strtol, strtoull, int truncation, x86's shift), each reproduced for its exact quirks,
// matches outside the header line included. Used by core/page_owner_sort.cc.
//
// Every matcher is linear in the block's length (no backtracking), even for a line full of
// partial matches. Thread-safety: pure functions; FieldDebug appends to the string it is given.
#ifndef PAGEOWNER_CORE_PAGE_OWNER_SORT_FIELDS_H_
#define PAGEOWNER_CORE_PAGE_OWNER_SORT_FIELDS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pageowner::sort_fields {

// The tool's allocator bits (get_allocator()).
inline constexpr int32_t kAllocatorCma = 1 << 1;
inline constexpr int32_t kAllocatorSlab = 1 << 2;
inline constexpr int32_t kAllocatorVmalloc = 1 << 3;
inline constexpr int32_t kAllocatorOthers = 1 << 4;

// The first parenthesised group of a POSIX match (regexec's pmatch[1]); !found = REG_NOMATCH.
struct Group {
  bool found = false;
  size_t begin = 0;
  size_t end = 0;
  std::string_view Of(std::string_view s) const {
    return found ? s.substr(begin, end - begin) : std::string_view();
  }
};

// 6.12's "ts\s*([0-9]*)\s*ns": the digits remove_pattern() takes out of a block.
Group MatchTs(std::string_view s);

// -d: where the tool's "no matching pattern" and "wrong ..." messages go. `buf` is what the tool
// prints, its block buffer: the block and the '\n' of its blank line. A null `out` is quiet.
struct FieldDebug {
  std::string* out = nullptr;
  std::string_view buf;
  void NoMatch() const;
  void Wrong(std::string_view what) const;
};

// get_page_num(): 1 << order; 0 when the order is missing, unparsable or above 64.
int32_t GetPageNum(std::string_view s, const FieldDebug& debug);
// get_pid() / get_tgid(): strtol's value as a pid_t; -1 when missing or unparsable.
int32_t GetPid(std::string_view s, const FieldDebug& debug);
int32_t GetTgid(std::string_view s, const FieldDebug& debug);
// get_ts_nsec() with 6.12's and 6.1's patterns, and 6.1's get_free_ts_nsec(): (u64)-1 when
// missing or unparsable.
uint64_t GetTs(std::string_view s, const FieldDebug& debug);
uint64_t GetTs61(std::string_view s, const FieldDebug& debug);
uint64_t GetFreeTs(std::string_view s, const FieldDebug& debug);
// get_comm(): the task name, "" when missing. A view into `s`.
std::string_view GetComm(std::string_view s, const FieldDebug& debug);
// get_allocator(): the kAllocator* bits of a block and its PFN line.
int32_t GetAllocator(std::string_view s, std::string_view pfn_line);
// "allocated by CMA SLAB ... " as the tool prints the bits.
void AppendAllocator(int32_t allocator, std::string* out);

}  // namespace pageowner::sort_fields

#endif  // PAGEOWNER_CORE_PAGE_OWNER_SORT_FIELDS_H_
