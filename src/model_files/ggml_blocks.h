// llama.cpp's ggml tensor types as GGUF stores them: the plain float types and the block-quantized ones
// (Q4_0, Q5_0, Q8_0: blocks of 32 with one f16 scale; Q4_K, Q5_K, Q6_K: super-blocks of 256 with 6- or
// 8-bit sub-block scales), with exact dequantization and llama.cpp's reference (no imatrix) quantizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace llama31 {

// ggml tensor types (numbers are ggml's). Q5_0 is what llama-quantize falls back to for Q4_K tensors whose
// rows are not whole super-blocks of 256.
enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q5_0 = 6, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30 };

// Known type from its number in a file; nullopt for types this project does not read.
std::optional<GgmlType> ggml_type_from_number(uint32_t number);
std::string_view ggml_type_name(GgmlType type);        // "q4_K" etc. as ggml names them
int64_t ggml_block_values(GgmlType type);               // 1 for F32/F16/BF16, 32 for Q4_0/Q5_0/Q8_0, 256 for K types
size_t ggml_block_bytes(GgmlType type);                 // Q4_0 18, Q5_0 22, Q8_0 34, Q4_K 144, Q5_K 176, Q6_K 210
size_t ggml_row_bytes(GgmlType type, int64_t n);        // throws llama31::Error if n is not whole blocks
constexpr bool ggml_is_quantized(GgmlType type) {
  return type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16;
}

// n values (whole blocks) from src (ggml_row_bytes(type, n) bytes, any alignment) into dst, computed in
// the order llama.cpp's dequantize_row_* computes them (so the floats are identical).
void dequantize_ggml_row(GgmlType type, const void* src, float* dst, int64_t n);
// n values (whole blocks) into ggml_row_bytes(type, n) bytes at dst: F16/BF16 rounded to nearest even,
// the block types as llama.cpp's quantize_row_*_ref (what llama-quantize uses without an imatrix).
void quantize_ggml_row(GgmlType type, const float* src, int64_t n, void* dst);

}  // namespace llama31
