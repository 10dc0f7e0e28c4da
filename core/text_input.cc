#include "core/text_input.h"

#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/strings.h"

namespace pageowner {
namespace {

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

// ---- Problems ----

std::string_view ParseProblemKindName(ParseProblemKind kind) {
  switch (kind) {
    case ParseProblemKind::kUnknownLine:
      return "unknown_line";
    case ParseProblemKind::kLineTooLong:
      return "line_too_long";
    case ParseProblemKind::kBinaryData:
      return "binary_data";
    case ParseProblemKind::kCarriageReturn:
      return "carriage_return";
    case ParseProblemKind::kNoFinalNewline:
      return "no_final_newline";
    case ParseProblemKind::kTooManyFrames:
      return "too_many_frames";
    case ParseProblemKind::kBadHeader:
      return "bad_header";
    case ParseProblemKind::kBadPfnLine:
      return "bad_pfn_line";
    case ParseProblemKind::kIncompleteBlock:
      return "incomplete_block";
    case ParseProblemKind::kMissingBlankLine:
      return "missing_blank_line";
    case ParseProblemKind::kFrameAfterTrailer:
      return "frame_after_trailer";
    case ParseProblemKind::kTrailerOutOfOrder:
      return "trailer_out_of_order";
    case ParseProblemKind::kDuplicateTrailer:
      return "duplicate_trailer";
    case ParseProblemKind::kBadTrailer:
      return "bad_trailer";
    case ParseProblemKind::kUnknownMigrateReason:
      return "unknown_migrate_reason";
    case ParseProblemKind::kTruncatedBlock:
      return "truncated_block";
    case ParseProblemKind::kBadEventLine:
      return "bad_event_line";
    case ParseProblemKind::kUnknownEvent:
      return "unknown_event";
    case ParseProblemKind::kUnknownGfpName:
      return "unknown_gfp_name";
    case ParseProblemKind::kOrphanStack:
      return "orphan_stack";
    case ParseProblemKind::kOrphanFrame:
      return "orphan_frame";
    case ParseProblemKind::kTruncatedStack:
      return "truncated_stack";
    case ParseProblemKind::kLostEvents:
      return "lost_events";
  }
  return "unknown";
}

std::string ParseReport::Summary() const {
  std::string out;
  for (const ParseProblem& p : problems) {
    absl::StrAppend(&out, "line ", p.line, ": ", Sv(ParseProblemKindName(p.kind)), ": ", p.detail,
                    "\n");
  }
  if (problems_total > problems.size()) {
    absl::StrAppend(&out, problems_total - problems.size(), " more problems; by kind:");
    for (int i = 0; i < kNumParseProblemKinds; ++i) {
      if (problems_by_kind[i] == 0) continue;
      absl::StrAppend(&out, " ", Sv(ParseProblemKindName(static_cast<ParseProblemKind>(i))), "=",
                      problems_by_kind[i]);
    }
    out.push_back('\n');
  }
  return out;
}

void ProblemLog::Add(uint64_t line, ParseProblemKind kind, std::string_view what,
                     std::string_view excerpt) {
  ++report_->problems_total;
  ++report_->problems_by_kind[static_cast<size_t>(kind)];
  if (report_->problems.size() >= max_listed_) return;
  ParseProblem p;
  p.line = line;
  p.kind = kind;
  p.detail = std::string(what);
  if (!excerpt.empty()) {
    constexpr size_t kMaxExcerpt = 160;
    const bool cut = excerpt.size() > kMaxExcerpt;
    absl::StrAppend(&p.detail, ": \"", absl::CHexEscape(Sv(excerpt.substr(0, kMaxExcerpt))),
                    cut ? "\"..." : "\"");
  }
  report_->problems.push_back(std::move(p));
}

// ---- Lines ----

void LineSplitter::Deliver(std::string_view text, uint64_t offset, bool too_long, bool unterminated,
                           absl::FunctionRef<void(const TextLine&)> on_line) {
  TextLine line;
  line.number = next_number_++;
  line.offset = offset;
  line.too_long = too_long;
  line.unterminated = unterminated;
  if (!too_long && !text.empty() && text.back() == '\r') {
    text.remove_suffix(1);
    line.had_cr = true;
  }
  line.text = text;
  line.has_nul = !text.empty() && std::memchr(text.data(), '\0', text.size()) != nullptr;
  on_line(line);
}

void LineSplitter::Feed(std::string_view chunk, absl::FunctionRef<void(const TextLine&)> on_line) {
  const uint64_t chunk_offset = bytes_;
  bytes_ += chunk.size();
  const char* p = chunk.data();
  const char* const end = p + chunk.size();
  if (has_pending_) {
    // Finish the line begun in an earlier chunk.
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    const char* stop = nl != nullptr ? nl : end;
    const size_t room = max_line_bytes_ - pending_.size();
    const size_t n = static_cast<size_t>(stop - p);
    if (n > room) {
      pending_.append(p, room);
      pending_too_long_ = true;
    } else {
      pending_.append(p, n);
    }
    if (nl == nullptr) return;
    Deliver(pending_, pending_offset_, pending_too_long_, false, on_line);
    pending_.clear();
    pending_too_long_ = false;
    has_pending_ = false;
    p = nl + 1;
  }
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (nl == nullptr) break;
    const size_t n = static_cast<size_t>(nl - p);
    const uint64_t offset = chunk_offset + static_cast<uint64_t>(p - chunk.data());
    if (n > max_line_bytes_) {
      Deliver(std::string_view(p, max_line_bytes_), offset, true, false, on_line);
    } else {
      Deliver(std::string_view(p, n), offset, false, false, on_line);
    }
    p = nl + 1;
  }
  if (p < end) {
    has_pending_ = true;
    pending_offset_ = chunk_offset + static_cast<uint64_t>(p - chunk.data());
    const size_t n = static_cast<size_t>(end - p);
    pending_too_long_ = n > max_line_bytes_;
    pending_.assign(p, pending_too_long_ ? max_line_bytes_ : n);
  }
}

void LineSplitter::Finish(absl::FunctionRef<void(const TextLine&)> on_line) {
  if (has_pending_) {
    Deliver(pending_, pending_offset_, pending_too_long_, true, on_line);
    pending_.clear();
    pending_too_long_ = false;
    has_pending_ = false;
  }
}

// ---- Numbers ----

bool ParseDecimalU64(std::string_view s, uint64_t* value) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *value = v;
  return true;
}

bool ParseHexU64(std::string_view s, uint64_t* value) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      d = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return false;
    }
    if (v >> 60 != 0) return false;
    v = (v << 4) | d;
  }
  *value = v;
  return true;
}

bool ParseDecimalI32(std::string_view s, int32_t* value) {
  const bool negative = !s.empty() && s.front() == '-';
  if (negative) s.remove_prefix(1);
  uint64_t v;
  if (s.size() > 11 || !ParseDecimalU64(s, &v)) return false;
  if (negative ? v > uint64_t{1} << 31 : v > INT32_MAX) return false;
  *value = negative ? static_cast<int32_t>(-static_cast<int64_t>(v)) : static_cast<int32_t>(v);
  return true;
}

// ---- Cursors ----

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

bool ConsumeUntil(std::string_view* s, char delim, std::string_view* token) {
  const size_t i = s->find(delim);
  if (i == std::string_view::npos) return false;
  *token = s->substr(0, i);
  s->remove_prefix(i + 1);
  return true;
}

bool ConsumeDecimal(std::string_view* s, uint64_t* value) {
  size_t n = 0;
  while (n < s->size() && (*s)[n] >= '0' && (*s)[n] <= '9') ++n;
  if (!ParseDecimalU64(s->substr(0, n), value)) return false;
  s->remove_prefix(n);
  return true;
}

bool ConsumeDecimalI32(std::string_view* s, int32_t* value) {
  size_t n = (!s->empty() && s->front() == '-') ? 1 : 0;
  while (n < s->size() && (*s)[n] >= '0' && (*s)[n] <= '9') ++n;
  if (!ParseDecimalI32(s->substr(0, n), value)) return false;
  s->remove_prefix(n);
  return true;
}

bool ConsumeKernelHex(std::string_view* s, uint64_t* value) {
  std::string_view rest = *s;
  if (!ConsumePrefix(&rest, "0x")) return false;
  size_t n = 0;
  while (n < rest.size() && IsHexDigit(rest[n])) ++n;
  if (!ParseHexU64(rest.substr(0, n), value)) return false;
  rest.remove_prefix(n);
  *s = rest;
  return true;
}

}  // namespace pageowner
