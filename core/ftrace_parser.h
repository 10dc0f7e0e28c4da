// A streaming parser of ftrace text traces (/sys/kernel/tracing/trace) of the kmem page events:
// mm_page_alloc, mm_page_free (and mm_page_free_batched), each optionally followed by the
// `<stack trace>` entry that options/stacktrace adds. Same push shape as core/dump_parser.h; the
// line splitter and problem report are core/text_input.h's.
#ifndef PAGEOWNER_CORE_FTRACE_PARSER_H_
#define PAGEOWNER_CORE_FTRACE_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/text_input.h"
#include "core/types.h"

namespace pageowner {

enum class TraceEventKind : uint8_t {
  kAlloc,        // mm_page_alloc: page=%p pfn=0x%lx order=%d migratetype=%d gfp_flags=%s
  kFree,         // mm_page_free: page=%p pfn=0x%lx order=%d
  kFreeBatched,  // mm_page_free_batched: page=%p pfn=0x%lx order=0
};

std::string_view TraceEventKindName(TraceEventKind kind);  // the event's name, "mm_page_alloc"

// One page event. The string views point into the parser's buffers and are valid only during
// the callback that receives the event: copy what you keep.
struct TraceEvent {
  uint64_t line = 0;  // line number of the event line
  TraceEventKind kind = TraceEventKind::kAlloc;

  // The entry's prefix: "TASK-PID [CPU] FLAGS TIMESTAMP: " (with record-tgid,
  // "TASK-PID (TGID) [CPU] ..."; without irq-info, no FLAGS). The task name is the one the
  // tracer knew when the trace was read ("<...>" when it did not), spaces and dashes included.
  std::string_view comm;
  int32_t pid = 0;
  std::optional<int32_t> tgid;  // record-tgid only, and not "(-------)"
  uint32_t cpu = 0;
  std::string_view irq_flags;  // e.g. "d..1.", empty without irq-info
  uint64_t timestamp_ns = 0;   // seconds.fraction converted exactly (trace clock)

  // Fields.
  std::string_view page;  // %p as printed (hashed), "0000000000000000" or "(null)" for none
  Pfn pfn;
  bool pfn_hex = true;  // "pfn=0x..." (since 4.x) or decimal (older kernels)
  Order order;
  int32_t migratetype = -1;        // kAlloc only
  uint32_t gfp_mask = 0;           // kAlloc only: gfp_names read with today's table
  std::string_view gfp_names;      // kAlloc only: as printed ("none" for 0)
  bool gfp_names_unknown = false;  // some name is not in today's table (not in gfp_mask)

  // A failed allocation: mm_page_alloc with no page (pfn printed as 0).
  bool failed() const {
    return kind == TraceEventKind::kAlloc && pfn.raw() == 0 &&
           (page == "(null)" || page.find_first_not_of('0') == std::string_view::npos);
  }

  // The stack of the `<stack trace>` entry that followed the event on its CPU.
  bool has_stack = false;
  uint64_t stack_line = 0;               // line of the "<stack trace>" entry
  std::vector<std::string_view> frames;  // text after " => ", innermost first
  bool stack_truncated = false;          // the input ended inside (or, with stacks on, before) it
};

// The "# ..." header lines worth keeping.
struct TraceHeader {
  std::string tracer;                         // "# tracer: nop"
  std::optional<uint64_t> entries_in_buffer;  // "# entries-in-buffer/entries-written: N/M   #P:C"
  std::optional<uint64_t> entries_written;
  std::optional<uint32_t> cpus;
};

struct FtraceParserOptions {
  size_t max_line_bytes = 4096;
  size_t max_frames = 256;  // frames a stack kept
  size_t max_listed_problems = 1000;
  // Events held while their CPU may still deliver their stack (see FtraceParser). When more are
  // waiting, the oldest is handed over without a stack.
  size_t max_pending_events = 1024;
};

// The push parser of ftrace text.
//
// Pairing stacks with events: the `<stack trace>` entry of an event is recorded right after it
// on the same CPU, but the trace merges the per-CPU buffers by time, so entries of other CPUs
// may come in between; and on the same CPU an interrupt may record its own event and stack
// between an event and that event's stack (seen in the real 6.1 trace: a softirq's
// mm_page_free and its stack between a task's mm_page_alloc and the alloc's stack). So each CPU
// keeps a stack of open events with their context level (the hardirq/softirq column of the irq
// flags: '.' task, 's' softirq, 'h'/'H' hardirq, 'z'/'Z' NMI; task level without irq-info). A
// new event closes (as stackless) the open events of its CPU at its level or deeper; a stack
// entry closes those deeper than itself and takes the open event at its own level, when that
// event has the stack entry's pid.
//
// Output order: events are handed over in the order of their event lines (the trace's
// timestamp order), each once its stack is complete or it is known to have none. Held events
// are bounded by max_pending_events (the oldest then goes without its stack).
//
// What it does with what it does not expect:
//  - "#" lines are comments (the tracer and the entries/CPUs counts are kept in header());
//  - an entry of another event: kUnknownEvent; a stack entry after it is skipped with it;
//  - an mm_page_* line whose fields do not parse (bad text, overflow): kBadEventLine, dropped
//    (records_skipped) with its stack;
//  - a gfp_flags name not in today's table: kUnknownGfpName, the event is kept with the mask of
//    the names known and gfp_names_unknown set;
//  - a `<stack trace>` entry with no open event of ours at its level on its CPU (or one of
//    another pid): kOrphanStack, skipped with its frames; " => " lines outside any stack:
//    kOrphanFrame (once a run);
//  - "CPU:N [LOST M EVENTS]": kLostEvents (M added to lost_events());
//  - any other line: kUnknownLine; too long, binary and CRLF lines as for dumps;
//  - the input ends inside a stack with no frame yet, or on an unterminated frame line, or
//    (when the trace has stacks) before an event's stack: kTruncatedStack, the event is handed
//    over with stack_truncated set.
// Not modelled: the latency format, counter trace clocks (timestamps without a '.'), user stack
// traces (`<user stack trace>` entries are skipped with their frames, silently).
class FtraceParser {
 public:
  using EventCallback = std::function<void(const TraceEvent&)>;

  explicit FtraceParser(EventCallback on_event, FtraceParserOptions options = {});
  FtraceParser(const FtraceParser&) = delete;
  FtraceParser& operator=(const FtraceParser&) = delete;

  void Feed(std::string_view chunk);
  void Finish();

  const ParseReport& report() const { return report_; }
  const TraceHeader& header() const { return header_; }
  uint64_t lost_events() const { return lost_events_; }
  // Stack entries read and attached to an event.
  uint64_t stacks() const { return stacks_; }

 private:
  // An event held in the ring, its strings kept in `text` (offsets until handed over).
  struct Span {
    uint32_t at = 0;
    uint32_t size = 0;
  };
  enum class SlotState : uint8_t { kOpen, kInStack, kDone };
  struct Slot {
    TraceEvent event;
    SlotState state = SlotState::kOpen;
    std::string text;
    Span comm, irq_flags, page, gfp_names;
    std::vector<Span> frames;
  };
  // The parsed prefix of an entry line.
  struct Prefix {
    std::string_view comm;
    int32_t pid = 0;
    std::optional<int32_t> tgid;
    uint32_t cpu = 0;
    std::string_view irq_flags;
    uint64_t timestamp_ns = 0;
  };
  static constexpr uint64_t kNoEvent = UINT64_MAX;
  static constexpr uint64_t kIgnoredEntry = UINT64_MAX - 1;  // an entry whose stack is skipped
  // An entry of a CPU that may still receive its stack.
  struct Open {
    uint64_t seq = kNoEvent;  // the event's sequence number, or kIgnoredEntry
    uint8_t level = 0;        // 0 task, 1 softirq, 2 hardirq, 3 NMI
  };

  void OnLine(const TextLine& line);
  void OnEntry(const TextLine& line, const Prefix& prefix, std::string_view entry);
  void OnEventLine(const TextLine& line, const Prefix& prefix, std::string_view name,
                   std::string_view fields);
  void OnStackLine(const TextLine& line, const Prefix& prefix);
  void OnFrameLine(const TextLine& line, std::string_view frame);
  // Ends the stack being read (a non-frame line came).
  void EndStack();
  // Closes (as stackless) the open entries of `cpu` at `level` or deeper.
  void CloseOpen(uint32_t cpu, int level);
  void PushOpen(uint32_t cpu, Open open);
  void MarkDone(uint64_t seq);
  bool InRing(uint64_t seq) const { return seq < kIgnoredEntry && seq >= front_seq_; }
  Slot& SlotOf(uint64_t seq) { return ring_[(seq - front_seq_ + head_) % ring_.size()]; }
  Slot& PushSlot();
  void Drain();
  void Emit(Slot& slot);
  static Span Append(std::string* text, std::string_view s);
  static uint8_t ContextLevel(std::string_view irq_flags);
  bool LookupGfp(std::string_view names, uint32_t* mask, std::string_view* unknown);

  EventCallback on_event_;
  FtraceParserOptions options_;
  ParseReport report_;
  ProblemLog log_;
  LineSplitter splitter_;
  TraceHeader header_;

  std::vector<Slot> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t front_seq_ = 0;                                     // sequence number of ring_[head_]
  absl::flat_hash_map<uint32_t, std::vector<Open>> cpu_open_;  // innermost last
  uint64_t stack_seq_ = kNoEvent;  // the event whose frames are being read
  bool skipping_frames_ = false;   // frames of an ignored or orphan stack
  bool orphan_run_ = false;        // an orphan frame run was reported
  bool frames_capped_ = false;
  bool last_line_unterminated_frame_ = false;

  struct GfpEntry {
    uint32_t mask = 0;
    std::string unknown;  // the first unknown name, "" when all are known
  };
  absl::flat_hash_map<std::string, GfpEntry> gfp_cache_;

  uint64_t lost_events_ = 0;
  uint64_t stacks_ = 0;
  bool reported_cr_ = false;
  bool finished_ = false;
};

// Parses a whole text at once.
ParseReport ParseFtrace(std::string_view text, const FtraceParser::EventCallback& on_event,
                        FtraceParserOptions options = {});

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_FTRACE_PARSER_H_
