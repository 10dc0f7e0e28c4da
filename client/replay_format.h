// The replay file format (client/REPLAY_FORMAT.md): one JSON object an event, parsed into the
// events `pageowner replay` sends.
#ifndef PAGEOWNER_CLIENT_REPLAY_FORMAT_H_
#define PAGEOWNER_CLIENT_REPLAY_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/session.h"
#include "core/types.h"

namespace pageowner::cli {

enum class ReplayKind { kAlloc, kFree, kMigrate };

// One event of a replay file.
struct ReplayEvent {
  ReplayKind kind = ReplayKind::kAlloc;
  uint32_t order = 0;
  uint32_t gfp_mask = 0;
  std::optional<uint64_t> pfn;         // alloc: where to place it; free, migrate: the head
  std::optional<uint64_t> target_pfn;  // migrate
  MigrateReason reason = MigrateReason::kCompaction;
  int32_t pid = 0;
  int32_t tgid = 0;
  std::string comm;
  uint64_t ts_ns = 0;
  std::vector<client::Frame> stack;
};

// Parses one line of a replay file. Errors: kInvalidArgument saying what is wrong (not JSON, an
// unknown or misplaced field, a value of the wrong type or range, a missing required field).
absl::StatusOr<ReplayEvent> ParseReplayLine(std::string_view line);

// A migrate reason by the kernel's name ("compaction", "numa_misplaced", ...).
absl::StatusOr<MigrateReason> ParseMigrateReason(std::string_view name);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_REPLAY_FORMAT_H_
