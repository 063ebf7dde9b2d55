// Element types of stored tensors and the scalar conversions between them.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace llama31 {

// F32, F16 and BF16 are what the kernels multiply by. I32 and F8_E4M3 only appear in stored quantized
// checkpoints (packed int4 words, FP8 weights), which model_files turns into one of the others.
enum class DType { F32, F16, BF16, I32, F8_E4M3 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::F8_E4M3: return 1;
  }
  return 0;
}
constexpr bool is_compute_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
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

// FP8 E4M3 as torch's float8_e4m3fn: bias 7, no infinities, 0x7f / 0xff are NaN, largest finite 448.
float f8e4m3_to_f32(uint8_t v);
// Round to nearest even; magnitudes beyond 448 saturate to +-448 (callers scale into range first).
uint8_t f32_to_f8e4m3(float f);

// Converts n stored elements of type t to float (I32 as integers).
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace llama31
