// Small text helpers shared by the stages.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace llama31 {

// The text without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r).
inline std::string_view trim_ascii_space(std::string_view text) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

// The whole file's bytes. Throws Error "cannot open PATH" if it cannot be read.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace llama31
