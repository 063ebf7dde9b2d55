// The real Llama 3.1 tokenizer (data/llama-3.1-tokenizer/), loaded once per test binary.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tokenizer/tokenizer.h"

namespace llama31::testing {

inline std::filesystem::path source_path(const std::string& relative) {
  return std::filesystem::path(LLAMA31_SOURCE_DIR) / relative;
}

inline const Tokenizer& llama_tokenizer() {
  static const Tokenizer tokenizer =
      Tokenizer::from_files(source_path("data/llama-3.1-tokenizer/tokenizer.json"),
                            source_path("data/llama-3.1-tokenizer/tokenizer_config.json"));
  return tokenizer;
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace llama31::testing
