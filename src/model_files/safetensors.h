// safetensors files, single or sharded (model.safetensors.index.json), memory-mapped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "util/dtype.h"
#include "util/mapped_file.h"

namespace llama31 {

// A view of one stored tensor: the bytes stay in the mapped file.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  std::filesystem::path file;  // which file holds it, for error messages

  int64_t numel() const;
  std::string shape_string() const;  // "[128256, 4096]"
  // Every element as float (convert_to_f32); for element-wise dtypes, not Q8_0.
  std::vector<float> values() const;
  // Throws naming the file, the tensor, its shape and the expected one when they differ.
  void require_shape(const std::vector<int64_t>& expected) const;
};

// One .safetensors file. The header is validated against the file before any tensor is used:
// header length within the file, valid JSON, known dtype, offsets ordered, inside the data section,
// and nbytes == numel * dtype size. Errors name the file and the tensor.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::filesystem::path& path() const { return file_.path(); }
  const MappedFile& mapped() const { return file_; }

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All weights of a model folder: model.safetensors, or the shards listed by
// model.safetensors.index.json (every listed shard must exist and hold the tensors it is said to).
class TensorStore {
 public:
  static TensorStore open_folder(const std::filesystem::path& dir);

  const TensorView* find(const std::string& name) const;
  // Throws "missing tensor NAME in DIR" when absent.
  const TensorView& get(const std::string& name) const;
  // Throws naming the tensor, the expected and the actual shape when they differ.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;
  // Adds a tensor held in memory (a dequantized weight), replacing any stored tensor of that name (one
  // held in memory is freed). data must hold the tensor's bytes (rows of row_bytes(dtype, shape.back())).
  const TensorView& add_owned(const std::string& name, DType dtype, std::vector<int64_t> shape,
                              std::vector<std::byte> data);
  // The same for nbytes at `data`, storage the caller allocated (aligned for the kernels: repacked
  // weights), kept alive by the store until the tensor is replaced.
  const TensorView& add_owned(const std::string& name, DType dtype, std::vector<int64_t> shape,
                              std::shared_ptr<const std::byte> data, size_t nbytes);
  // Adds a tensor whose bytes stay in a mapped file (a GGUF file's), which the store keeps open.
  const TensorView& add_mapped(TensorView view, std::shared_ptr<const MappedFile> file);
  // A store with no tensors yet; errors name `source` (a GGUF file's path).
  static TensorStore empty(const std::filesystem::path& source);
  // Makes every tensor in use resident (as MappedFile::prefault, but skipping stored tensors that were
  // replaced by converted copies), showing progress on stderr.
  void prefault(bool show_progress) const;
  // Forgets a tensor (a quantized layer's packed parts once dequantized); absent names are ignored.
  void remove(const std::string& name) { by_name_.erase(name); }
  // Drops from memory the stored tensors that were replaced or removed (their pages are not needed).
  void release_replaced() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  struct OwnedTensor {
    TensorView view;
    std::shared_ptr<const std::byte> storage;   // the tensor's bytes, or null when
    std::shared_ptr<const MappedFile> mapping;  // they lie in this mapping
  };
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::unique_ptr<OwnedTensor>> owned_;
  std::map<std::string, const TensorView*> by_name_;
};

// A tensor to write: data holds numel * dtype_size bytes in the stated dtype.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Writes a safetensors file (8-byte header length, JSON header with "__metadata__", data aligned to 8).
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes a model's tensors into a folder as model.safetensors or, past shard_bytes, as shards
// model-0000i-of-0000n.safetensors with model.safetensors.index.json, holding one shard in memory.
class SafetensorsFolderWriter {
 public:
  explicit SafetensorsFolderWriter(std::filesystem::path dir, size_t shard_bytes = size_t{4} << 30,
                                   std::map<std::string, std::string> metadata = {{"format", "pt"}});
  void add(TensorToWrite tensor);
  // Writes the last shard and the index; returns the bytes of tensor data written.
  size_t finish();

 private:
  void flush();
  std::filesystem::path dir_;
  size_t shard_bytes_;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorToWrite> pending_;
  size_t pending_bytes_ = 0;
  size_t total_bytes_ = 0;
  std::vector<std::vector<std::string>> shard_tensors_;  // names per written shard
};

}  // namespace llama31
