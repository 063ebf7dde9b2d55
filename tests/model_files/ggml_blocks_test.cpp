// ggml block formats: blocks packed here by hand from chosen integers and scales (from the layouts in
// ggml-common.h, independently of the code under test) must dequantize to exactly d * q (and minus the
// min for the K types); quantize -> dequantize stays within each type's error bound; the reference
// rounding of Q4_0 / Q8_0 at ties and at the -8 extreme; partial blocks are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "model_files/ggml_blocks.h"
#include "util/dtype.h"
#include "util/error.h"

namespace llama31 {
namespace {

void put_f16(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(b.data() + at, &h, 2);
}

std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_ggml_row(type, bytes.data(), out.data(), n);
  return out;
}

// Scales and mins of a Q4_K / Q5_K super-block, 6 bits each, into its 12 bytes: sub-blocks 0-3 in the
// low 6 bits of bytes 0-3 (scale) and 4-7 (min); 4-7 as a nibble pair in bytes 8-11 (scale low, min
// high) with their top 2 bits in the top bits of bytes 0-3 (scale) and 4-7 (min).
void pack_k_scales(const int* sc, const int* m, uint8_t* out) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j]);
    out[j + 4] = static_cast<uint8_t>(m[j]);
  }
  for (int j = 4; j < 8; ++j) {
    out[j + 4] = static_cast<uint8_t>((sc[j] & 15) | ((m[j] & 15) << 4));
    out[j - 4] = static_cast<uint8_t>(out[j - 4] | ((sc[j] >> 4) << 6));
    out[j] = static_cast<uint8_t>(out[j] | ((m[j] >> 4) << 6));
  }
}

TEST(GgmlBlocks, TypeTable) {
  EXPECT_EQ(ggml_type_from_number(2), GgmlType::Q4_0);
  EXPECT_EQ(ggml_type_from_number(12), GgmlType::Q4_K);
  EXPECT_EQ(ggml_type_from_number(30), GgmlType::BF16);
  EXPECT_FALSE(ggml_type_from_number(3).has_value());   // Q4_1
  EXPECT_FALSE(ggml_type_from_number(10).has_value());  // Q2_K
  EXPECT_EQ(ggml_type_name(GgmlType::Q4_K), "q4_K");
  EXPECT_EQ(ggml_type_name(GgmlType::Q8_0), "q8_0");
  const std::vector<std::pair<GgmlType, size_t>> bytes = {
      {GgmlType::F32, 4},   {GgmlType::F16, 2},    {GgmlType::BF16, 2},   {GgmlType::Q4_0, 18}, {GgmlType::Q5_0, 22},
      {GgmlType::Q8_0, 34}, {GgmlType::Q4_K, 144}, {GgmlType::Q5_K, 176}, {GgmlType::Q6_K, 210}};
  for (const auto& [type, size] : bytes) EXPECT_EQ(ggml_block_bytes(type), size) << ggml_type_name(type);
  EXPECT_EQ(ggml_block_values(GgmlType::BF16), 1);
  EXPECT_EQ(ggml_block_values(GgmlType::Q5_0), 32);
  EXPECT_EQ(ggml_block_values(GgmlType::Q6_K), 256);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 4096), 16u * 144u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::F16, 7), 14u);
}

TEST(GgmlBlocks, PartialBlocksAreErrors) {
  EXPECT_THROW(ggml_row_bytes(GgmlType::Q4_0, 33), Error);
  EXPECT_THROW(ggml_row_bytes(GgmlType::Q4_K, 255), Error);
  EXPECT_THROW(ggml_row_bytes(GgmlType::Q8_0, -32), Error);
  std::vector<float> x(300, 1.0f);
  std::vector<uint8_t> buf(4096);
  EXPECT_THROW(quantize_ggml_row(GgmlType::Q6_K, x.data(), 288, buf.data()), Error);
  EXPECT_THROW(dequantize_ggml_row(GgmlType::Q5_0, buf.data(), x.data(), 40), Error);
  EXPECT_NO_THROW(quantize_ggml_row(GgmlType::F32, x.data(), 3, buf.data()));
}

TEST(GgmlBlocks, Q4_0HandPackedBlocks) {
  std::vector<uint8_t> b(2 * 18);
  std::vector<float> expected;
  for (int block = 0; block < 2; ++block) {
    const float d = block == 0 ? 0.5f : -0.125f;
    put_f16(b, 18 * block, d);
    int q[32];
    for (int i = 0; i < 32; ++i) q[i] = (i * 7 + block * 3) % 16;
    for (int j = 0; j < 16; ++j) b[18 * block + 2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
    for (int i = 0; i < 32; ++i) expected.push_back(d * static_cast<float>(q[i] - 8));
  }
  EXPECT_EQ(dequantize(GgmlType::Q4_0, b, 64), expected);
}

TEST(GgmlBlocks, Q5_0HandPackedBlock) {
  std::vector<uint8_t> b(22);
  put_f16(b, 0, 0.25f);
  int q[32];
  for (int i = 0; i < 32; ++i) q[i] = (i * 11 + 5) % 32;
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    b[6 + j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(b.data() + 2, &qh, 4);
  const auto y = dequantize(GgmlType::Q5_0, b, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[static_cast<size_t>(i)], 0.25f * static_cast<float>(q[i] - 16)) << i;
}

TEST(GgmlBlocks, Q8_0HandPackedBlock) {
  std::vector<uint8_t> b(34);
  put_f16(b, 0, 0.0625f);
  for (int i = 0; i < 32; ++i) b[2 + static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<int8_t>(i * 8 - 128));
  const auto y = dequantize(GgmlType::Q8_0, b, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[static_cast<size_t>(i)], 0.0625f * static_cast<float>(i * 8 - 128)) << i;
}

// Q4_K and Q5_K: d = 0.5, dmin = 0.25; sub-block scales and mins across the 6-bit range (so the packed
// top bits matter); every value d * sc * q - dmin * m, exact in float for these small integers.
TEST(GgmlBlocks, Q4_KAndQ5_KHandPackedBlocks) {
  const int sc[8] = {1, 17, 63, 32, 5, 48, 31, 60};
  const int m[8] = {0, 63, 16, 9, 47, 2, 33, 58};
  for (const bool five : {false, true}) {
    const GgmlType type = five ? GgmlType::Q5_K : GgmlType::Q4_K;
    std::vector<uint8_t> b(ggml_block_bytes(type));
    put_f16(b, 0, 0.5f);
    put_f16(b, 2, 0.25f);
    pack_k_scales(sc, m, b.data() + 4);
    const int qmax = five ? 31 : 15;
    int q[256];
    for (int i = 0; i < 256; ++i) q[i] = (i * 13 + 7) % (qmax + 1);
    // Each 64 values: 32 bytes, value 64c + l in the low nibble of byte l, 64c + 32 + l in the high one;
    // Q5_K's 5th bits: qh[l] bit 2c for the first, 2c + 1 for the second.
    uint8_t* qs = b.data() + (five ? 48 : 16);
    uint8_t* qh = b.data() + 16;
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
        qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
        if (five) qh[l] = static_cast<uint8_t>(qh[l] | ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      }
    }
    const auto y = dequantize(type, b, 256);
    for (int i = 0; i < 256; ++i) {
      const int sub = i / 32;
      const float want = 0.5f * static_cast<float>(sc[sub] * q[i]) - 0.25f * static_cast<float>(m[sub]);
      ASSERT_EQ(y[static_cast<size_t>(i)], want) << ggml_type_name(type) << " value " << i;
    }
  }
}

// Q6_K: d = 0.125, signed 8-bit scales per 16 including -128 and 127; q 0..63 read as q - 32.
TEST(GgmlBlocks, Q6_KHandPackedBlock) {
  std::vector<uint8_t> b(210);
  put_f16(b, 208, 0.125f);
  int scales[16];
  for (int g = 0; g < 16; ++g) scales[g] = g == 0 ? -128 : g == 1 ? 127 : (g * 37) % 200 - 100;
  for (int g = 0; g < 16; ++g) b[192 + static_cast<size_t>(g)] = static_cast<uint8_t>(static_cast<int8_t>(scales[g]));
  int q[256];
  for (int i = 0; i < 256; ++i) q[i] = (i * 29 + 3) % 64;
  // Each 128 values: ql bytes l and l + 32 hold values l / l + 32 (low nibbles) and l + 64 / l + 96
  // (high nibbles); qh[l] holds their top 2 bits at bits 0, 2, 4, 6.
  for (int h = 0; h < 2; ++h) {
    const int* v = q + 128 * h;
    uint8_t* ql = b.data() + 64 * h;
    uint8_t* qh = b.data() + 128 + 32 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((v[l] & 15) | ((v[l + 64] & 15) << 4));
      ql[l + 32] = static_cast<uint8_t>((v[l + 32] & 15) | ((v[l + 96] & 15) << 4));
      qh[l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
    }
  }
  const auto y = dequantize(GgmlType::Q6_K, b, 256);
  for (int i = 0; i < 256; ++i) {
    ASSERT_EQ(y[static_cast<size_t>(i)], 0.125f * static_cast<float>(scales[i / 16] * (q[i] - 32))) << i;
  }
}

TEST(GgmlBlocks, FloatTypesConvert) {
  const std::vector<float> x = {1.0f, -2.5f, 3.140625f, 1e-3f};
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    std::vector<uint8_t> b(ggml_row_bytes(type, 4));
    quantize_ggml_row(type, x.data(), 4, b.data());
    const auto y = dequantize(type, b, 4);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(y[i], x[i]) << ggml_type_name(type);  // exact in all three
    EXPECT_NEAR(y[3], x[3], type == GgmlType::BF16 ? 4e-6 : 1e-6);
  }
}

// Reference rounding, Q8_0: d = amax / 127 (here 1), q = round(x / d), halves away from zero.
TEST(GgmlBlocks, Q8_0RoundsHalvesAwayFromZero) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  const float probes[] = {2.5f, -2.5f, 0.5f, -0.5f, 1.499f, -126.5f};
  for (size_t i = 0; i < 6; ++i) x[1 + i] = probes[i];
  std::vector<uint8_t> b(34);
  quantize_ggml_row(GgmlType::Q8_0, x.data(), 32, b.data());
  uint16_t d;
  std::memcpy(&d, b.data(), 2);
  EXPECT_EQ(f16_to_f32(d), 1.0f);
  const int want[] = {127, 3, -3, 1, -1, 1, -127};
  for (size_t i = 0; i < 7; ++i) EXPECT_EQ(static_cast<int8_t>(b[2 + i]), want[i]) << i;
}

// Reference rounding, Q4_0: d = (signed value of largest magnitude, the first if tied) / -8, q =
// min(15, trunc(x / d + 8.5)): halves round up, and the opposite extreme clips to 15.
TEST(GgmlBlocks, Q4_0ReferenceRounding) {
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;  // largest magnitude, negative: d = 1, q = 0
  const float probes[] = {0.5f, -0.5f, 1.5f, -1.5f, 7.4f, 7.6f, 8.0f};
  for (size_t i = 0; i < 7; ++i) x[1 + i] = probes[i];
  std::vector<uint8_t> b(18);
  quantize_ggml_row(GgmlType::Q4_0, x.data(), 32, b.data());
  uint16_t d;
  std::memcpy(&d, b.data(), 2);
  EXPECT_EQ(f16_to_f32(d), 1.0f);
  auto q = [&b](size_t i) { return i < 16 ? b[2 + i] & 15 : b[2 + i - 16] >> 4; };
  const int want[] = {0, 9, 8, 10, 7, 15, 15, 15};  // 8.0 ties -8 in magnitude but comes later: clips to 15
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(q(i), want[i]) << i;
  EXPECT_EQ(q(20), 8);  // zero

  // Largest magnitude positive and first: d = -1; the later -8 is the clipped extreme (q 15, value -7).
  std::vector<float> y(32, 0.0f);
  y[3] = 8.0f;
  y[17] = -8.0f;
  quantize_ggml_row(GgmlType::Q4_0, y.data(), 32, b.data());
  std::memcpy(&d, b.data(), 2);
  EXPECT_EQ(f16_to_f32(d), -1.0f);
  EXPECT_EQ(q(3), 0);
  EXPECT_EQ(q(17), 15);
  const auto back = dequantize(GgmlType::Q4_0, b, 32);
  EXPECT_EQ(back[3], 8.0f);
  EXPECT_EQ(back[17], -7.0f);

  // An all-zero block: d = 0, every q 8.
  std::vector<float> zeros(32, 0.0f);
  quantize_ggml_row(GgmlType::Q4_0, zeros.data(), 32, b.data());
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(q(i), 8);
  for (float v : dequantize(GgmlType::Q4_0, b, 32)) EXPECT_EQ(v, 0.0f);
}

// Deterministic input built from exact float operations: uniform in [-1, 1) for the first half,
// [-0.01, 0.01) for the second (so K super-blocks of very different ranges follow each other).
std::vector<float> lcg_input(int n) {
  std::vector<float> x(static_cast<size_t>(n));
  uint32_t state = 12345u;
  for (int i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    const float u = static_cast<float>(state >> 8) / 16777216.0f;
    x[static_cast<size_t>(i)] = (u - 0.5f) * (i < n / 2 ? 2.0f : 0.02f);
  }
  return x;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 14695981039346656037ull;
  for (uint8_t c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// The bytes llama.cpp's quantize_row_*_ref writes for lcg_input(2048), as FNV-1a digests (measured with
// ggml-quants.c of llama.cpp as bundled by node-llama-cpp 3.21.1, built for baseline x86-64: a build that
// contracts multiply-adds into FMA can round a few K-type levels differently).
TEST(GgmlBlocks, QuantizedBytesMatchLlamaCppReference) {
  const std::vector<float> x = lcg_input(2048);
  const std::vector<std::pair<GgmlType, uint64_t>> digests = {
      {GgmlType::Q4_0, 0x0d8b78c80400ba70ull}, {GgmlType::Q5_0, 0xa21649c04494d8ceull},
      {GgmlType::Q8_0, 0x4785383941f6d126ull}, {GgmlType::Q4_K, 0xa6d1b96f447a47abull},
      {GgmlType::Q5_K, 0x283b77241881040eull}, {GgmlType::Q6_K, 0xd72ed2eb8985db33ull}};
  for (const auto& [type, digest] : digests) {
    std::vector<uint8_t> b(ggml_row_bytes(type, 2048));
    quantize_ggml_row(type, x.data(), 2048, b.data());
    EXPECT_EQ(fnv1a(b), digest) << ggml_type_name(type);
  }
}

// Round trips on random data. Bounds, per block of 32 (per 256 for the K types), with amax the largest
// |x| and range = max - min of the block:
//   Q8_0: |error| <= 0.6 * amax / 127 (half a step, plus the f16 rounding of d times up to 127 steps);
//   Q4_0: <= 1.01 * amax / 8, Q5_0: <= 1.01 * amax / 16 (the extreme opposite the scale clips a whole step);
//   Q4_K: <= range / 15, Q5_K: <= range / 31, Q6_K: <= 2 * amax / 32 (a step of the super-block's coarsest
//   sub-block scale, whose 6- or 8-bit rounding costs up to about half a step more);
// and the RMS error relative to the RMS of x (Gaussian data) below Q8_0 0.008, Q4_0 0.11, Q5_0 0.055,
// Q4_K 0.09, Q5_K 0.045, Q6_K 0.023 (measured 0.0055, 0.09, 0.043, 0.072, 0.037, 0.018: each format's
// precision, so a format error that still stays inside the per-value bound shows here).
TEST(GgmlBlocks, QuantizeDequantizeRoundTripsWithinBounds) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 4096;
  struct Bound {
    GgmlType type;
    double rms;
  };
  for (const Bound& bound : {Bound{GgmlType::Q8_0, 0.008}, Bound{GgmlType::Q4_0, 0.11}, Bound{GgmlType::Q5_0, 0.055},
                             Bound{GgmlType::Q4_K, 0.09}, Bound{GgmlType::Q5_K, 0.045}, Bound{GgmlType::Q6_K, 0.023}}) {
    for (int trial = 0; trial < 8; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      const float scale = trial % 2 == 0 ? 1.0f : 0.02f;
      const float shift = trial % 4 == 3 ? 0.5f * scale : 0.0f;  // a mean the K types' mins absorb
      for (float& v : x) {
        v = normal(rng) * scale + shift;
        if (v == 0.0f) v = scale;  // non-zero data
      }
      std::vector<uint8_t> b(ggml_row_bytes(bound.type, n));
      quantize_ggml_row(bound.type, x.data(), n, b.data());
      const auto y = dequantize(bound.type, b, n);
      const auto block = static_cast<size_t>(ggml_block_values(bound.type));
      double err2 = 0, x2 = 0;
      for (size_t start = 0; start < x.size(); start += block) {
        float amax = 0, lo = x[start], hi = x[start];
        for (size_t i = start; i < start + block; ++i) {
          amax = std::max(amax, std::fabs(x[i]));
          lo = std::min(lo, x[i]);
          hi = std::max(hi, x[i]);
        }
        const float range = hi - std::min(lo, 0.0f);
        float limit = 0;
        switch (bound.type) {
          case GgmlType::Q8_0: limit = 0.6f * amax / 127; break;
          case GgmlType::Q4_0: limit = 1.01f * amax / 8; break;
          case GgmlType::Q5_0: limit = 1.01f * amax / 16; break;
          case GgmlType::Q4_K: limit = range / 15; break;
          case GgmlType::Q5_K: limit = range / 31; break;
          case GgmlType::Q6_K: limit = 2 * amax / 32; break;
          default: break;
        }
        for (size_t i = start; i < start + block; ++i) {
          ASSERT_LE(std::fabs(y[i] - x[i]), limit) << ggml_type_name(bound.type) << " trial " << trial << " value " << i;
          err2 += static_cast<double>(y[i] - x[i]) * (y[i] - x[i]);
          x2 += static_cast<double>(x[i]) * x[i];
        }
      }
      EXPECT_LT(std::sqrt(err2 / x2), bound.rms) << ggml_type_name(bound.type) << " trial " << trial;
    }
  }
}

}  // namespace
}  // namespace llama31
