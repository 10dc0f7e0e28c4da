#include "core/page_owner_sort.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/page_owner_sort_fields.h"

namespace pageowner {

using sort_fields::AppendAllocator;
using sort_fields::FieldDebug;
using sort_fields::GetAllocator;
using sort_fields::GetComm;
using sort_fields::GetFreeTs;
using sort_fields::GetPageNum;
using sort_fields::GetPid;
using sort_fields::GetTgid;
using sort_fields::GetTs;
using sort_fields::GetTs61;
using sort_fields::Group;
using sort_fields::MatchTs;

namespace {

// The tool's read buffer (BUF_SIZE): fgets never reads more than this minus the block so far.
constexpr size_t kBufSize = 128 * 1024;

// The tool's int arithmetic (two's complement wrap, as gcc -O2 gives on x86-64).
int32_t WrapAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
int32_t WrapSub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
int32_t WrapMul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}
template <typename T>
int32_t Sign(T a, T b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// A block text in up to three pieces (the text with its ts digits taken out, split where they
// were, and the digits between), so that the original is compared without being rebuilt.
struct Pieces {
  std::string_view part[3];

  int Compare(const Pieces& o) const {
    int i = 0, j = 0;
    size_t a = 0, b = 0;
    while (true) {
      while (i < 3 && a == part[i].size()) ++i, a = 0;
      while (j < 3 && b == o.part[j].size()) ++j, b = 0;
      if (i == 3 || j == 3) return (i == 3 ? 0 : 1) - (j == 3 ? 0 : 1);
      size_t n = std::min(part[i].size() - a, o.part[j].size() - b);
      int c = std::memcmp(part[i].data() + a, o.part[j].data() + b, n);
      if (c != 0) return c < 0 ? -1 : 1;
      a += n;
      b += n;
    }
  }
  // What follows the first '\n' (the tool's stacktrace pointer), or nothing.
  Pieces AfterFirstLine() const {
    for (int i = 0; i < 3; ++i) {
      size_t nl = part[i].find('\n');
      if (nl == std::string_view::npos) continue;
      Pieces p;
      p.part[0] = part[i].substr(nl + 1);
      for (int k = i + 1; k < 3; ++k) p.part[k - i] = part[k];
      return p;
    }
    return Pieces();
  }
  void AppendTo(std::string* out) const {
    for (const auto& p : part) out->append(p.data(), p.size());
  }
};

std::string_view AfterFirstLine(std::string_view s) {
  size_t nl = s.find('\n');
  return nl == std::string_view::npos ? std::string_view() : s.substr(nl + 1);
}

// glibc 2.36's qsort for the tool's 56-byte records: msort_with_tmp over pointers (indirect
// sorting), a top-down merge sort that halves at n / 2 and takes from the left run while
// cmp(left, right) <= 0. Reproducing it, not just any stable sort, keeps the tool's order even
// for comparators that are not consistent (int overflow, 6.1's compare_free_ts).
template <typename Cmp>
void MergeSort(uint32_t* b, size_t n, uint32_t* tmp, const Cmp& cmp) {
  if (n <= 1) return;
  size_t n1 = n / 2;
  size_t n2 = n - n1;
  uint32_t* b1 = b;
  uint32_t* b2 = b + n1;
  MergeSort(b1, n1, tmp, cmp);
  MergeSort(b2, n2, tmp, cmp);
  uint32_t* t = tmp;
  while (n1 > 0 && n2 > 0) {
    if (cmp(*b1, *b2) <= 0) {
      *t++ = *b1++;
      --n1;
    } else {
      *t++ = *b2++;
      --n2;
    }
  }
  if (n1 > 0) std::memcpy(t, b1, n1 * sizeof(*b1));
  std::memcpy(b, tmp, (n - n2) * sizeof(*b));
}

template <typename Cmp>
void GlibcQsort(std::vector<uint32_t>* v, const Cmp& cmp) {
  std::vector<uint32_t> tmp(v->size());
  MergeSort(v->data(), v->size(), tmp.data(), cmp);
}

// Ranks 0.. of n items under a three-way comparison (equal items, equal ranks).
template <typename Cmp3>
std::vector<uint32_t> Ranks(size_t n, const Cmp3& cmp3) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return cmp3(a, b) < 0; });
  std::vector<uint32_t> rank(n);
  uint32_t r = 0;
  for (size_t k = 0; k < n; ++k) {
    if (k > 0 && cmp3(order[k - 1], order[k]) != 0) ++r;
    rank[order[k]] = r;
  }
  return rank;
}

}  // namespace

PageOwnerSorter::PageOwnerSorter() = default;
PageOwnerSorter::~PageOwnerSorter() = default;

void PageOwnerSorter::AddText(std::string_view text) {
  input_bytes_ += static_cast<int64_t>(text.size());
  // Cut the input as fgets(curr, buf_end - curr) does: at each '\n', or after as many bytes as
  // fit in what is left of the block buffer.
  while (!stopped_ && !text.empty()) {
    size_t room = kBufSize - block_.size() - 1 - pending_.size();
    size_t newline = text.find('\n');
    size_t take = newline == std::string_view::npos ? text.size() : newline + 1;
    if (take > room) {
      take = room;
    } else if (newline == std::string_view::npos) {
      pending_.append(text);
      return;
    }
    if (pending_.empty()) {
      ProcessPiece(text.substr(0, take));
    } else {
      pending_.append(text.substr(0, take));
      std::string piece = std::move(pending_);
      pending_.clear();
      ProcessPiece(piece);
    }
    text.remove_prefix(take);
  }
}

void PageOwnerSorter::AddBlock(std::string_view block) {
  AddText(block);
  if (!block.empty() && block.back() != '\n') AddText("\n");
  AddText("\n");
}

void PageOwnerSorter::ProcessPiece(std::string_view piece) {
  if (piece.empty()) return;
  if (piece[0] == '\n') {  // the blank line: the block is complete
    EndBlock();
    return;
  }
  // The tool handles the line as a C string: a NUL cuts it (and drops its '\n').
  std::string_view line = piece.substr(0, piece.find('\0'));
  if (line.substr(0, 3) == "PFN") {
    pfn_line_.assign(line.data(), line.size());
    return;
  }
  block_.append(line.data(), line.size());
  // The buffer is full (one byte left for the NUL): read_block() reports EOF and the tool stops.
  if (kBufSize - block_.size() <= 1) stopped_ = true;
}

uint32_t PageOwnerSorter::InternText(std::string_view text) {
  auto it = text_ids_.find(text);
  if (it != text_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(texts_.size());
  texts_.emplace_back(text);
  text_ids_.emplace(texts_.back(), id);
  return id;
}

uint32_t PageOwnerSorter::InternName(std::string_view name) {
  auto it = name_ids_.find(name);
  if (it != name_ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(names_.size());
  names_.emplace_back(name);
  name_ids_.emplace(names_.back(), id);
  return id;
}

void PageOwnerSorter::EndBlock() {
  std::string_view raw = block_;
  const FieldDebug quiet;
  Block b;
  // remove_pattern(): the digits of the first "ts N ns" come out (when the options ask for it).
  Group ts = MatchTs(raw);
  if (ts.found && ts.end > ts.begin) {
    std::string stripped;
    stripped.reserve(raw.size());
    stripped.append(raw.substr(0, ts.begin));
    stripped.append(raw.substr(ts.end));
    b.text = InternText(stripped);
    b.strip_at = static_cast<uint32_t>(ts.begin);
    b.digits_at = static_cast<uint32_t>(digits_.size());
    b.digits_len = static_cast<uint32_t>(ts.end - ts.begin);
    digits_.append(raw.substr(ts.begin, ts.end - ts.begin));
  } else {
    b.text = InternText(raw);
    b.strip_at = 0;
    b.digits_at = 0;
    b.digits_len = 0;
  }
  b.name = InternName(GetComm(raw, quiet));
  b.pid = GetPid(raw, quiet);
  b.tgid = GetTgid(raw, quiet);
  b.pages = GetPageNum(raw, quiet);
  b.allocator = GetAllocator(raw, pfn_line_);
  b.ts = GetTs(raw, quiet);
  b.ts_61 = GetTs61(raw, quiet);
  b.free_ts = GetFreeTs(raw, quiet);
  blocks_.push_back(b);
  block_.clear();
}

// One Report(): the tool's main() after reading, in its steps. Holds the run's records and the
// ranks that stand for its string comparisons.
class PageOwnerSorter::ReportRun {
 public:
  ReportRun(const PageOwnerSorter& sorter, const SortOptions& o)
      : s_(sorter),
        o_(o),
        v61_(o.version == PageOwnerSortVersion::k6_1),
        // add_list() takes the ts digits out unless the first comparator is compare_ts (6.12).
        stripped_(!v61_ && (o.sort.empty() || o.sort[0].key != SortKey::kAllocTs)),
        cull_(o.cull.any()) {}

  SortReport Run() && {
    if (!ReadRecords()) return std::move(r_);
    absl::StrAppend(&r_.stdout_text, "loaded ", records_.size(), "\nsorting ....\nculling\n");
    RankStrings();
    WriteRecords(CullAndSort());
    return std::move(r_);
  }

 private:
  // One record of the tool's list: a kept block and what merged into it.
  struct Record {
    uint32_t block;
    int32_t num;
    int32_t pages;
  };

  const Block& block_of(size_t k) const { return s_.blocks_[records_[k].block]; }
  Pieces RawPieces(const Block& b) const {
    std::string_view t = s_.texts_[b.text];
    return Pieces{{t.substr(0, b.strip_at),
                   std::string_view(s_.digits_).substr(b.digits_at, b.digits_len),
                   t.substr(b.strip_at)}};
  }
  bool SameRaw(const Block& a, const Block& b) const {
    return a.text == b.text && a.strip_at == b.strip_at &&
           std::string_view(s_.digits_).substr(a.digits_at, a.digits_len) ==
               std::string_view(s_.digits_).substr(b.digits_at, b.digits_len);
  }
  bool Needs(SortKey key) const {
    return std::any_of(o_.sort.begin(), o_.sort.end(),
                       [key](const SortField& f) { return f.key == key; });
  }

  // The reading loop: max_size, the filters (is_need) and, for 6.1, the merging of a block equal
  // to the record before it. False when the tool stops at "max_size too small??".
  bool ReadRecords();
  // is_need() and the -d messages of its field reads, in the tool's order.
  bool Wanted(const Block& b, std::string_view raw, const FieldDebug& debug) const;
  // The string comparisons (strcmp of the whole text, of the text after its first line, of the
  // comm) become ranks, computed for the keys the options use.
  void RankStrings();
  void RankStrippedTexts(bool want_text, bool want_stack);
  void RankRawTexts(bool want_text, bool want_stack);
  // The tool's comparators over record indices, int arithmetic and all.
  int32_t Compare(SortKey key, uint32_t a, uint32_t b) const;
  int32_t CompareCull(uint32_t a, uint32_t b) const;
  int32_t CompareSort(uint32_t a, uint32_t b) const;
  // qsort by the cull comparator, merge the runs of equal records, qsort by the sort chain.
  std::vector<uint32_t> CullAndSort();
  void WriteRecords(const std::vector<uint32_t>& kept);
  void WriteCullRecord(const Block& b);

  const PageOwnerSorter& s_;
  const SortOptions& o_;
  const bool v61_;
  const bool stripped_;
  const bool cull_;
  SortReport r_;
  std::vector<Record> records_;
  std::vector<uint32_t> text_rank_, stack_rank_, name_rank_;
};

bool PageOwnerSorter::ReportRun::ReadRecords() {
  const int64_t max_size = s_.input_bytes_ / 100;
  std::string raw_text;
  for (uint32_t i = 0; i < s_.blocks_.size(); ++i) {
    const Block& b = s_.blocks_[i];
    FieldDebug debug;
    std::string_view raw;
    if (o_.debug) {
      raw_text.clear();
      RawPieces(b).AppendTo(&raw_text);
      raw_text.push_back('\n');
      debug.out = &r_.stderr_text;
      debug.buf = raw_text;
      raw = std::string_view(raw_text).substr(0, raw_text.size() - 1);
    }
    if (v61_ && !records_.empty() && SameRaw(b, s_.blocks_[records_.back().block])) {
      if (o_.debug) GetPageNum(raw, debug);
      records_.back().num = WrapAdd(records_.back().num, 1);
      records_.back().pages = WrapAdd(records_.back().pages, b.pages);
      continue;
    }
    if (static_cast<int64_t>(records_.size()) == max_size) {
      r_.stderr_text.append("max_size too small??\n");
      r_.loaded = static_cast<int64_t>(records_.size());
      r_.completed = false;
      return false;
    }
    if (!Wanted(b, raw, debug)) continue;
    records_.push_back({i, 1, b.pages});
    if (records_.size() % 1000 == 0) {
      absl::StrAppend(&r_.stdout_text, "loaded ", records_.size(), "\r");
    }
  }
  r_.loaded = static_cast<int64_t>(records_.size());
  return true;
}

bool PageOwnerSorter::ReportRun::Wanted(const Block& b, std::string_view raw,
                                        const FieldDebug& debug) const {
  auto in = [](const auto& list, const auto& value) {
    return std::find(list.begin(), list.end(), value) != list.end();
  };
  if (v61_ && o_.debug) {
    GetTs61(raw, debug);
    GetFreeTs(raw, debug);
  }
  if (v61_ && o_.filter_released && b.free_ts != 0 && b.ts_61 < b.free_ts) return false;
  if (o_.pids) {
    if (o_.debug) GetPid(raw, debug);
    if (!in(*o_.pids, b.pid)) return false;
  }
  if (o_.tgids) {
    if (o_.debug) GetTgid(raw, debug);
    if (!in(*o_.tgids, b.tgid)) return false;
  }
  if (o_.debug) GetComm(raw, debug);
  if (o_.names && !in(*o_.names, s_.names_[b.name])) return false;
  if (o_.debug) {
    GetPid(raw, debug);
    GetTgid(raw, debug);
    GetComm(raw, debug);
    GetPageNum(raw, debug);
    if (v61_) {
      GetTs61(raw, debug);
      GetFreeTs(raw, debug);
    } else {
      GetTs(raw, debug);
    }
  }
  return true;
}

void PageOwnerSorter::ReportRun::RankStrings() {
  const bool want_text = !cull_ || Needs(SortKey::kText);
  const bool want_stack = (cull_ && o_.cull.stacktrace) || Needs(SortKey::kStacktrace);
  if (stripped_) {
    RankStrippedTexts(want_text, want_stack);
  } else {
    RankRawTexts(want_text, want_stack);
  }
  if ((cull_ && o_.cull.name) || Needs(SortKey::kName)) {
    std::vector<uint32_t> by_name = Ranks(s_.names_.size(), [&](uint32_t a, uint32_t b) {
      return std::string_view(s_.names_[a]).compare(s_.names_[b]);
    });
    name_rank_.resize(records_.size());
    for (size_t k = 0; k < records_.size(); ++k) name_rank_[k] = by_name[block_of(k).name];
  }
}

// Ranks of the distinct texts, then of the records.
void PageOwnerSorter::ReportRun::RankStrippedTexts(bool want_text, bool want_stack) {
  const size_t n = records_.size();
  std::vector<uint32_t> ids;
  std::vector<int32_t> slot(s_.texts_.size(), -1);
  for (size_t k = 0; k < n; ++k) {
    uint32_t t = block_of(k).text;
    if (slot[t] < 0) {
      slot[t] = static_cast<int32_t>(ids.size());
      ids.push_back(t);
    }
  }
  auto by_ids = [&](const std::vector<uint32_t>& id_rank) {
    std::vector<uint32_t> out(n);
    for (size_t k = 0; k < n; ++k) out[k] = id_rank[slot[block_of(k).text]];
    return out;
  };
  const auto& texts = s_.texts_;
  if (want_text) {
    text_rank_ = by_ids(Ranks(ids.size(), [&](uint32_t a, uint32_t b) {
      return std::string_view(texts[ids[a]]).compare(texts[ids[b]]);
    }));
  }
  if (want_stack) {
    stack_rank_ = by_ids(Ranks(ids.size(), [&](uint32_t a, uint32_t b) {
      return AfterFirstLine(texts[ids[a]]).compare(AfterFirstLine(texts[ids[b]]));
    }));
  }
}

void PageOwnerSorter::ReportRun::RankRawTexts(bool want_text, bool want_stack) {
  const size_t n = records_.size();
  std::vector<Pieces> pieces(n);
  for (size_t k = 0; k < n; ++k) pieces[k] = RawPieces(block_of(k));
  if (want_text) {
    text_rank_ = Ranks(n, [&](uint32_t a, uint32_t b) { return pieces[a].Compare(pieces[b]); });
  }
  if (want_stack) {
    std::vector<Pieces> stacks(n);
    for (size_t k = 0; k < n; ++k) stacks[k] = pieces[k].AfterFirstLine();
    stack_rank_ = Ranks(n, [&](uint32_t a, uint32_t b) { return stacks[a].Compare(stacks[b]); });
  }
}

int32_t PageOwnerSorter::ReportRun::Compare(SortKey key, uint32_t a, uint32_t b) const {
  const Block& x = block_of(a);
  const Block& y = block_of(b);
  switch (key) {
    case SortKey::kTimes:
      return WrapSub(records_[a].num, records_[b].num);
    case SortKey::kPages:
      return WrapSub(records_[a].pages, records_[b].pages);
    case SortKey::kPid:
      return WrapSub(x.pid, y.pid);
    case SortKey::kTgid:
      return WrapSub(x.tgid, y.tgid);
    case SortKey::kName:
      return Sign(name_rank_[a], name_rank_[b]);
    case SortKey::kStacktrace:
      return Sign(stack_rank_[a], stack_rank_[b]);
    case SortKey::kAllocTs: {
      uint64_t tx = v61_ ? x.ts_61 : x.ts;
      uint64_t ty = v61_ ? y.ts_61 : y.ts;
      return Sign(tx, ty);  // three-way since the 2025 fix, in both stable trees
    }
    case SortKey::kText:
      return Sign(text_rank_[a], text_rank_[b]);
    case SortKey::kAllocator:
      return WrapSub(x.allocator, y.allocator);
    case SortKey::kFreeTs:
      return x.free_ts < y.free_ts ? -1 : 1;  // never 0, as the tool's
  }
  return 0;
}

int32_t PageOwnerSorter::ReportRun::CompareCull(uint32_t a, uint32_t b) const {
  if (!cull_) return Sign(text_rank_[a], text_rank_[b]);
  int32_t c = 0;
  if (o_.cull.stacktrace && (c = Compare(SortKey::kStacktrace, a, b)) != 0) return c;
  if (o_.cull.pid && (c = Compare(SortKey::kPid, a, b)) != 0) return c;
  if (o_.cull.tgid && (c = Compare(SortKey::kTgid, a, b)) != 0) return c;
  if (o_.cull.name && (c = Compare(SortKey::kName, a, b)) != 0) return c;
  if (v61_ && o_.cull.released) {
    bool fa = block_of(a).free_ts != 0;
    bool fb = block_of(b).free_ts != 0;
    if (fa != fb) return fa ? 1 : -1;
  }
  if (o_.cull.allocator && (c = Compare(SortKey::kAllocator, a, b)) != 0) return c;
  return 0;
}

int32_t PageOwnerSorter::ReportRun::CompareSort(uint32_t a, uint32_t b) const {
  int32_t c = 0;
  for (const SortField& f : o_.sort) {
    if (c == 0) c = WrapMul(f.descending ? -1 : 1, Compare(f.key, a, b));
  }
  return c;
}

std::vector<uint32_t> PageOwnerSorter::ReportRun::CullAndSort() {
  std::vector<uint32_t> order(records_.size());
  std::iota(order.begin(), order.end(), 0u);
  GlibcQsort(&order, [this](uint32_t a, uint32_t b) { return CompareCull(a, b); });
  std::vector<uint32_t> kept;
  for (uint32_t k : order) {
    if (kept.empty() || CompareCull(kept.back(), k) != 0) {
      kept.push_back(k);
    } else {
      Record& into = records_[kept.back()];
      into.num = WrapAdd(into.num, records_[k].num);
      into.pages = WrapAdd(into.pages, records_[k].pages);
    }
  }
  GlibcQsort(&kept, [this](uint32_t a, uint32_t b) { return CompareSort(a, b); });
  return kept;
}

void PageOwnerSorter::ReportRun::WriteRecords(const std::vector<uint32_t>& kept) {
  std::string& out = r_.output;
  for (uint32_t k : kept) {
    const Record& rec = records_[k];
    const Block& b = block_of(k);
    absl::StrAppend(&out, rec.num, " times, ", rec.pages, " pages");
    if (cull_) {
      WriteCullRecord(b);
      continue;
    }
    out.append(", ");
    AppendAllocator(b.allocator, &out);
    out.append(":\n");
    if (stripped_) {
      out.append(s_.texts_[b.text]);
    } else {
      RawPieces(b).AppendTo(&out);
    }
    out.append("\n");
  }
  r_.records = static_cast<int64_t>(kept.size());
}

// After "N times, M pages": the culled fields (and the fields a filter selected by).
void PageOwnerSorter::ReportRun::WriteCullRecord(const Block& b) {
  std::string& out = r_.output;
  if (o_.cull.pid || o_.pids) absl::StrAppend(&out, ", PID ", b.pid);
  if (o_.cull.tgid || o_.tgids) absl::StrAppend(&out, ", TGID ", b.tgid);
  if (o_.cull.name || o_.names) absl::StrAppend(&out, ", task_comm_name: ", s_.names_[b.name]);
  if (o_.cull.allocator) {
    out.append(", ");
    AppendAllocator(b.allocator, &out);
  }
  if (v61_ && o_.cull.released) {
    // Sic: a block with a free_ts is the "UNRELEASED" one.
    out.append(b.free_ts != 0 ? " (UNRELEASED)" : " (RELEASED)");
  }
  if (o_.cull.stacktrace) {
    out.append(":\n");
    if (stripped_) {
      out.append(AfterFirstLine(s_.texts_[b.text]));
    } else {
      RawPieces(b).AfterFirstLine().AppendTo(&out);
    }
  }
  out.append("\n");
}

SortReport PageOwnerSorter::Report(const SortOptions& options) const {
  return ReportRun(*this, options).Run();
}

SortReport SortPageOwnerDump(std::string_view dump, const SortOptions& options) {
  PageOwnerSorter sorter;
  sorter.AddText(dump);
  return sorter.Report(options);
}

}  // namespace pageowner
