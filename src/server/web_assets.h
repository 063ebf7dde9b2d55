// The web chat page's files (web/ in the source tree), compiled into the binary: no CDN, no files read
// at run time.
#pragma once

#include <optional>
#include <string_view>

namespace llama31::server {

struct WebAsset {
  std::string_view content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;
};

// The asset served at an URL path ("/" is index.html); nullopt for any other path.
std::optional<WebAsset> find_web_asset(std::string_view url_path);

}  // namespace llama31::server
