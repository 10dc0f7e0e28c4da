// What this build is: the CMake project version, `git describe` of the source tree when it was
// configured (empty when it was not a git checkout) and the CMake build type. For --version and
// the pageowner_build_info metric.
#ifndef PAGEOWNER_CORE_BUILD_INFO_H_
#define PAGEOWNER_CORE_BUILD_INFO_H_

#include <string_view>

namespace pageowner {

std::string_view ProjectVersion();  // "0.1.0"
std::string_view GitDescribe();     // "c16520d-dirty", or ""
std::string_view BuildType();       // "RelWithDebInfo", or "" when none was set
// "0.1.0 (git c16520d-dirty, RelWithDebInfo)": the parts that are known.
std::string_view BuildVersion();

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_BUILD_INFO_H_
