// `pageowner record -- CMD`: an unmodified program's pages, through libpageowner_preload.so
// (preload/). The library writes what the process does to its address space into a shared-memory
// ring (preload/ring.h); AppRecorder turns those records into page_owner events on a Session:
//
//  - every mapping (mmap, mremap growth) is split into naturally aligned buddy blocks of order
//    <= 10 by virtual page number, each allocated in the daemon (its allocator places them);
//    malloc-family blocks of 4 KiB and more are ceil(size / 4 KiB) pages split the same way by
//    offset;
//  - munmap and madvise(DONTNEED/FREE/REMOVE) free every block they touch; the pages of a block
//    outside the range (the survivors) are allocated again at their old pfns, in blocks aligned
//    in the old block (so a partial unmap is one free and a few allocations);
//  - a moving mremap changes only the map (the blocks keep their pfns); blocks straddling the
//    moved range's edges are cut first as by a partial unmap;
//  - exec frees the old image's pages (free stack "process_exec"); exit frees what is left
//    ("process_exit") or keeps it as leaked (--leaks-at-exit=keep);
//  - stacks are the return addresses libunwind saw, symbolized here with libdw as
//    "func+0xoff/0xsize", with " [libfoo.so.6]" for a shared object (the kernel's module
//    suffix); tasks are pid = thread id, tgid = process id, comm = the process's comm.
#ifndef PAGEOWNER_CLIENT_APP_RECORD_H_
#define PAGEOWNER_CLIENT_APP_RECORD_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/session.h"
#include "preload/ring.h"

namespace pageowner::client {

// The ring in a memfd, created and read by the recorder, written by the preloaded processes.
// Thread-safety: one reader thread.
class AppRing {
 public:
  // REQUIRES: slots a power of two >= 2.
  static absl::StatusOr<std::unique_ptr<AppRing>> Create(uint64_t slots, absl::Duration exit_wait);
  ~AppRing();
  AppRing(const AppRing&) = delete;
  AppRing& operator=(const AppRing&) = delete;

  int fd() const { return fd_; }
  // PAGEOWNER_RING's value for a child that keeps fd() open: "FD:INODE:/proc/PID/fd/FD".
  std::string EnvValue() const;

  // Appends the published records (at most `max`) to `out` and gives their slots back; returns
  // how many. Never blocks.
  size_t Drain(std::vector<po_record>* out, size_t max);
  // Tells exiting processes that every record drained so far is processed.
  void MarkConsumed();
  // Records claimed by a producer and never published (it died between the two); only
  // meaningful once every producer is gone.
  uint64_t Unpublished() const;
  uint64_t drops() const;
  uint64_t written() const;
  po_ring_header* header() { return h_; }

 private:
  AppRing(int fd, uint64_t inode, po_ring_header* h, size_t bytes)
      : fd_(fd), inode_(inode), h_(h), bytes_(bytes) {}
  int fd_;
  uint64_t inode_;
  po_ring_header* h_;
  size_t bytes_;
  uint64_t pos_ = 0;  // the next record to read
};

// Symbolizes return addresses of live processes with libdw (dwfl over /proc/PID/maps and the
// mapped ELF files' symbol tables). Thread-safety: one thread.
class AppSymbolizer {
 public:
  AppSymbolizer();
  ~AppSymbolizer();
  AppSymbolizer(const AppSymbolizer&) = delete;
  AppSymbolizer& operator=(const AppSymbolizer&) = delete;

  // The frame of return address `ip` in process `pid` whose main executable is `exe`:
  // "func+0xoff/0xsize" in the executable, "func+0xoff/0xsize [libc.so.6]" in a shared object,
  // "libfoo.so+0xoff" in an object without a symbol there, "" (the daemon prints the address)
  // when no module holds it.
  Frame Symbolize(pid_t pid, const std::string& exe, uint64_t ip);
  // Forgets `pid` (exit, or exec: a new image).
  void Forget(pid_t pid);

 private:
  struct Process;
  absl::flat_hash_map<pid_t, std::unique_ptr<Process>> procs_;
};

struct AppRecorderOptions {
  // At a process's exit, free its remaining pages (free stack "process_exit"); false keeps them
  // allocated in the daemon as leaked at exit.
  bool free_at_exit = false;
  // Each event sent, as one line ("alloc 0x7f0000000000 order 4 (mmap)"), for tests and
  // --verbose; unset: none.
  std::function<void(const std::string&)> trace;
  // Return address -> frame; unset: an AppSymbolizer.
  std::function<Frame(pid_t pid, const std::string& exe, uint64_t ip)> symbolize;
};

struct AppRecorderStats {
  uint64_t records = 0;           // records applied
  uint64_t processes = 0;         // processes seen (the first, forks, execs)
  uint64_t allocs = 0;            // alloc events sent
  uint64_t frees = 0;             // free events sent
  uint64_t moves = 0;             // blocks moved by mremap (no event)
  uint64_t failed = 0;            // events the daemon refused
  uint64_t leaked_pages = 0;      // pages kept at exits (free_at_exit false)
  uint64_t brk_growth_bytes = 0;  // the program breaks' highest growth over their start, summed
  std::map<std::string, uint64_t> failures;  // refused events by code name
};

// Applies ring records to a Session. Invariants:
//  1. Each process's map holds disjoint blocks; a block's pages are its order's, contiguous in
//     the process's address space and at consecutive pfns.
//  2. A block's pfn is known once the daemon answered its allocation (or, for a survivor, once
//     its parent's pfn is known); frees and cuts wait for it, so events on one block are sent in
//     the order the process made them.
// Thread-safety: one thread.
class AppRecorder {
 public:
  AppRecorder(Session* session, AppRecorderOptions options);
  ~AppRecorder();
  AppRecorder(const AppRecorder&) = delete;
  AppRecorder& operator=(const AppRecorder&) = delete;

  void Apply(const po_record& r);
  // Takes the daemon's answers that have arrived and runs what waited on them.
  void Poll();
  // Ends every process still known as if it exited (the recorded program is gone).
  void EndAll();
  // Sends the frees that wait for allocations' answers (waiting for those), then finishes the
  // session; returns its status.
  absl::Status Finish();
  const AppRecorderStats& stats() const { return stats_; }

 private:
  struct Block;
  struct Process;
  using BlockPtr = std::shared_ptr<Block>;

  Process* Find(int32_t pid);
  Process& Start(const po_record& r);
  void End(int32_t pid, bool exec);
  StackId StackOf(Process& p, const po_record& r);
  StackId SyntheticStack(const char* name);
  TaskId TaskOf(Process& p, int32_t tid);

  // Allocates [va, va + pages * 4 KiB) as aligned blocks (alignment of va's page number).
  void AllocRange(Process& p, uint64_t va, uint64_t pages, uint32_t gfp, StackId stack, TaskId task,
                  uint64_t ts, const char* why, std::vector<BlockPtr>* out);
  BlockPtr AllocBlock(uint64_t va, unsigned order, uint32_t gfp, StackId stack, TaskId task,
                      uint64_t ts, const char* why);
  void FreeBlock(const BlockPtr& b, StackId stack, TaskId task, uint64_t ts, const char* why);
  // Frees `b` and allocates its pages outside [lo, hi) again (inside too when keep_inside) at
  // their pfns; inserts those into p's map.
  void Cut(Process& p, const BlockPtr& b, uint64_t lo, uint64_t hi, bool keep_inside, StackId stack,
           TaskId task, uint64_t ts, const char* why);
  // munmap / madvise: every block touching [lo, hi) freed, survivors kept.
  void Unmap(Process& p, uint64_t lo, uint64_t hi, StackId stack, TaskId task, uint64_t ts,
             const char* why);
  void Remap(Process& p, const po_record& r);
  // Runs `fn` with b's pfn once known (nullopt if its allocation failed).
  void WhenKnown(const BlockPtr& b, std::function<void(std::optional<uint64_t>)> fn);
  void Resolve(const BlockPtr& b, std::optional<uint64_t> pfn);
  void Trace(const std::string& line);

  Session* session_;
  AppRecorderOptions options_;
  std::unique_ptr<AppSymbolizer> symbolizer_;
  absl::flat_hash_map<int32_t, std::unique_ptr<Process>> procs_;
  absl::flat_hash_map<uint64_t, BlockPtr> pending_;  // alloc seq -> block awaiting its pfn
  std::vector<IngestResult> results_;
  AppRecorderStats stats_;
};

// What `record -- CMD` does, without the CLI.
struct AppRecordOptions {
  std::vector<std::string> argv;  // CMD ARGS...; argv[0] is looked up on PATH
  std::string preload_path;       // libpageowner_preload.so; FindPreloadLibrary() when empty
  uint64_t ring_slots = 1 << 15;  // 320 bytes each: 10 MiB
  absl::Duration exit_wait = absl::Seconds(2);
  AppRecorderOptions recorder;
};

struct AppRecordResult {
  int exit_code = 0;    // CMD's (128 + signal when killed; 127 when it could not be started)
  absl::Status status;  // the recording's: the session's final status, or why nothing ran
  AppRecorderStats stats;
  uint64_t ring_records = 0;  // records the processes published
  uint64_t ring_drops = 0;    // records dropped because the ring was full
  uint64_t ring_unpublished = 0;
};

// Runs CMD with the library preloaded, applies its records to `session` until CMD exits, then
// ends every recorded process and finishes the session. CMD inherits stdin, stdout, stderr.
AppRecordResult RecordApp(Session* session, const AppRecordOptions& options);

// libpageowner_preload.so next to the running binary (build/bin), or in ../lib from it (an
// install), or $PAGEOWNER_PRELOAD; "" when none exists.
std::string FindPreloadLibrary();

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_APP_RECORD_H_
