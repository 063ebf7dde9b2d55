// Element types of stored tensors and the scalar conversions between them.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace llama31 {

// F32, F16 and BF16 are what the kernels multiply by, and Q8_0, Q4_0 and F8_E4M3 (below). I32 only appears in
// stored quantized checkpoints (packed int4 words), which model_files turns into one of the others.
// F8_E4M3 holds FP8 (fbgemm_fp8) checkpoints' weights as stored, one byte each, [out][in] row-major; the
// kernels multiply by the plain e4m3 values, and the model applies each output channel's scale after.
// Q8_0 holds matrices in blocks of 32 values of a row as llama.cpp's GGML_TYPE_Q8_0 does (int8 values, one
// f16 scale per block, value = q * scale), laid out row by row as [in/32 f16 scales][in int8 values] so the
// kernels load whole vectors of either; rows must be a multiple of 32 long. It exists in memory only.
// Q4_0 is llama.cpp's GGML_TYPE_Q4_0 the same way: per block of 32 one f16 scale d and 4-bit q in 0..15,
// value = d * (q - 8). A row is [in/32 f16 scales][in/2 bytes of nibbles], each block's 16 bytes as GGUF
// orders them (byte j: value j in the low nibble, value j + 16 in the high one), so one 16-byte load and
// a mask or a shift give a block's first or second half of 16 values, and GGUF blocks convert by copying.
// Q4_K, Q5_K and Q6_K are llama.cpp's K-quant super-blocks of 256 values (144, 176 and 210 bytes) kept
// exactly as GGUF stores them, a row being its n / 256 super-blocks in order (util/kquant.h has the
// layouts), so GGUF tensors load by mapping or copying; rows must be a multiple of 256 long.
// Q8_0_R16 is Q8_0 with the same numbers and the same bytes per row, repacked once at load for the
// AVX-512 VNNI kernels (engine/weight_packing.h), so prefill no longer repacks each tile per call. Rows go
// in panels of 16 (out a multiple of 16, in of 64); a panel is, for each block of 32 inputs in order, 512
// bytes: 8 steps of 64 whose bytes 4j..4j+3 are row j's values 4s..4s+3 of the block plus 128 (unsigned:
// the sign bit flipped), then every block's 16 f16 scales (block b, row j at b * 16 + j). Rows are not
// addressable one by one: pack_q8_0_r16 / unpack_q8_0_r16_row convert.
// Q4_0_R16 is Q4_0 repacked the same way (out a multiple of 16, in of 32), a pure permutation of its bytes:
// a panel is, for each block of 32 inputs in order, 256 bytes: 4 steps of 64 whose bytes 4j..4j+3 are row
// j's nibble bytes 4s..4s+3 of the block (low nibble value 4s+k, high nibble value 16+4s+k, as in Q4_0),
// then every block's 16 f16 scales (block b, row j at b * 16 + j). pack_q4_0_r16 / unpack_q4_0_r16_row.
enum class DType { F32, F16, BF16, I32, F8_E4M3, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q8_0_R16, Q4_0_R16 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::F8_E4M3:
    case DType::Q8_0:
    case DType::Q8_0_R16:
    case DType::Q4_0:
    case DType::Q4_0_R16:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return 1;  // block types: see row_bytes (Q4_0 holds two values a byte)
  }
  return 0;
}
// The K-quant types (super-blocks of 256 values).
constexpr bool is_kquant_dtype(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }
// Bytes of one super-block of a K-quant type.
constexpr size_t kquant_block_bytes(DType t) {
  return t == DType::Q4_K ? 144 : t == DType::Q5_K ? 176 : t == DType::Q6_K ? 210 : 0;
}
// Where a row of n values of Q8_0 or Q4_0 keeps its values: after its n / 32 f16 scales.
constexpr size_t quant_values_offset(size_t n) { return n / 32 * 2; }
// Bytes of a row of n values (n a multiple of 32 for Q8_0 and Q4_0, of 256 for the K-quant types).
constexpr size_t row_bytes(DType t, int64_t n) {
  const size_t count = static_cast<size_t>(n);
  if (t == DType::Q8_0 || t == DType::Q8_0_R16) return quant_values_offset(count) + count;  // R16: on average
  if (t == DType::Q4_0 || t == DType::Q4_0_R16) return quant_values_offset(count) + count / 2;  // R16: on average
  if (is_kquant_dtype(t)) return count / 256 * kquant_block_bytes(t);
  return count * dtype_size(t);
}
// Element-wise float types (what stored weights and scales are read as).
constexpr bool is_compute_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
// What kernels::matmul multiplies by.
constexpr bool is_matmul_dtype(DType t) {
  return is_compute_dtype(t) || t == DType::Q8_0 || t == DType::Q4_0 || t == DType::F8_E4M3 || is_kquant_dtype(t) ||
         t == DType::Q8_0_R16 || t == DType::Q4_0_R16;
}
// Rows per panel of Q8_0_R16, and the bytes of one panel of rows of n values.
inline constexpr int kQ8_0PanelRows = 16;
constexpr size_t q8_0_r16_panel_bytes(int64_t n) { return kQ8_0PanelRows * row_bytes(DType::Q8_0, n); }
// Whether a [out][in] Q8_0 matrix can be held as Q8_0_R16.
constexpr bool q8_0_r16_fits(int64_t out, int64_t in) {
  return out > 0 && in > 0 && out % kQ8_0PanelRows == 0 && in % 64 == 0;
}
// The same for Q4_0_R16 (panels of as many rows as Q8_0_R16's).
constexpr size_t q4_0_r16_panel_bytes(int64_t n) { return kQ8_0PanelRows * row_bytes(DType::Q4_0, n); }
constexpr bool q4_0_r16_fits(int64_t out, int64_t in) {
  return out > 0 && in > 0 && out % kQ8_0PanelRows == 0 && in % 32 == 0;
}
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
// Decoded by a table of the 256 values, built at compile time from the definition (value = m * 2^-9 for
// exponent 0, (8 + m) * 2^(e - 10) otherwise): the kernels' scalar paths widen every weight this way, and
// std::ldexp per weight was half of FP8 prefill on AVX2.
namespace detail {
constexpr float f8e4m3_power_of_two(int e) {
  float p = 1.0f;
  for (int i = 0; i < e; ++i) p *= 2.0f;
  for (int i = 0; i > e; --i) p /= 2.0f;  // exact: powers of two down to 2^-9
  return p;
}
constexpr std::array<float, 256> f8e4m3_values() {
  std::array<float, 256> values{};
  for (int v = 0; v < 256; ++v) {
    const int exponent = (v >> 3) & 0xf;
    const int mantissa = v & 0x7;
    float magnitude = exponent == 0 ? static_cast<float>(mantissa) * f8e4m3_power_of_two(-9)
                                    : static_cast<float>(8 + mantissa) * f8e4m3_power_of_two(exponent - 10);
    if (exponent == 0xf && mantissa == 0x7) magnitude = std::numeric_limits<float>::quiet_NaN();
    values[static_cast<size_t>(v)] = (v & 0x80) != 0 ? -magnitude : magnitude;
  }
  return values;
}
inline constexpr std::array<float, 256> kF8E4M3Values = f8e4m3_values();
}  // namespace detail
inline float f8e4m3_to_f32(uint8_t v) { return detail::kF8E4M3Values[v]; }
// Round to nearest even; magnitudes beyond 448 saturate to +-448 (callers scale into range first).
uint8_t f32_to_f8e4m3(float f);
// f8e4m3_to_f32(f32_to_f8e4m3(f)) without branches, so loops over activations vectorize: normals keep 3
// mantissa bits (round to nearest even on the bits), below 2^-6 the steps are 2^-9 (rounded by adding and
// removing 2^23), magnitudes saturate at 448, NaN stays NaN. Equal to the pair for every float (tested).
inline float round_to_f8e4m3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t sign = bits & 0x80000000u;
  uint32_t magnitude_bits = bits & 0x7fffffffu;
  float a;
  std::memcpy(&a, &magnitude_bits, sizeof a);
  a = a < 448.0f ? a : 448.0f;
  std::memcpy(&magnitude_bits, &a, sizeof a);
  uint32_t normal_bits = (magnitude_bits + 0x7ffffu + ((magnitude_bits >> 20) & 1u)) & 0xfff00000u;
  float normal;
  std::memcpy(&normal, &normal_bits, sizeof normal);
  const float subnormal = ((a * 512.0f + 8388608.0f) - 8388608.0f) * (1.0f / 512.0f);
  const float rounded = a < 0.015625f ? subnormal : normal;
  uint32_t out_bits;
  std::memcpy(&out_bits, &rounded, sizeof out_bits);
  out_bits |= sign;
  float out;
  std::memcpy(&out, &out_bits, sizeof out);
  return f != f ? f : out;
}

// Converts n stored elements of type t to float (I32 as integers; Q8_0, Q4_0: src is one row of n values;
// Q4_K, Q5_K, Q6_K: n / 256 super-blocks, each value as llama.cpp's dequantize_row_* computes it).
// Q8_0_R16 and Q4_0_R16 have no separate rows: unpack_q8_0_r16_row / unpack_q4_0_r16_row first (an Error
// otherwise).
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

// One row of n (a multiple of 32) values to Q8_0, rounding exactly as llama.cpp does (so a GGUF Q8_0
// tensor of the same weights holds the same numbers). dst: row_bytes(Q8_0, n) bytes.
void quantize_row_q8_0(const float* x, size_t n, void* dst);

// One row of n (a multiple of 32) values to Q4_0, rounding exactly as llama.cpp's reference quantizer
// (per block: d = the signed value of largest magnitude / -8, q = min(15, trunc(x / d + 8.5))), so a GGUF
// Q4_0 tensor of the same weights holds the same numbers. dst: row_bytes(Q4_0, n) bytes.
void quantize_row_q4_0(const float* x, size_t n, void* dst);

// One row of n values between GGUF's blocks (Q8_0: 34 bytes each, f16 d then 32 int8; Q4_0: 18 bytes
// each, f16 d then 16 bytes of nibbles) and the in-memory row layout above. Exact both ways.
void q8_0_row_from_ggml(const void* blocks, size_t n, void* row);
void q8_0_row_to_ggml(const void* row, size_t n, void* blocks);
void q4_0_row_from_ggml(const void* blocks, size_t n, void* row);
void q4_0_row_to_ggml(const void* row, size_t n, void* blocks);

// Q8_0 rows [out][in] (the in-memory row layout) to Q8_0_R16 (q8_0_r16_fits(out, in) must hold; dst:
// out * row_bytes(Q8_0, in) bytes), and row `row` of a Q8_0_R16 matrix back to a Q8_0 row. Exact both ways.
void pack_q8_0_r16(const void* rows, int64_t out, int64_t in, void* dst);
void unpack_q8_0_r16_row(const void* packed, int64_t in, int64_t row, void* q8_0_row);
// The same between Q4_0 rows and Q4_0_R16 (q4_0_r16_fits(out, in) must hold).
void pack_q4_0_r16(const void* rows, int64_t out, int64_t in, void* dst);
void unpack_q4_0_r16_row(const void* packed, int64_t in, int64_t row, void* q4_0_row);

}  // namespace llama31
