// Serves the web chat page's files, embedded at build time by cmake/EmbedWebAssets.cmake.
#include "server/web_assets.h"

#include <cstddef>

namespace llama31::server {
namespace embedded_web {
struct File {
  std::string_view name;
  std::string_view body;
};
extern const File files[];
extern const std::size_t file_count;
}  // namespace embedded_web

namespace {

std::string_view content_type_for(std::string_view name) {
  auto ends_with = [&](std::string_view suffix) { return name.ends_with(suffix); };
  if (ends_with(".html")) return "text/html; charset=utf-8";
  if (ends_with(".js")) return "text/javascript; charset=utf-8";
  if (ends_with(".css")) return "text/css; charset=utf-8";
  if (ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace

std::optional<WebAsset> find_web_asset(std::string_view url_path) {
  if (url_path == "/" || url_path.empty()) url_path = "/index.html";
  if (!url_path.starts_with('/')) return std::nullopt;
  const std::string_view name = url_path.substr(1);
  for (std::size_t i = 0; i < embedded_web::file_count; ++i) {
    if (embedded_web::files[i].name == name) {
      return WebAsset{content_type_for(name), embedded_web::files[i].body};
    }
  }
  return std::nullopt;
}

}  // namespace llama31::server
