#include "model_files/ggml_blocks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "util/dtype.h"
#include "util/error.h"
#include "util/kquant.h"

namespace llama31 {
namespace {

constexpr int kQK = 32;    // values per block of the 32-blocks (Q4_0, Q5_0, Q8_0) and per K sub-block
constexpr int kQK_K = 256; // values per K super-block
constexpr float kGroupMaxEps = 1e-15f;  // below this a group counts as all zero (ggml's GROUP_MAX_EPS)

// Block layouts (byte offsets), as ggml-common.h declares the structs (no padding anywhere):
//   Q4_0 18: d f16 @0, qs[16] @2          Q5_0 22: d f16 @0, qh[4] @2 (u32, bit j = 5th bit of value j), qs[16] @6
//   Q8_0 34: d f16 @0, qs int8[32] @2
//   Q4_K 144: d f16 @0, dmin f16 @2, scales[12] @4, qs[128] @16
//   Q5_K 176: d f16 @0, dmin f16 @2, scales[12] @4, qh[32] @16, qs[128] @48
//   Q6_K 210: ql[128] @0, qh[64] @128, scales int8[16] @192, d f16 @208
using kquant::kQ4KQs, kquant::kQ5KQh, kquant::kQ5KQs, kquant::kQ6KQh, kquant::kQ6KScales, kquant::kQ6KD;

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
void store_f16(uint8_t* p, float value) {
  const uint16_t h = f32_to_f16(value);
  std::memcpy(p, &h, 2);
}

// Round to nearest, ties to even (ggml's nearest_int for the magnitudes it is used on).
int nearest_int(float value) { return static_cast<int>(std::nearbyint(value)); }

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block (util/kquant.h).
void get_scale_min(int j, const uint8_t* scales, uint8_t& scale, uint8_t& min) {
  kquant::scale_min(j, scales, scale, min);
}
// The inverse: packs 8 scales and 8 mins (each 0..63) into 12 bytes.
void pack_scale_mins(const uint8_t* ls, const uint8_t* lm, uint8_t* scales) {
  for (size_t j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
      scales[j - 4] = static_cast<uint8_t>(scales[j - 4] | ((ls[j] >> 4) << 6));
      scales[j] = static_cast<uint8_t>(scales[j] | ((lm[j] >> 4) << 6));
    }
  }
}

// ---- 32-value blocks ----

void quantize_q8_0(const float* x, uint8_t* block) {
  float amax = 0.0f;
  for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(block, d);
  for (int i = 0; i < kQK; ++i) block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::round(x[i] * id)));
}

// Q4_0 and Q5_0 share the reference rounding: d = (signed value of largest magnitude) / -2^(bits-1), so
// that value maps to q = 0, and q = min(qmax, trunc(x / d + 2^(bits-1) + 0.5)).
template <int kBits>
void quantize_symmetric(const float* x, float& d, std::array<int, kQK>& q) {
  constexpr int kOffset = 1 << (kBits - 1), kMax = (1 << kBits) - 1;
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < kQK; ++i) {
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  d = max / -static_cast<float>(kOffset);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < kQK; ++i) {
    q[static_cast<size_t>(i)] = std::min(kMax, static_cast<int>(x[i] * id + (static_cast<float>(kOffset) + 0.5f)));
  }
}

void quantize_q4_0(const float* x, uint8_t* block) {
  float d;
  std::array<int, kQK> q{};
  quantize_symmetric<4>(x, d, q);
  store_f16(block, d);
  for (size_t j = 0; j < 16; ++j) block[2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

void quantize_q5_0(const float* x, uint8_t* block) {
  float d;
  std::array<int, kQK> q{};
  quantize_symmetric<5>(x, d, q);
  store_f16(block, d);
  uint32_t qh = 0;
  for (size_t j = 0; j < 16; ++j) {
    block[6 + j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(block + 2, &qh, 4);
}

void dequantize_q8_0(const uint8_t* block, float* y) {
  const float d = load_f16(block);
  for (int i = 0; i < kQK; ++i) y[i] = static_cast<float>(static_cast<int8_t>(block[2 + i])) * d;
}

void dequantize_q4_0(const uint8_t* block, float* y) {
  const float d = load_f16(block);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((block[2 + j] & 0xF) - 8) * d;
    y[j + 16] = static_cast<float>((block[2 + j] >> 4) - 8) * d;
  }
}

void dequantize_q5_0(const uint8_t* block, float* y) {
  const float d = load_f16(block);
  uint32_t qh;
  std::memcpy(&qh, block + 2, 4);
  for (int j = 0; j < 16; ++j) {
    const int high0 = static_cast<int>((qh >> j) & 1u) << 4, high1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = static_cast<float>(((block[6 + j] & 0xF) | high0) - 16) * d;
    y[j + 16] = static_cast<float>(((block[6 + j] >> 4) | high1) - 16) * d;
  }
}

// ---- K super-blocks ----

// A scale and a min for n values fitted to x ~ scale * L + min, L in 0..nmax (ggml's make_qkx2_quants):
// start from the min/max range, then try nstep + 1 slightly different steps (rmin + rdelta * is extra
// levels over the range), each followed by a weighted least-squares fit of scale and min to its L, and
// keep the one with the least weighted squared error. Returns the scale; `neg_min` gets -min (>= 0).
float fit_scale_min(int n, int nmax, const float* x, const float* weights, uint8_t* L, float& neg_min, float rmin,
                    float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    neg_min = -min;
    return 0.0f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (diff * diff);
  }
  std::array<uint8_t, kQK> trial{};
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[static_cast<size_t>(i)] = static_cast<uint8_t>(l);
      const float wl = weights[i] * static_cast<float>(l);
      sum_l += wl;
      sum_l2 += wl * static_cast<float>(l);
      sum_xl += wl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * trial[static_cast<size_t>(i)] + this_min - x[i];
      error += weights[i] * (diff * diff);
    }
    if (error < best_error) {
      std::copy(trial.begin(), trial.begin() + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  neg_min = -min;
  return scale;
}

// Q4_K (bits 4, nmax 15) and Q5_K (bits 5, nmax 31) share everything but the last packing step:
// each 32-value sub-block gets a scale and a min (weights |x| + rms of the sub-block), quantized to 6 bits
// against the super-block's largest (d = max scale / 63, dmin = max min / 63), then every value is
// re-rounded against the 6-bit scale it will be read back with. L gets the 256 levels.
void quantize_k_scale_min(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* header, uint8_t* L) {
  std::array<float, 8> scales{}, mins{};
  std::array<float, kQK> weights{};
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + kQK * j;
    float sum_x2 = 0;
    for (int l = 0; l < kQK; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / static_cast<float>(kQK));
    for (int l = 0; l < kQK; ++l) weights[static_cast<size_t>(l)] = av_x + std::fabs(xs[l]);
    const auto u = static_cast<size_t>(j);
    scales[u] = fit_scale_min(kQK, nmax, xs, weights.data(), L + kQK * j, mins[u], rmin, rdelta, nstep);
    if (scales[u] > max_scale) max_scale = scales[u];
    if (mins[u] > max_min) max_min = mins[u];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  std::array<uint8_t, 8> ls{}, lm{};
  for (size_t j = 0; j < 8; ++j) {
    // As the reference: the rounded level is stored to a byte first (wrapping), then capped at 63.
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  uint8_t* packed = header + 4;
  pack_scale_mins(ls.data(), lm.data(), packed);
  store_f16(header, max_scale / 63.0f);
  store_f16(header + 2, max_min / 63.0f);
  const float d_all = load_f16(header), dmin_all = load_f16(header + 2);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min(j, packed, sc, m);
    const float d = d_all * sc;
    if (d == 0.0f) continue;  // keeps the levels of the fit
    const float dm = dmin_all * m;
    for (int i = 0; i < kQK; ++i) {
      L[kQK * j + i] = static_cast<uint8_t>(std::clamp(nearest_int((x[kQK * j + i] + dm) / d), 0, nmax));
    }
  }
}

// Q4_K qs: each 64 values are 32 bytes, the first 32 values in the low nibbles, the next 32 in the high.
void quantize_q4_k(const float* x, uint8_t* block) {
  std::array<uint8_t, kQK_K> L{};
  quantize_k_scale_min(x, 15, -1.0f, 0.1f, 20, block, L.data());
  uint8_t* q = block + kQ4KQs;
  for (size_t c = 0; c < 4; ++c) {
    for (size_t l = 0; l < 32; ++l) q[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  }
}

// Q5_K: the low 4 bits as Q4_K's qs; the 5th bit of value 64c + l (l < 32) is bit 2c of qh[l], of value
// 64c + 32 + l bit 2c + 1.
void quantize_q5_k(const float* x, uint8_t* block) {
  std::array<uint8_t, kQK_K> L{};
  quantize_k_scale_min(x, 31, -0.5f, 0.1f, 15, block, L.data());
  uint8_t* qh = block + kQ5KQh;
  uint8_t* qs = block + kQ5KQs;
  std::memset(qh, 0, 32);
  for (size_t c = 0; c < 4; ++c) {
    for (size_t l = 0; l < 32; ++l) {
      const uint8_t lo = L[64 * c + l], hi = L[64 * c + l + 32];
      qh[l] = static_cast<uint8_t>(qh[l] | ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
    }
  }
}

// A signed scale for n values with L in 0..2 nmax - 1 standing for L - nmax (ggml's make_qx_quants with
// weights x^2): round against -nmax / (value of largest magnitude), then try 18 nearby steps and keep the
// least-squares-best one.
float fit_symmetric_scale(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  auto level = [nmax](float iscale, float v) { return std::clamp(nearest_int(iscale * v), -nmax, nmax - 1); };
  auto sums = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = 0;
    suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const auto l = static_cast<float>(level(iscale, x[i]));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  };
  auto assign = [&](float iscale) {
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + level(iscale, x[i]));
  };
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  sums(iscale, sumlx, suml2);
  assign(iscale);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    sums(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      assign(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q6_K: 16 groups of 16 with int8 scales against d = (signed largest group scale) / -128; values 6-bit
// (q - 32). Each 128 values: ql holds the low nibbles (bytes l and l + 32: values l, l + 32 low nibble,
// l + 64, l + 96 high nibble), qh[l] the top 2 bits of values l, l + 32, l + 64, l + 96 at bits 0, 2, 4, 6.
void quantize_q6_k(const float* x, uint8_t* block) {
  std::array<int8_t, kQK_K> L{};
  std::array<float, 16> scales{};
  float max_scale = 0, max_abs_scale = 0;
  for (size_t g = 0; g < 16; ++g) {
    scales[g] = fit_symmetric_scale(16, 32, x + 16 * g, L.data() + 16 * g);
    if (std::fabs(scales[g]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[g]);
      max_scale = scales[g];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(block, 0, 210);
    return;
  }
  const float iscale = -128.0f / max_scale;
  store_f16(block + kQ6KD, 1 / iscale);
  auto* group_scales = reinterpret_cast<int8_t*>(block + kQ6KScales);
  for (size_t g = 0; g < 16; ++g) group_scales[g] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[g])));
  const float d_all = load_f16(block + kQ6KD);
  for (size_t g = 0; g < 16; ++g) {
    const float d = d_all * static_cast<float>(group_scales[g]);
    if (d == 0.0f) continue;
    for (size_t i = 0; i < 16; ++i) {
      L[16 * g + i] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * g + i] / d), -32, 31) + 32);
    }
  }
  for (size_t half = 0; half < 2; ++half) {
    const int8_t* q = L.data() + 128 * half;
    uint8_t* ql = block + 64 * half;
    uint8_t* qh = block + kQ6KQh + 32 * half;
    for (size_t l = 0; l < 32; ++l) {
      const auto q1 = static_cast<uint8_t>(q[l]), q2 = static_cast<uint8_t>(q[l + 32]);
      const auto q3 = static_cast<uint8_t>(q[l + 64]), q4 = static_cast<uint8_t>(q[l + 96]);
      ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

// Q4_K, Q5_K and Q6_K blocks dequantize as util/kquant.h does (the kernels and convert_to_f32 share it).

}  // namespace

std::optional<GgmlType> ggml_type_from_number(uint32_t number) {
  switch (number) {
    case 0: return GgmlType::F32;
    case 1: return GgmlType::F16;
    case 2: return GgmlType::Q4_0;
    case 6: return GgmlType::Q5_0;
    case 8: return GgmlType::Q8_0;
    case 12: return GgmlType::Q4_K;
    case 13: return GgmlType::Q5_K;
    case 14: return GgmlType::Q6_K;
    case 30: return GgmlType::BF16;
    default: return std::nullopt;
  }
}

std::string_view ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return "f32";
    case GgmlType::F16: return "f16";
    case GgmlType::Q4_0: return "q4_0";
    case GgmlType::Q5_0: return "q5_0";
    case GgmlType::Q8_0: return "q8_0";
    case GgmlType::Q4_K: return "q4_K";
    case GgmlType::Q5_K: return "q5_K";
    case GgmlType::Q6_K: return "q6_K";
    case GgmlType::BF16: return "bf16";
  }
  return "unknown";
}

int64_t ggml_block_values(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16: return 1;
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0: return kQK;
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return kQK_K;
  }
  fail("unknown ggml type {}", static_cast<uint32_t>(type));
}

size_t ggml_block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 4;
    case GgmlType::F16:
    case GgmlType::BF16: return 2;
    case GgmlType::Q4_0: return 18;
    case GgmlType::Q5_0: return 22;
    case GgmlType::Q8_0: return 34;
    case GgmlType::Q4_K: return 144;
    case GgmlType::Q5_K: return 176;
    case GgmlType::Q6_K: return 210;
  }
  fail("unknown ggml type {}", static_cast<uint32_t>(type));
}

size_t ggml_row_bytes(GgmlType type, int64_t n) {
  const int64_t block = ggml_block_values(type);
  if (n < 0 || n % block != 0) {
    fail("a row of {} values is not whole {} blocks of {}", n, ggml_type_name(type), block);
  }
  return static_cast<size_t>(n / block) * ggml_block_bytes(type);
}

void dequantize_ggml_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const size_t blocks = ggml_row_bytes(type, n) / ggml_block_bytes(type);
  const auto* in = static_cast<const uint8_t*>(src);
  const size_t count = static_cast<size_t>(n);
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, count * 4); return;
    case GgmlType::F16: convert_to_f32(DType::F16, src, dst, count); return;
    case GgmlType::BF16: convert_to_f32(DType::BF16, src, dst, count); return;
    default: break;
  }
  const size_t values = static_cast<size_t>(ggml_block_values(type)), bytes = ggml_block_bytes(type);
  for (size_t b = 0; b < blocks; ++b) {
    const uint8_t* block = in + b * bytes;
    float* y = dst + b * values;
    switch (type) {
      case GgmlType::Q4_0: dequantize_q4_0(block, y); break;
      case GgmlType::Q5_0: dequantize_q5_0(block, y); break;
      case GgmlType::Q8_0: dequantize_q8_0(block, y); break;
      case GgmlType::Q4_K: kquant::dequantize_q4_k(block, y); break;
      case GgmlType::Q5_K: kquant::dequantize_q5_k(block, y); break;
      case GgmlType::Q6_K: kquant::dequantize_q6_k(block, y); break;
      default: break;
    }
  }
}

void quantize_ggml_row(GgmlType type, const float* src, int64_t n, void* dst) {
  const size_t blocks = ggml_row_bytes(type, n) / ggml_block_bytes(type);
  auto* out = static_cast<uint8_t*>(dst);
  const size_t count = static_cast<size_t>(n);
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, count * 4); return;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (size_t i = 0; i < count; ++i) {
        const uint16_t h = type == GgmlType::F16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    default: break;
  }
  const size_t values = static_cast<size_t>(ggml_block_values(type)), bytes = ggml_block_bytes(type);
  for (size_t b = 0; b < blocks; ++b) {
    const float* x = src + b * values;
    uint8_t* block = out + b * bytes;
    switch (type) {
      case GgmlType::Q4_0: quantize_q4_0(x, block); break;
      case GgmlType::Q5_0: quantize_q5_0(x, block); break;
      case GgmlType::Q8_0: quantize_q8_0(x, block); break;
      case GgmlType::Q4_K: quantize_q4_k(x, block); break;
      case GgmlType::Q5_K: quantize_q5_k(x, block); break;
      case GgmlType::Q6_K: quantize_q6_k(x, block); break;
      default: break;
    }
  }
}

}  // namespace llama31
