#include "core/kpageflags.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "core/procfs.h"

namespace pageowner {
namespace {

constexpr uint64_t kNotRam = kpf::Bit(kpf::kNoPage) | kpf::Bit(kpf::kReserved);

unsigned FloorLog2(uint64_t n) { return 63 - static_cast<unsigned>(std::countl_zero(n)); }

// The largest order a block starting at `pfn` may have by alignment alone.
unsigned AlignmentOrder(Pfn pfn) {
  if (pfn.raw() == 0) return kMaxOrder;
  return std::min<unsigned>(static_cast<unsigned>(std::countr_zero(pfn.raw())), kMaxOrder);
}

}  // namespace

void KpageDecoder::BeginRange(Pfn first) {
  CloseRun();
  CloseCompound();
  CloseFlagless();
  next_ = first;
  in_range_ = true;
}

void KpageDecoder::Feed(absl::Span<const uint64_t> flags, absl::Span<const uint64_t> counts) {
  assert(in_range_);
  assert(flags.size() == counts.size());
  for (size_t i = 0; i < flags.size(); ++i) {
    Page(next_, flags[i], counts[i]);
    next_ = next_ + PageCount(1);
  }
}

KpageScan KpageDecoder::Finish() {
  CloseRun();
  CloseCompound();
  CloseFlagless();
  in_range_ = false;
  KpageScan out = std::move(scan_);
  scan_ = KpageScan();
  return out;
}

void KpageDecoder::Page(Pfn pfn, uint64_t flags, uint64_t count) {
  if (flagless_len_ > 0) {
    if (flags == 0 && count == 0) {
      ++flagless_len_;
      return;
    }
    CloseFlagless();
  }
  if (run_open_) {
    if (pfn.raw() < run_head_.raw() + run_limit_ && flags == 0 && count == 0) {
      ++run_len_;
      return;
    }
    CloseRun();
  }
  if (compound_open_) {
    if ((flags & kpf::Bit(kpf::kCompoundTail)) != 0 &&
        (flags & (kNotRam | kpf::Bit(kpf::kBuddy))) == 0) {
      ++compound_len_;
      return;
    }
    CloseCompound();
  }
  if ((flags & kNotRam) != 0) {
    ++scan_.not_ram_pages;
    if (!scan_.not_ram.empty() && scan_.not_ram.back().end() == pfn) {
      scan_.not_ram.back().count = scan_.not_ram.back().count + PageCount(1);
    } else {
      scan_.not_ram.push_back(PfnRange{pfn, PageCount(1)});
    }
    return;
  }
  if ((flags & kpf::Bit(kpf::kBuddy)) != 0) {
    if (options_.infer_buddy_tails) {
      run_open_ = true;
      run_head_ = pfn;
      run_len_ = 1;
      run_limit_ = uint64_t{1} << AlignmentOrder(pfn);
    } else {
      ++scan_.free_pages;
    }
    return;
  }
  if ((flags & (kpf::Bit(kpf::kCompoundHead) | kpf::Bit(kpf::kCompoundTail))) != 0) {
    compound_open_ = true;
    compound_orphan_ = (flags & kpf::Bit(kpf::kCompoundHead)) == 0;
    compound_head_ = pfn;
    compound_len_ = 1;
    return;
  }
  if (flags == 0 && count == 0) {
    flagless_first_ = pfn;
    flagless_len_ = 1;
    return;
  }
  scan_.in_use.push_back(AllocatedBlock{pfn, Order(0)});
  ++scan_.in_use_pages;
}

void KpageDecoder::CloseFlagless() {
  constexpr uint64_t kMaxBlock = uint64_t{1} << kMaxOrder;
  Pfn pfn = flagless_first_;
  const Pfn end = flagless_first_ + PageCount(flagless_len_);
  flagless_len_ = 0;
  while (pfn < end) {
    if (options_.flagless_max_order_blocks_are_free && pfn.aligned_to(Order(kMaxOrder)) &&
        (end - pfn).raw() >= kMaxBlock) {
      scan_.flagless_free_pages += kMaxBlock;
      pfn = pfn + PageCount(kMaxBlock);
      continue;
    }
    scan_.in_use.push_back(AllocatedBlock{pfn, Order(0)});
    ++scan_.in_use_pages;
    ++scan_.flagless_in_use_pages;
    pfn = pfn + PageCount(1);
  }
}

void KpageDecoder::CloseRun() {
  if (!run_open_) return;
  run_open_ = false;
  const uint64_t free = uint64_t{1} << FloorLog2(run_len_);
  scan_.free_pages += free;
  // The rest of the run cannot belong to the block (its order would pass the run), so those
  // flagless pages are in use as far as the files can tell.
  for (uint64_t i = free; i < run_len_; ++i) {
    scan_.in_use.push_back(AllocatedBlock{run_head_ + PageCount(i), Order(0)});
    ++scan_.in_use_pages;
    ++scan_.flagless_in_use_pages;
  }
}

void KpageDecoder::CloseCompound() {
  if (!compound_open_) return;
  compound_open_ = false;
  const uint64_t n = compound_len_;
  if (!compound_orphan_ && std::has_single_bit(n) &&
      FloorLog2(n) <= AlignmentOrder(compound_head_)) {
    scan_.in_use.push_back(AllocatedBlock{compound_head_, Order(FloorLog2(n))});
    scan_.in_use_pages += n;
    return;
  }
  ++scan_.compound_blocks_split;
  EmitAligned(compound_head_, n);
}

void KpageDecoder::EmitAligned(Pfn first, uint64_t pages) {
  for (const AllocatedBlock& b : AlignedBlocks(first, pages)) scan_.in_use.push_back(b);
  scan_.in_use_pages += pages;
}

std::vector<AllocatedBlock> AlignedBlocks(Pfn first, uint64_t pages) {
  std::vector<AllocatedBlock> out;
  while (pages > 0) {
    const unsigned k = std::min(AlignmentOrder(first), FloorLog2(pages));
    out.push_back(AllocatedBlock{first, Order(k)});
    first = first + PageCount(uint64_t{1} << k);
    pages -= uint64_t{1} << k;
  }
  return out;
}

KpageScan DecodeKpages(Pfn first, absl::Span<const uint64_t> flags,
                       absl::Span<const uint64_t> counts, KpageDecodeOptions options) {
  KpageDecoder d(options);
  d.BeginRange(first);
  d.Feed(flags, counts);
  return d.Finish();
}

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::StatusOr<int> OpenProcFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) return fd;
  const int err = errno;
  absl::Status st = ErrnoStatus(err, "open", path);
  if (absl::IsPermissionDenied(st)) {
    return absl::PermissionDeniedError(
        absl::StrCat(st.message(), " (reading it needs CAP_SYS_ADMIN, usually root)"));
  }
  if (absl::IsNotFound(st)) {
    return absl::NotFoundError(
        absl::StrCat(st.message(), " (this kernel lacks CONFIG_PROC_PAGE_MONITOR)"));
  }
  return st;
}

}  // namespace

absl::StatusOr<KpageScan> ReadKpages(const std::vector<PfnRange>& ranges,
                                     KpageDecodeOptions options, const std::string& flags_path,
                                     const std::string& counts_path, size_t chunk_pages) {
  absl::StatusOr<int> ffd = OpenProcFile(flags_path);
  if (!ffd.ok()) return ffd.status();
  Fd flags_fd(*ffd);
  absl::StatusOr<int> cfd = OpenProcFile(counts_path);
  if (!cfd.ok()) return cfd.status();
  Fd counts_fd(*cfd);
  chunk_pages = std::max<size_t>(chunk_pages, 1);
  std::vector<uint64_t> flags(chunk_pages), counts(chunk_pages);
  KpageDecoder d(options);
  for (const PfnRange& r : ranges) {
    d.BeginRange(r.first);
    for (uint64_t done = 0; done < r.count.raw();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_pages, r.count.raw() - done));
      const uint64_t offset = (r.first.raw() + done) * sizeof(uint64_t);
      for (auto [fd, path, buf] : {std::tuple{flags_fd.get(), &flags_path, flags.data()},
                                   std::tuple{counts_fd.get(), &counts_path, counts.data()}}) {
        absl::StatusOr<size_t> got = PreadFully(fd, *path, offset, buf, n * sizeof(uint64_t));
        if (!got.ok()) return got.status();
        if (*got != n * sizeof(uint64_t)) {
          return absl::OutOfRangeError(
              absl::StrCat(*path, " ends before pfn 0x", absl::Hex(r.first.raw() + done + n - 1)));
        }
      }
      d.Feed(absl::MakeConstSpan(flags.data(), n), absl::MakeConstSpan(counts.data(), n));
      done += n;
    }
  }
  return d.Finish();
}

}  // namespace pageowner
