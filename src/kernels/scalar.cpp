// Plain scalar twins of every kernel: the reference the SIMD levels are tested against, and the level
// used on CPUs without AVX2.
#include "kernels/scalar.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/isa_table.h"
#include "kernels/kquant.h"

namespace llama31::kernels::scalar {
namespace {

float weight_at(const void* w, DType w_type, size_t index) {
  switch (w_type) {
    case DType::F32: return static_cast<const float*>(w)[index];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[index]);
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w)[index]);
    case DType::F8_E4M3: return f8e4m3_to_f32(static_cast<const uint8_t*>(w)[index]);
    case DType::I32:
    case DType::Q8_0:
    case DType::Q8_0_R16:
    case DType::Q4_0:
    case DType::Q4_0_R16:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: break;  // the block types have their own loops; I32 is rejected by kernels::matmul
  }
  return 0.0f;
}

// Q8_0: integer dot products per block of 32, scaled by both blocks' scales, summed block by block.
// Q8_0_R16: the same numbers, each row unpacked from its panel first.
void matmul_q8_0(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end, float* y,
                 size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  std::vector<int8_t> qx(n_in);
  std::vector<float> dx(blocks);
  std::vector<char> unpacked(w_type == DType::Q8_0_R16 ? row_bytes(DType::Q8_0, in) : 0);
  for (int r = 0; r < rows; ++r) {
    quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, qx.data(), dx.data());
    for (int o = o_begin; o < o_end; ++o) {
      const char* row = static_cast<const char*>(w) + static_cast<size_t>(o) * row_bytes(DType::Q8_0, in);
      if (w_type == DType::Q8_0_R16) {
        unpack_q8_0_r16_row(w, in, o, unpacked.data());
        row = unpacked.data();
      }
      const auto* scales = reinterpret_cast<const uint16_t*>(row);
      const auto* values = reinterpret_cast<const int8_t*>(row + quant_values_offset(n_in));
      float sum = 0.0f;
      for (size_t b = 0; b < blocks; ++b) {
        int32_t block_sum = 0;
        for (size_t i = b * 32; i < b * 32 + 32; ++i) block_sum += static_cast<int32_t>(values[i]) * qx[i];
        sum += static_cast<float>(block_sum) * (f16_to_f32(scales[b]) * dx[b]);
      }
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o)] = sum;
    }
  }
}

// Q4_0: the same with the weights' levels q - 8 (byte j of a block: value j low, value j + 16 high).
// Q4_0_R16: the same numbers, each row unpacked from its panel first.
void matmul_q4_0(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end, float* y,
                 size_t ldy) {
  const size_t n_in = static_cast<size_t>(in);
  const size_t blocks = n_in / 32;
  std::vector<int8_t> qx(n_in);
  std::vector<float> dx(blocks);
  std::vector<char> unpacked(w_type == DType::Q4_0_R16 ? row_bytes(DType::Q4_0, in) : 0);
  for (int r = 0; r < rows; ++r) {
    quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, qx.data(), dx.data());
    for (int o = o_begin; o < o_end; ++o) {
      const auto* row = static_cast<const char*>(w) + static_cast<size_t>(o) * row_bytes(DType::Q4_0, in);
      if (w_type == DType::Q4_0_R16) {
        unpack_q4_0_r16_row(w, in, o, unpacked.data());
        row = unpacked.data();
      }
      const auto* scales = reinterpret_cast<const uint16_t*>(row);
      const auto* nibbles = reinterpret_cast<const uint8_t*>(row + quant_values_offset(n_in));
      float sum = 0.0f;
      for (size_t b = 0; b < blocks; ++b) {
        int32_t block_sum = 0;
        for (size_t j = 0; j < 16; ++j) {
          const uint8_t byte = nibbles[b * 16 + j];
          block_sum += ((byte & 0x0f) - 8) * qx[b * 32 + j] + ((byte >> 4) - 8) * qx[b * 32 + j + 16];
        }
        sum += static_cast<float>(block_sum) * (f16_to_f32(scales[b]) * dx[b]);
      }
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o)] = sum;
    }
  }
}

}  // namespace

void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales) {
  for (int b = 0; b < n / 32; ++b) {
    const float* block = x + static_cast<size_t>(b) * 32;
    float max_abs = 0.0f;
    for (int i = 0; i < 32; ++i) max_abs = std::max(max_abs, std::fabs(block[i]));
    const float inverse = max_abs > 0.0f ? 127.0f / max_abs : 0.0f;
    scales[b] = max_abs / 127.0f;
    for (int i = 0; i < 32; ++i) {
      // Round to nearest even by adding and removing 1.5 * 2^23 (exact for |v| <= 127, the default
      // rounding mode), which std::nearbyint does too but as a libm call per value without SSE4.1.
      const float v = block[i] * inverse;
      const float rounded = (v + 12582912.0f) - 12582912.0f;
      q[static_cast<size_t>(b) * 32 + static_cast<size_t>(i)] = static_cast<int8_t>(rounded);
    }
  }
}

void matmul_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                  float* y, size_t ldy) {
  if (w_type == DType::Q8_0 || w_type == DType::Q8_0_R16) {
    matmul_q8_0(x, rows, w, w_type, in, o_begin, o_end, y, ldy);
    return;
  }
  if (w_type == DType::Q4_0 || w_type == DType::Q4_0_R16) {
    matmul_q4_0(x, rows, w, w_type, in, o_begin, o_end, y, ldy);
    return;
  }
  if (is_kquant_dtype(w_type)) {  // kquant_scalar.cpp
    kquant_matmul_range(x, rows, w, w_type, in, o_begin, o_end, y, ldy);
    return;
  }
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    const float* x_row = x + static_cast<size_t>(r) * n_in;
    for (int o = o_begin; o < o_end; ++o) {
      const size_t w_row = static_cast<size_t>(o) * n_in;
      float sum = 0.0f;
      for (size_t i = 0; i < n_in; ++i) sum += x_row[i] * weight_at(w, w_type, w_row + i);
      y[static_cast<size_t>(r) * ldy + static_cast<size_t>(o)] = sum;
    }
  }
}

void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  matmul_range(x, rows, w, w_type, in, 0, out, y, static_cast<size_t>(out));
}

void rmsnorm(const float* x, const float* weight, int n, float eps, float* out) {
  float sum_squares = 0.0f;
  for (int i = 0; i < n; ++i) sum_squares += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(n) + eps);
  for (int i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* head = x + static_cast<size_t>(h) * static_cast<size_t>(head_dim);
    for (int i = 0; i < half; ++i) {
      const float first = head[i];
      const float second = head[i + half];
      head[i] = first * cos[i] - second * sin[i];
      head[i + half] = second * cos[i] + first * sin[i];
    }
  }
}

void softmax(float* x, int n) {
  if (n <= 0) return;
  float max_value = x[0];
  for (int i = 1; i < n; ++i) max_value = std::max(max_value, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max_value);
    sum += x[i];
  }
  const float inv_sum = 1.0f / sum;
  for (int i = 0; i < n; ++i) x[i] *= inv_sum;
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float dot(const float* a, const float* b, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Words of GCC's generic 16-byte vector type, four per cache line: SSE2 or NEON registers on every
// target (an array of uint64_t lanes was kept on the stack by GCC and read at half the memory's speed).
uint64_t xor_words(const std::byte* p, size_t n) {
  using Words = uint64_t __attribute__((vector_size(16)));
  auto load = [](const std::byte* at) {
    Words w;
    std::memcpy(&w, at, sizeof w);
    return w;
  };
  Words a = {}, b = {}, c = {}, d = {};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a ^= load(p + i);
    b ^= load(p + i + 16);
    c ^= load(p + i + 32);
    d ^= load(p + i + 48);
  }
  const Words all = a ^ b ^ c ^ d;
  uint64_t total = all[0] ^ all[1];
  for (; i < n; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, p + i, std::min<size_t>(8, n - i));
    total ^= word;
  }
  return total;
}

void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch) {
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const size_t dim = static_cast<size_t>(head_dim);
  auto row = [](const KvBlocks& kv, int p) {
    return kv.blocks[p / kv.block_size] + static_cast<size_t>(p % kv.block_size) * kv.stride;
  };
  for (int h = 0; h < n_heads; ++h) {
    const size_t kv_offset = static_cast<size_t>(h / group) * dim;
    const float* q_head = q + static_cast<size_t>(h) * dim;
    for (int p = 0; p < n_ctx; ++p) scratch[p] = dot(q_head, row(keys, p) + kv_offset, head_dim) * scale;
    softmax(scratch, n_ctx);
    float* out_head = out + static_cast<size_t>(h) * dim;
    std::fill(out_head, out_head + dim, 0.0f);
    for (int p = 0; p < n_ctx; ++p) {
      const float* v = row(values, p) + kv_offset;
      for (size_t d = 0; d < dim; ++d) out_head[d] += scratch[p] * v[d];
    }
  }
}

}  // namespace llama31::kernels::scalar

namespace llama31::kernels {
namespace {

size_t no_scratch(int, int, DType) { return 0; }
const float* x_as_given(const float* x, int, int, DType, float*) { return x; }

}  // namespace

const IsaKernels& scalar_kernels() {
  static const IsaKernels table{"scalar",         no_scratch,         x_as_given,
                                scalar::matmul_range, no_scratch,       x_as_given,
                                scalar::matmul_range, scalar::rmsnorm,
                                scalar::rope,     scalar::softmax,    scalar::silu_mul,
                                scalar::attention, scalar::attention_rows, scalar::dot,
                                scalar::xor_words};
  return table;
}

}  // namespace llama31::kernels
