// Reading llama.cpp's GGUF files (versions 2 and 3): the metadata key/values and the tensor directory,
// validated against the file before anything is used; tensor bytes stay in the memory mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_files/ggml_blocks.h"
#include "model_files/gguf_writer.h"
#include "util/mapped_file.h"

namespace llama31 {

// One metadata value: its GGUF type (for arrays, the element type in array_type) and the value as JSON
// (integers, floats, bools, strings, arrays of those).
struct GgufValue {
  GgufValueType type = GgufValueType::UINT32;
  GgufValueType array_type = GgufValueType::UINT32;  // when type is ARRAY
  nlohmann::json value;
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // outermost first, as PyTorch orders it (the file stores it reversed)
  const std::byte* data = nullptr;
  size_t nbytes = 0;
};

class GgufFile {
 public:
  // Maps and validates: magic, version, counts within the file, every key and string in bounds, known
  // value types, tensor types this project reads (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K),
  // rows of whole blocks, data offsets aligned and inside the file. Errors name the path and the key or
  // tensor.
  explicit GgufFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

  const GgufValue* find(const std::string& key) const;
  // Typed access; errors name the file and the key (missing, or of another type).
  std::string get_string(const std::string& key) const;
  std::optional<std::string> find_string(const std::string& key) const;
  uint64_t get_uint(const std::string& key) const;  // any unsigned or non-negative signed integer type
  std::optional<uint64_t> find_uint(const std::string& key) const;
  double get_float(const std::string& key) const;  // FLOAT32 or FLOAT64
  std::optional<double> find_float(const std::string& key) const;
  std::optional<bool> find_bool(const std::string& key) const;
  // An array's values (a JSON array); errors if missing or not an array of that element type family.
  const nlohmann::json& get_array(const std::string& key) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// True when the path is a regular file that starts with the GGUF magic.
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace llama31
