#include "server/snapshot.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/build_info.h"
#include "core/snapshot.h"
#include "core/status_macros.h"
#include "core/strings.h"
#include "server/crc32c.h"
#include "server/failpoints.h"

namespace pageowner::server {
namespace {

constexpr char kMagic[8] = {'P', 'G', 'O', 'W', 'N', 'S', 'N', 'P'};
constexpr std::string_view kPrefix = "snap-";
constexpr std::string_view kSuffix = ".snap";
constexpr std::string_view kTempSuffix = ".snap.tmp";
constexpr uint32_t kByteOrder = 0x01020304;
constexpr uint32_t kMaxHeaderFields = 4096;

std::string Errno(std::string_view what, const std::string& path) {
  return absl::StrCat(Sv(what), " ", path, ": ", std::strerror(errno));
}

template <typename T>
void Put(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

absl::Status WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = ENOSPC;
      return absl::UnavailableError(Errno("cannot write", path));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

// The body's chunks, written as they fill.
class ChunkSink : public ByteSink {
 public:
  ChunkSink(int fd, const std::string& path) : fd_(fd), path_(path) {
    chunk_.reserve(kSnapshotChunkBytes);
  }
  absl::Status Append(const void* data, size_t n) override {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const size_t take = std::min<size_t>(n, kSnapshotChunkBytes - chunk_.size());
      chunk_.append(p, take);
      p += take;
      n -= take;
      if (chunk_.size() == kSnapshotChunkBytes) PO_RETURN_IF_ERROR(Emit());
    }
    return absl::OkStatus();
  }
  // The last partial chunk and the end chunk.
  absl::Status Close() {
    if (!chunk_.empty()) PO_RETURN_IF_ERROR(Emit());
    std::string end;
    Put<uint32_t>(&end, 0);
    Put<uint32_t>(&end, Crc32cExtend(0, &body_bytes_, sizeof(body_bytes_)));
    return WriteAll(fd_, end.data(), end.size(), path_);
  }

 private:
  absl::Status Emit() {
    char frame[8];
    const auto len = static_cast<uint32_t>(chunk_.size());
    const uint32_t crc = Crc32c(chunk_);
    std::memcpy(frame, &len, 4);
    std::memcpy(frame + 4, &crc, 4);
    PO_RETURN_IF_ERROR(WriteAll(fd_, frame, sizeof(frame), path_));
    PO_RETURN_IF_ERROR(WriteAll(fd_, chunk_.data(), chunk_.size(), path_));
    body_bytes_ += chunk_.size();
    chunk_.clear();
    return absl::OkStatus();
  }

  const int fd_;
  const std::string& path_;
  std::string chunk_;
  uint64_t body_bytes_ = 0;
};

// Reads a whole file through a buffer, tracking the offset for messages.
class FileReader {
 public:
  FileReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t offset() const { return offset_; }
  uint64_t size() const { return size_; }
  // Exactly n bytes, or false at the end of the file.
  bool Read(void* data, size_t n) {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      const ssize_t r = read(fd_, p, n);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
      offset_ += static_cast<uint64_t>(r);
    }
    return true;
  }

 private:
  const int fd_;
  const uint64_t size_;
  uint64_t offset_ = 0;
};

// The body's bytes, chunk by chunk, each checked against its CRC before any of it is used.
class ChunkSource : public ByteSource {
 public:
  explicit ChunkSource(FileReader* file) : file_(file) {}
  absl::Status Read(void* data, size_t n) override {
    char* p = static_cast<char*>(data);
    while (n > 0) {
      if (at_ == chunk_.size()) PO_RETURN_IF_ERROR(NextChunk());
      const size_t take = std::min(n, chunk_.size() - at_);
      std::memcpy(p, chunk_.data() + at_, take);
      at_ += take;
      p += take;
      n -= take;
    }
    return absl::OkStatus();
  }
  // After the last byte was read: the end chunk, then the end of the file.
  absl::Status Finish() {
    if (at_ != chunk_.size()) return Loss("bytes left in the last chunk");
    uint32_t frame[2];
    const uint64_t at = file_->offset();
    if (!file_->Read(frame, sizeof(frame))) return CutShort(at, "the end chunk");
    if (frame[0] != 0) return Loss(absl::StrCat("a chunk at offset ", at, " after the end"));
    if (frame[1] != Crc32cExtend(0, &body_bytes_, sizeof(body_bytes_))) {
      return Loss(absl::StrCat("the end chunk at offset ", at, " does not match the ", body_bytes_,
                               " body bytes read"));
    }
    if (file_->offset() != file_->size()) {
      return Loss(absl::StrCat(file_->size() - file_->offset(), " bytes after the end chunk"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Loss(std::string_view why) { return absl::DataLossError(Sv(why)); }
  absl::Status CutShort(uint64_t at, std::string_view what) {
    return Loss(absl::StrCat("cut short at offset ", at, " (", Sv(what), "; the file has ",
                             file_->size(), " bytes)"));
  }
  absl::Status NextChunk() {
    uint32_t frame[2];
    const uint64_t at = file_->offset();
    if (!file_->Read(frame, sizeof(frame))) return CutShort(at, "a chunk frame");
    if (frame[0] == 0) return Loss(absl::StrCat("the body ends early at offset ", at));
    if (frame[0] > kSnapshotChunkBytes) {
      return Loss(absl::StrCat("an impossible chunk length ", frame[0], " at offset ", at));
    }
    chunk_.resize(frame[0]);
    if (!file_->Read(chunk_.data(), chunk_.size())) {
      return CutShort(at, absl::StrCat("a chunk of ", frame[0], " bytes"));
    }
    if (Crc32c(chunk_) != frame[1]) {
      return Loss(absl::StrCat("CRC mismatch in the chunk at offset ", at));
    }
    body_bytes_ += chunk_.size();
    at_ = 0;
    return absl::OkStatus();
  }

  FileReader* const file_;
  std::string chunk_;
  size_t at_ = 0;
  uint64_t body_bytes_ = 0;
};

std::string Describe(const WalGeometry& g) {
  return absl::StrCat(
      "--memory=", g.pages * 4096, " bytes (", g.pages, " pages) --stack_depth=", g.stack_depth,
      " --depot_max_pools=", g.depot_max_pools, " --tracking=", g.tracking ? "true" : "false");
}

// A core reader's message without its "snapshot: " (the caller names the file instead).
std::string_view Why(const absl::Status& s) {
  std::string_view why(s.message().data(), s.message().size());
  if (why.starts_with("snapshot: ")) why.remove_prefix(10);
  return why;
}

absl::Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(Errno("cannot open", dir));
  const int r = fsync(fd);
  const std::string e = r != 0 ? Errno("cannot fsync", dir) : "";
  close(fd);
  return r == 0 ? absl::OkStatus() : absl::UnavailableError(e);
}

}  // namespace

std::string SnapshotPath(const std::string& dir, uint64_t seq) {
  return absl::StrFormat("%s/%s%020u%s", dir, kPrefix, seq, kSuffix);
}

std::string SnapshotTempPath(const std::string& dir, uint64_t seq) {
  return absl::StrFormat("%s/%s%020u%s", dir, kPrefix, seq, kTempSuffix);
}

absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ListSnapshots(
    const std::string& dir) {
  return ListNumberedFiles(dir, kPrefix, kSuffix);
}

absl::Status WriteSnapshotTemp(const std::string& path, const Machine& machine,
                               const WalNames& names, const WalGeometry& geometry, uint64_t seq) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return absl::UnavailableError(Errno("cannot create", path));
  const auto fail = [&](absl::Status s) {
    close(fd);
    unlink(path.c_str());
    return s;
  };
  std::string fields;
  Put<uint64_t>(&fields, seq);
  Put<uint64_t>(&fields, geometry.pages);
  Put<uint32_t>(&fields, geometry.stack_depth);
  Put<uint32_t>(&fields, geometry.depot_max_pools);
  Put<uint8_t>(&fields, geometry.tracking ? 1 : 0);
  Put<int64_t>(&fields, absl::ToUnixNanos(absl::Now()));
  const std::string writer = absl::StrCat("pageownerd ", Sv(BuildVersion()));
  Put<uint16_t>(&fields, static_cast<uint16_t>(writer.size()));
  fields += writer;
  Put<uint32_t>(&fields, kByteOrder);
  std::string header(kMagic, sizeof(kMagic));
  Put<uint32_t>(&header, kSnapshotVersion);
  Put<uint32_t>(&header, static_cast<uint32_t>(fields.size()));
  header += fields;
  Put<uint32_t>(&header, Crc32c(header));
  if (absl::Status s = WriteAll(fd, header.data(), header.size(), path); !s.ok()) return fail(s);

  ChunkSink sink(fd, path);
  SnapshotWriter w(&sink);
  machine.SaveState(w);
  w.Tag(SnapshotTag("NAME"));
  const std::vector<uint64_t> ips = names.Sorted();
  w.U64(ips.size());
  for (uint64_t ip : ips) w.U64(ip);
  w.Tag(SnapshotTag("END!"));
  if (absl::Status s = w.Finish(); !s.ok()) return fail(s);
  if (absl::Status s = sink.Close(); !s.ok()) return fail(s);
  if (fsync(fd) != 0) return fail(absl::UnavailableError(Errno("cannot fsync", path)));
  close(fd);
  return absl::OkStatus();
}

absl::Status PublishSnapshot(const std::string& temp, const std::string& final,
                             const std::string& dir) {
  MaybeCrash(Failpoint::kSnapshotBeforeRename);
  if (rename(temp.c_str(), final.c_str()) != 0) {
    const std::string e = Errno(absl::StrCat("cannot rename ", temp, " to"), final);
    unlink(temp.c_str());
    return absl::UnavailableError(e);
  }
  MaybeCrash(Failpoint::kSnapshotAfterRename);
  return SyncDir(dir);
}

absl::StatusOr<LoadedSnapshot> ReadSnapshot(const std::string& path, const MachineOptions& options,
                                            const WalGeometry& geometry) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::UnavailableError(Errno("cannot open", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const std::string e = Errno("cannot stat", path);
    close(fd);
    return absl::UnavailableError(e);
  }
  FileReader file(fd, static_cast<uint64_t>(st.st_size));
  auto result = [&]() -> absl::StatusOr<LoadedSnapshot> {
    const auto loss = [&](std::string_view why) {
      return absl::DataLossError(absl::StrCat("snapshot ", path, ": ", Sv(why)));
    };
    char magic[8];
    uint32_t version = 0, len = 0;
    if (!file.Read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
      return loss("not a pageowner snapshot (no PGOWNSNP magic)");
    }
    if (!file.Read(&version, 4) || !file.Read(&len, 4)) return loss("cut short in the header");
    if (len > kMaxHeaderFields) return loss(absl::StrCat("an impossible header length ", len));
    std::string header(kMagic, 8);
    Put<uint32_t>(&header, version);
    Put<uint32_t>(&header, len);
    std::string fields(len, '\0');
    uint32_t crc = 0;
    if (!file.Read(fields.data(), len) || !file.Read(&crc, 4)) {
      return loss("cut short in the header");
    }
    header += fields;
    if (Crc32c(header) != crc) return loss("header CRC mismatch");
    if (version != kSnapshotVersion) {
      return absl::FailedPreconditionError(absl::StrCat("snapshot ", path, ": format version ",
                                                        version, "; this pageownerd reads version ",
                                                        kSnapshotVersion));
    }
    StringSource f(fields);
    SnapshotReader h(&f);
    LoadedSnapshot out;
    out.seq = h.U64();
    WalGeometry g;
    g.pages = h.U64();
    g.stack_depth = h.U32();
    g.depot_max_pools = h.U32();
    g.tracking = h.U8() != 0;
    h.I64();  // when written
    const uint16_t writer_len = h.Pod<uint16_t>();
    std::string writer(writer_len, '\0');
    h.Bytes(writer.data(), writer.size());
    const uint32_t order = h.U32();
    if (!h.ok()) return loss("the header fields are cut short");
    if (order != kByteOrder) return loss("written on a machine of another byte order");
    if (g != geometry) {
      return absl::FailedPreconditionError(absl::StrCat(
          "snapshot ", path, " was written by ", writer, " with ", Describe(g), "; this one has ",
          Describe(geometry), ". Start with the same flags, or with another --data_dir"));
    }
    ChunkSource body(&file);
    SnapshotReader r(&body);
    absl::StatusOr<std::unique_ptr<Machine>> machine = Machine::LoadState(options, r);
    if (!machine.ok()) {
      return absl::Status(machine.status().code(),
                          absl::StrCat("snapshot ", path, ": ", Sv(Why(machine.status()))));
    }
    out.machine = std::move(*machine);
    r.ExpectTag(SnapshotTag("NAME"), "log names");
    const uint64_t n = r.Count(uint64_t{1} << 40, "log names");
    for (uint64_t i = 0; i < n && r.ok(); ++i) out.names.Add(r.U64());
    r.ExpectTag(SnapshotTag("END!"), "end");
    if (!r.ok()) return loss(Why(r.status()));
    if (absl::Status s = body.Finish(); !s.ok()) return loss(Why(s));
    out.bytes = file.size();
    return out;
  }();
  close(fd);
  return result;
}

absl::StatusOr<Recovered> RecoverDataDir(const WalOptions& options,
                                         const MachineOptions& machine_options,
                                         WalRecoveryReport* report) {
  *report = WalRecoveryReport();
  const absl::Time start = absl::Now();
  const std::string& dir = options.dir;
  if (mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    return absl::UnavailableError(Errno("cannot create the data directory", dir));
  }
  // A snapshot being written when the process died: never published, never needed.
  if (DIR* d = opendir(dir.c_str())) {
    std::vector<std::string> temps;
    while (const dirent* e = readdir(d)) {
      const std::string_view name(e->d_name);
      if (name.starts_with(kPrefix) && name.ends_with(kTempSuffix)) {
        temps.push_back(absl::StrCat(dir, "/", Sv(name)));
      }
    }
    closedir(d);
    for (const std::string& t : temps) {
      if (unlink(t.c_str()) != 0) return absl::UnavailableError(Errno("cannot remove", t));
      report->notes.push_back(absl::StrCat(t, ": an unfinished snapshot, removed"));
    }
  }
  PO_ASSIGN_OR_RETURN(const auto snapshots, ListSnapshots(dir));
  PO_ASSIGN_OR_RETURN(const std::vector<std::string> segments, Wal::ListSegments(dir));
  const uint64_t log_start = segments.empty() ? 0 : Wal::SegmentFirstSeq(segments.front());
  const WalGeometry geometry = WalGeometry::Of(machine_options);

  Recovered out;
  WalStart from;
  std::vector<std::string> bad;  // "path: why" of each snapshot that failed
  for (auto it = snapshots.rbegin(); it != snapshots.rend(); ++it) {
    const std::string& path = it->second;
    const absl::Time t0 = absl::Now();
    absl::StatusOr<LoadedSnapshot> loaded = ReadSnapshot(path, machine_options, geometry);
    if (loaded.ok() && loaded->seq != it->first) {
      loaded = absl::DataLossError(absl::StrCat("snapshot ", path, " holds records up to ",
                                                loaded->seq, ", not ", it->first, " as named"));
    }
    if (loaded.ok()) {
      report->snapshot = path;
      report->snapshot_seq = loaded->seq;
      report->snapshot_bytes = loaded->bytes;
      report->snapshot_duration = absl::Now() - t0;
      out.machine = std::move(loaded->machine);
      from.seq = loaded->seq;
      from.names = std::move(loaded->names);
      break;
    }
    if (absl::IsFailedPrecondition(loaded.status())) return loaded.status();
    bad.push_back(std::string(loaded.status().message()));
  }
  if (out.machine == nullptr && !bad.empty() && log_start != 1) {
    std::string why;
    for (const std::string& b : bad) absl::StrAppend(&why, b, "; ");
    return absl::DataLossError(absl::StrCat(
        "cannot recover ", dir, ": ", why, "no older snapshot is valid and the log ",
        log_start == 0 ? "is empty" : absl::StrCat("starts at record ", log_start),
        ", so nothing else holds the records before. pageownerd will not drop acknowledged data "
        "on its own: restore the snapshot from a backup, or move ",
        snapshots.back().second,
        " away to start from what the log alone holds (losing the records before it)"));
  }
  // Fallen back: the bad ones are set aside, so that they are never taken for a generation.
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string& path = snapshots[snapshots.size() - 1 - i].second;
    const std::string aside = absl::StrCat(path, ".corrupt");
    if (rename(path.c_str(), aside.c_str()) != 0) {
      return absl::UnavailableError(Errno("cannot rename", path));
    }
    report->notes.push_back(
        absl::StrCat(bad[i], "; renamed to ", aside, ", recovered from ",
                     report->snapshot.empty() ? std::string("the log alone") : report->snapshot,
                     " and the log after it"));
  }
  if (!bad.empty()) PO_RETURN_IF_ERROR(SyncDir(dir));
  if (out.machine == nullptr) out.machine = std::make_unique<Machine>(machine_options);
  WalRecoveryReport wal_report;
  absl::StatusOr<std::unique_ptr<Wal>> wal =
      Wal::Open(options, machine_options, out.machine.get(), std::move(from), &wal_report);
  if (!wal.ok()) return wal.status();
  out.wal = std::move(*wal);
  wal_report.snapshot = report->snapshot;
  wal_report.snapshot_seq = report->snapshot_seq;
  wal_report.snapshot_bytes = report->snapshot_bytes;
  wal_report.snapshot_duration = report->snapshot_duration;
  report->notes.insert(report->notes.end(), wal_report.notes.begin(), wal_report.notes.end());
  wal_report.notes = std::move(report->notes);
  *report = std::move(wal_report);
  report->duration = absl::Now() - start;
  out.wal->metrics().recovery_ns = absl::ToInt64Nanoseconds(report->duration);
  return out;
}

}  // namespace pageowner::server
