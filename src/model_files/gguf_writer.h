// A minimal GGUF (version 3) writer: metadata key/values and tensors of any ggml type, and the export of a
// Hugging Face Llama 3.1 folder (or a GGUF file, rewritten as another file type) to the GGUF llama.cpp
// loads, with the metadata, tensor names, Q/K row permutation and rope_freqs tensor that llama.cpp's
// convert_hf_to_gguf.py produces, and the per-tensor types llama-quantize picks for the quantized file types.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model_files/ggml_blocks.h"
#include "model_files/model_folder.h"
#include "util/dtype.h"

namespace llama31 {

// GGUF metadata value types (the numbers are the file format's).
enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// The ggml type of tensors held in memory as dtype (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K).
GgmlType ggml_type_for(DType dtype);
// Bytes of a tensor of this shape (outermost first) as GGUF stores it, in whole blocks of its type.
size_t gguf_tensor_bytes(GgmlType type, const std::vector<int64_t>& shape);
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
  // data must hold gguf_tensor_bytes(type, shape) bytes in type's layout.
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, std::vector<uint8_t> data);
  // The same, with the bytes produced only while writing (one tensor in memory at a time).
  using TensorProducer = std::function<std::vector<uint8_t>()>;
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, TensorProducer produce);
  // DType data in GGUF's layout of ggml_type_for(dtype).
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::vector<uint8_t> data) {
    add_tensor(name, ggml_type_for(dtype), shape, std::move(data));
  }
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, TensorProducer produce) {
    add_tensor(name, ggml_type_for(dtype), shape, std::move(produce));
  }

  size_t tensor_count() const { return tensors_.size(); }
  // Throws Error naming the path when it cannot be written.
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    TensorProducer produce;
  };
  void begin_key(const std::string& key, GgufValueType type);
  std::vector<uint8_t> kv_bytes_;
  uint64_t kv_count_ = 0;
  std::vector<Tensor> tensors_;
};

// What `llama31 convert --type` writes: the float types for every matrix, or llama-quantize's mixes
// (general.file_type is llama_ftype's number: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7,
// MOSTLY_Q4_K_M 15, MOSTLY_BF16 32).
enum class GgufFileType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 7, Q4_K_M = 15, BF16 = 32 };
// "bf16", "f16", "f32", "q8_0", "q4_0", "q4_k_m" (case-insensitive); nullopt for anything else.
std::optional<GgufFileType> gguf_file_type_from_name(std::string_view name);
std::string_view gguf_file_type_name(GgufFileType type);
// Every accepted name, for error messages: "bf16, f16, f32, q8_0, q4_0, q4_k_m".
std::string gguf_file_type_names();

// What llama-quantize needs to know of the model to pick tensor types (llama_tensor_get_type).
struct GgufTypeContext {
  int layers = 0;                 // blocks; layer-dependent choices use the "blk.N." of the name
  bool tied_embeddings = false;   // no output.weight: token_embd is typed as the output
  bool llama_70b = false;         // 80 layers with grouped KV heads: Q4_K attn_v goes up to Q5_K
};
// The context of a Llama config (a 70B: 80 layers with fewer KV heads than heads, as llama.cpp's LLM_TYPE_70B).
GgufTypeContext gguf_type_context(const LlamaConfig& config);
// The GGUF name of a Hugging Face Llama tensor ("model.layers.3.mlp.down_proj.weight" -> "blk.3.ffn_down.weight").
std::string gguf_tensor_name(const std::string& hf_name);
// The type a tensor gets in a file of `file_type`, as llama-quantize gives it (no imatrix, default
// options): 1-D tensors F32; the float types as named; Q8_0 / Q4_0 everywhere but output.weight (Q6_K
// for Q4_0); Q4_K_M: Q4_K, with attn_v and ffn_down Q6_K on llama-quantize's "more bits" layers (the
// first and last eighth and every third between) and output.weight Q6_K; then, where a row is not whole
// blocks, llama.cpp's fallback (Q4_K -> Q5_0, Q6_K -> Q8_0, then F16).
GgmlType gguf_tensor_type(GgufFileType file_type, const std::string& gguf_name, const std::vector<int64_t>& shape,
                          const GgufTypeContext& context);

struct GgufExportOptions {
  // Matrices and embeddings as gguf_tensor_type picks for this file type; 1-D tensors (norms,
  // rope_freqs) are always F32.
  GgufFileType type = GgufFileType::BF16;
  // Called before each tensor is converted: (gguf name, index from 0, total count).
  std::function<void(const std::string& name, size_t index, size_t count)> on_tensor;
};

// Converts a validated HF Llama folder, or a GGUF file opened as one, to a GGUF llama.cpp can load
// (general.architecture = "llama"). The vocabulary, special tokens and chat template come from the
// model's tokenizer documents; a GGUF source's tensors of the type asked for are copied as the file holds
// them, others read as float and quantized again (Q8_0 / Q4_0 rows of the same type moved, not rounded).
void export_gguf(const ModelFolder& model, const std::filesystem::path& out, const GgufExportOptions& options = {});

// What writing `model` as `type` rounds a second time: the quantized source types ("Q8_0", "Q4_K", ... as
// the source file stores them, or a quantized checkpoint's method, "AWQ") of matrices that get another
// quantized type, in order of appearance. Empty for float targets, float sources and same-type copies.
std::vector<std::string> gguf_requantized_sources(const ModelFolder& model, GgufFileType type);

// The row permutation convert_hf_to_gguf.py applies to q_proj / k_proj (LlamaModel.permute): HF keeps
// the two rotary halves of a head apart, llama.cpp's rope pairs neighbours. Row (head, half, j) moves to
// (head, j, half). rows_per_head = head_dim; `data` holds rows of row_bytes.
std::vector<uint8_t> permute_rotary_rows(const std::vector<uint8_t>& data, int64_t heads, int64_t head_dim,
                                         size_t row_bytes);

// The llama3 rope factors convert_hf_to_gguf.py stores as rope_freqs.weight (llama.cpp divides each
// rotary frequency by its factor): 1 for short wavelengths, factor for long ones, blended between.
std::vector<float> llama3_rope_factors(const LlamaConfig& config);
// The llama3 rope_scaling a config read from GGUF (rope_frequency_factors, no rope_scaling) stands for, as
// config.json states it: config.rope_scaling when set, nullopt when there are no factors or all are 1.
// Matches the factors against Llama 3.1's and 3.2's band (low 1, high 4, original 8192, factor the largest
// stored); fails naming source when they are something else.
std::optional<RopeScaling> llama3_rope_scaling_for_factors(const LlamaConfig& config, const std::string& source);

}  // namespace llama31
