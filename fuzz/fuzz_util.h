// Helpers shared by the fuzz targets: a check that aborts on a broken property (libFuzzer and
// the regression driver both report an abort as a failure), and a machine small enough to be
// built and checked whole for every input.
#ifndef PAGEOWNER_FUZZ_FUZZ_UTIL_H_
#define PAGEOWNER_FUZZ_FUZZ_UTIL_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "core/invariants.h"
#include "core/machine.h"

namespace pageowner::fuzz {

// 4 MiB: every input builds its own machine and checks it whole (CheckMachineInvariants scans
// every page), so that a run is reproducible and stays fast; 1024 pages is one order-10 block,
// four pageblocks, and room for the depot's pools.
inline constexpr uint64_t kFuzzMachinePages = 1024;

inline MachineOptions FuzzMachineOptions(bool tracking) {
  return MachineOptions{.pages = PageCount(kFuzzMachinePages),
                        .stack_depth = 16,
                        .depot_max_pools = 8,  // small: the failure handle is reachable
                        .tracking = tracking};
}

// Aborts (a finding) unless `cond` holds.
#define PO_FUZZ_CHECK(cond, what)                                                           \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                              \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

inline void CheckMachine(const Machine& m) {
  const absl::Status s = CheckMachineInvariants(m);
  PO_FUZZ_CHECK(s.ok(), s.ToString());
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// The pieces of `text` between `sep` bytes, empty ones included (Debian's Abseil has its own
// string_view, so absl::StrSplit does not take ours).
inline std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  for (size_t at = 0;;) {
    const size_t end = text.find(sep, at);
    out.push_back(text.substr(at, end == std::string_view::npos ? text.npos : end - at));
    if (end == std::string_view::npos) return out;
    at = end + 1;
  }
}

}  // namespace pageowner::fuzz

#endif  // PAGEOWNER_FUZZ_FUZZ_UTIL_H_
