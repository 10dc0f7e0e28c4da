#include "client/real_kernels.h"

#include <lzma.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <istream>
#include <map>
#include <optional>
#include <ostream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/numeric/int128.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/command.h"
#include "core/dump_parser.h"
#include "core/ftrace_parser.h"
#include "core/page_owner_sort.h"
#include "core/strings.h"
#include "wire/status.h"

namespace pageowner::cli {
namespace {

using client::Client;
using client::IngestResult;
using client::Session;
using client::SessionOptions;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

absl::Status ReadGzip(const std::string& file, std::string* out) {
  gzFile f = gzopen(file.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", file));
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out->append(buf, static_cast<size_t>(n));
  int err = Z_OK;
  const char* msg = gzerror(f, &err);
  const bool bad = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string what = bad ? msg : "";
  gzclose(f);
  if (bad) return absl::InvalidArgumentError(absl::StrCat(file, ": gzip: ", what));
  return absl::OkStatus();
}

absl::Status ReadXz(const std::string& file, std::string* out) {
  FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", file));
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK) {
    std::fclose(f);
    return absl::InternalError("liblzma: cannot start the decoder");
  }
  std::vector<uint8_t> in(1 << 16), buf(1 << 18);
  lzma_action action = LZMA_RUN;
  lzma_ret ret = LZMA_OK;
  strm.next_out = buf.data();
  strm.avail_out = buf.size();
  while (true) {
    if (strm.avail_in == 0 && action == LZMA_RUN) {
      strm.next_in = in.data();
      strm.avail_in = std::fread(in.data(), 1, in.size(), f);
      if (std::feof(f) || std::ferror(f)) action = LZMA_FINISH;
    }
    ret = lzma_code(&strm, action);
    if (strm.avail_out == 0 || ret == LZMA_STREAM_END) {
      out->append(reinterpret_cast<const char*>(buf.data()), buf.size() - strm.avail_out);
      strm.next_out = buf.data();
      strm.avail_out = buf.size();
    }
    if (ret != LZMA_OK) break;
  }
  lzma_end(&strm);
  std::fclose(f);
  if (ret != LZMA_STREAM_END) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": not a valid .xz file (liblzma error ", static_cast<int>(ret), ")"));
  }
  return absl::OkStatus();
}

// The last page of the highest block a dump lists (a quick look at its header and PFN lines),
// or nullopt when it lists none. Lines that do not parse are left to the parser to report. Any
// 64-bit pfn counts (a block past 2^64 - 1 saturates there): a pfn nobody's memory reaches must
// still be refused before anything is sent.
std::optional<uint64_t> HighestPage(std::string_view text) {
  std::optional<uint64_t> highest;
  uint64_t order = 0;
  size_t pos = 0;
  constexpr std::string_view kHeader = "Page allocated via order ";
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind(kHeader, 0) == 0) {
      std::string_view rest = line.substr(kHeader.size());
      const size_t n = rest.find(',');
      if (!ParseDecimalU64(rest.substr(0, n), &order) || order > kMaxOrder) order = 0;
    } else if (line.rfind("PFN ", 0) == 0) {
      std::string_view rest = line.substr(4);
      rest = rest.substr(0, rest.find(' '));
      uint64_t pfn = 0;
      const bool ok = rest.rfind("0x", 0) == 0 ? ParseHexU64(rest.substr(2), &pfn)
                                               : ParseDecimalU64(rest, &pfn);
      if (!ok) continue;
      const uint64_t span = (uint64_t{1} << order) - 1;
      const uint64_t last = pfn > UINT64_MAX - span ? UINT64_MAX : pfn + span;
      highest = std::max(highest.value_or(0), last);
    }
  }
  return highest;
}

std::string MemcgLine(const DumpBlock& b) {
  if (!b.charged) return "";
  return absl::StrCat("Charged ", b.memcg_via_objcg ? "(via objcg) " : "", "to ",
                      b.memcg_offline ? "offline " : "", "memcg ", Sv(b.memcg_name));
}

// Results by code, with the first failures listed by input line.
class Outcomes {
 public:
  Outcomes(size_t max_listed, std::string what) : max_listed_(max_listed), what_(std::move(what)) {}
  // The input line of the event with this seq.
  void Note(uint64_t seq, uint64_t line, std::string_view kind = {}) {
    if (lines_.size() <= seq) lines_.resize(seq + 1);
    lines_[seq] = line;
    if (!kind.empty()) {
      if (kinds_.size() <= seq) kinds_.resize(seq + 1);
      kinds_[seq] = std::string(kind);
    }
  }
  void Take(absl::Span<const IngestResult> results) {
    for (const IngestResult& r : results) {
      const std::string kind = r.seq < kinds_.size() ? kinds_[r.seq] : "";
      ++by_code_[{kind, wire::CodeName(r.code)}];
      if (r.ok()) {
        ++ok_;
        continue;
      }
      ++failed_;
      // In a trace, a free the daemon finds free is a page allocated before tracing began.
      const bool before_trace = kind == "mm_page_free" &&
                                r.code == absl::StatusCode::kFailedPrecondition &&
                                absl::StrContains(r.message, "is free");
      if (before_trace) ++freed_before_trace_;
      if (listed_.size() < max_listed_) {
        listed_.push_back(
            absl::StrCat("line ", r.seq < lines_.size() ? lines_[r.seq] : 0, ": ",
                         kind.empty() ? "" : kind + ": ", wire::CodeName(r.code), ": ", r.message,
                         before_trace ? " (most likely allocated before the trace started)" : ""));
      }
    }
  }
  uint64_t ok() const { return ok_; }
  uint64_t failed() const { return failed_; }
  // Frees of pages the daemon holds free: allocated before the trace began, most likely.
  uint64_t freed_before_trace() const { return freed_before_trace_; }
  void Print(std::ostream& err) const {
    for (const std::string& l : listed_) err << what_ << ": " << l << "\n";
    if (failed_ > listed_.size()) {
      err << what_ << ": ... " << failed_ - listed_.size() << " more failures not listed\n";
    }
  }
  const std::map<std::pair<std::string, std::string>, uint64_t>& by_code() const {
    return by_code_;
  }

 private:
  size_t max_listed_;
  std::string what_;
  std::vector<uint64_t> lines_;
  std::vector<std::string> kinds_;
  std::map<std::pair<std::string, std::string>, uint64_t> by_code_;
  std::vector<std::string> listed_;
  uint64_t ok_ = 0;
  uint64_t failed_ = 0;
  uint64_t freed_before_trace_ = 0;
};

}  // namespace

absl::Status ReadInputFile(const std::string& file, std::istream& in, std::string* out) {
  out->clear();
  if (file == "-") {
    char buf[1 << 16];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      out->append(buf, static_cast<size_t>(in.gcount()));
    }
    return absl::OkStatus();
  }
  if (std::filesystem::is_directory(file)) {
    return absl::InvalidArgumentError(absl::StrCat(file, " is a directory"));
  }
  if (EndsWith(file, ".xz")) return ReadXz(file, out);
  if (EndsWith(file, ".gz")) return ReadGzip(file, out);
  FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return absl::NotFoundError(absl::StrCat("cannot open ", file));
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  const bool bad = std::ferror(f) != 0;
  std::fclose(f);
  if (bad) return absl::InvalidArgumentError(absl::StrCat("cannot read ", file));
  return absl::OkStatus();
}

absl::StatusOr<DumpFormat> ParseDumpFormat(std::string_view name) {
  if (name == "today") return DumpFormat::kToday;
  if (name == "v6.2") return DumpFormat::kFreeTs;
  if (name == "2016") return DumpFormat::k2016;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown format '", Sv(name), "': today, v6.2 or 2016"));
}

int RunImport(Client& client, const ImportOptions& options, Io io) {
  const absl::Time start = absl::Now();
  std::string text;
  if (absl::Status s = ReadInputFile(options.file, io.in, &text); !s.ok()) {
    io.err << "pageowner: import: " << s.message() << "\n";
    return kExitUsage;
  }
  // The whole input is in memory (decompressed), so the highest pfn is known before anything is
  // sent, for stdin too.
  const std::optional<uint64_t> highest = HighestPage(text);
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  if (!stats.ok()) {
    io.err << "pageowner: " << wire::CodeName(stats.status().code()) << ": "
           << stats.status().message() << "\n";
    return kExitServerError;
  }
  const uint64_t total = stats->total_pages();
  if (highest.has_value() && *highest >= total && !options.force) {
    // (pfn + 1) * 4 KiB does not fit 64 bits for the highest pfns.
    const absl::uint128 kib = (absl::uint128(*highest) + 1) * 4;
    io.err << "pageowner: import: the dump's highest pfn is "
           << absl::StrFormat("0x%x (%d)", *highest, *highest)
           << absl::StrFormat(", beyond the daemon's memory of %d pages (pfns 0..0x%x); ", total,
                              total == 0 ? 0 : total - 1)
           << "start pageownerd with --memory of at least " << kib
           << " KiB, or import with --force (those blocks then fail with OUT_OF_RANGE)\n";
    return kExitServerError;
  }

  Outcomes outcomes(options.max_listed, "import");
  SessionOptions so;
  so.batch_events = BatchWithinLimit("import", options.batch, &*stats, io);
  so.on_results = [&](absl::Span<const IngestResult> r) { outcomes.Take(r); };
  std::unique_ptr<Session> session = client.StartSession(so);

  absl::flat_hash_map<std::string, client::StackId> stack_ids;  // frames' text -> id
  std::string key;
  std::vector<client::Frame> frames;
  PrintedExtras extras;
  uint64_t blocks = 0, pages = 0, unsimulated_blocktype = 0;
  absl::Time last_progress = start;
  const bool progress = options.progress && text.size() > (8u << 20);
  DumpParser parser([&](const DumpBlock& b) {
    key.clear();
    for (const DumpFrame& f : b.frames) {
      if (f.address) absl::StrAppend(&key, "[", *f.address, "]");
      absl::StrAppend(&key, Sv(f.symbol), "\n");
    }
    auto it = stack_ids.find(key);
    if (it == stack_ids.end()) {
      frames.clear();
      for (const DumpFrame& f : b.frames) {
        frames.push_back(client::Frame{f.address.value_or(0), std::string(f.symbol)});
      }
      // A block with no frame still needs a stack: the daemon refuses it (INVALID_ARGUMENT).
      it = stack_ids.emplace(key, frames.empty() ? client::StackId() : session->InternStack(frames))
               .first;
    }
    extras.page_flags = b.flags;
    extras.flags_text = std::string(b.flags_text);
    extras.gfp_names = std::string(b.gfp_names);
    extras.slab_cache = b.slab;
    extras.memcg = MemcgLine(b);
    client::ImportSpec spec;
    spec.pfn = b.pfn;
    spec.order = b.order;
    spec.gfp_mask = b.gfp_mask;
    spec.stack = it->second;
    spec.task = client::Task{b.pid.value_or(0), b.tgid.value_or(0), b.comm.value_or("")};
    spec.ts_ns = b.ts_ns.value_or(0);
    spec.free_ts_ns = b.free_ts_ns.value_or(0);
    spec.last_migrate_reason = b.migrated ? b.migrate_reason : MigrateReason::kNone;
    // The simulated allocator has the three free-list types only: a HighAtomic, CMA or Isolate
    // pageblock is left as the allocator has it (counted; its Block type prints differently).
    if (b.pageblock_migratetype &&
        static_cast<int>(*b.pageblock_migratetype) >= kNumFreeListTypes) {
      ++unsimulated_blocktype;
    } else {
      spec.pageblock_migratetype = b.pageblock_migratetype;
    }
    spec.extras = &extras;
    outcomes.Note(session->Import(spec), b.line);
    ++blocks;
    pages += b.order.valid() ? (uint64_t{1} << b.order.raw()) : 0;
    if (progress && (blocks & 1023) == 0 && absl::Now() - last_progress >= absl::Seconds(1)) {
      last_progress = absl::Now();
      io.err << absl::StrFormat("import: %d blocks, %.1f of %.1f MiB\n", blocks,
                                b.byte_offset / 1048576.0, text.size() / 1048576.0);
    }
  });
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; at < text.size(); at += kChunk) {
    parser.Feed(std::string_view(text).substr(at, kChunk));
  }
  parser.Finish();
  const absl::Status final_status = session->Finish();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  const ParseReport& report = parser.report();
  if (report.problems_total > 0) {
    std::string summary = report.Summary();
    io.err << "import: " << report.problems_total << " problems in the input:\n" << summary;
    if (!summary.empty() && summary.back() != '\n') io.err << "\n";
  }
  outcomes.Print(io.err);
  if (unsimulated_blocktype > 0) {
    io.err << "import: " << unsimulated_blocktype
           << " blocks lie in a HighAtomic, CMA or Isolate pageblock, which the daemon does not "
              "simulate: their \"Block N type\" prints the simulated type\n";
  }
  std::string codes;
  for (const auto& [k, n] : outcomes.by_code()) absl::StrAppend(&codes, " ", k.second, " ", n);
  io.err << absl::StrFormat(
      "import: %d blocks (%d pages) read from %d lines (%d bytes) in %.2f s:%s; %d blocks "
      "skipped, %d truncated, %d problems\n",
      blocks, pages, report.lines, report.bytes, seconds, codes, report.records_skipped,
      report.records_truncated, report.problems_total);
  if (!final_status.ok()) {
    io.err << "pageowner: " << wire::CodeName(final_status.code()) << ": " << final_status.message()
           << "\n";
    return kExitServerError;
  }
  if (blocks == 0) {
    io.err << "pageowner: import: no page_owner block in " << options.file
           << " (a /sys/kernel/debug/page_owner dump: \"Page allocated via order ...\" blocks)\n";
    return kExitUsage;
  }
  return outcomes.failed() == 0 ? kExitOk : kExitServerError;
}

int RunSort(Client& client, const std::vector<std::string>& args, DumpFormat format, Io io) {
  // The tool's own checks first, so that bad usage never reaches the daemon.
  if (absl::StatusOr<SortOptions> o = ParseSortArgs(args); !o.ok()) {
    io.err << "pageowner: sort: " << o.status().message() << "\n";
    return kExitUsage;
  }
  v1::SortRequest request;
  for (const std::string& a : args) request.add_args(a);
  request.set_format(format == DumpFormat::kFreeTs ? v1::DUMP_FORMAT_FREE_TS
                     : format == DumpFormat::k2016 ? v1::DUMP_FORMAT_2016
                                                   : v1::DUMP_FORMAT_TODAY);
  absl::StatusOr<v1::SortResponse> resp = client.SortPages(request);
  if (!resp.ok()) {
    io.err << "pageowner: " << wire::CodeName(resp.status().code()) << ": "
           << resp.status().message() << "\n";
    return resp.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage
                                                                      : kExitServerError;
  }
  io.out << resp->output();
  io.out.flush();
  io.err << resp->stderr_text();
  return resp->completed() ? kExitOk : kExitServerError;
}

int RunReplayFtrace(Client& client, const ReplayOptions& options, Io io) {
  const absl::Time start = absl::Now();
  std::string text;
  if (absl::Status s = ReadInputFile(options.file, io.in, &text); !s.ok()) {
    io.err << "pageowner: replay: " << s.message() << "\n";
    return kExitUsage;
  }
  Outcomes outcomes(20, "replay");
  SessionOptions so;
  absl::StatusOr<v1::Stats> stats = client.GetStats();
  so.batch_events = BatchWithinLimit("replay", options.batch, stats.ok() ? &*stats : nullptr, io);
  so.on_results = [&](absl::Span<const IngestResult> r) { outcomes.Take(r); };
  std::unique_ptr<Session> session = client.StartSession(so);
  std::vector<client::Frame> frames;
  uint64_t events = 0, failed_allocs = 0;
  FtraceParser parser([&](const TraceEvent& e) {
    ++events;
    if (e.failed()) {  // an allocation that found no page: nothing to replay
      ++failed_allocs;
      return;
    }
    frames.clear();
    for (std::string_view f : e.frames) frames.push_back(client::Frame{0, std::string(f)});
    const client::Task task{e.pid, e.tgid.value_or(e.pid), e.comm};
    if (e.kind == TraceEventKind::kAlloc) {
      if (frames.empty()) frames.push_back(client::Frame{0, "(no stack in the trace)"});
      client::AllocSpec spec;
      spec.order = e.order;
      spec.gfp_mask = e.gfp_mask;
      spec.stack = frames;
      spec.task = task;
      spec.ts_ns = e.timestamp_ns;
      spec.pfn = e.pfn;
      spec.trusted = options.trusted;
      outcomes.Note(session->Alloc(spec), e.line, "mm_page_alloc");
    } else {
      client::FreeSpec spec;
      spec.pfn = e.pfn;
      spec.order = e.order;
      if (!frames.empty()) spec.stack = frames;
      spec.task = task;
      spec.ts_ns = e.timestamp_ns;
      spec.trusted = options.trusted;
      outcomes.Note(session->Free(spec), e.line, TraceEventKindName(e.kind));
    }
  });
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; at < text.size(); at += kChunk) {
    parser.Feed(std::string_view(text).substr(at, kChunk));
  }
  parser.Finish();
  const absl::Status final_status = session->Finish();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const ParseReport& report = parser.report();
  if (report.problems_total > 0) {
    std::string summary = report.Summary();
    io.err << "replay: " << report.problems_total << " problems in the trace:\n" << summary;
    if (!summary.empty() && summary.back() != '\n') io.err << "\n";
  }
  outcomes.Print(io.err);
  std::string out =
      absl::StrFormat("replay: %d events in %.2f s: %d applied", events, seconds, outcomes.ok());
  for (const auto& [k, n] : outcomes.by_code()) {
    if (k.second != "OK") absl::StrAppend(&out, ", ", k.first, " ", k.second, " ", n);
  }
  if (failed_allocs > 0) absl::StrAppend(&out, ", failed allocations (no page) ", failed_allocs);
  absl::StrAppend(&out, "; ", report.records_skipped, " event lines skipped, ",
                  report.problems_total, " problems\n");
  io.out << out;
  if (outcomes.freed_before_trace() > 0) {
    io.err << "replay: " << outcomes.freed_before_trace()
           << " frees of pages the daemon holds free: most likely pages allocated before the "
              "trace started (import the page_owner dump taken just before tracing to include "
              "them)\n";
  }
  if (!final_status.ok()) {
    io.err << "pageowner: " << wire::CodeName(final_status.code()) << ": " << final_status.message()
           << "\n";
    return kExitServerError;
  }
  if (events == 0) {
    io.err << "pageowner: replay: no kmem:mm_page_alloc or mm_page_free event in " << options.file
           << "\n";
    return kExitUsage;
  }
  return outcomes.failed() == 0 ? kExitOk : kExitServerError;
}

}  // namespace pageowner::cli
