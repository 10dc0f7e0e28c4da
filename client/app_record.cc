// AppRing, AppSymbolizer, AppRecorder and RecordApp: see app_record.h.
#include "client/app_record.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/kernel_flags.h"

extern char** environ;

namespace pageowner::client {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t PageDown(uint64_t a) { return a & ~(kPage - 1); }
uint64_t PageUp(uint64_t a) { return (a + kPage - 1) & ~(kPage - 1); }

// The largest order <= kMaxOrder with `index` aligned to it and at most `left` pages.
unsigned FitOrder(uint64_t index, uint64_t left) {
  unsigned k = 0;
  while (k < static_cast<unsigned>(kMaxOrder) && (index & ((uint64_t{2} << k) - 1)) == 0 &&
         (uint64_t{2} << k) <= left) {
    ++k;
  }
  return k;
}

std::string Hex(uint64_t v) { return absl::StrFormat("0x%x", v); }

std::string Basename(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

// ---- AppRing ----

absl::StatusOr<std::unique_ptr<AppRing>> AppRing::Create(uint64_t slots, absl::Duration exit_wait) {
  if (slots < 2 || (slots & (slots - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ring slots ", slots, ": not a power of two"));
  }
  const int fd = memfd_create("pageowner-ring", MFD_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("memfd_create: ", strerror(errno)));
  const size_t bytes = po_ring_bytes(slots);
  struct stat st;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0 || fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("ring of ", bytes, " bytes: ", strerror(e)));
  }
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    const int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat("mmap of the ring: ", strerror(e)));
  }
  auto* h = static_cast<po_ring_header*>(m);
  po_ring_init(h, slots, static_cast<uint64_t>(absl::ToInt64Nanoseconds(exit_wait)));
  return std::unique_ptr<AppRing>(new AppRing(fd, st.st_ino, h, bytes));
}

AppRing::~AppRing() {
  munmap(h_, bytes_);
  close(fd_);
}

std::string AppRing::EnvValue() const {
  return absl::StrCat(fd_, ":", inode_, ":/proc/", getpid(), "/fd/", fd_);
}

size_t AppRing::Drain(std::vector<po_record>* out, size_t max) {
  size_t n = 0;
  while (n < max) {
    const po_record* r = po_ring_peek(h_, pos_);
    if (r == nullptr) break;
    out->push_back(*r);
    po_ring_release(h_, pos_);
    ++pos_;
    ++n;
  }
  return n;
}

void AppRing::MarkConsumed() { __atomic_store_n(&h_->consumed, pos_, __ATOMIC_RELEASE); }

uint64_t AppRing::Unpublished() const {
  return __atomic_load_n(&h_->head, __ATOMIC_ACQUIRE) - pos_;
}
uint64_t AppRing::drops() const { return __atomic_load_n(&h_->drops, __ATOMIC_RELAXED); }
uint64_t AppRing::written() const { return __atomic_load_n(&h_->written, __ATOMIC_RELAXED); }

// ---- AppSymbolizer ----

namespace {
const Dwfl_Callbacks kProcCallbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = nullptr,
    .debuginfo_path = nullptr,
};
}  // namespace

struct AppSymbolizer::Process {
  Dwfl* dwfl = nullptr;
  absl::Time reported;  // when /proc/PID/maps was last read
  absl::flat_hash_map<uint64_t, Frame> cache;
  ~Process() {
    if (dwfl != nullptr) dwfl_end(dwfl);
  }
  // (Re)reads the process's modules; false when it is gone.
  bool Report(pid_t pid) {
    if (dwfl == nullptr) {
      dwfl = dwfl_begin(&kProcCallbacks);
      if (dwfl == nullptr) return false;
      dwfl_report_begin(dwfl);
    } else {
      dwfl_report_begin_add(dwfl);
    }
    const int rc = dwfl_linux_proc_report(dwfl, pid);
    dwfl_report_end(dwfl, nullptr, nullptr);
    reported = absl::Now();
    return rc == 0;
  }
};

AppSymbolizer::AppSymbolizer() = default;
AppSymbolizer::~AppSymbolizer() = default;

void AppSymbolizer::Forget(pid_t pid) { procs_.erase(pid); }

Frame AppSymbolizer::Symbolize(pid_t pid, const std::string& exe, uint64_t ip) {
  std::unique_ptr<Process>& slot = procs_[pid];
  if (slot == nullptr) {
    slot = std::make_unique<Process>();
    slot->Report(pid);
  }
  Process& p = *slot;
  if (auto it = p.cache.find(ip); it != p.cache.end()) return it->second;
  // A return address: the call is just before it (the last instruction of a noreturn call may
  // end the function).
  const uint64_t at = ip == 0 ? 0 : ip - 1;
  Dwfl_Module* m = p.dwfl == nullptr ? nullptr : dwfl_addrmodule(p.dwfl, at);
  if (m == nullptr && absl::Now() - p.reported > absl::Milliseconds(20) && p.Report(pid)) {
    m = dwfl_addrmodule(p.dwfl, at);  // a library mapped since the last read (dlopen)
  }
  Frame f{ip, ""};
  if (m != nullptr) {
    Dwarf_Addr start = 0;
    const char* module =
        dwfl_module_info(m, nullptr, &start, nullptr, nullptr, nullptr, nullptr, nullptr);
    const std::string path = module == nullptr ? "" : module;
    GElf_Off off = 0;
    GElf_Sym sym;
    const char* name = dwfl_module_addrinfo(m, at, &off, &sym, nullptr, nullptr, nullptr);
    const bool in_exe = !exe.empty() && path == exe;
    if (name != nullptr) {
      // "__libc_start_main@@GLIBC_2.34": the version is not part of the kernel-like name.
      const std::string_view base(name, strcspn(name, "@"));
      f.symbol = absl::StrFormat("%s+0x%x/0x%x", base, off + 1, sym.st_size);
      if (!in_exe) absl::StrAppend(&f.symbol, " [", Basename(path), "]");
    } else {
      f.symbol = absl::StrFormat("%s+0x%x", Basename(path), ip - start);
    }
  }
  p.cache.emplace(ip, f);
  return f;
}

// ---- AppRecorder ----

struct AppRecorder::Block {
  uint64_t va = 0;
  unsigned order = 0;
  uint32_t gfp = 0;
  StackId stack;
  TaskId task;
  uint64_t ts = 0;
  std::optional<uint64_t> pfn;  // known
  bool dead = false;            // its allocation failed: it holds no pages
  std::vector<std::function<void(std::optional<uint64_t>)>> waiting;
  uint64_t pages() const { return uint64_t{1} << order; }
  uint64_t end() const { return va + pages() * kPage; }
};

struct AppRecorder::Process {
  int32_t pid = 0;
  std::string comm;
  std::string exe;
  std::map<uint64_t, BlockPtr> blocks;                           // by va: mapped pages
  absl::flat_hash_map<uint64_t, std::vector<BlockPtr>> mallocs;  // by the block's address
  absl::flat_hash_map<int32_t, TaskId> tasks;                    // by thread id
  absl::flat_hash_map<std::string, StackId> stacks;              // by raw return addresses
  uint64_t brk_start = 0;
  uint64_t brk_max = 0;
};

AppRecorder::AppRecorder(Session* session, AppRecorderOptions options)
    : session_(session), options_(std::move(options)) {
  if (!options_.symbolize) {
    symbolizer_ = std::make_unique<AppSymbolizer>();
    options_.symbolize = [s = symbolizer_.get()](pid_t pid, const std::string& exe, uint64_t ip) {
      return s->Symbolize(pid, exe, ip);
    };
  }
}

AppRecorder::~AppRecorder() = default;

void AppRecorder::Trace(const std::string& line) {
  if (options_.trace) options_.trace(line);
}

AppRecorder::Process* AppRecorder::Find(int32_t pid) {
  auto it = procs_.find(pid);
  return it == procs_.end() ? nullptr : it->second.get();
}

AppRecorder::Process& AppRecorder::Start(const po_record& r) {
  if (Find(r.pid) != nullptr) End(r.pid, /*exec=*/true);
  auto p = std::make_unique<Process>();
  p->pid = r.pid;
  char comm[17] = {};
  memcpy(comm, r.ips, 16);
  p->comm = comm;
  char exe[4096];
  const ssize_t n = readlink(absl::StrCat("/proc/", r.pid, "/exe").c_str(), exe, sizeof(exe) - 1);
  if (n > 0) p->exe.assign(exe, static_cast<size_t>(n));
  ++stats_.processes;
  Trace(absl::StrCat("start pid ", r.pid, r.len == PO_START_FORK ? " fork of " : " exec, parent ",
                     r.addr, " comm ", p->comm));
  Process& ref = *p;
  procs_[r.pid] = std::move(p);
  return ref;
}

void AppRecorder::End(int32_t pid, bool exec) {
  Process* p = Find(pid);
  if (p == nullptr) return;
  const bool free_pages = exec || options_.free_at_exit;
  const StackId stack = SyntheticStack(exec ? "process_exec" : "process_exit");
  const TaskId task = TaskOf(*p, pid);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // the preload library's clock
  const uint64_t ts = static_cast<uint64_t>(now.tv_sec) * 1000000000u + now.tv_nsec;
  uint64_t pages = 0;
  auto release = [&](const BlockPtr& b) {
    if (free_pages) {
      FreeBlock(b, stack, task, ts, exec ? "exec" : "exit");
    } else if (!b->dead) {
      pages += b->pages();
    }
  };
  for (auto& [va, b] : p->blocks) release(b);
  for (auto& [addr, blocks] : p->mallocs) {
    for (const BlockPtr& b : blocks) release(b);
  }
  if (p->brk_max > p->brk_start) stats_.brk_growth_bytes += p->brk_max - p->brk_start;
  stats_.leaked_pages += pages;
  Trace(absl::StrCat(exec ? "exec" : "exit", " pid ", pid,
                     free_pages ? "" : absl::StrCat(", ", pages, " pages kept")));
  if (symbolizer_ != nullptr) symbolizer_->Forget(pid);
  procs_.erase(pid);
}

void AppRecorder::EndAll() {
  std::vector<int32_t> pids;
  for (auto& [pid, p] : procs_) pids.push_back(pid);
  std::sort(pids.begin(), pids.end());
  for (int32_t pid : pids) End(pid, /*exec=*/false);
}

StackId AppRecorder::StackOf(Process& p, const po_record& r) {
  const uint32_t n = std::min<uint32_t>(r.nr_ips, PO_RING_MAX_IPS);
  std::string key(reinterpret_cast<const char*>(r.ips), n * sizeof(uint64_t));
  if (auto it = p.stacks.find(key); it != p.stacks.end()) return it->second;
  std::vector<Frame> frames;
  for (uint32_t i = 0; i < n; ++i) frames.push_back(options_.symbolize(p.pid, p.exe, r.ips[i]));
  if (frames.empty()) frames.push_back({0, "unknown_stack"});
  const StackId id = session_->InternStack(frames);
  p.stacks.emplace(std::move(key), id);
  return id;
}

StackId AppRecorder::SyntheticStack(const char* name) {
  const Frame f{0, name};
  return session_->InternStack(absl::MakeConstSpan(&f, 1));
}

TaskId AppRecorder::TaskOf(Process& p, int32_t tid) {
  if (auto it = p.tasks.find(tid); it != p.tasks.end()) return it->second;
  const TaskId id = session_->InternTask({tid, p.pid, p.comm});
  p.tasks.emplace(tid, id);
  return id;
}

AppRecorder::BlockPtr AppRecorder::AllocBlock(uint64_t va, unsigned order, uint32_t gfp,
                                              StackId stack, TaskId task, uint64_t ts,
                                              const char* why) {
  auto b = std::make_shared<Block>();
  b->va = va;
  b->order = order;
  b->gfp = gfp;
  b->stack = stack;
  b->task = task;
  b->ts = ts;
  AllocSpec spec;
  spec.order = Order(order);
  spec.gfp_mask = gfp;
  spec.stack = stack;
  spec.task = task;
  spec.ts_ns = ts;
  pending_[session_->Alloc(spec)] = b;
  ++stats_.allocs;
  Trace(absl::StrCat("alloc ", Hex(va), " order ", order, " (", why, ")"));
  return b;
}

void AppRecorder::AllocRange(Process& p, uint64_t va, uint64_t pages, uint32_t gfp, StackId stack,
                             TaskId task, uint64_t ts, const char* why,
                             std::vector<BlockPtr>* out) {
  (void)p;
  uint64_t i = 0;
  while (i < pages) {
    const unsigned k = FitOrder(va / kPage + i, pages - i);
    out->push_back(AllocBlock(va + i * kPage, k, gfp, stack, task, ts, why));
    i += uint64_t{1} << k;
  }
}

void AppRecorder::WhenKnown(const BlockPtr& b, std::function<void(std::optional<uint64_t>)> fn) {
  if (b->dead) return fn(std::nullopt);
  if (b->pfn.has_value()) return fn(b->pfn);
  b->waiting.push_back(std::move(fn));
}

void AppRecorder::Resolve(const BlockPtr& b, std::optional<uint64_t> pfn) {
  if (pfn.has_value()) {
    b->pfn = pfn;
  } else {
    b->dead = true;
  }
  auto waiting = std::move(b->waiting);
  b->waiting.clear();
  for (auto& fn : waiting) fn(pfn);
}

void AppRecorder::FreeBlock(const BlockPtr& b, StackId stack, TaskId task, uint64_t ts,
                            const char* why) {
  Trace(absl::StrCat("free ", Hex(b->va), " order ", b->order, " (", why, ")"));
  WhenKnown(b, [this, b, stack, task, ts](std::optional<uint64_t> pfn) {
    if (!pfn.has_value()) return;
    FreeSpec spec;
    spec.pfn = Pfn(*pfn);
    spec.order = Order(b->order);
    spec.stack = stack;
    spec.task = task;
    spec.ts_ns = ts;
    session_->Free(spec);
    ++stats_.frees;
  });
}

void AppRecorder::Cut(Process& p, const BlockPtr& b, uint64_t lo, uint64_t hi, bool keep_inside,
                      StackId stack, TaskId task, uint64_t ts, const char* why) {
  p.blocks.erase(b->va);
  FreeBlock(b, stack, task, ts, why);
  // The pieces to keep, as page offsets in b, each split by its alignment in b (so at aligned
  // pfns too, b's pfn being aligned to b's order).
  struct Piece {
    uint64_t offset;
    unsigned order;
    BlockPtr block;
  };
  std::vector<Piece> pieces;
  const uint64_t n = b->pages();
  const uint64_t cut_lo = lo <= b->va ? 0 : (lo - b->va) / kPage;
  const uint64_t cut_hi = hi >= b->end() ? n : (hi - b->va) / kPage;
  auto keep = [&](uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to;) {
      const unsigned k = FitOrder(i, to - i);
      auto c = std::make_shared<Block>();
      c->va = b->va + i * kPage;
      c->order = k;
      c->gfp = b->gfp;
      c->stack = b->stack;
      c->task = b->task;
      c->ts = b->ts;
      pieces.push_back({i, k, c});
      p.blocks[c->va] = c;
      Trace(absl::StrCat("alloc ", Hex(c->va), " order ", k, " at +", i, " (survivor)"));
      i += uint64_t{1} << k;
    }
  };
  keep(0, cut_lo);
  if (keep_inside) keep(cut_lo, cut_hi);
  keep(cut_hi, n);
  // After b's free (queued first on the same block), at b's pfn + offset.
  WhenKnown(b, [this, pieces](std::optional<uint64_t> pfn) {
    for (const Piece& piece : pieces) {
      if (!pfn.has_value()) {
        Resolve(piece.block, std::nullopt);
        continue;
      }
      const BlockPtr& c = piece.block;
      AllocSpec spec;
      spec.order = Order(piece.order);
      spec.gfp_mask = c->gfp;
      spec.stack = c->stack;
      spec.task = c->task;
      spec.ts_ns = c->ts;
      spec.pfn = Pfn(*pfn + piece.offset);
      pending_[session_->Alloc(spec)] = c;  // checked when answered
      ++stats_.allocs;
      Resolve(c, *pfn + piece.offset);
    }
  });
}

void AppRecorder::Unmap(Process& p, uint64_t lo, uint64_t hi, StackId stack, TaskId task,
                        uint64_t ts, const char* why) {
  std::vector<BlockPtr> touched;
  auto it = p.blocks.lower_bound(lo);
  if (it != p.blocks.begin()) {
    auto prev = std::prev(it);
    if (prev->second->end() > lo) it = prev;
  }
  for (; it != p.blocks.end() && it->first < hi; ++it) touched.push_back(it->second);
  for (const BlockPtr& b : touched) {
    if (b->va >= lo && b->end() <= hi) {
      p.blocks.erase(b->va);
      FreeBlock(b, stack, task, ts, why);
    } else {
      Cut(p, b, lo, hi, /*keep_inside=*/false, stack, task, ts, why);
    }
  }
}

void AppRecorder::Remap(Process& p, const po_record& r) {
  const StackId stack = StackOf(p, r);
  const TaskId task = TaskOf(p, r.tid);
  const uint64_t old_lo = PageDown(r.addr), old_hi = PageUp(r.addr + r.len);
  const uint64_t new_lo = PageDown(r.new_addr), new_hi = PageUp(r.new_addr + r.new_len);
  const uint32_t gfp = kGfpHighuserMovable | kGfpZero;
  if (new_lo == old_lo) {
    if (new_hi < old_hi) Unmap(p, new_hi, old_hi, stack, task, r.ts_ns, "mremap shrink");
    if (new_hi > old_hi) {
      std::vector<BlockPtr> added;
      AllocRange(p, old_hi, (new_hi - old_hi) / kPage, gfp, stack, task, r.ts_ns, "mremap grow",
                 &added);
      for (BlockPtr& b : added) p.blocks[b->va] = b;
    }
    return;
  }
  // A move: whatever was at the target is gone (MREMAP_FIXED), blocks straddling the old
  // range's edges are cut there, and the blocks inside move with their pfns.
  Unmap(p, new_lo, new_hi, stack, task, r.ts_ns, "mremap target");
  std::vector<BlockPtr> straddling;
  for (uint64_t edge : {old_lo, old_hi}) {
    auto it = p.blocks.upper_bound(edge);
    if (it == p.blocks.begin()) continue;
    const BlockPtr& b = std::prev(it)->second;
    if (b->va < edge && b->end() > edge) straddling.push_back(b);
  }
  for (const BlockPtr& b : straddling) {
    if (auto it = p.blocks.find(b->va); it != p.blocks.end() && it->second == b) {
      Cut(p, b, old_lo, old_hi, /*keep_inside=*/true, stack, task, r.ts_ns, "mremap edge");
    }
  }
  std::vector<BlockPtr> moving;
  for (auto it = p.blocks.lower_bound(old_lo); it != p.blocks.end() && it->first < old_hi; ++it) {
    moving.push_back(it->second);
  }
  for (const BlockPtr& b : moving) p.blocks.erase(b->va);
  for (const BlockPtr& b : moving) {
    const uint64_t to = b->va - old_lo + new_lo;
    Trace(absl::StrCat("move ", Hex(b->va), " order ", b->order, " to ", Hex(to)));
    b->va = to;
    p.blocks[to] = b;
    ++stats_.moves;
  }
  const uint64_t moved_hi = new_lo + (old_hi - old_lo);
  if (new_hi < moved_hi) Unmap(p, new_hi, moved_hi, stack, task, r.ts_ns, "mremap shrink");
  if (new_hi > moved_hi) {
    std::vector<BlockPtr> added;
    AllocRange(p, moved_hi, (new_hi - moved_hi) / kPage, gfp, stack, task, r.ts_ns, "mremap grow",
               &added);
    for (BlockPtr& b : added) p.blocks[b->va] = b;
  }
}

void AppRecorder::Apply(const po_record& r) {
  if (r.kind == 0) return;  // a call that failed
  ++stats_.records;
  if (r.kind == PO_START) {
    Start(r);
    return;
  }
  Process* pp = Find(r.pid);
  if (pp == nullptr) return;  // a process whose start was dropped, or that ended
  Process& p = *pp;
  if (r.kind == PO_EXIT) {
    End(r.pid, /*exec=*/false);
    return;
  }
  if (r.kind == PO_BRK) {
    if (p.brk_start == 0) p.brk_start = r.len;
    p.brk_max = std::max(p.brk_max, r.addr);
    return;
  }
  const uint32_t anon = kGfpHighuserMovable | kGfpZero;
  switch (r.kind) {
    case PO_MMAP: {
      const uint32_t prot = static_cast<uint32_t>(r.new_len >> 32);
      const uint32_t flags = static_cast<uint32_t>(r.new_len);
      const uint64_t lo = PageDown(r.addr), hi = PageUp(r.addr + r.len);
      const StackId stack = StackOf(p, r);
      const TaskId task = TaskOf(p, r.tid);
      if (flags & MAP_FIXED) Unmap(p, lo, hi, stack, task, r.ts_ns, "mmap fixed");
      if (prot == PROT_NONE) return;  // a reservation: no pages
      const uint32_t gfp = (flags & MAP_ANONYMOUS) ? anon : kGfpHighuserMovable;
      std::vector<BlockPtr> added;
      AllocRange(p, lo, (hi - lo) / kPage, gfp, stack, task, r.ts_ns, "mmap", &added);
      for (BlockPtr& b : added) p.blocks[b->va] = b;
      return;
    }
    case PO_MUNMAP:
    case PO_MADVISE:
      Unmap(p, PageDown(r.addr), PageUp(r.addr + r.len), StackOf(p, r), TaskOf(p, r.tid), r.ts_ns,
            r.kind == PO_MUNMAP ? "munmap" : "madvise");
      return;
    case PO_MREMAP:
      Remap(p, r);
      return;
    case PO_MALLOC: {
      const StackId stack = StackOf(p, r);
      const TaskId task = TaskOf(p, r.tid);
      if (auto it = p.mallocs.find(r.addr); it != p.mallocs.end()) {
        // Its free was dropped: the address was freed in between.
        for (const BlockPtr& b : it->second) FreeBlock(b, stack, task, r.ts_ns, "free lost");
        p.mallocs.erase(it);
      }
      std::vector<BlockPtr>& blocks = p.mallocs[r.addr];
      const uint64_t pages = PageUp(r.len) / kPage;
      for (uint64_t i = 0; i < pages;) {
        const unsigned k = FitOrder(i, pages - i);
        blocks.push_back(AllocBlock(r.addr + i * kPage, k, anon, stack, task, r.ts_ns, "malloc"));
        i += uint64_t{1} << k;
      }
      return;
    }
    case PO_FREE: {
      auto it = p.mallocs.find(r.addr);
      if (it == p.mallocs.end()) return;  // its malloc was dropped, or came before the ring
      const StackId stack = StackOf(p, r);
      const TaskId task = TaskOf(p, r.tid);
      for (const BlockPtr& b : it->second) FreeBlock(b, stack, task, r.ts_ns, "free");
      p.mallocs.erase(it);
      return;
    }
    default:
      return;
  }
}

void AppRecorder::Poll() {
  results_.clear();
  session_->Poll(&results_);
  for (const IngestResult& r : results_) {
    if (!r.ok()) {
      ++stats_.failed;
      ++stats_.failures[std::string(absl::StatusCodeToString(r.code))];
    }
    auto it = pending_.find(r.seq);
    if (it == pending_.end()) continue;
    BlockPtr b = std::move(it->second);
    pending_.erase(it);
    if (b->pfn.has_value()) {
      if (!r.ok()) b->dead = true;  // a survivor the daemon refused
      continue;
    }
    Resolve(b, r.ok() ? std::optional<uint64_t>(r.pfn.raw()) : std::nullopt);
  }
}

absl::Status AppRecorder::Finish() {
  // Frees wait on allocations' answers: keep answering them until none is left.
  while (std::any_of(pending_.begin(), pending_.end(),
                     [](const auto& e) { return !e.second->pfn.has_value(); })) {
    session_->Flush();
    Poll();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  absl::Status status = session_->Finish();
  Poll();
  return status;
}

// ---- RecordApp ----

std::string FindPreloadLibrary() {
  if (const char* env = getenv("PAGEOWNER_PRELOAD"); env != nullptr && *env != '\0') return env;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "";
  std::string dir(self, static_cast<size_t>(n));
  dir.resize(dir.rfind('/'));
  for (const std::string& candidate :
       {absl::StrCat(dir, "/libpageowner_preload.so"),
        absl::StrCat(dir, "/../lib/libpageowner_preload.so"),
        absl::StrCat(dir, "/../lib/pageowner/libpageowner_preload.so")}) {
    if (access(candidate.c_str(), R_OK) == 0) return candidate;
  }
  return "";
}

AppRecordResult RecordApp(Session* session, const AppRecordOptions& options) {
  AppRecordResult result;
  if (options.argv.empty()) {
    result.exit_code = 127;
    result.status = absl::InvalidArgumentError("no command to run");
    return result;
  }
  const std::string lib =
      options.preload_path.empty() ? FindPreloadLibrary() : options.preload_path;
  if (lib.empty() || access(lib.c_str(), R_OK) != 0) {
    result.exit_code = 127;
    result.status = absl::NotFoundError(
        "libpageowner_preload.so not found next to pageowner, in ../lib, or in "
        "$PAGEOWNER_PRELOAD");
    return result;
  }
  absl::StatusOr<std::unique_ptr<AppRing>> ring =
      AppRing::Create(options.ring_slots, options.exit_wait);
  if (!ring.ok()) {
    result.exit_code = 127;
    result.status = ring.status();
    return result;
  }
  // The child's environment: ours, with the library first in LD_PRELOAD and the ring named.
  std::vector<std::string> env;
  std::string preload = lib;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v(*e);
    if (v.rfind("LD_PRELOAD=", 0) == 0) {
      if (v.size() > 11) absl::StrAppend(&preload, ":", std::string(v.substr(11)));
      continue;
    }
    if (v.rfind(PO_RING_ENV "=", 0) == 0) continue;
    env.emplace_back(v);
  }
  env.push_back(absl::StrCat("LD_PRELOAD=", preload));
  env.push_back(absl::StrCat(PO_RING_ENV "=", (*ring)->EnvValue()));
  std::vector<char*> envp, argv;
  for (std::string& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = options.argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);

  // Ctrl-C reaches the whole foreground group: the program decides, and we record to its end.
  struct sigaction ignore = {}, old_int = {}, old_quit = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, &old_int);
  sigaction(SIGQUIT, &ignore, &old_quit);
  const int ring_fd = (*ring)->fd();
  const pid_t pid = fork();
  if (pid == 0) {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    fcntl(ring_fd, F_SETFD, 0);  // the ring stays open across exec
    execvpe(argv[0], argv.data(), envp.data());
    const int e = errno;
    dprintf(2, "pageowner: record: %s: %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  if (pid < 0) {
    result.exit_code = 127;
    result.status = absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGQUIT, &old_quit, nullptr);
    return result;
  }

  AppRecorder recorder(session, options.recorder);
  std::vector<po_record> records;
  records.reserve(4096);
  bool exited = false;
  bool dirty = false;  // events added since the last flush
  int wstatus = 0;
  for (;;) {
    records.clear();
    const size_t n = (*ring)->Drain(&records, 4096);
    for (const po_record& r : records) recorder.Apply(r);
    (*ring)->MarkConsumed();
    recorder.Poll();
    dirty |= n > 0;
    if (n > 0) continue;
    if (exited) break;  // drained after the exit
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      exited = true;  // one more drain for its last records
      continue;
    }
    if (dirty) {
      session->Flush();
      dirty = false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  recorder.EndAll();
  result.status = recorder.Finish();
  result.stats = recorder.stats();
  result.ring_records = (*ring)->written();
  result.ring_drops = (*ring)->drops();
  result.ring_unpublished = (*ring)->Unpublished();
  if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.exit_code = 128 + WTERMSIG(wstatus);
  }
  return result;
}

}  // namespace pageowner::client
