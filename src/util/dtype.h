// Element types of stored tensors and the scalar conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace llama31 {

enum class DType { F32, F16, BF16 };

constexpr size_t dtype_size(DType t) { return t == DType::F32 ? 4 : 2; }
std::string_view dtype_name(DType t);
// "bf16", "f16" or "f32" (as command-line options spell them); option names the flag in the error.
DType dtype_from_option(std::string_view name, std::string_view option = "--dtype");

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// IEEE half precision, handling subnormals, infinities and NaN.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n stored elements of type t to float.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace llama31
