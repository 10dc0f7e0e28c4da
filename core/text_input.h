// The input side shared by the text parsers (core/dump_parser.h, core/ftrace_parser.h): a line
// splitter for push parsers fed chunks of any size, the problem report they fill (bad input is
// reported with its line number, never fatal), and strict number scanners and cursors.
#ifndef PAGEOWNER_CORE_TEXT_INPUT_H_
#define PAGEOWNER_CORE_TEXT_INPUT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"

namespace pageowner {

// ---- Problems ----

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

// Collects problems into a ParseReport, listing the first `max_listed` only, so that a parser's
// memory stays bounded whatever the input; every problem is still counted.
// Thread-safety: none; one parser owns it (and its report) at a time.
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
//
// Invariants:
//  1. Any chunking of the same input delivers the same lines, numbers and offsets.
//  2. Memory is at most one partial line of max_line_bytes, whatever the input.
//  3. bytes() counts every byte fed; lines() every line delivered.
// Thread-safety: none; one parser owns it.
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

// ---- Numbers ----
// The scanners are strict: digits only, no sign, no spaces, no base prefix. They return false
// (and leave *value alone) for an empty text, any other character, or a value that does not fit:
// a number too large for its field makes the line bad, it never wraps.

bool ParseDecimalU64(std::string_view s, uint64_t* value);
bool ParseHexU64(std::string_view s, uint64_t* value);  // hex digits only, no "0x"
// An optional '-' then decimal digits, within int32_t.
bool ParseDecimalI32(std::string_view s, int32_t* value);

// ---- Cursors ----
// Each Consume* reads a token from the front of *s and advances *s past it when it returns true;
// on false *s is left as it was (a caller may try another form).

// `prefix` itself.
bool ConsumePrefix(std::string_view* s, std::string_view prefix);
// The text up to the first `delim` (the token, without it); the delimiter is consumed too.
bool ConsumeUntil(std::string_view* s, char delim, std::string_view* token);
// Leading decimal digits (at least one) that fit in uint64_t.
bool ConsumeDecimal(std::string_view* s, uint64_t* value);
// An optional '-' then decimal digits, within int32_t.
bool ConsumeDecimalI32(std::string_view* s, int32_t* value);
// The kernel's %#x / %#lx: "0x" then hex digits (at least one) that fit in uint64_t.
bool ConsumeKernelHex(std::string_view* s, uint64_t* value);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_TEXT_INPUT_H_
