// The kernel's tools/mm/page_owner_sort as a library: the same options, the same report text.
//
// page_owner_sort reads a /sys/kernel/debug/page_owner dump as blank-line-separated blocks, keeps
// the blocks that pass its filters (--pid, --tgid, --name), merges equal ones (the whole block
// text, or the --cull keys), counts how often each was seen and how many base pages they hold,
// sorts them (-t, -m, -a, -p, -P, -n, -s) and writes one record per merged group. This is a
// reimplementation of the 6.12.117 tool (tools/mm/page_owner_sort.c of Debian's
// linux-source-6.12 6.12.117-1~deb12u1), which removes the digits of `ts N ns` from a block
// before comparing blocks unless it sorts by allocation time (-a), so its records read
// `ts  ns`. The 6.1.192 tool (tools/vm/page_owner_sort.c: whole blocks including ts compared,
// free_ts, -f, -r, consecutive equal blocks merged while reading, --sort honoured) is available as
// PageOwnerSortVersion::k6_1.
//
// Reproduced exactly, quirks included (see page_owner_sort.cc for each):
//  - the reader: fgets into a 128 KiB block buffer, "PFN" lines kept aside (only their "CMA" and
//    "slab" count, for the allocator), the last PFN line carried over to blocks that have none,
//    a last block without its blank line dropped, a block that fills the buffer ending the input;
//  - the POSIX regular expressions that pick order, pid, tgid, comm and ts out of a block,
//    including their matches outside the header line and the values strtol/strtoull give;
//  - the "max_size too small??" stop when the input has more records than its size in bytes / 100;
//  - glibc 2.36's qsort (a stable top-down merge sort) with the tool's comparators, int
//    arithmetic and all, so ties come out in the tool's order;
//  - 6.12: only one of -a -m -n -p -P -s -t may be given, and --sort is checked but has no
//    effect (the single sort key of those flags, default -t, replaces it).
//
// The command line (SortOptions, ParseSortArgs) is core/page_owner_sort_args.h; what is read out
// of each block (the tool's regular expressions) is core/page_owner_sort_fields.h.
#ifndef PAGEOWNER_CORE_PAGE_OWNER_SORT_H_
#define PAGEOWNER_CORE_PAGE_OWNER_SORT_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/page_owner_sort_args.h"

namespace pageowner {

// One run of the tool.
struct SortReport {
  std::string output;       // what the tool writes to its output file
  std::string stdout_text;  // what it prints on stdout: "loaded 1000\r"..., "loaded N\n", ...
  std::string stderr_text;  // what it prints on stderr: "max_size too small??\n", -d messages
  int64_t loaded = 0;       // the N of "loaded N": records kept after the filters
  int64_t records = 0;      // records written
  bool completed = true;    // false when the tool stopped at "max_size too small??" (no output)
};

// Accumulates a dump, then writes reports. Memory is about 70 bytes a block plus one copy of each
// distinct block text with its ts digits taken out; work is O(n log n) in the blocks.
class PageOwnerSorter {
 public:
  PageOwnerSorter();
  PageOwnerSorter(const PageOwnerSorter&) = delete;
  PageOwnerSorter& operator=(const PageOwnerSorter&) = delete;
  PageOwnerSorter(PageOwnerSorter&&) = default;
  PageOwnerSorter& operator=(PageOwnerSorter&&) = default;
  ~PageOwnerSorter();

  // Dump text, split anywhere (a line may span calls).
  void AddText(std::string_view text);
  // One block as page_owner prints it (its PFN line included), with or without its final '\n'
  // and blank line: the same as AddText(block + "\n" if missing + "\n").
  void AddBlock(std::string_view block);

  // The tool's run over everything added so far (a partial last line or block is left out, as at
  // the end of the tool's input). Can be called again, with other options, and more text added.
  SortReport Report(const SortOptions& options) const;

  int64_t blocks() const { return static_cast<int64_t>(blocks_.size()); }  // blocks read
  int64_t input_bytes() const { return input_bytes_; }

 private:
  // What the sorter keeps of one block (the tool's block_list, before any options apply).
  struct Block {
    uint32_t text;       // texts_: the block with its ts digits taken out
    uint32_t strip_at;   // where the digits were
    uint32_t digits_at;  // the digits, in digits_
    uint32_t digits_len;
    uint32_t name;  // names_
    int32_t pid;
    int32_t tgid;
    int32_t pages;
    int32_t allocator;
    uint64_t ts;       // 6.12's pattern
    uint64_t ts_61;    // 6.1's "ts\s*([0-9]*)\s*ns,"
    uint64_t free_ts;  // 6.1
  };

  class ReportRun;  // one Report(), in the tool's steps (page_owner_sort.cc)

  void ProcessPiece(std::string_view piece);
  void EndBlock();
  uint32_t InternText(std::string_view text);
  uint32_t InternName(std::string_view name);

  int64_t input_bytes_ = 0;
  std::string pending_;   // a line not yet ended by '\n'
  std::string block_;     // the block being read (the tool's buf)
  std::string pfn_line_;  // the last PFN line (the tool's ext_buf)
  bool stopped_ = false;  // a block filled the buffer: the tool reads no further
  std::vector<Block> blocks_;
  std::deque<std::string> texts_;  // distinct block texts, ts digits taken out (stable addresses)
  absl::flat_hash_map<std::string_view, uint32_t> text_ids_;
  std::deque<std::string> names_;
  absl::flat_hash_map<std::string_view, uint32_t> name_ids_;
  std::string digits_;  // the ts digits taken out of each block, back to back
};

// Convenience: the tool run on one dump.
SortReport SortPageOwnerDump(std::string_view dump, const SortOptions& options);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_PAGE_OWNER_SORT_H_
