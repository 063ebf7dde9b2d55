// Temporary folders for tests, removed at destruction.
#pragma once

#include <filesystem>
#include <string>

namespace llama31::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "llama31-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace llama31::testing
