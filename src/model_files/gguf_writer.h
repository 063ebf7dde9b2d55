// A minimal GGUF (version 3) writer: metadata key/values and F32 / F16 / BF16 tensors, and the export of a
// Hugging Face Llama 3.1 folder to the GGUF llama.cpp loads, with the metadata, tensor names, Q/K row
// permutation and rope_freqs tensor that llama.cpp's convert_hf_to_gguf.py produces.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "model_files/model_folder.h"
#include "util/dtype.h"

namespace llama31 {

// GGUF metadata value types (the numbers are the file format's).
enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// ggml tensor types used here (the numbers are ggml's).
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };
GgmlType ggml_type_for(DType dtype);
// Bytes of a tensor of this shape as GGUF stores it (Q8_0: blocks of {f16 scale, 32 int8}, 34 bytes).
size_t gguf_tensor_bytes(DType dtype, const std::vector<int64_t>& shape);

// Collects metadata and tensors, then writes the file in one pass:
//   "GGUF", version 3, tensor count, kv count, the key/values, the tensor infos (name, dims innermost
//   first, type, offset), padding to the alignment, then each tensor's data aligned.
class GgufWriter {
 public:
  static constexpr uint32_t kVersion = 3;
  static constexpr uint64_t kAlignment = 32;  // GGUF default (general.alignment absent)

  void add_string(const std::string& key, const std::string& value);
  void add_uint32(const std::string& key, uint32_t value);
  void add_int32(const std::string& key, int32_t value);
  void add_float32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_int32_array(const std::string& key, const std::vector<int32_t>& values);

  // shape in row-major (PyTorch / safetensors) order, outermost first; the file stores it reversed.
  // data must hold numel * dtype_size(dtype) bytes in dtype.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::vector<uint8_t> data);
  // The same, with the bytes produced only while writing (one tensor in memory at a time).
  using TensorProducer = std::function<std::vector<uint8_t>()>;
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, TensorProducer produce);

  size_t tensor_count() const { return tensors_.size(); }
  // Throws Error naming the path when it cannot be written.
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    TensorProducer produce;
  };
  void begin_key(const std::string& key, GgufValueType type);
  std::vector<uint8_t> kv_bytes_;
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

struct GgufExportOptions {
  // Matrices and embeddings: BF16, F16, F32 or Q8_0 (rounded as llama.cpp's quantizer rounds); 1-D tensors
  // (norms, rope_freqs) are always F32.
  DType dtype = DType::BF16;
  // Called before each tensor is converted: (gguf name, index from 0, total count).
  std::function<void(const std::string& name, size_t index, size_t count)> on_tensor;
};

// Converts a validated HF Llama folder to a GGUF llama.cpp can load (general.architecture = "llama").
void export_gguf(const ModelFolder& model, const std::filesystem::path& out, const GgufExportOptions& options = {});

// The row permutation convert_hf_to_gguf.py applies to q_proj / k_proj (LlamaModel.permute): HF keeps
// the two rotary halves of a head apart, llama.cpp's rope pairs neighbours. Row (head, half, j) moves to
// (head, j, half). rows_per_head = head_dim; `data` holds rows of row_bytes.
std::vector<uint8_t> permute_rotary_rows(const std::vector<uint8_t>& data, int64_t heads, int64_t head_dim,
                                         size_t row_bytes);

// The llama3 rope factors convert_hf_to_gguf.py stores as rope_freqs.weight (llama.cpp divides each
// rotary frequency by its factor): 1 for short wavelengths, factor for long ones, blended between.
std::vector<float> llama3_rope_factors(const LlamaConfig& config);

}  // namespace llama31
