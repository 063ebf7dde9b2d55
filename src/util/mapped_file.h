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
  // The same for bytes [offset, offset + length) only.
  void prefault_range(size_t offset, size_t length) const;
  // Drops the whole pages inside [offset, offset + length) from this process's memory (they are read
  // from the file again if touched): for tensors replaced by converted copies.
  void release_range(size_t offset, size_t length) const;

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace llama31
