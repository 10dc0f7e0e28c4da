// The web page's static files, built into the daemon: server/web/* turned into byte arrays at
// build time by server/web/embed.cmake (the generated web_assets.cc is in the build tree).
#ifndef PAGEOWNER_SERVER_WEB_ASSETS_H_
#define PAGEOWNER_SERVER_WEB_ASSETS_H_

#include <cstddef>
#include <string_view>

namespace pageowner::server {

struct WebAsset {
  std::string_view name;  // the file name in server/web/
  std::string_view bytes;
};

// Every file, in the order CMake listed them.
extern const WebAsset kWebAssets[];
extern const size_t kNumWebAssets;

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_WEB_ASSETS_H_
