// The streaming parser of /sys/kernel/debug/page_owner dumps (all three generations of its
// format). The line splitter, the problem report and the number scanners it shares with
// core/ftrace_parser.h are in core/text_input.h.
//
// The parsers are push parsers: the caller feeds chunks of bytes of any size as they arrive
// (Feed), then calls Finish once; each complete record is handed to a callback as soon as it is
// known to be complete. Memory stays bounded whatever the input: lines are capped
// (max_line_bytes), frames a record are capped (max_frames), and the list of problems keeps only
// the first max_listed_problems (all of them are counted). Nothing in the input is fatal: lines
// that are not understood are reported with their line numbers and the parser goes on.
#ifndef PAGEOWNER_CORE_DUMP_PARSER_H_
#define PAGEOWNER_CORE_DUMP_PARSER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/text_input.h"
#include "core/types.h"

namespace pageowner {

// ---- page_owner dumps ----

// The three shapes of the header line ("Page allocated via order ...").
enum class DumpGeneration : uint8_t {
  // The 2016 kernel: "Page allocated via order %u, mask %#x(%pGg)", decimal PFN,
  // "Flags %#lx(%pGp)" (names only), frames " [<addr>] sym", "last_migrate_reason: %s".
  k2016,
  // v5.11 to about v6.2: "..., ts %llu ns, free_ts %llu ns" (with pid, and tgid and comm
  // in later ones), decimal PFN.
  kFreeTs,
  // Today: "..., pid %d, tgid %d (%s), ts %llu ns", hex PFN.
  kToday,
};

std::string_view DumpGenerationName(DumpGeneration g);

// One frame line: " text". For the 2016 form " [<ffffffff8118f0a5>] sym+0x1/0x2" the address is
// parsed and `symbol` is the text after "] "; otherwise `symbol` is `text`.
struct DumpFrame {
  std::string_view text;    // everything after the leading space, as printed
  std::string_view symbol;  // the %pS part
  std::optional<uint64_t> address;
};

// One block of a page_owner dump, as printed: an importer keeps what core/reports.cc's
// AppendPageOwnerBlock needs to print it back byte for byte (the real dumps of tests/data do). The
// string views point into the parser's buffers and are valid only during the callback that receives
// the block: copy what you keep.
struct DumpBlock {
  uint64_t line = 0;         // line number of the header
  uint64_t byte_offset = 0;  // offset of the header's first byte in the input
  DumpGeneration generation = DumpGeneration::kToday;

  // "Page allocated via order %u, mask %#x(%pGg)[, pid %d][, tgid %d][ (%s)][, ts %llu ns]
  // [, free_ts %llu ns]".
  Order order;
  uint32_t gfp_mask = 0;
  std::string_view gfp_names;  // between the parentheses, as printed (the kernel's own table)
  std::optional<int32_t> pid;
  std::optional<int32_t> tgid;
  std::optional<std::string_view> comm;
  std::optional<uint64_t> ts_ns;
  std::optional<uint64_t> free_ts_ns;

  // "PFN %lu|0x%lx type %s Block %lu type %s Flags %s".
  Pfn pfn;
  bool pfn_hex = true;
  std::string_view page_migratetype_name;       // as printed
  std::optional<MigrateType> page_migratetype;  // when the name is one of MigrateTypeName's
  uint64_t pageblock = 0;                       // as printed (the kernel's pfn >> pageblock_order)
  std::string_view pageblock_migratetype_name;
  std::optional<MigrateType> pageblock_migratetype;
  uint64_t flags = 0;           // the page flags value
  std::string_view flags_text;  // everything after "Flags ", e.g. "0x4000(head|node=0|zone=1)"
  std::string_view flag_names;  // between the parentheses of flags_text

  std::vector<DumpFrame> frames;  // innermost first

  // Trailer lines, printed in this order by every kernel.
  bool migrated = false;
  bool migrate_legacy_text = false;  // "last_migrate_reason: " (2016) vs "last migrate reason: "
  MigrateReason migrate_reason = MigrateReason::kNone;  // kNone when the name is unknown
  std::string_view migrate_reason_name;                 // as printed
  bool slab = false;                                    // "Slab cache page"
  bool charged = false;                                 // "Charged %sto %smemcg %s"
  bool memcg_via_objcg = false;
  bool memcg_offline = false;
  std::string_view memcg_name;

  bool truncated = false;  // the input ended before the block's blank line
};

struct DumpParserOptions {
  size_t max_line_bytes = 4096;  // longer lines are reported and dropped
  size_t max_frames = 256;       // frames a block kept (the kernel prints at most 16)
  size_t max_listed_problems = 1000;
};

// The push parser of /sys/kernel/debug/page_owner text.
//
// A block is a header line, a PFN line, frame lines (one leading space), optional trailer
// lines, and a blank line. What the parser does with what it does not expect:
//  - outside a block, a line that is not a header: kUnknownLine, dropped;
//  - a header that does not parse (bad text, a number that overflows): kBadHeader, and the
//    lines up to the next blank line or header are skipped with it (records_skipped);
//  - a header whose next line is not a valid PFN line: kBadPfnLine (or kIncompleteBlock when
//    that line is blank or another header), block skipped as above;
//  - inside a block, after the PFN line, an unknown line (or a too long or binary one) is
//    reported and dropped, and the block goes on; the block is handed over;
//  - a header inside a block (no blank line before it): kMissingBlankLine; the block before it
//    is handed over and the new one starts;
//  - trailers: a frame line after a trailer is kept (kFrameAfterTrailer); trailers out of the
//    kernel's order are kept and render in the kernel's order (kTrailerOutOfOrder); a second
//    trailer of one kind is dropped (kDuplicateTrailer); a "Charged ..." line that does not
//    parse is dropped (kBadTrailer); an unknown migrate reason is kept as text, with
//    migrate_reason kNone (kUnknownMigrateReason);
//  - the input ends inside a block: kTruncatedBlock; the block is handed over with
//    `truncated` set when its PFN line was read (skipped otherwise);
//  - blank lines between blocks are ignored; CRLF line ends are read as LF (reported once).
// Values are not checked against each other (Block against pfn, order range, pfn overlap):
// that is the importer's concern.
//
// Memory: one block's text at most, in a buffer of (max_frames + 5) * (max_line_bytes + 1)
// bytes reserved up front (about 1 MiB with the defaults), plus one partial line.
class DumpParser {
 public:
  using BlockCallback = std::function<void(const DumpBlock&)>;

  explicit DumpParser(BlockCallback on_block, DumpParserOptions options = {});
  DumpParser(const DumpParser&) = delete;
  DumpParser& operator=(const DumpParser&) = delete;

  // Any chunking of the input gives the same blocks and problems.
  void Feed(std::string_view chunk);
  // Ends the input: delivers the last line and the last block. Feed must not be called after.
  void Finish();

  const ParseReport& report() const { return report_; }

 private:
  enum class State : uint8_t { kBetween, kAfterHeader, kBody, kSkipping };

  void OnLine(const TextLine& line);
  bool StartBlock(const TextLine& line);  // parses the header; false when it is bad
  bool ParseHeader(std::string_view s);
  bool ParsePfnLine(std::string_view s);
  void OnBodyLine(const TextLine& line);
  void EmitBlock();
  void SkipBlock();
  std::string_view Keep(std::string_view s);  // copies s into the block buffer

  BlockCallback on_block_;
  DumpParserOptions options_;
  ParseReport report_;
  ProblemLog log_;
  LineSplitter splitter_;
  State state_ = State::kBetween;
  DumpBlock block_;
  std::string buf_;       // the block's kept text; reserved so that views stay valid
  int last_trailer_ = 0;  // 0 none, 1 migrated, 2 slab, 3 memcg
  bool frames_capped_ = false;
  bool reported_cr_ = false;
  bool finished_ = false;
};

// Parses a whole text at once.
ParseReport ParseDump(std::string_view text, const DumpParser::BlockCallback& on_block,
                      DumpParserOptions options = {});

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_DUMP_PARSER_H_
