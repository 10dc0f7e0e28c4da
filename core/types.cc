#include "core/types.h"

#include <array>

namespace pageowner {

std::string_view MigrateTypeName(MigrateType mt) {
  static constexpr std::array<std::string_view, kNumMigrateTypes> kNames = {
      "Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"};
  const auto i = static_cast<size_t>(mt);
  return i < kNames.size() ? kNames[i] : "Unknown";
}

std::string_view MigrateReasonName(MigrateReason reason) {
  static constexpr std::array<std::string_view, kNumMigrateReasons> kNames = {
      "compaction",     "memory_failure", "memory_hotplug", "syscall_or_cpuset", "mempolicy_mbind",
      "numa_misplaced", "contig_range",   "longterm_pin",   "demotion",          "damon"};
  const auto i = static_cast<int>(reason);
  return i >= 0 && i < kNumMigrateReasons ? kNames[i] : "";
}

}  // namespace pageowner
