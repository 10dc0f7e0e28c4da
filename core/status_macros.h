// The two or three status helpers Debian's Abseil 20220623 lacks (no absl/log, no ABSL_CHECK).
#ifndef PAGEOWNER_CORE_STATUS_MACROS_H_
#define PAGEOWNER_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define PO_RETURN_IF_ERROR(expr)                      \
  do {                                                \
    if (absl::Status _po_st = (expr); !_po_st.ok()) { \
      return _po_st;                                  \
    }                                                 \
  } while (0)

#define PO_CONCAT_INNER_(a, b) a##b
#define PO_CONCAT_(a, b) PO_CONCAT_INNER_(a, b)

// `PO_ASSIGN_OR_RETURN(auto x, StatusOrExpr())`: assigns the value or returns the status.
#define PO_ASSIGN_OR_RETURN(lhs, expr) \
  PO_ASSIGN_OR_RETURN_IMPL_(PO_CONCAT_(_po_statusor_, __LINE__), lhs, expr)
#define PO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()

#endif  // PAGEOWNER_CORE_STATUS_MACROS_H_
