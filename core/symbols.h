// SymbolTable: the names events carry for their return addresses, printed the way the kernel's
// `%pS` prints a kernel text address ("func+0xoff/0xsize"), or as a bare "0x..." when the address
// has no name. Frames that arrive as names only (from a dump or a trace) get a stable synthetic
// address, so that they can be stored in the depot like any other frame.
#ifndef PAGEOWNER_CORE_SYMBOLS_H_
#define PAGEOWNER_CORE_SYMBOLS_H_

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/snapshot.h"

namespace pageowner {

// Invariants:
//  1. An address, once named, keeps its first name (a later different name is counted, not
//     applied), so a printed stack never changes.
//  2. SyntheticAddress(name) returns the same address for the same name, on every host unless
//     two names collide in the 40-bit hash (then the later one takes the next free address).
// Thread-safety: every method may be called from any thread.
class SymbolTable {
 public:
  // Synthetic addresses lie in [kSyntheticBase, kSyntheticBase + 2^40): never a real x86_64
  // kernel text address, which lies above them, in 0xffffffff80000000...
  static constexpr uint64_t kSyntheticBase = 0xfffffe0000000000ULL;
  static constexpr bool InSyntheticRange(uint64_t ip) {
    return ip >= kSyntheticBase && ip - kSyntheticBase < (uint64_t{1} << 40);
  }

  // Names `ip`. Empty names are ignored. Returns false when `ip` already had another name.
  bool Register(uint64_t ip, std::string_view name);

  // The address for a frame known only by its printed name ("func+0x1a/0x50"), registered.
  uint64_t SyntheticAddress(std::string_view name);

  // Appends `ip` as `%pS` prints it: its name, or "0x%lx" when it has none.
  void AppendFrame(uint64_t ip, std::string* out) const;
  std::string FormatFrame(uint64_t ip) const;
  // Appends every frame as the kernel's stack_trace_print does with spaces = 0: one line a frame,
  // `prefix` (" " today, " => " in ftrace) then `%pS` then "\n". One lock for the whole stack.
  void AppendStack(absl::Span<const uint64_t> ips, std::string_view prefix, std::string* out) const;

  // The name of `ip`, or "" when it has none.
  std::string Name(uint64_t ip) const;
  // Whether `ip` has a name; whether `name` has its synthetic address already.
  bool Named(uint64_t ip) const;
  bool HasSyntheticAddress(std::string_view name) const;
  // Bytes of the names held (what --max_symbol_bytes bounds).
  uint64_t name_bytes() const;

  uint64_t size() const;
  uint64_t conflicts() const;
  // Heap bytes held (names and index), for the memory table.
  size_t MemoryBytes() const;

  // Snapshots (core/snapshot.h). SaveState writes every name with its address and whether it is
  // synthetic, by address, and the conflict count. REQUIRES: no thread changes the table
  // meanwhile; it reads without taking mu_, so that the forked child of a thread that held the
  // lock (WithLockHeld) can call it.
  void SaveState(SnapshotWriter& w) const ABSL_NO_THREAD_SAFETY_ANALYSIS;
  // Reads that into this table, which must be empty. kDataLoss naming the first problem.
  absl::Status LoadState(SnapshotReader& r) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs fn with the lock held for writing: a fork() in fn copies a table no thread is changing.
  void WithLockHeld(absl::FunctionRef<void()> fn) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void AppendFrameLocked(uint64_t ip, std::string* out) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::deque<std::string> names_ ABSL_GUARDED_BY(mu_);  // deque: stable storage for the views
  absl::flat_hash_map<uint64_t, std::string_view> by_ip_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string_view, uint64_t> synthetic_ ABSL_GUARDED_BY(mu_);
  size_t name_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t conflicts_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_SYMBOLS_H_
