#include "server/failpoints.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"

namespace pageowner::server {
namespace {

constexpr std::array<std::string_view, static_cast<int>(Failpoint::kCount)> kNames = {
    "wal_before_write",      "wal_partial_write", "wal_after_write",        "wal_after_fsync",
    "wal_segment_roll",      "snapshot_during",   "snapshot_before_rename", "snapshot_after_rename",
    "before_segment_delete", "wal_write_enospc",
};

// Passes left before each armed failpoint fires (1: the next pass).
std::array<std::atomic<int64_t>, static_cast<int>(Failpoint::kCount)> remaining{};

}  // namespace

namespace failpoints_internal {

std::atomic<uint32_t> armed{0};

bool Hit(Failpoint f) {
  const int i = static_cast<int>(f);
  if ((armed.load(std::memory_order_relaxed) & (1u << i)) == 0) return false;
  return remaining[i].fetch_sub(1, std::memory_order_relaxed) == 1;
}

void Crash(Failpoint f) {
  const std::string_view name = kNames[static_cast<int>(f)];
  std::fprintf(stderr, "pageownerd: failpoint %.*s: exiting\n", static_cast<int>(name.size()),
               name.data());
  std::fflush(stderr);
  _exit(kFailpointExitCode);
}

}  // namespace failpoints_internal

void InitFailpoints() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("PAGEOWNER_FAILPOINTS");
    if (env == nullptr || *env == '\0') return;
    uint32_t bits = 0;
    const std::string_view list(env);
    for (size_t pos = 0; pos <= list.size();) {
      size_t comma = list.find(',', pos);
      if (comma == std::string_view::npos) comma = list.size();
      const std::string_view item = list.substr(pos, comma - pos);
      pos = comma + 1;
      if (item.empty()) continue;
      std::string_view name = item;
      int64_t count = 1;
      if (const size_t at = item.find('@'); at != std::string_view::npos) {
        name = item.substr(0, at);
        const std::string digits(item.substr(at + 1));
        if (!absl::SimpleAtoi(digits, &count) || count < 1) count = 1;
      }
      bool known = false;
      for (size_t i = 0; i < kNames.size(); ++i) {
        if (kNames[i] == name) {
          remaining[i].store(count, std::memory_order_relaxed);
          bits |= 1u << i;
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr, "pageownerd: unknown failpoint %.*s ignored\n",
                     static_cast<int>(name.size()), name.data());
      }
    }
    failpoints_internal::armed.store(bits, std::memory_order_relaxed);
  });
}

bool FailpointFailsWrite() {
  const int i = static_cast<int>(Failpoint::kWalWriteEnospc);
  if ((failpoints_internal::armed.load(std::memory_order_relaxed) & (1u << i)) == 0) return false;
  return remaining[i].fetch_sub(1, std::memory_order_relaxed) >= 1;
}

}  // namespace pageowner::server
