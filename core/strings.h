// Small string helpers shared by core and the layers above it.
#ifndef PAGEOWNER_CORE_STRINGS_H_
#define PAGEOWNER_CORE_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace pageowner {

// Debian's Abseil 20220623 is built in C++17 mode with its own absl::string_view, distinct from
// std::string_view: the one conversion, without a copy.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_STRINGS_H_
