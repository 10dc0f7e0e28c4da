// Streaming parsers of the kernel's page_owner text: this file holds the parser of
// /sys/kernel/debug/page_owner dumps (all three generations of its format) and the pieces shared
// with core/ftrace_parser.h: the line splitter, the problem report and the number scanners.
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

#include "absl/functional/function_ref.h"
#include "core/types.h"

namespace pageowner {

// ---- Problems, shared by the dump and the ftrace parsers ----

enum class ParseProblemKind : uint8_t {
  // Any parser.
  kUnknownLine,     // a line that is none of the format's lines (dropped)
  kLineTooLong,     // a line longer than max_line_bytes (dropped)
  kBinaryData,      // a line holding NUL bytes (dropped)
  kCarriageReturn,  // CRLF line ends: reported once, at the first; the '\r' is removed
  kNoFinalNewline,  // the input's last line has no '\n' (it is still read)
  kTooManyFrames,   // more than max_frames frames in one record (the rest are dropped)
  // page_owner dumps.
  kBadHeader,             // a "Page allocated via order" line that does not parse: block skipped
  kBadPfnLine,            // the line after a header is not a valid PFN line: block skipped
  kIncompleteBlock,       // a header not followed by its PFN line (blank line or new header)
  kMissingBlankLine,      // a new header inside a block: the block before it ends there
  kFrameAfterTrailer,     // a frame line after a trailer line (the frame is kept)
  kTrailerOutOfOrder,     // trailers not in the kernel's order: migrated, slab, memcg (kept)
  kDuplicateTrailer,      // a second trailer line of one kind (dropped)
  kBadTrailer,            // a "Charged ..." line that does not parse (dropped)
  kUnknownMigrateReason,  // a migrate reason name we do not know (kept as text)
  kTruncatedBlock,        // the input ends inside a block (before its blank line)
  // ftrace traces.
  kBadEventLine,    // an mm_page_alloc/mm_page_free line whose fields do not parse (dropped)
  kUnknownEvent,    // a trace entry of another event (ignored, with its stack)
  kUnknownGfpName,  // a gfp_flags name not in today's table (the known names are kept)
  kOrphanStack,     // a <stack trace> entry with no event of ours before it on its CPU
  kOrphanFrame,     // " => " frame lines outside a stack entry (reported once a run)
  kTruncatedStack,  // the input ends inside or before the stack of an event
  kLostEvents,      // a "CPU:N [LOST M EVENTS]" line
};
inline constexpr int kNumParseProblemKinds = static_cast<int>(ParseProblemKind::kLostEvents) + 1;

// A stable lower_snake name for a kind, e.g. "unknown_line".
std::string_view ParseProblemKindName(ParseProblemKind kind);

struct ParseProblem {
  uint64_t line = 0;  // 1-based line number in the input
  ParseProblemKind kind = ParseProblemKind::kUnknownLine;
  std::string detail;  // what was wrong, with an escaped excerpt of the line
};

// What a parser saw. `records` are blocks (dumps) or events (traces).
struct ParseReport {
  uint64_t bytes = 0;
  uint64_t lines = 0;
  uint64_t records = 0;            // records handed to the callback (truncated ones included)
  uint64_t records_skipped = 0;    // records seen but not handed over (see the problems)
  uint64_t records_truncated = 0;  // records handed over with their `truncated` flag set
  uint64_t problems_total = 0;
  std::array<uint64_t, kNumParseProblemKinds> problems_by_kind{};
  std::vector<ParseProblem> problems;  // the first max_listed_problems, in the order found

  uint64_t count(ParseProblemKind kind) const {
    return problems_by_kind[static_cast<size_t>(kind)];
  }
  // "line 12: unknown_line: ..." one problem a line, then a summary line of the counts by kind
  // when problems were left off the list.
  std::string Summary() const;
};

// Collects problems into a ParseReport, listing the first `max_listed` only.
class ProblemLog {
 public:
  ProblemLog(ParseReport* report, size_t max_listed) : report_(report), max_listed_(max_listed) {}
  // Records a problem; `what` says what was wrong, `excerpt` is the offending text (escaped and
  // cut to 160 bytes in the detail). Builds no string once the list is full.
  void Add(uint64_t line, ParseProblemKind kind, std::string_view what,
           std::string_view excerpt = {});

 private:
  ParseReport* report_;
  size_t max_listed_;
};

// ---- Lines ----

// One line of input, without its '\n' (and without a trailing '\r').
struct TextLine {
  std::string_view text;  // cut to max_line_bytes when too_long
  uint64_t number = 0;    // 1-based
  uint64_t offset = 0;    // byte offset of the line's first byte in the input
  bool too_long = false;
  bool has_nul = false;
  bool had_cr = false;
  bool unterminated = false;  // the input's last line, with no '\n' after it
};

// Splits a stream of chunks into lines. A line that spans chunks is gathered in an internal
// buffer of at most max_line_bytes; the bytes beyond are dropped and the line flagged too_long.
// The views passed to the callback are valid only during the call.
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line_bytes) : max_line_bytes_(max_line_bytes) {}
  void Feed(std::string_view chunk, absl::FunctionRef<void(const TextLine&)> on_line);
  // Delivers the last line when the input does not end with '\n'.
  void Finish(absl::FunctionRef<void(const TextLine&)> on_line);
  uint64_t bytes() const { return bytes_; }
  uint64_t lines() const { return next_number_ - 1; }

 private:
  void Deliver(std::string_view text, uint64_t offset, bool too_long, bool unterminated,
               absl::FunctionRef<void(const TextLine&)> on_line);

  size_t max_line_bytes_;
  std::string pending_;  // a partial line carried over from the previous chunk
  bool has_pending_ = false;
  bool pending_too_long_ = false;
  uint64_t pending_offset_ = 0;
  uint64_t bytes_ = 0;
  uint64_t next_number_ = 1;
};

// ---- Number scanners (strict: digits only, no sign, no spaces; false on overflow) ----

bool ParseDecimalU64(std::string_view s, uint64_t* value);
bool ParseHexU64(std::string_view s, uint64_t* value);  // hex digits only, no "0x"
// An optional '-' then decimal digits, within int32_t.
bool ParseDecimalI32(std::string_view s, int32_t* value);

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

// One block of a page_owner dump, with everything needed to print it back byte for byte
// (RenderDumpBlock). The string views point into the parser's buffers and are valid only during
// the callback that receives the block: copy what you keep.
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

// The block as the kernel prints it, blank line included. For a block the kernel printed (and
// the parser read without problems) this is the input text, byte for byte; numbers are printed
// in the kernel's canonical form (no leading zeros, lowercase hex).
std::string RenderDumpBlock(const DumpBlock& block);
void AppendDumpBlock(const DumpBlock& block, std::string* out);

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
