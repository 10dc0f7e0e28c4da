#include "client/perf_recorder.h"

#include <fcntl.h>
#include <linux/perf_event.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/procfs.h"
#include "core/strings.h"

namespace pageowner::client {
namespace {

template <typename T>
bool Take(absl::Span<const uint8_t>& s, T* out) {
  if (s.size() < sizeof(T)) return false;
  std::memcpy(out, s.data(), sizeof(T));
  s.remove_prefix(sizeof(T));
  return true;
}

bool IsInternalFrame(std::string_view name) {
  for (std::string_view prefix : {"perf_", "__perf_", "trace_event_raw_event_", "__traceiter_",
                                  "__bpf_trace_", "trace_call_bpf"}) {
    if (name.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

std::string TrimNewline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

uint64_t RecorderSampleType() {
  return PERF_SAMPLE_IDENTIFIER | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CPU |
         PERF_SAMPLE_CALLCHAIN | PERF_SAMPLE_RAW;
}

absl::StatusOr<PerfRecordDecoder> PerfRecordDecoder::Create(
    TracepointFormat alloc, TracepointFormat free, std::optional<TracepointFormat> free_batched) {
  const auto need = [](const TracepointFormat& f,
                       std::initializer_list<std::string_view> fields) -> absl::Status {
    if (f.Find("pfn") == nullptr && f.Find("page") != nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          "kmem:", f.name(),
          " records `page` (a struct page pointer), not `pfn`: this kernel's page events are not "
          "supported (a pfn would need vmemmap_base and sizeof(struct page))"));
    }
    for (std::string_view field : fields) {
      if (f.Find(field) == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("kmem:", f.name(), " has no field \"", Sv(field), "\""));
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = need(alloc, {"pfn", "order", "gfp_flags", "migratetype"}); !s.ok()) return s;
  if (absl::Status s = need(free, {"pfn", "order"}); !s.ok()) return s;
  if (free_batched) {
    if (absl::Status s = need(*free_batched, {"pfn"}); !s.ok()) return s;
  }
  PerfRecordDecoder d;
  d.alloc_ = std::move(alloc);
  d.free_ = std::move(free);
  d.free_batched_ = std::move(free_batched);
  return d;
}

const std::string& PerfRecordDecoder::Comm(int32_t pid, int32_t tid, uint32_t cpu) {
  auto [it, inserted] = comms_.try_emplace(tid);
  if (!inserted) return it->second;
  if (tid == 0) {
    it->second = absl::StrCat("swapper/", cpu);  // the idle task of that cpu
    return it->second;
  }
  absl::StatusOr<std::string> c =
      ReadTextFile(absl::StrCat(proc_root_, "/", pid, "/task/", tid, "/comm"));
  if (!c.ok()) c = ReadTextFile(absl::StrCat(proc_root_, "/", tid, "/comm"));
  if (c.ok()) {
    it->second = TrimNewline(*std::move(c));
    ++stats_.comm_from_proc;
  } else {
    ++stats_.comm_unknown;
  }
  return it->second;
}

void PerfRecordDecoder::Decode(absl::Span<const uint8_t> record,
                               absl::FunctionRef<void(const KernelPageEvent&)> on_event) {
  ++stats_.records;
  perf_event_header h;
  absl::Span<const uint8_t> body = record;
  if (!Take(body, &h) || h.size > record.size()) {
    ++stats_.malformed;
    return;
  }
  body = record.subspan(sizeof h, h.size - sizeof h);
  switch (h.type) {
    case PERF_RECORD_SAMPLE:
      ++stats_.samples;
      DecodeSample(body, on_event);
      return;
    case PERF_RECORD_LOST: {
      uint64_t id = 0, lost = 0;
      if (!Take(body, &id) || !Take(body, &lost)) {
        ++stats_.malformed;
        return;
      }
      ++stats_.lost_records;
      stats_.lost += lost;
      return;
    }
    case PERF_RECORD_COMM: {
      uint32_t pid = 0, tid = 0;
      if (!Take(body, &pid) || !Take(body, &tid)) {
        ++stats_.malformed;
        return;
      }
      // comm is NUL-terminated and padded to 8 bytes; the sample_id trailer follows.
      const char* begin = reinterpret_cast<const char*>(body.data());
      const size_t n = strnlen(begin, body.size());
      ++stats_.comm_records;
      comms_[static_cast<int32_t>(tid)] = std::string(begin, n);
      return;
    }
    case PERF_RECORD_FORK: {
      // A new task inherits its parent's name (no COMM record follows a fork); this also
      // replaces what a reused tid was called before.
      uint32_t pid = 0, ppid = 0, tid = 0, ptid = 0;
      if (!Take(body, &pid) || !Take(body, &ppid) || !Take(body, &tid) || !Take(body, &ptid)) {
        ++stats_.malformed;
        return;
      }
      ++stats_.fork_records;
      auto parent = comms_.find(static_cast<int32_t>(ptid));
      if (parent != comms_.end() && !parent->second.empty()) {
        std::string name = parent->second;
        comms_[static_cast<int32_t>(tid)] = std::move(name);
      } else {
        comms_.erase(static_cast<int32_t>(tid));
      }
      return;
    }
    case PERF_RECORD_EXIT:
      ++stats_.exit_records;  // the name stays cached: the exiting task may still free pages
      return;
    case PERF_RECORD_THROTTLE:
      ++stats_.throttled;
      return;
    case PERF_RECORD_UNTHROTTLE:
      ++stats_.unthrottled;
      return;
    default:
      ++stats_.other_records;
      return;
  }
}

void PerfRecordDecoder::DecodeSample(absl::Span<const uint8_t> s,
                                     absl::FunctionRef<void(const KernelPageEvent&)> on_event) {
  uint64_t identifier = 0, time = 0, nr = 0;
  uint32_t pid = 0, tid = 0, cpu = 0, res = 0, raw_size = 0;
  if (!Take(s, &identifier) || !Take(s, &pid) || !Take(s, &tid) || !Take(s, &time) ||
      !Take(s, &cpu) || !Take(s, &res) || !Take(s, &nr) || nr > s.size() / 8) {
    ++stats_.malformed;
    return;
  }
  KernelPageEvent& e = event_;
  e.ips.clear();
  size_t skip = 0;
  bool leading = true;
  for (uint64_t i = 0; i < nr; ++i) {
    uint64_t ip = 0;
    Take(s, &ip);
    if (ip >= static_cast<uint64_t>(PERF_CONTEXT_MAX)) continue;  // PERF_CONTEXT_* markers
    if (leading && kallsyms_ != nullptr) {
      const std::optional<KallsymsMatch> m = kallsyms_->Find(ip);
      if (m && IsInternalFrame(m->name)) {
        ++skip;
        continue;
      }
    }
    leading = false;
    e.ips.push_back(ip);
  }
  stats_.dropped_frames += skip;
  if (!Take(s, &raw_size) || raw_size > s.size()) {
    ++stats_.malformed;
    return;
  }
  const absl::Span<const uint8_t> raw = s.subspan(0, raw_size);
  absl::StatusOr<uint64_t> type = alloc_.ReadUnsigned(raw, "common_type");
  if (!type.ok()) {
    ++stats_.malformed;
    return;
  }
  const TracepointFormat* f = nullptr;
  if (*type == alloc_.id()) {
    f = &alloc_;
    e.kind = KernelPageEventKind::kAlloc;
  } else if (*type == free_.id()) {
    f = &free_;
    e.kind = KernelPageEventKind::kFree;
  } else if (free_batched_ && *type == free_batched_->id()) {
    f = &*free_batched_;
    e.kind = KernelPageEventKind::kFreeBatched;
  } else {
    ++stats_.malformed;
    return;
  }
  absl::StatusOr<uint64_t> pfn = f->ReadUnsigned(raw, "pfn");
  absl::StatusOr<uint64_t> order =
      e.kind == KernelPageEventKind::kFreeBatched ? uint64_t{0} : f->ReadUnsigned(raw, "order");
  if (!pfn.ok() || !order.ok()) {
    ++stats_.malformed;
    return;
  }
  e.gfp_flags = 0;
  e.migratetype = 0;
  if (e.kind == KernelPageEventKind::kAlloc) {
    absl::StatusOr<uint64_t> gfp = f->ReadUnsigned(raw, "gfp_flags");
    absl::StatusOr<int64_t> mt = f->ReadSigned(raw, "migratetype");
    if (!gfp.ok() || !mt.ok()) {
      ++stats_.malformed;
      return;
    }
    if (*pfn == ~uint64_t{0}) {
      ++stats_.failed_allocs;
      return;
    }
    e.gfp_flags = *gfp;
    e.migratetype = static_cast<int32_t>(*mt);
  }
  e.pfn = *pfn;
  e.order = static_cast<uint32_t>(*order);
  e.pid = static_cast<int32_t>(pid);
  e.tid = static_cast<int32_t>(tid);
  e.cpu = cpu;
  e.time_ns = time;
  e.comm = Comm(e.pid, e.tid, cpu);
  switch (e.kind) {
    case KernelPageEventKind::kAlloc:
      ++stats_.alloc;
      break;
    case KernelPageEventKind::kFree:
      ++stats_.free;
      break;
    case KernelPageEventKind::kFreeBatched:
      ++stats_.free_batched;
      break;
  }
  on_event(e);
}

uint64_t DrainRing(const uint8_t* data, uint64_t size, uint64_t tail, uint64_t head,
                   std::vector<uint8_t>& scratch, uint64_t* malformed,
                   absl::FunctionRef<void(absl::Span<const uint8_t>)> on_record) {
  const uint64_t mask = size - 1;
  while (tail < head) {
    if (head - tail < sizeof(perf_event_header)) {
      ++*malformed;
      return head;
    }
    perf_event_header h;
    uint8_t hb[sizeof h];
    for (size_t i = 0; i < sizeof h; ++i) hb[i] = data[(tail + i) & mask];
    std::memcpy(&h, hb, sizeof h);
    if (h.size < sizeof h || h.size > head - tail) {
      ++*malformed;
      return head;
    }
    const uint64_t begin = tail & mask;
    if (begin + h.size <= size) {
      on_record(absl::MakeConstSpan(data + begin, h.size));
    } else {
      const uint64_t first = size - begin;
      scratch.resize(h.size);
      std::memcpy(scratch.data(), data + begin, first);
      std::memcpy(scratch.data() + first, data, h.size - first);
      on_record(absl::MakeConstSpan(scratch.data(), h.size));
    }
    tail += h.size;
  }
  return tail;
}

absl::StatusOr<std::vector<int>> ParseCpuList(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::vector<int> cpus;
  const auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("bad cpu list \"", Sv(text), "\""));
  };
  if (text.empty()) return bad();
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const size_t dash = item.find('-');
    int lo = 0, hi = 0;
    const std::string_view a = item.substr(0, dash);
    const std::string_view b = dash == std::string_view::npos ? a : item.substr(dash + 1);
    auto r1 = std::from_chars(a.data(), a.data() + a.size(), lo);
    auto r2 = std::from_chars(b.data(), b.data() + b.size(), hi);
    if (a.empty() || b.empty() || r1.ec != std::errc() || r1.ptr != a.data() + a.size() ||
        r2.ec != std::errc() || r2.ptr != b.data() + b.size() || hi < lo || lo < 0 ||
        hi - lo > 65536) {
      return bad();
    }
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
  }
  return cpus;
}

namespace {

std::string ParanoidValue() {
  absl::StatusOr<std::string> p = ReadTextFile("/proc/sys/kernel/perf_event_paranoid");
  return p.ok() ? TrimNewline(*p) : std::string("unreadable");
}

absl::Status OpenRefused(int err, std::string_view event, int cpu) {
  const std::string what = absl::StrCat("perf_event_open(kmem:", Sv(event), ", cpu ", cpu,
                                        ") refused: ", std::strerror(err));
  if (err == EACCES || err == EPERM || err == ENOSYS) {
    if (geteuid() == 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          what,
          "; the process is root, so a seccomp profile (container runtimes' default "
          "refuses perf_event_open) or an LSM refused it, or root lacks CAP_PERFMON and "
          "CAP_SYS_ADMIN in this namespace; kernel.perf_event_paranoid is ",
          ParanoidValue()));
    }
    return absl::PermissionDeniedError(absl::StrCat(
        what,
        "; sampling kernel tracepoints with raw data and kernel call chains on every cpu "
        "needs CAP_PERFMON or CAP_SYS_ADMIN (or kernel.perf_event_paranoid -1; it is ",
        ParanoidValue(), ")"));
  }
  if (err == ENOENT || err == ENODEV) {
    return absl::NotFoundError(absl::StrCat(what, " (no such tracepoint id for perf)"));
  }
  return absl::InternalError(what);
}

}  // namespace

PerfRecorder::PerfRecorder(const PerfRecorderOptions& options, PerfRecordDecoder decoder)
    : options_(options), decoder_(std::move(decoder)) {}

PerfRecorder::~PerfRecorder() {
  for (Ring& r : rings_) {
    if (r.base != nullptr) munmap(r.base, r.map_bytes);
    for (int fd : r.fds) close(fd);
  }
  if (stop_fd_ >= 0) close(stop_fd_);
}

absl::StatusOr<std::unique_ptr<PerfRecorder>> PerfRecorder::Open(
    const PerfRecorderOptions& options) {
  if (options.ring_pages == 0 || !std::has_single_bit(options.ring_pages)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring_pages ", options.ring_pages, " is not a power of two"));
  }
  absl::StatusOr<TracepointFormat> alloc =
      TracepointFormat::ReadFromTracefs(options.tracefs_root, "kmem", "mm_page_alloc");
  if (!alloc.ok()) return alloc.status();
  absl::StatusOr<TracepointFormat> free =
      TracepointFormat::ReadFromTracefs(options.tracefs_root, "kmem", "mm_page_free");
  if (!free.ok()) return free.status();
  std::optional<TracepointFormat> batched;
  if (options.free_batched) {
    absl::StatusOr<TracepointFormat> b =
        TracepointFormat::ReadFromTracefs(options.tracefs_root, "kmem", "mm_page_free_batched");
    if (b.ok()) {
      batched = *std::move(b);
    } else if (!absl::IsNotFound(b.status())) {
      return b.status();
    }
  }
  std::vector<const TracepointFormat*> formats = {&*alloc, &*free};
  if (batched) formats.push_back(&*batched);
  std::vector<std::pair<uint32_t, std::string>> events;
  for (const TracepointFormat* f : formats) events.emplace_back(f->id(), f->name());
  absl::StatusOr<PerfRecordDecoder> decoder =
      PerfRecordDecoder::Create(*std::move(alloc), *std::move(free), std::move(batched));
  if (!decoder.ok()) return decoder.status();
  decoder->set_kallsyms(options.kallsyms);

  absl::StatusOr<std::string> online = ReadTextFile(options.cpus_online);
  if (!online.ok()) return online.status();
  absl::StatusOr<std::vector<int>> cpus = ParseCpuList(*online);
  if (!cpus.ok()) return cpus.status();

  std::unique_ptr<PerfRecorder> rec(new PerfRecorder(options, *std::move(decoder)));
  rec->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (rec->stop_fd_ < 0) return ErrnoStatus(errno, "eventfd", "");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t ring_bytes = options.ring_pages * page;
  for (int cpu : *cpus) {
    Ring ring;
    ring.cpu = cpu;
    rec->rings_.push_back(ring);
    Ring& r = rec->rings_.back();
    for (const auto& [id, name] : events) {
      perf_event_attr attr;
      std::memset(&attr, 0, sizeof attr);
      attr.size = sizeof attr;
      attr.type = PERF_TYPE_TRACEPOINT;
      attr.config = id;
      attr.sample_period = 1;
      attr.sample_type = RecorderSampleType();
      attr.disabled = 1;
      attr.exclude_callchain_user = 1;
      attr.sample_id_all = 1;
      if (r.fds.empty()) {
        attr.comm = 1;
        attr.comm_exec = 1;
        attr.watermark = 1;
        attr.wakeup_watermark = options.wakeup_bytes != 0 ? options.wakeup_bytes
                                                          : static_cast<uint32_t>(ring_bytes / 4);
      }
      const int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, /*pid=*/-1, cpu,
                                              /*group_fd=*/-1, PERF_FLAG_FD_CLOEXEC));
      if (fd < 0) return OpenRefused(errno, name, cpu);
      r.fds.push_back(fd);
      if (r.fds.size() == 1) {
        r.leader_fd = fd;
        r.map_bytes = page + ring_bytes;
        r.base = mmap(nullptr, r.map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (r.base == MAP_FAILED) {
          r.base = nullptr;
          const int err = errno;
          if (err == EPERM) {
            return absl::PermissionDeniedError(
                absl::StrCat("mmap of a ", ring_bytes,
                             "-byte perf ring refused: above kernel.perf_event_mlock_kb "
                             "for a process without CAP_IPC_LOCK; use smaller rings"));
          }
          return ErrnoStatus(err, "mmap perf ring of", absl::StrCat("cpu ", cpu));
        }
      } else if (ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, r.leader_fd) != 0) {
        return ErrnoStatus(errno, "PERF_EVENT_IOC_SET_OUTPUT on", absl::StrCat("cpu ", cpu));
      }
    }
  }
  return rec;
}

void PerfRecorder::Stop() {
  stop_.store(true, std::memory_order_relaxed);
  const uint64_t one = 1;
  // An eventfd write is async-signal-safe; a full counter (impossible here) only loses a wakeup.
  [[maybe_unused]] ssize_t n = write(stop_fd_, &one, sizeof one);
}

void PerfRecorder::DrainAll(absl::FunctionRef<void(const KernelPageEvent&)> on_event) {
  for (Ring& r : rings_) {
    auto* meta = static_cast<perf_event_mmap_page*>(r.base);
    const uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
    const uint64_t tail = meta->data_tail;
    if (head == tail) continue;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const uint64_t offset = meta->data_offset != 0 ? meta->data_offset : page;
    const uint64_t size = meta->data_size != 0 ? meta->data_size : r.map_bytes - page;
    uint64_t malformed = 0;
    const uint64_t new_tail = DrainRing(
        static_cast<const uint8_t*>(r.base) + offset, size, tail, head, scratch_, &malformed,
        [&](absl::Span<const uint8_t> rec) { decoder_.Decode(rec, on_event); });
    // Everything before new_tail has been copied out: the kernel may overwrite it now.
    __atomic_store_n(&meta->data_tail, new_tail, __ATOMIC_RELEASE);
  }
}

absl::Status PerfRecorder::Run(absl::FunctionRef<void(const KernelPageEvent&)> on_event) {
  for (Ring& r : rings_) {
    for (int fd : r.fds) {
      if (ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0) {
        return ErrnoStatus(errno, "PERF_EVENT_IOC_ENABLE on", absl::StrCat("cpu ", r.cpu));
      }
    }
  }
  std::vector<pollfd> pfds;
  for (const Ring& r : rings_) pfds.push_back(pollfd{r.leader_fd, POLLIN, 0});
  pfds.push_back(pollfd{stop_fd_, POLLIN, 0});
  absl::Status status;
  while (!stop_.load(std::memory_order_relaxed)) {
    const int n = poll(pfds.data(), pfds.size(), options_.poll_timeout_ms);
    if (n < 0 && errno != EINTR) {
      status = ErrnoStatus(errno, "poll", "perf rings");
      break;
    }
    DrainAll(on_event);
  }
  for (Ring& r : rings_) {
    for (int fd : r.fds) ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
  }
  DrainAll(on_event);
  return status;
}

bool TracefsMounted(const std::string& root) {
  struct stat st;
  return stat((root + "/events").c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status MountTracefs(const std::string& root) {
  if (TracefsMounted(root)) {
    return absl::AlreadyExistsError(absl::StrCat("tracefs is already mounted at ", root));
  }
  if (mount("nodev", root.c_str(), "tracefs", 0, nullptr) != 0) {
    const int err = errno;
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(absl::StrCat(
          "mount -t tracefs nodev ", root, ": ", std::strerror(err), " (needs CAP_SYS_ADMIN)"));
    }
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("mount -t tracefs nodev ", root, ": ", root, " does not exist"));
    }
    return absl::InternalError(
        absl::StrCat("mount -t tracefs nodev ", root, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status UnmountTracefs(const std::string& root) {
  if (umount(root.c_str()) != 0) {
    const int err = errno;
    const std::string what = absl::StrCat("umount ", root, ": ", std::strerror(err));
    if (err == EPERM || err == EACCES) return absl::PermissionDeniedError(what);
    if (err == EINVAL) return absl::FailedPreconditionError(what + " (nothing mounted there)");
    return absl::InternalError(what);
  }
  return absl::OkStatus();
}

}  // namespace pageowner::client
