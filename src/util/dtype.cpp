#include "util/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/kquant.h"

namespace llama31 {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    case DType::Q4_K: return "Q4_K";
    case DType::Q5_K: return "Q5_K";
    case DType::Q6_K: return "Q6_K";
    case DType::Q8_0_R16: return "Q8_0_R16";
    case DType::Q4_0_R16: return "Q4_0_R16";
  }
  return "?";
}

DType dtype_from_option(std::string_view name, std::string_view option) {
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  fail("{} {}: expected bf16, f16 or f32", option, name);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  uint32_t bits;
  std::memcpy(&bits, &magnitude, sizeof bits);
  bits |= sign;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < 6.103515625e-05f) {  // subnormal half: multiples of 2^-24, round to nearest even
    const float q = std::nearbyint(a * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(q));
  }
  uint32_t abits = bits & 0x7fffffffu;
  abits += 0xfffu + ((abits >> 13) & 1u);  // round mantissa to 10 bits, nearest even
  const uint32_t exponent = (abits >> 23) - 127 + 15;
  const uint32_t mantissa = (abits >> 13) & 0x3ffu;
  return static_cast<uint16_t>(sign | (exponent << 10) | mantissa);
}

uint8_t f32_to_f8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80u : 0x00u;
  const float a = std::fabs(f);
  if (a >= 448.0f) return static_cast<uint8_t>(sign | 0x7e);  // 448
  // Find the binade: subnormals are multiples of 2^-9, normals have 3 mantissa bits.
  int exponent = 0;
  std::frexp(a, &exponent);  // a = m * 2^exponent, m in [0.5, 1)
  const int unbiased = exponent - 1;
  const int step_exponent = unbiased < -6 ? -9 : unbiased - 3;
  const float steps = std::nearbyint(std::ldexp(a, -step_exponent));  // ties to even (default rounding)
  const float rounded = std::ldexp(steps, step_exponent);
  if (rounded == 0.0f) return sign;
  int e = 0;
  std::frexp(rounded, &e);
  const int biased = e - 1 + 7;
  if (biased <= 0) return static_cast<uint8_t>(sign | static_cast<uint8_t>(std::ldexp(rounded, 9)));
  const int mantissa = static_cast<int>(std::ldexp(rounded, -(e - 1) + 3)) - 8;
  return static_cast<uint8_t>(sign | (biased << 3) | mantissa);
}

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case DType::BF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::I32: {
      const auto* s = static_cast<const int32_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(s[i]);
      return;
    }
    case DType::F8_E4M3: {
      const auto* s = static_cast<const uint8_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f8e4m3_to_f32(s[i]);
      return;
    }
    case DType::Q8_0: {
      const auto* scales = static_cast<const uint16_t*>(src);
      const auto* values = reinterpret_cast<const int8_t*>(static_cast<const char*>(src) + quant_values_offset(n));
      for (size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(values[i]) * f16_to_f32(scales[i / 32]);
      return;
    }
    case DType::Q8_0_R16:
      fail("convert_to_f32: Q8_0_R16 rows lie interleaved in panels of 16; unpack_q8_0_r16_row first");
    case DType::Q4_0_R16:
      fail("convert_to_f32: Q4_0_R16 rows lie interleaved in panels of 16; unpack_q4_0_r16_row first");
    case DType::Q4_0: {
      const auto* scales = static_cast<const uint16_t*>(src);
      const auto* nibbles = static_cast<const uint8_t*>(src) + quant_values_offset(n);
      for (size_t b = 0; b < n / 32; ++b) {
        const float d = f16_to_f32(scales[b]);
        for (size_t j = 0; j < 16; ++j) {
          const uint8_t byte = nibbles[b * 16 + j];
          dst[b * 32 + j] = static_cast<float>((byte & 0x0f) - 8) * d;
          dst[b * 32 + j + 16] = static_cast<float>((byte >> 4) - 8) * d;
        }
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: {
      const auto* blocks = static_cast<const uint8_t*>(src);
      const size_t bytes = kquant_block_bytes(t);
      auto* dequantize = t == DType::Q4_K ? kquant::dequantize_q4_k
                         : t == DType::Q5_K ? kquant::dequantize_q5_k : kquant::dequantize_q6_k;
      for (size_t b = 0; b < n / 256; ++b) dequantize(blocks + b * bytes, dst + b * 256);
      return;
    }
  }
}

void quantize_row_q8_0(const float* x, size_t n, void* dst) {
  auto* scales = static_cast<uint16_t*>(dst);
  auto* values = reinterpret_cast<int8_t*>(static_cast<char*>(dst) + quant_values_offset(n));
  for (size_t b = 0; b < n / 32; ++b) {
    float max_abs = 0.0f;
    for (size_t i = 0; i < 32; ++i) max_abs = std::max(max_abs, std::fabs(x[b * 32 + i]));
    // As llama.cpp's quantize_row_q8_0_ref: the inverse comes from the fp32 scale, before it is stored as f16.
    const float d = max_abs / 127.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;
    scales[b] = f32_to_f16(d);
    for (size_t i = 0; i < 32; ++i) {
      // roundf (halves away from zero) without its libm call: |v| <= 127, so the int conversion truncates
      // exactly and v - t is exact; no branches (the comparison is a coin flip for random weights).
      const float v = x[b * 32 + i] * inverse;
      const int t = static_cast<int>(v);
      const float fraction = v - static_cast<float>(t);
      values[b * 32 + i] = static_cast<int8_t>(t + static_cast<int>(fraction >= 0.5f) - static_cast<int>(fraction <= -0.5f));
    }
  }
}

void quantize_row_q4_0(const float* x, size_t n, void* dst) {
  auto* scales = static_cast<uint16_t*>(dst);
  auto* nibbles = static_cast<uint8_t*>(dst) + quant_values_offset(n);
  for (size_t b = 0; b < n / 32; ++b) {
    const float* block = x + b * 32;
    // The signed value of largest magnitude, the first one on ties (as llama.cpp's reference).
    float max_abs = 0.0f, max = 0.0f;
    for (size_t i = 0; i < 32; ++i) {
      if (max_abs < std::fabs(block[i])) {
        max_abs = std::fabs(block[i]);
        max = block[i];
      }
    }
    const float d = max / -8.0f;
    const float inverse = d != 0.0f ? 1.0f / d : 0.0f;  // from the fp32 scale, before it becomes f16
    scales[b] = f32_to_f16(d);
    auto level = [&](float v) {
      // Truncation toward zero after + 8.5 (v * inverse >= -8 up to rounding, so the sum is >= 0).
      return static_cast<uint8_t>(std::min(15, static_cast<int>(v * inverse + 8.5f)));
    };
    for (size_t j = 0; j < 16; ++j) {
      nibbles[b * 16 + j] = static_cast<uint8_t>(level(block[j]) | (level(block[j + 16]) << 4));
    }
  }
}

namespace {

// GGUF's block-interleaved rows <-> scales first, then values: `value_bytes` bytes of values per block.
void split_blocks(const void* blocks, size_t n, size_t value_bytes, void* row) {
  const auto* src = static_cast<const uint8_t*>(blocks);
  auto* scales = static_cast<uint8_t*>(row);
  auto* values = scales + quant_values_offset(n);
  for (size_t b = 0; b < n / 32; ++b) {
    std::memcpy(scales + b * 2, src + b * (2 + value_bytes), 2);
    std::memcpy(values + b * value_bytes, src + b * (2 + value_bytes) + 2, value_bytes);
  }
}

void join_blocks(const void* row, size_t n, size_t value_bytes, void* blocks) {
  auto* dst = static_cast<uint8_t*>(blocks);
  const auto* scales = static_cast<const uint8_t*>(row);
  const auto* values = scales + quant_values_offset(n);
  for (size_t b = 0; b < n / 32; ++b) {
    std::memcpy(dst + b * (2 + value_bytes), scales + b * 2, 2);
    std::memcpy(dst + b * (2 + value_bytes) + 2, values + b * value_bytes, value_bytes);
  }
}

}  // namespace

void q8_0_row_from_ggml(const void* blocks, size_t n, void* row) { split_blocks(blocks, n, 32, row); }
void q8_0_row_to_ggml(const void* row, size_t n, void* blocks) { join_blocks(row, n, 32, blocks); }
void q4_0_row_from_ggml(const void* blocks, size_t n, void* row) { split_blocks(blocks, n, 16, row); }
void q4_0_row_to_ggml(const void* row, size_t n, void* blocks) { join_blocks(row, n, 16, blocks); }

void pack_q8_0_r16(const void* rows, int64_t out, int64_t in, void* dst) {
  if (!q8_0_r16_fits(out, in)) fail("pack_q8_0_r16: [{}, {}] is not whole panels of 16 rows of a multiple of 64", out, in);
  const size_t n = static_cast<size_t>(in);
  const size_t blocks = n / 32;
  const size_t panel_bytes = q8_0_r16_panel_bytes(in);
  for (int64_t o = 0; o < out; ++o) {
    const auto* row = static_cast<const uint8_t*>(rows) + static_cast<size_t>(o) * row_bytes(DType::Q8_0, in);
    auto* panel = static_cast<uint8_t*>(dst) + static_cast<size_t>(o / kQ8_0PanelRows) * panel_bytes;
    const size_t j = static_cast<size_t>(o % kQ8_0PanelRows);
    const uint8_t* values = row + quant_values_offset(n);
    for (size_t b = 0; b < blocks; ++b) {
      for (size_t step = 0; step < 8; ++step) {
        for (size_t k = 0; k < 4; ++k) {
          panel[b * 512 + step * 64 + j * 4 + k] = static_cast<uint8_t>(values[b * 32 + step * 4 + k] ^ 0x80u);
        }
      }
      std::memcpy(panel + blocks * 512 + (b * kQ8_0PanelRows + j) * 2, row + b * 2, 2);
    }
  }
}

void unpack_q8_0_r16_row(const void* packed, int64_t in, int64_t row, void* q8_0_row) {
  const size_t n = static_cast<size_t>(in);
  const size_t blocks = n / 32;
  const auto* panel = static_cast<const uint8_t*>(packed) + static_cast<size_t>(row / kQ8_0PanelRows) * q8_0_r16_panel_bytes(in);
  const size_t j = static_cast<size_t>(row % kQ8_0PanelRows);
  auto* out = static_cast<uint8_t*>(q8_0_row);
  uint8_t* values = out + quant_values_offset(n);
  for (size_t b = 0; b < blocks; ++b) {
    for (size_t step = 0; step < 8; ++step) {
      for (size_t k = 0; k < 4; ++k) {
        values[b * 32 + step * 4 + k] = static_cast<uint8_t>(panel[b * 512 + step * 64 + j * 4 + k] ^ 0x80u);
      }
    }
    std::memcpy(out + b * 2, panel + blocks * 512 + (b * kQ8_0PanelRows + j) * 2, 2);
  }
}

void pack_q4_0_r16(const void* rows, int64_t out, int64_t in, void* dst) {
  if (!q4_0_r16_fits(out, in)) fail("pack_q4_0_r16: [{}, {}] is not whole panels of 16 rows of a multiple of 32", out, in);
  const size_t n = static_cast<size_t>(in);
  const size_t blocks = n / 32;
  const size_t panel_bytes = q4_0_r16_panel_bytes(in);
  for (int64_t o = 0; o < out; ++o) {
    const auto* row = static_cast<const uint8_t*>(rows) + static_cast<size_t>(o) * row_bytes(DType::Q4_0, in);
    auto* panel = static_cast<uint8_t*>(dst) + static_cast<size_t>(o / kQ8_0PanelRows) * panel_bytes;
    const size_t j = static_cast<size_t>(o % kQ8_0PanelRows);
    const uint8_t* nibbles = row + quant_values_offset(n);
    for (size_t b = 0; b < blocks; ++b) {
      for (size_t step = 0; step < 4; ++step) std::memcpy(panel + b * 256 + step * 64 + j * 4, nibbles + b * 16 + step * 4, 4);
      std::memcpy(panel + blocks * 256 + (b * kQ8_0PanelRows + j) * 2, row + b * 2, 2);
    }
  }
}

void unpack_q4_0_r16_row(const void* packed, int64_t in, int64_t row, void* q4_0_row) {
  const size_t n = static_cast<size_t>(in);
  const size_t blocks = n / 32;
  const auto* panel = static_cast<const uint8_t*>(packed) + static_cast<size_t>(row / kQ8_0PanelRows) * q4_0_r16_panel_bytes(in);
  const size_t j = static_cast<size_t>(row % kQ8_0PanelRows);
  auto* out = static_cast<uint8_t*>(q4_0_row);
  uint8_t* nibbles = out + quant_values_offset(n);
  for (size_t b = 0; b < blocks; ++b) {
    for (size_t step = 0; step < 4; ++step) std::memcpy(nibbles + b * 16 + step * 4, panel + b * 256 + step * 64 + j * 4, 4);
    std::memcpy(out + b * 2, panel + blocks * 256 + (b * kQ8_0PanelRows + j) * 2, 2);
  }
}

}  // namespace llama31
