// PO_DCHECK: the project's internal-invariant check. A broken invariant is a bug, never a Status
// (STYLE.md): the check prints the condition and where it failed, and aborts.
//
// On when NDEBUG is not defined, or when PAGEOWNER_CHECKS is 1. The build sets PAGEOWNER_CHECKS
// from the CMake option of the same name (ON by default, so `make test`, the sanitizer builds
// and the fuzzers run with every check on; a release build may pass -DPAGEOWNER_CHECKS=OFF).
// The option also compiles our targets with -UNDEBUG, so plain `assert`s stay on with it.
#ifndef PAGEOWNER_CORE_CHECK_H_
#define PAGEOWNER_CORE_CHECK_H_

#include <cstdio>
#include <cstdlib>

#include "absl/base/optimization.h"

#if !defined(NDEBUG) || (defined(PAGEOWNER_CHECKS) && PAGEOWNER_CHECKS)
#define PO_DCHECK_IS_ON() 1
#else
#define PO_DCHECK_IS_ON() 0
#endif

namespace pageowner::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* what,
                                     const char* detail) {
  std::fprintf(stderr, "%s:%d: check failed: %s%s%s\n", file, line, what, detail[0] ? ": " : "",
               detail);
  std::abort();
}
}  // namespace pageowner::internal

#if PO_DCHECK_IS_ON()
// Aborts with the condition's text when `cond` is false.
#define PO_DCHECK(cond)                                                  \
  do {                                                                   \
    if (ABSL_PREDICT_FALSE(!(cond))) {                                   \
      ::pageowner::internal::CheckFailed(__FILE__, __LINE__, #cond, ""); \
    }                                                                    \
  } while (0)
// Aborts with the status's text when `expr` (an absl::Status) is not OK.
#define PO_DCHECK_OK(expr)                                                              \
  do {                                                                                  \
    if (const ::absl::Status _po_check = (expr); ABSL_PREDICT_FALSE(!_po_check.ok())) { \
      ::pageowner::internal::CheckFailed(__FILE__, __LINE__, #expr,                     \
                                         std::string(_po_check.ToString()).c_str());    \
    }                                                                                   \
  } while (0)
#else
#define PO_DCHECK(cond) \
  do {                  \
    (void)sizeof(cond); \
  } while (0)
#define PO_DCHECK_OK(expr) \
  do {                     \
  } while (0)
#endif

#endif  // PAGEOWNER_CORE_CHECK_H_
