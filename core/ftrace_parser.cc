#include "core/ftrace_parser.h"

#include <algorithm>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/kernel_flags.h"
#include "core/strings.h"

namespace pageowner {
namespace {

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

std::string_view TrimLeft(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  return s;
}

// "key=value" up to the next space (consumed) or the end.
bool ConsumeField(std::string_view* s, std::string_view key, std::string_view* value) {
  if (!ConsumePrefix(s, key)) return false;
  const size_t sp = s->find(' ');
  *value = s->substr(0, sp);
  s->remove_prefix(sp == std::string_view::npos ? s->size() : sp + 1);
  return !value->empty();
}

// ftrace's "%5lu.%06lu" (any 1 to 9 fraction digits) as nanoseconds, exactly.
bool ParseTimestamp(std::string_view s, uint64_t* ns) {
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view frac = s.substr(dot + 1);
  uint64_t sec, f;
  if (frac.empty() || frac.size() > 9 || !ParseDecimalU64(s.substr(0, dot), &sec) ||
      !ParseDecimalU64(frac, &f)) {
    return false;
  }
  for (size_t i = frac.size(); i < 9; ++i) f *= 10;
  constexpr uint64_t kNs = 1000000000;
  if (sec > (UINT64_MAX - f) / kNs) return false;
  *ns = sec * kNs + f;
  return true;
}

bool ParseU32(std::string_view s, uint32_t* v) {
  uint64_t x;
  if (!ParseDecimalU64(s, &x) || x > UINT32_MAX) return false;
  *v = static_cast<uint32_t>(x);
  return true;
}

}  // namespace

std::string_view TraceEventKindName(TraceEventKind kind) {
  switch (kind) {
    case TraceEventKind::kAlloc:
      return "mm_page_alloc";
    case TraceEventKind::kFree:
      return "mm_page_free";
    case TraceEventKind::kFreeBatched:
      return "mm_page_free_batched";
  }
  return "unknown";
}

FtraceParser::FtraceParser(EventCallback on_event, FtraceParserOptions options)
    : on_event_(std::move(on_event)),
      options_(options),
      log_(&report_, options.max_listed_problems),
      splitter_(options.max_line_bytes),
      ring_(std::max<size_t>(options.max_pending_events, 2)) {}

void FtraceParser::Feed(std::string_view chunk) {
  splitter_.Feed(chunk, [this](const TextLine& line) { OnLine(line); });
}

void FtraceParser::Finish() {
  if (finished_) return;
  finished_ = true;
  splitter_.Finish([this](const TextLine& line) { OnLine(line); });
  if (stack_seq_ != kNoEvent) {
    Slot& s = SlotOf(stack_seq_);
    if (s.frames.empty() || last_line_unterminated_frame_) {
      s.event.stack_truncated = true;
      log_.Add(s.event.stack_line, ParseProblemKind::kTruncatedStack,
               "the input ends inside the event's stack");
    }
  }
  EndStack();
  for (size_t i = 0; i < count_; ++i) {
    Slot& s = ring_[(head_ + i) % ring_.size()];
    if (s.state == SlotState::kOpen && stacks_ > 0) {
      s.event.stack_truncated = true;
      log_.Add(s.event.line, ParseProblemKind::kTruncatedStack,
               "the input ends before the event's stack");
    }
    s.state = SlotState::kDone;
  }
  Drain();
  cpu_open_.clear();
  report_.bytes = splitter_.bytes();
  report_.lines = splitter_.lines();
}

FtraceParser::Span FtraceParser::Append(std::string* text, std::string_view s) {
  Span span{static_cast<uint32_t>(text->size()), static_cast<uint32_t>(s.size())};
  text->append(s);
  return span;
}

FtraceParser::Slot& FtraceParser::PushSlot() {
  if (count_ == ring_.size()) {
    // Too many events wait for their CPU: the oldest goes without (the rest of) its stack.
    Slot& front = ring_[head_];
    if (stack_seq_ == front_seq_) {
      stack_seq_ = kNoEvent;
      skipping_frames_ = true;
    }
    front.state = SlotState::kDone;
    Drain();
  }
  Slot& s = ring_[(head_ + count_) % ring_.size()];
  ++count_;
  s.state = SlotState::kOpen;
  s.text.clear();
  s.frames.clear();
  s.event.has_stack = false;
  s.event.stack_line = 0;
  s.event.stack_truncated = false;
  s.event.frames.clear();
  return s;
}

void FtraceParser::Drain() {
  while (count_ > 0 && ring_[head_].state == SlotState::kDone) {
    Emit(ring_[head_]);
    head_ = (head_ + 1) % ring_.size();
    --count_;
    ++front_seq_;
  }
}

void FtraceParser::Emit(Slot& slot) {
  const auto view = [&slot](Span sp) { return std::string_view(slot.text).substr(sp.at, sp.size); };
  TraceEvent& e = slot.event;
  e.comm = view(slot.comm);
  e.irq_flags = view(slot.irq_flags);
  e.page = view(slot.page);
  e.gfp_names = view(slot.gfp_names);
  e.frames.clear();
  for (Span sp : slot.frames) e.frames.push_back(view(sp));
  ++report_.records;
  if (e.stack_truncated) ++report_.records_truncated;
  on_event_(e);
}

void FtraceParser::MarkDone(uint64_t seq) {
  if (!InRing(seq)) return;
  Slot& s = SlotOf(seq);
  if (s.state == SlotState::kOpen) s.state = SlotState::kDone;
}

void FtraceParser::CloseOpen(uint32_t cpu, int level) {
  auto it = cpu_open_.find(cpu);
  if (it == cpu_open_.end()) return;
  std::vector<Open>& open = it->second;
  while (!open.empty() && open.back().level >= level) {
    MarkDone(open.back().seq);
    open.pop_back();
  }
  if (open.empty()) cpu_open_.erase(it);
  Drain();
}

void FtraceParser::PushOpen(uint32_t cpu, Open open) {
  // Each CPU's list holds strictly increasing levels (CloseOpen ran first), so at most four
  // entries; the CPUs are bounded too, against inputs that name a new CPU on every line.
  constexpr size_t kMaxCpus = 1 << 16;
  if (cpu_open_.size() >= kMaxCpus && !cpu_open_.contains(cpu)) {
    for (auto& [c, list] : cpu_open_) {
      for (const Open& o : list) MarkDone(o.seq);
    }
    cpu_open_.clear();
  }
  cpu_open_[cpu].push_back(open);
  Drain();
}

uint8_t FtraceParser::ContextLevel(std::string_view irq_flags) {
  // trace_print_lat_fmt's hardirq/softirq column, the third of the flags.
  if (irq_flags.size() < 3) return 0;
  switch (irq_flags[2]) {
    case 's':
      return 1;
    case 'h':
    case 'H':
      return 2;
    case 'z':
    case 'Z':
      return 3;
    default:
      return 0;
  }
}

void FtraceParser::EndStack() {
  if (stack_seq_ != kNoEvent) {
    SlotOf(stack_seq_).state = SlotState::kDone;
    stack_seq_ = kNoEvent;
    Drain();
  }
  skipping_frames_ = false;
  orphan_run_ = false;
  frames_capped_ = false;
}

void FtraceParser::OnLine(const TextLine& line) {
  if (line.had_cr && !reported_cr_) {
    reported_cr_ = true;
    log_.Add(line.number, ParseProblemKind::kCarriageReturn,
             "CRLF line ends; read as LF from here on");
  }
  if (line.unterminated) {
    log_.Add(line.number, ParseProblemKind::kNoFinalNewline, "the last line has no newline");
  }
  if (line.too_long || line.has_nul) {
    EndStack();
    if (line.too_long) {
      log_.Add(line.number, ParseProblemKind::kLineTooLong, "line longer than the limit; dropped",
               line.text);
    } else {
      log_.Add(line.number, ParseProblemKind::kBinaryData, "line with NUL bytes; dropped",
               line.text);
    }
    return;
  }
  const std::string_view s = line.text;
  // A stack frame: " => func+0xoff/0xsize" (or " => func").
  if (!s.empty() && s.front() == ' ') {
    std::string_view f = TrimLeft(s);
    if (ConsumePrefix(&f, "=>")) {
      last_line_unterminated_frame_ = line.unterminated;
      OnFrameLine(line, TrimLeft(f));
      return;
    }
  }
  EndStack();
  if (s.empty()) return;
  if (s.front() == '#') {
    std::string_view h = s;
    if (ConsumePrefix(&h, "# tracer: ")) {
      header_.tracer = std::string(h);
    } else if (ConsumePrefix(&h, "# entries-in-buffer/entries-written: ")) {
      // "N/M   #P:C"
      const size_t slash = h.find('/');
      const size_t sp = h.find(' ');
      const size_t p = h.find("#P:");
      uint64_t n, m, c;
      if (slash != std::string_view::npos && sp != std::string_view::npos && slash < sp &&
          ParseDecimalU64(h.substr(0, slash), &n) &&
          ParseDecimalU64(h.substr(slash + 1, sp - slash - 1), &m)) {
        header_.entries_in_buffer = n;
        header_.entries_written = m;
      }
      if (p != std::string_view::npos && ParseDecimalU64(h.substr(p + 3), &c) && c <= UINT32_MAX) {
        header_.cpus = static_cast<uint32_t>(c);
      }
    }
    return;
  }
  // "CPU:%d [LOST %lu EVENTS]" (or "[LOST EVENTS]" when the count is unknown).
  {
    std::string_view l = s;
    if (ConsumePrefix(&l, "CPU:")) {
      const size_t sp = l.find(' ');
      uint32_t cpu;
      std::string_view rest = sp == std::string_view::npos ? std::string_view() : l.substr(sp + 1);
      if (sp != std::string_view::npos && ParseU32(l.substr(0, sp), &cpu) &&
          ConsumePrefix(&rest, "[LOST ") && rest.size() >= 7 &&
          rest.substr(rest.size() - 7) == "EVENTS]") {
        rest.remove_suffix(7);
        rest = TrimRight(rest);
        uint64_t n = 0;
        if (rest.empty() || ParseDecimalU64(rest, &n)) {
          lost_events_ += n;
          log_.Add(line.number, ParseProblemKind::kLostEvents, "the ring buffer lost events", s);
          // The event waiting on that CPU may have lost its stack.
          CloseOpen(cpu, 0);
          return;
        }
      }
    }
  }
  // "PREFIX: ENTRY": the prefix ends at the first ": " before which a valid prefix stands (a
  // task name may hold ": " itself).
  for (size_t at = s.find(": "); at != std::string_view::npos; at = s.find(": ", at + 1)) {
    Prefix prefix;
    std::string_view p = TrimRight(s.substr(0, at));
    // Timestamp.
    size_t sp = p.rfind(' ');
    if (sp == std::string_view::npos || !ParseTimestamp(p.substr(sp + 1), &prefix.timestamp_ns)) {
      continue;
    }
    p = TrimRight(p.substr(0, sp));
    // Irq flags (irq-info), then "[CPU]".
    if (!p.empty() && p.back() != ']') {
      sp = p.rfind(' ');
      if (sp == std::string_view::npos) continue;
      prefix.irq_flags = p.substr(sp + 1);
      p = TrimRight(p.substr(0, sp));
    }
    if (p.empty() || p.back() != ']') continue;
    const size_t open = p.rfind('[');
    if (open == std::string_view::npos ||
        !ParseU32(p.substr(open + 1, p.size() - open - 2), &prefix.cpu)) {
      continue;
    }
    p = TrimRight(p.substr(0, open));
    // "(TGID)" with record-tgid: "(   123)" or "(-------)".
    if (!p.empty() && p.back() == ')') {
      const size_t lp = p.rfind('(');
      if (lp == std::string_view::npos) continue;
      const std::string_view t = TrimLeft(p.substr(lp + 1, p.size() - lp - 2));
      int32_t tgid;
      if (!t.empty() && t.find_first_not_of('-') == std::string_view::npos) {
        // unknown tgid
      } else if (!t.empty() && t.front() != '-' && ParseDecimalI32(t, &tgid)) {
        prefix.tgid = tgid;
      } else {
        continue;
      }
      p = TrimRight(p.substr(0, lp));
    }
    // "TASK-PID": the pid follows the last dash.
    const size_t dash = p.rfind('-');
    if (dash == std::string_view::npos) continue;
    const std::string_view pid = p.substr(dash + 1);
    if (pid.empty() || pid.front() == '-' || !ParseDecimalI32(pid, &prefix.pid)) continue;
    prefix.comm = TrimLeft(p.substr(0, dash));
    OnEntry(line, prefix, s.substr(at + 2));
    return;
  }
  log_.Add(line.number, ParseProblemKind::kUnknownLine, "not a trace line; dropped", s);
}

void FtraceParser::OnEntry(const TextLine& line, const Prefix& prefix, std::string_view entry) {
  if (entry == "<stack trace>") {
    OnStackLine(line, prefix);
    return;
  }
  if (entry == "<user stack trace>") {
    // Not modelled: its frames are skipped; it pairs with no event.
    skipping_frames_ = true;
    return;
  }
  const size_t colon = entry.find(": ");
  const std::string_view name = entry.substr(0, colon);
  const std::string_view fields =
      colon == std::string_view::npos ? std::string_view() : entry.substr(colon + 2);
  if (name == "mm_page_alloc" || name == "mm_page_free" || name == "mm_page_free_batched") {
    OnEventLine(line, prefix, name, fields);
    return;
  }
  log_.Add(line.number, ParseProblemKind::kUnknownEvent, "an entry of another event; ignored",
           entry);
  const uint8_t level = ContextLevel(prefix.irq_flags);
  CloseOpen(prefix.cpu, level);
  PushOpen(prefix.cpu, Open{kIgnoredEntry, level});
}

void FtraceParser::OnEventLine(const TextLine& line, const Prefix& prefix, std::string_view name,
                               std::string_view fields) {
  const TraceEventKind kind = name == "mm_page_alloc"  ? TraceEventKind::kAlloc
                              : name == "mm_page_free" ? TraceEventKind::kFree
                                                       : TraceEventKind::kFreeBatched;
  std::string_view f = fields, page, pfn, order, mt, gfp;
  uint64_t pfn_value = 0;
  uint32_t order_value = 0;
  int32_t mt_value = -1;
  bool pfn_hex = false;
  bool ok = ConsumeField(&f, "page=", &page) && ConsumeField(&f, "pfn=", &pfn) &&
            ConsumeField(&f, "order=", &order) && ParseU32(order, &order_value);
  if (ok) {
    std::string_view digits = pfn;
    pfn_hex = ConsumePrefix(&digits, "0x");
    ok = pfn_hex ? ParseHexU64(digits, &pfn_value) : ParseDecimalU64(digits, &pfn_value);
  }
  if (ok && kind == TraceEventKind::kAlloc) {
    ok = ConsumeField(&f, "migratetype=", &mt) && ParseDecimalI32(mt, &mt_value) &&
         ConsumePrefix(&f, "gfp_flags=") && !f.empty();
    gfp = f;
    f = {};
  }
  ok = ok && f.empty();
  if (!ok) {
    log_.Add(line.number, ParseProblemKind::kBadEventLine,
             absl::StrCat(Sv(name), " fields do not parse; event dropped"), fields);
    ++report_.records_skipped;
    const uint8_t level = ContextLevel(prefix.irq_flags);
    CloseOpen(prefix.cpu, level);
    PushOpen(prefix.cpu, Open{kIgnoredEntry, level});
    return;
  }
  uint32_t mask = 0;
  std::string_view unknown;
  const bool known = kind != TraceEventKind::kAlloc || LookupGfp(gfp, &mask, &unknown);
  if (!known) {
    log_.Add(line.number, ParseProblemKind::kUnknownGfpName,
             "gfp flag name not in today's table; the known names are kept", unknown);
  }
  const uint8_t level = ContextLevel(prefix.irq_flags);
  CloseOpen(prefix.cpu, level);
  Slot& s = PushSlot();
  // PushSlot may have handed the front over; the new slot is the ring's last.
  const uint64_t my_seq = front_seq_ + count_ - 1;
  TraceEvent& e = s.event;
  e.line = line.number;
  e.kind = kind;
  e.pid = prefix.pid;
  e.tgid = prefix.tgid;
  e.cpu = prefix.cpu;
  e.timestamp_ns = prefix.timestamp_ns;
  e.pfn = Pfn(pfn_value);
  e.pfn_hex = pfn_hex;
  e.order = Order(order_value);
  e.migratetype = mt_value;
  e.gfp_mask = mask;
  e.gfp_names_unknown = !known;
  s.comm = Append(&s.text, prefix.comm);
  s.irq_flags = Append(&s.text, prefix.irq_flags);
  s.page = Append(&s.text, page);
  s.gfp_names = Append(&s.text, gfp);
  PushOpen(prefix.cpu, Open{my_seq, level});
}

void FtraceParser::OnStackLine(const TextLine& line, const Prefix& prefix) {
  const uint8_t level = ContextLevel(prefix.irq_flags);
  // Entries deeper than the stack's context got no stack.
  CloseOpen(prefix.cpu, level + 1);
  auto it = cpu_open_.find(prefix.cpu);
  if (it != cpu_open_.end() && !it->second.empty() && it->second.back().level == level) {
    const Open open = it->second.back();
    it->second.pop_back();
    if (it->second.empty()) cpu_open_.erase(it);
    if (open.seq == kIgnoredEntry) {
      // The stack of an entry we ignore (already reported).
      skipping_frames_ = true;
      return;
    }
    if (InRing(open.seq)) {
      Slot& s = SlotOf(open.seq);
      if (s.state == SlotState::kOpen && s.event.pid == prefix.pid) {
        s.state = SlotState::kInStack;
        s.event.has_stack = true;
        s.event.stack_line = line.number;
        stack_seq_ = open.seq;
        ++stacks_;
        return;
      }
    }
    MarkDone(open.seq);
    Drain();
  }
  log_.Add(line.number, ParseProblemKind::kOrphanStack,
           "a stack entry with no open event of ours at its level on its CPU; skipped", line.text);
  skipping_frames_ = true;
}

void FtraceParser::OnFrameLine(const TextLine& line, std::string_view frame) {
  if (stack_seq_ != kNoEvent) {
    Slot& s = SlotOf(stack_seq_);
    if (s.frames.size() >= options_.max_frames) {
      if (!frames_capped_) {
        frames_capped_ = true;
        log_.Add(line.number, ParseProblemKind::kTooManyFrames,
                 absl::StrCat("more than ", options_.max_frames, " frames; the rest are dropped"));
      }
      return;
    }
    s.frames.push_back(Append(&s.text, frame));
    return;
  }
  if (skipping_frames_) return;
  if (!orphan_run_) {
    orphan_run_ = true;
    log_.Add(line.number, ParseProblemKind::kOrphanFrame,
             "frame lines outside a stack entry; dropped", line.text);
  }
}

bool FtraceParser::LookupGfp(std::string_view names, uint32_t* mask, std::string_view* unknown) {
  auto it = gfp_cache_.find(Sv(names));
  if (it == gfp_cache_.end()) {
    GfpEntry entry;
    absl::StatusOr<uint32_t> whole = ParseGfpNames(names);
    if (whole.ok()) {
      entry.mask = *whole;
    } else {
      // Keep the names we know; remember the first one we do not.
      std::string_view rest = names;
      while (true) {
        const size_t bar = rest.find('|');
        const std::string_view token = rest.substr(0, bar);
        absl::StatusOr<uint32_t> one =
            token.empty() ? absl::StatusOr<uint32_t>(absl::InvalidArgumentError(""))
                          : ParseGfpNames(token);
        if (one.ok()) {
          entry.mask |= *one;
        } else if (entry.unknown.empty()) {
          entry.unknown = token.empty() ? std::string("(empty)") : std::string(token);
        }
        if (bar == std::string_view::npos) break;
        rest.remove_prefix(bar + 1);
      }
    }
    constexpr size_t kMaxCached = 4096;
    if (gfp_cache_.size() >= kMaxCached) gfp_cache_.clear();
    it = gfp_cache_.emplace(std::string(names), std::move(entry)).first;
  }
  *mask = it->second.mask;
  *unknown = it->second.unknown;
  return it->second.unknown.empty();
}

ParseReport ParseFtrace(std::string_view text, const FtraceParser::EventCallback& on_event,
                        FtraceParserOptions options) {
  FtraceParser parser(on_event, options);
  parser.Feed(text);
  parser.Finish();
  return parser.report();
}

}  // namespace pageowner
