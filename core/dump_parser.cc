#include "core/dump_parser.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/strings.h"

namespace pageowner {
namespace {

// "0x<hex>(<names>)" and nothing after; the names may not hold ')'.
bool ParseValueAndNames(std::string_view s, uint64_t* value, std::string_view* names) {
  if (!ConsumeKernelHex(&s, value)) return false;
  if (!ConsumePrefix(&s, "(")) return false;
  if (s.empty() || s.back() != ')') return false;
  s.remove_suffix(1);
  if (s.find(')') != std::string_view::npos) return false;
  *names = s;
  return true;
}

std::optional<MigrateType> MigrateTypeByName(std::string_view name) {
  for (int i = 0; i < kNumMigrateTypes; ++i) {
    const auto mt = static_cast<MigrateType>(i);
    if (MigrateTypeName(mt) == name) return mt;
  }
  return std::nullopt;
}

MigrateReason MigrateReasonByName(std::string_view name) {
  for (int i = 0; i < kNumMigrateReasons; ++i) {
    const auto r = static_cast<MigrateReason>(i);
    if (MigrateReasonName(r) == name) return r;
  }
  // The 2016 kernel's MR_CMA, renamed MR_CONTIG_RANGE in 2020 (same value, same use).
  if (name == "cma") return MigrateReason::kContigRange;
  return MigrateReason::kNone;
}

constexpr std::string_view kHeaderPrefix = "Page allocated via order ";
constexpr std::string_view kMigratedPrefix = "Page has been migrated, ";
constexpr std::string_view kReasonToday = "last migrate reason: ";
constexpr std::string_view kReason2016 = "last_migrate_reason: ";
constexpr std::string_view kSlabLine = "Slab cache page";
constexpr std::string_view kChargedPrefix = "Charged ";

}  // namespace

// ---- Dumps ----

std::string_view DumpGenerationName(DumpGeneration g) {
  switch (g) {
    case DumpGeneration::k2016:
      return "2016";
    case DumpGeneration::kFreeTs:
      return "free_ts";
    case DumpGeneration::kToday:
      return "today";
  }
  return "unknown";
}

DumpParser::DumpParser(BlockCallback on_block, DumpParserOptions options)
    : on_block_(std::move(on_block)),
      options_(options),
      log_(&report_, options.max_listed_problems),
      splitter_(options.max_line_bytes) {
  // Header, PFN line, three trailers and the frames, each at most one line: the buffer never
  // grows past this, so the views into it stay valid while a block is gathered.
  buf_.reserve((options_.max_frames + 5) * (options_.max_line_bytes + 1));
  block_.frames.reserve(16);
}

std::string_view DumpParser::Keep(std::string_view s) {
  const size_t at = buf_.size();
  buf_.append(s);
  return std::string_view(buf_.data() + at, s.size());
}

void DumpParser::Feed(std::string_view chunk) {
  splitter_.Feed(chunk, [this](const TextLine& line) { OnLine(line); });
}

void DumpParser::Finish() {
  if (finished_) return;
  finished_ = true;
  splitter_.Finish([this](const TextLine& line) { OnLine(line); });
  switch (state_) {
    case State::kBetween:
    case State::kSkipping:
      break;
    case State::kAfterHeader:
      log_.Add(block_.line, ParseProblemKind::kTruncatedBlock,
               "the input ends after the header line; block skipped");
      ++report_.records_skipped;
      break;
    case State::kBody:
      log_.Add(block_.line, ParseProblemKind::kTruncatedBlock,
               "the input ends before the block's blank line; block kept as truncated");
      block_.truncated = true;
      ++report_.records_truncated;
      EmitBlock();
      break;
  }
  state_ = State::kBetween;
  report_.bytes = splitter_.bytes();
  report_.lines = splitter_.lines();
}

void DumpParser::EmitBlock() {
  ++report_.records;
  on_block_(block_);
}

void DumpParser::SkipBlock() {
  ++report_.records_skipped;
  state_ = State::kSkipping;
}

void DumpParser::OnLine(const TextLine& line) {
  if (line.had_cr && !reported_cr_) {
    reported_cr_ = true;
    log_.Add(line.number, ParseProblemKind::kCarriageReturn,
             "CRLF line ends; read as LF from here on");
  }
  if (line.unterminated) {
    log_.Add(line.number, ParseProblemKind::kNoFinalNewline, "the last line has no newline");
  }
  // Lines we cannot read at all act as unknown lines, reported by their own kind.
  ParseProblemKind bad_kind = ParseProblemKind::kUnknownLine;
  std::string_view bad_what;
  if (line.too_long) {
    bad_kind = ParseProblemKind::kLineTooLong;
    bad_what = "line longer than the limit; dropped";
  } else if (line.has_nul) {
    bad_kind = ParseProblemKind::kBinaryData;
    bad_what = "line with NUL bytes; dropped";
  }
  const bool unreadable = !bad_what.empty();
  const std::string_view s = line.text;
  const bool is_header = !unreadable && s.substr(0, kHeaderPrefix.size()) == kHeaderPrefix;

  if (s.empty() && !unreadable) {
    switch (state_) {
      case State::kBetween:
        break;
      case State::kAfterHeader:
        log_.Add(block_.line, ParseProblemKind::kIncompleteBlock,
                 "header line without its PFN line; block skipped");
        ++report_.records_skipped;
        break;
      case State::kBody:
        EmitBlock();
        break;
      case State::kSkipping:
        break;
    }
    state_ = State::kBetween;
    return;
  }

  if (is_header) {
    switch (state_) {
      case State::kBetween:
      case State::kSkipping:
        break;
      case State::kAfterHeader:
        log_.Add(block_.line, ParseProblemKind::kIncompleteBlock,
                 "header line without its PFN line; block skipped");
        ++report_.records_skipped;
        break;
      case State::kBody:
        log_.Add(line.number, ParseProblemKind::kMissingBlankLine,
                 "a header inside a block; the block before it ends here");
        EmitBlock();
        break;
    }
    if (StartBlock(line)) {
      state_ = State::kAfterHeader;
    } else {
      log_.Add(line.number, ParseProblemKind::kBadHeader,
               "header line does not parse; block skipped", s);
      SkipBlock();
    }
    return;
  }

  switch (state_) {
    case State::kBetween:
      if (unreadable) {
        log_.Add(line.number, bad_kind, bad_what, s);
      } else {
        log_.Add(line.number, ParseProblemKind::kUnknownLine, "not a page_owner line; dropped", s);
      }
      return;
    case State::kSkipping:
      return;
    case State::kAfterHeader:
      if (unreadable) {
        log_.Add(line.number, bad_kind, absl::StrCat(Sv(bad_what), "; block skipped"), s);
        SkipBlock();
      } else if (ParsePfnLine(Keep(s))) {
        state_ = State::kBody;
      } else {
        log_.Add(line.number, ParseProblemKind::kBadPfnLine,
                 "expected a valid PFN line after the header; block skipped", s);
        SkipBlock();
      }
      return;
    case State::kBody:
      if (unreadable) {
        log_.Add(line.number, bad_kind, bad_what, s);
      } else {
        OnBodyLine(line);
      }
      return;
  }
}

bool DumpParser::StartBlock(const TextLine& line) {
  buf_.clear();
  block_.frames.clear();
  block_.line = line.number;
  block_.byte_offset = line.offset;
  block_.pid.reset();
  block_.tgid.reset();
  block_.comm.reset();
  block_.ts_ns.reset();
  block_.free_ts_ns.reset();
  block_.migrated = false;
  block_.migrate_legacy_text = false;
  block_.migrate_reason = MigrateReason::kNone;
  block_.migrate_reason_name = {};
  block_.slab = false;
  block_.charged = false;
  block_.memcg_via_objcg = false;
  block_.memcg_offline = false;
  block_.memcg_name = {};
  block_.truncated = false;
  last_trailer_ = 0;
  frames_capped_ = false;
  return ParseHeader(Keep(line.text));
}

bool DumpParser::ParseHeader(std::string_view s) {
  DumpBlock& b = block_;
  s.remove_prefix(kHeaderPrefix.size());
  uint64_t v;
  if (!ConsumeDecimal(&s, &v) || v > UINT32_MAX) return false;
  b.order = Order(static_cast<unsigned>(v));
  if (!ConsumePrefix(&s, ", mask ")) return false;
  if (!ConsumeKernelHex(&s, &v) || v > UINT32_MAX) return false;
  b.gfp_mask = static_cast<uint32_t>(v);
  if (!ConsumePrefix(&s, "(")) return false;
  std::string_view names;
  if (!ConsumeUntil(&s, ')', &names)) return false;
  b.gfp_names = names;
  int32_t i;
  if (ConsumePrefix(&s, ", pid ")) {
    if (!ConsumeDecimalI32(&s, &i)) return false;
    b.pid = i;
  }
  if (ConsumePrefix(&s, ", tgid ")) {
    if (!ConsumeDecimalI32(&s, &i)) return false;
    b.tgid = i;
  }
  if (ConsumePrefix(&s, " (")) {
    // The comm may hold anything but NUL, ')' included: it ends at the line's last ')' (the
    // fields after it hold none).
    const size_t close = s.rfind(')');
    if (close == std::string_view::npos) return false;
    b.comm = s.substr(0, close);
    s.remove_prefix(close + 1);
  }
  if (ConsumePrefix(&s, ", ts ")) {
    if (!ConsumeDecimal(&s, &v) || !ConsumePrefix(&s, " ns")) return false;
    b.ts_ns = v;
  }
  if (ConsumePrefix(&s, ", free_ts ")) {
    if (!ConsumeDecimal(&s, &v) || !ConsumePrefix(&s, " ns")) return false;
    b.free_ts_ns = v;
  }
  if (!s.empty()) return false;
  b.generation = !b.ts_ns       ? DumpGeneration::k2016
                 : b.free_ts_ns ? DumpGeneration::kFreeTs
                                : DumpGeneration::kToday;
  return true;
}

bool DumpParser::ParsePfnLine(std::string_view s) {
  DumpBlock& b = block_;
  if (!ConsumePrefix(&s, "PFN ")) return false;
  uint64_t v;
  if (s.substr(0, 2) == "0x") {
    if (!ConsumeKernelHex(&s, &v)) return false;
    b.pfn_hex = true;
  } else {
    if (!ConsumeDecimal(&s, &v)) return false;
    b.pfn_hex = false;
  }
  b.pfn = Pfn(v);
  std::string_view name;
  if (!ConsumePrefix(&s, " type ") || !ConsumeUntil(&s, ' ', &name) || name.empty()) return false;
  b.page_migratetype_name = name;
  b.page_migratetype = MigrateTypeByName(name);
  if (!ConsumePrefix(&s, "Block ") || !ConsumeDecimal(&s, &v)) return false;
  b.pageblock = v;
  if (!ConsumePrefix(&s, " type ") || !ConsumeUntil(&s, ' ', &name) || name.empty()) return false;
  b.pageblock_migratetype_name = name;
  b.pageblock_migratetype = MigrateTypeByName(name);
  if (!ConsumePrefix(&s, "Flags ")) return false;
  b.flags_text = s;
  return ParseValueAndNames(s, &b.flags, &b.flag_names);
}

void DumpParser::OnBodyLine(const TextLine& line) {
  DumpBlock& b = block_;
  std::string_view s = line.text;
  if (s.front() == ' ') {
    if (last_trailer_ != 0) {
      log_.Add(line.number, ParseProblemKind::kFrameAfterTrailer,
               "frame line after a trailer line; kept", s);
    }
    if (b.frames.size() >= options_.max_frames) {
      if (!frames_capped_) {
        frames_capped_ = true;
        log_.Add(line.number, ParseProblemKind::kTooManyFrames,
                 absl::StrCat("more than ", options_.max_frames, " frames; the rest are dropped"));
      }
      return;
    }
    DumpFrame f;
    f.text = Keep(s.substr(1));
    f.symbol = f.text;
    // 2016: " [<ffffffff8118f0a5>] sym". Anything else is kept whole as the symbol text.
    if (f.text.substr(0, 2) == "[<") {
      const size_t close = f.text.find(">] ");
      uint64_t addr;
      if (close != std::string_view::npos && ParseHexU64(f.text.substr(2, close - 2), &addr)) {
        f.address = addr;
        f.symbol = f.text.substr(close + 3);
      }
    }
    b.frames.push_back(f);
    return;
  }

  // Trailers: rank 1 migrated, 2 slab, 3 memcg.
  int rank = 0;
  std::string_view rest = s;
  if (ConsumePrefix(&rest, kMigratedPrefix)) {
    if (ConsumePrefix(&rest, kReasonToday)) {
      rank = 1;
    } else if (ConsumePrefix(&rest, kReason2016)) {
      rank = 1;
    }
  } else if (s == kSlabLine) {
    rank = 2;
  } else if (s.substr(0, kChargedPrefix.size()) == kChargedPrefix) {
    rank = 3;
  }
  if (rank == 0) {
    log_.Add(line.number, ParseProblemKind::kUnknownLine, "not a page_owner line; dropped", s);
    return;
  }
  const bool seen = (rank == 1 && b.migrated) || (rank == 2 && b.slab) || (rank == 3 && b.charged);
  if (seen) {
    log_.Add(line.number, ParseProblemKind::kDuplicateTrailer,
             "second trailer line of its kind; dropped", s);
    return;
  }
  if (rank == 3) {
    std::string_view c = s.substr(kChargedPrefix.size());
    const bool objcg = ConsumePrefix(&c, "(via objcg) ");
    if (!ConsumePrefix(&c, "to ")) {
      log_.Add(line.number, ParseProblemKind::kBadTrailer, "memcg line does not parse; dropped", s);
      return;
    }
    const bool offline = ConsumePrefix(&c, "offline ");
    if (!ConsumePrefix(&c, "memcg ")) {
      log_.Add(line.number, ParseProblemKind::kBadTrailer, "memcg line does not parse; dropped", s);
      return;
    }
    b.charged = true;
    b.memcg_via_objcg = objcg;
    b.memcg_offline = offline;
    b.memcg_name = Keep(c);
  } else if (rank == 2) {
    b.slab = true;
  } else {
    b.migrated = true;
    b.migrate_legacy_text = s.substr(kMigratedPrefix.size(), kReason2016.size()) == kReason2016;
    b.migrate_reason_name = Keep(rest);
    b.migrate_reason = MigrateReasonByName(rest);
    if (b.migrate_reason == MigrateReason::kNone) {
      log_.Add(line.number, ParseProblemKind::kUnknownMigrateReason,
               "unknown migrate reason; kept as text", rest);
    }
  }
  if (rank < last_trailer_) {
    log_.Add(line.number, ParseProblemKind::kTrailerOutOfOrder,
             "trailer line out of the kernel's order (migrated, slab, memcg); kept", s);
  }
  last_trailer_ = std::max(last_trailer_, rank);
}

ParseReport ParseDump(std::string_view text, const DumpParser::BlockCallback& on_block,
                      DumpParserOptions options) {
  DumpParser parser(on_block, options);
  parser.Feed(text);
  parser.Finish();
  return parser.report();
}

}  // namespace pageowner
