#include "server/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/status_macros.h"
#include "core/strings.h"
#include "server/crc32c.h"
#include "server/failpoints.h"

namespace pageowner::server {
namespace {

constexpr char kMagic[8] = {'P', 'G', 'O', 'W', 'N', 'W', 'A', 'L'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 44;
constexpr std::string_view kPrefix = "wal-";
constexpr std::string_view kSuffix = ".log";

std::string Errno(std::string_view what, const std::string& path) {
  return absl::StrCat(Sv(what), " ", path, ": ", std::strerror(errno));
}

template <typename T>
void PutAt(char* p, size_t* at, T v) {
  std::memcpy(p + *at, &v, sizeof(T));
  *at += sizeof(T);
}
template <typename T>
T GetAt(const char* p, size_t* at) {
  T v;
  std::memcpy(&v, p + *at, sizeof(T));
  *at += sizeof(T);
  return v;
}

std::string EncodeHeader(const WalGeometry& g, uint64_t first_seq) {
  std::string h(kHeaderBytes, '\0');
  size_t at = 0;
  std::memcpy(h.data(), kMagic, 8);
  at = 8;
  PutAt<uint32_t>(h.data(), &at, kVersion);
  PutAt<uint32_t>(h.data(), &at, g.stack_depth);
  PutAt<uint64_t>(h.data(), &at, g.pages);
  PutAt<uint32_t>(h.data(), &at, g.depot_max_pools);
  PutAt<uint32_t>(h.data(), &at, g.tracking ? 1 : 0);
  PutAt<uint64_t>(h.data(), &at, first_seq);
  PutAt<uint32_t>(h.data(), &at, Crc32cExtend(0, h.data(), at));
  return h;
}

struct Header {
  WalGeometry geometry;
  uint64_t first_seq = 0;
};

// The header, or why it is not one.
absl::StatusOr<Header> DecodeHeader(std::string_view data) {
  if (data.size() < kHeaderBytes) return absl::DataLossError("short header");
  if (std::memcmp(data.data(), kMagic, 8) != 0) return absl::DataLossError("not a log segment");
  size_t at = 8;
  const uint32_t version = GetAt<uint32_t>(data.data(), &at);
  Header h;
  h.geometry.stack_depth = GetAt<uint32_t>(data.data(), &at);
  h.geometry.pages = GetAt<uint64_t>(data.data(), &at);
  h.geometry.depot_max_pools = GetAt<uint32_t>(data.data(), &at);
  h.geometry.tracking = GetAt<uint32_t>(data.data(), &at) != 0;
  h.first_seq = GetAt<uint64_t>(data.data(), &at);
  const size_t crc_at = at;
  if (GetAt<uint32_t>(data.data(), &at) != Crc32cExtend(0, data.data(), crc_at)) {
    return absl::DataLossError("header CRC mismatch");
  }
  if (version != kVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("log format version ", version, "; this pageownerd reads version ", kVersion));
  }
  return h;
}

std::string Describe(const WalGeometry& g) {
  return absl::StrCat(
      "--memory=", g.pages * 4096, " bytes (", g.pages, " pages) --stack_depth=", g.stack_depth,
      " --depot_max_pools=", g.depot_max_pools, " --tracking=", g.tracking ? "true" : "false");
}

// Why the record at `offset` is not the one expected (sequence number `seq`), or "" when it is;
// *len is its payload length when it is.
std::string CheckRecord(std::string_view data, size_t offset, uint64_t seq, uint32_t* len) {
  if (data.size() - offset < kWalFrameBytes) return "a record frame cut short";
  uint32_t n, crc;
  std::memcpy(&n, data.data() + offset, 4);
  std::memcpy(&crc, data.data() + offset + 4, 4);
  if (n == 0) return "a zero length (unwritten space)";
  if (n > kWalMaxRecordBytes) return absl::StrCat("an impossible length ", n);
  if (data.size() - offset - kWalFrameBytes < n) {
    return absl::StrCat("a record of ", n, " bytes cut short at ",
                        data.size() - offset - kWalFrameBytes);
  }
  const std::string_view payload = data.substr(offset + kWalFrameBytes, n);
  if (Crc32c(payload) != crc) return "a CRC mismatch";
  absl::StatusOr<WalRecordHeader> h = PeekRecord(payload);
  if (!h.ok()) return std::string(h.status().message());
  if (h->seq != seq) return absl::StrCat("sequence number ", h->seq, " where ", seq, " was due");
  *len = n;
  return "";
}

// The offset of a record after `from` that passes its CRC and carries a sequence number at or
// past `seq` (it is valid data that a cut there would lose), or npos.
size_t FindValidRecord(std::string_view data, size_t from, uint64_t seq) {
  for (size_t p = from; p + kWalFrameBytes + 9 <= data.size(); ++p) {
    uint32_t n;
    std::memcpy(&n, data.data() + p, 4);
    if (n < 9 || n > kWalMaxRecordBytes || data.size() - p - kWalFrameBytes < n) continue;
    const std::string_view payload = data.substr(p + kWalFrameBytes, n);
    absl::StatusOr<WalRecordHeader> h = PeekRecord(payload);
    if (!h.ok() || h->seq < seq || h->seq > seq + (uint64_t{1} << 32)) continue;
    uint32_t crc;
    std::memcpy(&crc, data.data() + p + 4, 4);
    if (Crc32c(payload) == crc) return p;
  }
  return std::string_view::npos;
}

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(Errno("cannot open", path));
  std::string data;
  struct stat st;
  if (fstat(fd, &st) == 0) data.reserve(st.st_size);
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string e = Errno("cannot read", path);
      close(fd);
      return absl::UnavailableError(e);
    }
    if (n == 0) break;
    data.append(buf, n);
  }
  close(fd);
  return data;
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(Errno("cannot open", dir));
  const int r = fsync(fd);
  const std::string e = r != 0 ? Errno("cannot fsync", dir) : "";
  close(fd);
  return r == 0 ? absl::OkStatus() : absl::UnavailableError(e);
}

// Cuts `path` to `size` bytes, durably.
absl::Status Truncate(const std::string& path, uint64_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(Errno("cannot open", path));
  const bool ok = ftruncate(fd, static_cast<off_t>(size)) == 0 && fdatasync(fd) == 0;
  const std::string e = ok ? "" : Errno("cannot truncate", path);
  close(fd);
  return ok ? absl::OkStatus() : absl::UnavailableError(e);
}

}  // namespace

struct Wal::Segment {
  std::string path;
  int fd = -1;
  uint64_t first_seq = 0;
  uint64_t size = 0;  // bytes written and kept (writer thread)
  ~Segment() {
    if (fd >= 0) close(fd);
  }
};

void WalMetrics::AppendTo(std::string* out) const {
  const auto family = [out](std::string_view name, std::string_view type, std::string_view help) {
    absl::StrAppend(out, "# HELP ", Sv(name), " ", Sv(help), "\n# TYPE ", Sv(name), " ", Sv(type),
                    "\n");
  };
  const auto load = [](const std::atomic<uint64_t>& v) {
    return v.load(std::memory_order_relaxed);
  };
  family("pageowner_wal_bytes", "gauge", "Bytes of write-ahead log on disk, all segments.");
  absl::StrAppend(out, "pageowner_wal_bytes ", load(bytes), "\n");
  family("pageowner_wal_segments", "gauge", "Write-ahead log segment files.");
  absl::StrAppend(out, "pageowner_wal_segments ", load(segments), "\n");
  family("pageowner_wal_records_total", "counter", "Log records written since start.");
  absl::StrAppend(out, "pageowner_wal_records_total ", load(records), "\n");
  family("pageowner_wal_write_errors_total", "counter",
         "Log writes that failed (their batches were answered UNAVAILABLE).");
  absl::StrAppend(out, "pageowner_wal_write_errors_total ", load(write_errors), "\n");
  family("pageowner_wal_truncated_tails_total", "counter",
         "Torn or garbage log tails cut at the last start.");
  absl::StrAppend(out, "pageowner_wal_truncated_tails_total ", load(truncated_tails), "\n");
  family("pageowner_wal_recovery_seconds", "gauge", "Time the last start took to replay the log.");
  absl::StrAppend(out, "pageowner_wal_recovery_seconds ", load(recovery_ns) / 1e9, "\n");
  family("pageowner_wal_fsync_duration_seconds", "histogram", "fdatasync of the log.");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kFsyncBuckets.size(); ++i) {
    cumulative += load(fsync_buckets[i]);
    absl::StrAppend(out, "pageowner_wal_fsync_duration_seconds_bucket{le=\"", kFsyncBuckets[i],
                    "\"} ", cumulative, "\n");
  }
  cumulative += load(fsync_buckets[kFsyncBuckets.size()]);
  absl::StrAppend(out, "pageowner_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} ", cumulative,
                  "\npageowner_wal_fsync_duration_seconds_sum ", load(fsync_ns) / 1e9,
                  "\npageowner_wal_fsync_duration_seconds_count ", load(fsync_count), "\n");
}

WalGeometry WalGeometry::Of(const MachineOptions& o) {
  return WalGeometry{.pages = o.pages.raw(),
                     .stack_depth = static_cast<uint32_t>(o.stack_depth),
                     .depot_max_pools = o.depot_max_pools,
                     .tracking = o.tracking};
}

std::string Wal::SegmentPath(const std::string& dir, uint64_t first_seq) {
  return absl::StrFormat("%s/%s%020u%s", dir, kPrefix, first_seq, kSuffix);
}

uint64_t Wal::SegmentFirstSeq(std::string_view path) {
  const size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return 0;
  const std::string_view digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  uint64_t seq = 0;
  if (digits.size() != 20 || !absl::SimpleAtoi(std::string(digits), &seq)) return 0;
  return seq;
}

absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ListNumberedFiles(
    const std::string& dir, std::string_view prefix, std::string_view suffix) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return absl::UnavailableError(Errno("cannot list", dir));
  std::vector<std::pair<uint64_t, std::string>> found;
  while (const dirent* e = readdir(d)) {
    const std::string_view name(e->d_name);
    if (name.size() < prefix.size() + suffix.size() || !name.starts_with(prefix) ||
        !name.ends_with(suffix)) {
      continue;
    }
    const std::string_view digits =
        name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    uint64_t seq = 0;
    if (digits.size() != 20 || !absl::SimpleAtoi(std::string(digits), &seq)) continue;
    found.emplace_back(seq, absl::StrCat(dir, "/", Sv(name)));
  }
  closedir(d);
  std::sort(found.begin(), found.end());
  return found;
}

absl::StatusOr<std::vector<std::string>> Wal::ListSegments(const std::string& dir) {
  PO_ASSIGN_OR_RETURN(auto found, ListNumberedFiles(dir, kPrefix, kSuffix));
  std::vector<std::string> paths;
  for (auto& [seq, path] : found) paths.push_back(std::move(path));
  return paths;
}

Wal::Wal(const WalOptions& options, const WalGeometry& geometry)
    : options_(options), geometry_(geometry) {}

Wal::~Wal() {
  {
    absl::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  if (interval_thread_.joinable()) interval_thread_.join();
  uint64_t written;
  {
    absl::MutexLock lock(&mu_);
    written = written_seq_;
  }
  if (written > synced_seq_.load()) {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr) fdatasync(current_->fd);
  }
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(const WalOptions& options,
                                               const MachineOptions& machine_options,
                                               Machine* machine, WalRecoveryReport* report) {
  *report = WalRecoveryReport();
  return Open(options, machine_options, machine, WalStart(), report);
}

absl::StatusOr<std::unique_ptr<Wal>> Wal::Open(const WalOptions& options,
                                               const MachineOptions& machine_options,
                                               Machine* machine, WalStart from,
                                               WalRecoveryReport* report) {
  const absl::Time start = absl::Now();
  const WalGeometry geometry = WalGeometry::Of(machine_options);
  std::unique_ptr<Wal> wal(new Wal(options, geometry));
  wal->names_ = std::move(from.names);
  if (mkdir(options.dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::UnavailableError(Errno("cannot create the data directory", options.dir));
  }
  PO_ASSIGN_OR_RETURN(std::vector<std::string> paths, ListSegments(options.dir));

  uint64_t seq = 1;  // due next
  size_t first = 0;  // the first segment to read
  uint64_t skipped_bytes = 0;
  if (from.seq > 0 && !paths.empty()) {
    // The last segment that starts at or before the record after the snapshot; those before it
    // hold only records the snapshot has.
    if (SegmentFirstSeq(paths[0]) > from.seq + 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("the log in ", options.dir, " starts at record ", SegmentFirstSeq(paths[0]),
                       " but the snapshot holds records up to ", from.seq, ": records ",
                       from.seq + 1, "..", SegmentFirstSeq(paths[0]) - 1, " are missing"));
    }
    while (first + 1 < paths.size() && SegmentFirstSeq(paths[first + 1]) <= from.seq + 1) {
      struct stat st;
      if (stat(paths[first].c_str(), &st) == 0) skipped_bytes += st.st_size;
      ++first;
    }
    seq = SegmentFirstSeq(paths[first]);
  }
  std::string last_path;
  uint64_t last_size = 0;
  uint64_t last_first = 0;
  for (size_t i = first; i < paths.size(); ++i) {
    const std::string& path = paths[i];
    const bool last = i + 1 == paths.size();
    PO_ASSIGN_OR_RETURN(std::string data, ReadWhole(path));
    absl::StatusOr<Header> header = DecodeHeader(data);
    if (header.ok() && header->geometry != geometry) {
      return absl::FailedPreconditionError(
          absl::StrCat("the log in ", options.dir, " was written by a pageownerd with ",
                       Describe(header->geometry), "; this one has ", Describe(geometry),
                       ". Start with the same flags, or with another --data_dir"));
    }
    if (header.ok() && header->first_seq != seq) {
      header = absl::DataLossError(
          absl::StrCat("segment starts at record ", header->first_seq, " where ", seq, " was due"));
    }
    if (!header.ok()) {
      if (absl::IsFailedPrecondition(header.status())) {
        return absl::FailedPreconditionError(absl::StrCat(path, ": ", header.status().message()));
      }
      // A segment being created when the process died: no header yet, no records after it.
      const bool torn = last && FindValidRecord(data, 0, seq) == std::string_view::npos;
      if (torn || options.recovery == WalRecoveryMode::kTruncate) {
        report->notes.push_back(absl::StrCat(
            path, ": ", header.status().message(), "; ", data.size(), " bytes dropped (",
            torn ? "a torn segment creation" : "--wal_recovery=truncate", ")"));
        ++report->truncated_tails;
        report->truncated_bytes += data.size();
        for (size_t j = i; j < paths.size(); ++j) {
          if (j > i) {
            PO_ASSIGN_OR_RETURN(std::string rest, ReadWhole(paths[j]));
            report->truncated_bytes += rest.size();
          }
          if (unlink(paths[j].c_str()) != 0) {
            return absl::UnavailableError(Errno("cannot remove", paths[j]));
          }
        }
        PO_RETURN_IF_ERROR(SyncDir(options.dir));
        break;
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "write-ahead log corrupt: ", path, " offset 0: ", header.status().message(),
          ", and valid records follow. pageownerd will not drop acknowledged data on its own: "
          "restart with --wal_recovery=truncate to drop the log from there on"));
    }
    ++report->segments;
    size_t offset = kHeaderBytes;
    std::string problem;
    while (offset < data.size()) {
      uint32_t len = 0;
      problem = CheckRecord(data, offset, seq, &len);
      if (!problem.empty()) break;
      const std::string_view payload(data.data() + offset + kWalFrameBytes, len);
      if (seq > from.seq) {  // the snapshot has the others
        if (absl::Status s = ReplayRecord(payload, machine, &wal->names_); !s.ok()) {
          return absl::DataLossError(absl::StrCat(path, " offset ", offset, ": ", s.message()));
        }
        ++report->records;
      }
      ++seq;
      offset += kWalFrameBytes + len;
    }
    if (!problem.empty()) {
      const bool followed =
          !last || FindValidRecord(data, offset + 1, seq) != std::string_view::npos;
      if (followed && options.recovery == WalRecoveryMode::kStrict) {
        return absl::FailedPreconditionError(absl::StrCat(
            "write-ahead log corrupt: ", path, " offset ", offset, ": ", problem,
            ", and valid records follow (", last ? "later in this segment" : "in later segments",
            "). pageownerd will not drop acknowledged data on its own: restart with "
            "--wal_recovery=truncate to drop the log from offset ",
            offset, " on"));
      }
      uint64_t dropped = data.size() - offset;
      for (size_t j = i + 1; j < paths.size(); ++j) {
        PO_ASSIGN_OR_RETURN(std::string rest, ReadWhole(paths[j]));
        dropped += rest.size();
        if (unlink(paths[j].c_str()) != 0) {
          return absl::UnavailableError(Errno("cannot remove", paths[j]));
        }
      }
      PO_RETURN_IF_ERROR(Truncate(path, offset));
      if (i + 1 < paths.size()) PO_RETURN_IF_ERROR(SyncDir(options.dir));
      report->notes.push_back(absl::StrCat(
          path, " offset ", offset, ": ", problem, "; ", dropped, " bytes dropped (",
          followed ? "--wal_recovery=truncate" : "a torn tail: never acknowledged", ")"));
      ++report->truncated_tails;
      report->truncated_bytes += dropped;
      data.resize(offset);
      last_path = path;
      last_size = offset;
      last_first = header->first_seq;
      report->bytes += offset;
      break;
    }
    last_path = path;
    last_size = data.size();
    last_first = header->first_seq;
    report->bytes += data.size();
  }

  if (seq <= from.seq) {
    // The log ends before the snapshot's last record: go on after the snapshot, in a segment
    // of its own so that no segment has a gap.
    report->notes.push_back(absl::StrCat("the log ends at record ", seq - 1,
                                         ", before the snapshot's last record ", from.seq,
                                         "; logging goes on at record ", from.seq + 1));
    seq = from.seq + 1;
    last_path.clear();
  }
  wal->next_seq_ = seq;
  std::shared_ptr<Segment> segment;
  if (!last_path.empty()) {
    segment = std::make_shared<Segment>();
    segment->path = last_path;
    segment->first_seq = last_first;
    segment->size = last_size;
    segment->fd = open(last_path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (segment->fd < 0) return absl::UnavailableError(Errno("cannot open", last_path));
    wal->metrics_.segments = report->segments + first;
  } else {
    PO_RETURN_IF_ERROR(wal->CreateSegment(seq, &segment));
    report->bytes += kHeaderBytes;
    wal->metrics_.segments = report->segments + first + 1;
  }
  {
    absl::MutexLock lock(&wal->mu_);
    wal->current_ = std::move(segment);
    wal->written_seq_ = seq - 1;
  }
  wal->synced_seq_ = seq - 1;
  wal->metrics_.bytes = report->bytes + skipped_bytes;
  wal->metrics_.truncated_tails = report->truncated_tails;
  report->duration = absl::Now() - start;
  wal->metrics_.recovery_ns = absl::ToInt64Nanoseconds(report->duration);
  if (options.fsync == FsyncMode::kInterval) {
    wal->interval_thread_ = std::thread([w = wal.get()] { w->IntervalLoop(); });
  }
  return wal;
}

absl::Status Wal::CreateSegment(uint64_t first_seq, std::shared_ptr<Segment>* out) {
  auto s = std::make_shared<Segment>();
  s->path = SegmentPath(options_.dir, first_seq);
  s->first_seq = first_seq;
  s->fd = open(s->path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (s->fd < 0) return absl::UnavailableError(Errno("cannot create", s->path));
  MaybeCrash(Failpoint::kWalSegmentRoll);
  const std::string header = EncodeHeader(geometry_, first_seq);
  const bool ok =
      write(s->fd, header.data(), header.size()) == static_cast<ssize_t>(header.size()) &&
      fdatasync(s->fd) == 0;
  if (!ok) {
    const std::string e = Errno("cannot write", s->path);
    unlink(s->path.c_str());
    return absl::UnavailableError(e);
  }
  s->size = header.size();
  PO_RETURN_IF_ERROR(SyncDir(options_.dir));
  *out = std::move(s);
  return absl::OkStatus();
}

absl::Status Wal::Roll() {
  std::shared_ptr<Segment> old;
  {
    absl::MutexLock lock(&mu_);
    old = current_;
  }
  // Everything in the old segment is durable before the new one exists, so that only the last
  // segment can have an unsynced tail.
  {
    absl::MutexLock lock(&sync_mu_);
    if (fdatasync(old->fd) != 0) {
      std::fprintf(stderr, "pageownerd: %s; exiting: only a restart from the disk is safe now\n",
                   Errno("fdatasync failed on", old->path).c_str());
      std::abort();
    }
    synced_seq_ = next_seq_ - 1;
  }
  std::shared_ptr<Segment> segment;
  PO_RETURN_IF_ERROR(CreateSegment(next_seq_, &segment));
  metrics_.bytes.fetch_add(segment->size, std::memory_order_relaxed);
  metrics_.segments.fetch_add(1, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  current_ = std::move(segment);
  return absl::OkStatus();
}

absl::Status Wal::Append(std::string_view records, uint64_t count) {
  std::shared_ptr<Segment> s;
  {
    absl::MutexLock lock(&mu_);
    s = current_;
  }
  const auto fail = [&](const std::string& why) {
    metrics_.write_errors.fetch_add(1, std::memory_order_relaxed);
    return absl::UnavailableError(absl::StrCat("write-ahead log: ", why));
  };
  if (dirty_) {
    if (ftruncate(s->fd, static_cast<off_t>(s->size)) != 0) {
      return fail(Errno("cannot cut a failed write from", s->path));
    }
    dirty_ = false;
  }
  if (s->size > kHeaderBytes && s->size + records.size() > options_.segment_bytes) {
    if (absl::Status r = Roll(); !r.ok()) return fail(std::string(r.message()));
    absl::MutexLock lock(&mu_);
    s = current_;
  }
  MaybeCrash(Failpoint::kWalBeforeWrite);
  size_t done = 0;
  if (failpoints_internal::armed.load(std::memory_order_relaxed) != 0) {
    if (FailpointFailsWrite()) {
      errno = ENOSPC;
      return fail(Errno("cannot write", s->path));
    }
    if (failpoints_internal::Hit(Failpoint::kWalPartialWrite)) {
      const ssize_t n = write(s->fd, records.data(), records.size() / 2);
      (void)n;
      failpoints_internal::Crash(Failpoint::kWalPartialWrite);
    }
  }
  while (done < records.size()) {
    const ssize_t n = write(s->fd, records.data() + done, records.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      const std::string why = Errno("cannot write", s->path);
      // Nothing of a failed append may stay: a later record would follow garbage.
      if (done > 0 && ftruncate(s->fd, static_cast<off_t>(s->size)) != 0) dirty_ = true;
      return fail(why);
    }
    done += static_cast<size_t>(n);
  }
  s->size += records.size();
  next_seq_ += count;
  bytes_appended_.fetch_add(records.size(), std::memory_order_relaxed);
  metrics_.bytes.fetch_add(records.size(), std::memory_order_relaxed);
  metrics_.records.fetch_add(count, std::memory_order_relaxed);
  {
    absl::MutexLock lock(&mu_);
    written_seq_ = next_seq_ - 1;
  }
  MaybeCrash(Failpoint::kWalAfterWrite);
  return absl::OkStatus();
}

void Wal::SyncLocked() {
  std::shared_ptr<Segment> s;
  uint64_t target;
  {
    absl::MutexLock lock(&mu_);
    s = current_;
    target = written_seq_;
  }
  const absl::Time t0 = absl::Now();
  if (fdatasync(s->fd) != 0) {
    std::fprintf(stderr, "pageownerd: %s; exiting: only a restart from the disk is safe now\n",
                 Errno("fdatasync failed on", s->path).c_str());
    std::abort();
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  size_t b = 0;
  while (b < WalMetrics::kFsyncBuckets.size() && seconds > WalMetrics::kFsyncBuckets[b]) ++b;
  metrics_.fsync_buckets[b].fetch_add(1, std::memory_order_relaxed);
  metrics_.fsync_count.fetch_add(1, std::memory_order_relaxed);
  metrics_.fsync_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  if (target > synced_seq_.load(std::memory_order_relaxed)) {
    synced_seq_.store(target, std::memory_order_release);
  }
}

void Wal::SyncTo(uint64_t seq) {
  if (!sync_on_commit() || synced_seq_.load(std::memory_order_acquire) >= seq) return;
  absl::MutexLock sync_lock(&sync_mu_);
  if (synced_seq_.load(std::memory_order_acquire) >= seq) return;  // a sync meanwhile did it
  SyncLocked();
}

void Wal::IntervalLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.fsync_interval)) return;
    }
    uint64_t written;
    {
      absl::MutexLock lock(&mu_);
      written = written_seq_;
    }
    if (written > synced_seq_.load(std::memory_order_acquire)) {
      absl::MutexLock sync_lock(&sync_mu_);
      SyncLocked();
    }
  }
}

void Wal::SyncAll() {
  absl::MutexLock sync_lock(&sync_mu_);
  SyncLocked();
}

uint64_t Wal::written_seq() const {
  absl::MutexLock lock(&mu_);
  return written_seq_;
}

absl::StatusOr<uint64_t> Wal::DeleteSegmentsThrough(uint64_t seq) {
  PO_ASSIGN_OR_RETURN(std::vector<std::string> paths, ListSegments(options_.dir));
  std::string current;
  {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr) current = current_->path;
  }
  uint64_t deleted = 0;
  // Segment i holds records first(i) .. first(i + 1) - 1.
  for (size_t i = 0; i + 1 < paths.size(); ++i) {
    if (paths[i] == current || SegmentFirstSeq(paths[i + 1]) > seq + 1) break;
    struct stat st;
    const uint64_t bytes = stat(paths[i].c_str(), &st) == 0 ? st.st_size : 0;
    if (unlink(paths[i].c_str()) != 0) {
      return absl::UnavailableError(Errno("cannot remove", paths[i]));
    }
    metrics_.bytes.fetch_sub(std::min(bytes, metrics_.bytes.load()), std::memory_order_relaxed);
    metrics_.segments.fetch_sub(1, std::memory_order_relaxed);
    ++deleted;
  }
  if (deleted > 0) PO_RETURN_IF_ERROR(SyncDir(options_.dir));
  return deleted;
}

}  // namespace pageowner::server
