// Helpers for the model_files tests: asserting on Error messages and writing raw files.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "util/error.h"

namespace llama31::testing {

// Runs action, which must throw llama31::Error whose message contains every one of fragments.
inline void expect_error(const std::function<void()>& action, std::initializer_list<std::string> fragments) {
  try {
    action();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& fragment : fragments) {
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "error message \"" << message << "\" does not mention \"" << fragment << "\"";
    }
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected llama31::Error, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected llama31::Error, nothing was thrown";
}

inline void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void write_text(const std::filesystem::path& path, const std::string& text) { write_bytes(path, text); }

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file by hand: 8-byte little-endian length (header.size() unless given), header, data.
inline std::string raw_safetensors(const std::string& header, const std::string& data,
                                   uint64_t header_length_field = UINT64_MAX - 1) {
  uint64_t length = header_length_field == UINT64_MAX - 1 ? header.size() : header_length_field;
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>(length & 0xffu);
    length >>= 8;
  }
  return bytes + header + data;
}

}  // namespace llama31::testing
