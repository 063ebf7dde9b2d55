// A read-only memory-mapped file. Weights stay in the mapping: no copy where the dtype allows.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>

namespace llama31 {

class MappedFile {
 public:
  // Throws Error naming the path when it cannot be opened or mapped. An empty file maps to size 0.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Reads every page once so the whole file is resident before use (as llama.cpp's MAP_POPULATE):
  // first-token latency and benchmarks then exclude disk reads. on_progress gets bytes done so far.
  void prefault(const std::function<void(size_t)>& on_progress = {}) const;

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace llama31
