// rmsnorm, rope, softmax, silu_mul, dot and attention: the scalar twins against float64, and every
// SIMD level against the scalar twins, on random inputs of awkward sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::KernelSettingsGuard;
using testing::random_floats;

const int kOddLengths[] = {1, 5, 7, 16, 17, 33, 100, 2048, 2055};

// Runs check(level) with each SIMD level active, then with the best level restored.
void for_each_simd_level(const std::function<void(const std::string&)>& check) {
  KernelSettingsGuard guard;
  for (const std::string& level : testing::simd_levels()) {
    set_isa(level);
    check(level);
  }
}

void expect_near_relative(const std::vector<float>& actual, const std::vector<double>& expected, double relative,
                          double absolute, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_LE(std::fabs(actual[i] - expected[i]), relative * std::fabs(expected[i]) + absolute)
        << what << " element " << i << ": " << actual[i] << " vs " << expected[i];
  }
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<double> rmsnorm_reference(const std::vector<float>& x, const std::vector<float>& w, double eps) {
  double sum = 0.0;
  for (float v : x) sum += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(sum / static_cast<double>(x.size()) + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = w[i] * (x[i] * inv);
  return out;
}

TEST(RmsNorm, ScalarAndSimdMatchFloat64) {
  uint32_t seed = 10;
  for (int n : kOddLengths) {
    const auto x = random_floats(static_cast<size_t>(n), seed++, -3.0f, 3.0f);
    const auto w = random_floats(static_cast<size_t>(n), seed++, 0.5f, 1.5f);
    const auto expected = rmsnorm_reference(x, w, 1e-5);
    std::vector<float> out(x.size(), NAN);
    scalar::rmsnorm(x.data(), w.data(), n, 1e-5f, out.data());
    expect_near_relative(out, expected, 1e-5, 1e-7, "scalar n=" + std::to_string(n));
    for_each_simd_level([&](const std::string& level) {
      std::vector<float> simd(x.size(), NAN);
      rmsnorm(x.data(), w.data(), n, 1e-5f, simd.data());
      expect_near_relative(simd, as_double(out), 1e-5, 1e-7, level + " n=" + std::to_string(n));
    });
  }
}

TEST(Rope, RotatesFirstHalfWithSecondHalf) {
  uint32_t seed = 20;
  for (int head_dim : {2, 6, 18, 64, 128}) {
    const int n_heads = 3;
    const int half = head_dim / 2;
    const auto x = random_floats(static_cast<size_t>(n_heads * head_dim), seed++);
    const auto angles = random_floats(static_cast<size_t>(half), seed++, -3.0f, 3.0f);
    std::vector<float> cos(static_cast<size_t>(half)), sin(static_cast<size_t>(half));
    for (int i = 0; i < half; ++i) {
      cos[i] = std::cos(angles[i]);
      sin[i] = std::sin(angles[i]);
    }
    std::vector<double> expected(x.size());
    for (int h = 0; h < n_heads; ++h) {
      for (int i = 0; i < half; ++i) {
        const double a = x[h * head_dim + i], b = x[h * head_dim + i + half];
        expected[h * head_dim + i] = a * cos[i] - b * sin[i];
        expected[h * head_dim + i + half] = b * cos[i] + a * sin[i];
      }
    }
    auto rotated = x;
    scalar::rope(rotated.data(), n_heads, head_dim, cos.data(), sin.data());
    expect_near_relative(rotated, expected, 0.0, 1e-6, "scalar head_dim=" + std::to_string(head_dim));
    for_each_simd_level([&](const std::string& level) {
      auto simd = x;
      rope(simd.data(), n_heads, head_dim, cos.data(), sin.data());
      expect_near_relative(simd, as_double(rotated), 0.0, 1e-6, level + " head_dim=" + std::to_string(head_dim));
    });
  }
}

std::vector<double> softmax_reference(const std::vector<float>& x) {
  const double max_value = *std::max_element(x.begin(), x.end());
  std::vector<double> out(x.size());
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) sum += out[i] = std::exp(x[i] - max_value);
  for (double& v : out) v /= sum;
  return out;
}

TEST(Softmax, ScalarAndSimdMatchFloat64) {
  uint32_t seed = 30;
  for (int n : kOddLengths) {
    const auto x = random_floats(static_cast<size_t>(n), seed++, -30.0f, 30.0f);
    const auto expected = softmax_reference(x);
    auto out = x;
    scalar::softmax(out.data(), n);
    expect_near_relative(out, expected, 1e-5, 1e-9, "scalar n=" + std::to_string(n));
    for_each_simd_level([&](const std::string& level) {
      auto simd = x;
      softmax(simd.data(), n);
      expect_near_relative(simd, as_double(out), 1e-5, 1e-9, level + " n=" + std::to_string(n));
    });
  }
}

TEST(Softmax, StaysFiniteForHugeAndMaskedScores) {
  auto x = random_floats(37, 40, -1000.0f, 1000.0f);
  x[3] = -INFINITY;
  x[20] = 3000.0f;
  const auto check = [&](const std::string& level) {
    auto out = x;
    softmax(out.data(), static_cast<int>(out.size()));
    double sum = 0.0;
    for (float v : out) {
      ASSERT_TRUE(std::isfinite(v)) << level;
      sum += v;
    }
    EXPECT_NEAR(sum, 1.0, 1e-6) << level;
    EXPECT_NEAR(out[20], 1.0f, 1e-6) << level;
    EXPECT_LE(out[3], 1e-30f) << level;
  };
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    check(level);
  }
}

TEST(SiluMul, ScalarAndSimdMatchFloat64) {
  uint32_t seed = 50;
  for (int n : kOddLengths) {
    const auto gate = random_floats(static_cast<size_t>(n), seed++, -20.0f, 20.0f);
    const auto up = random_floats(static_cast<size_t>(n), seed++, -2.0f, 2.0f);
    std::vector<double> expected(gate.size());
    for (size_t i = 0; i < gate.size(); ++i) expected[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
    std::vector<float> out(gate.size(), NAN);
    scalar::silu_mul(gate.data(), up.data(), n, out.data());
    expect_near_relative(out, expected, 1e-5, 1e-7, "scalar n=" + std::to_string(n));
    for_each_simd_level([&](const std::string& level) {
      std::vector<float> simd(gate.size(), NAN);
      silu_mul(gate.data(), up.data(), n, simd.data());
      expect_near_relative(simd, as_double(out), 1e-5, 1e-7, level + " n=" + std::to_string(n));
    });
  }
}

TEST(Dot, ScalarAndSimdMatchFloat64) {
  uint32_t seed = 60;
  for (int n : kOddLengths) {
    const auto a = random_floats(static_cast<size_t>(n), seed++);
    const auto b = random_floats(static_cast<size_t>(n), seed++);
    double expected = 0.0, magnitude = 0.0;
    for (int i = 0; i < n; ++i) {
      expected += static_cast<double>(a[i]) * b[i];
      magnitude += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    const float reference = scalar::dot(a.data(), b.data(), n);
    EXPECT_LE(std::fabs(reference - expected), 1e-5 * magnitude + 1e-6) << "scalar n=" << n;
    for_each_simd_level([&](const std::string& level) {
      EXPECT_LE(std::fabs(dot(a.data(), b.data(), n) - reference), 1e-5 * magnitude + 1e-6) << level << " n=" << n;
    });
  }
}

struct AttentionCase {
  int n_ctx, n_heads, n_kv_heads, head_dim;
  size_t kv_stride() const { return static_cast<size_t>(n_kv_heads * head_dim + 3); }  // padded rows
};

std::vector<double> attention_reference(const std::vector<float>& q, const std::vector<float>& k,
                                        const std::vector<float>& v, AttentionCase c) {
  std::vector<double> out(static_cast<size_t>(c.n_heads * c.head_dim));
  const int group = c.n_heads / c.n_kv_heads;
  for (int h = 0; h < c.n_heads; ++h) {
    const size_t offset = static_cast<size_t>(h / group * c.head_dim);
    std::vector<double> scores(static_cast<size_t>(c.n_ctx));
    for (int p = 0; p < c.n_ctx; ++p) {
      double s = 0.0;
      for (int d = 0; d < c.head_dim; ++d) s += static_cast<double>(q[h * c.head_dim + d]) * k[p * c.kv_stride() + offset + d];
      scores[p] = s / std::sqrt(static_cast<double>(c.head_dim));
    }
    const double max_score = *std::max_element(scores.begin(), scores.end());
    double sum = 0.0;
    for (double& s : scores) sum += s = std::exp(s - max_score);
    for (int d = 0; d < c.head_dim; ++d) {
      double acc = 0.0;
      for (int p = 0; p < c.n_ctx; ++p) acc += scores[p] / sum * v[p * c.kv_stride() + offset + d];
      out[h * c.head_dim + d] = acc;
    }
  }
  return out;
}

TEST(Attention, GroupedQueryAttentionMatchesFloat64) {
  uint32_t seed = 70;
  const AttentionCase cases[] = {{1, 6, 2, 64}, {17, 6, 2, 20}, {300, 6, 2, 128}, {33, 4, 4, 100}, {129, 8, 1, 64}};
  for (AttentionCase c : cases) {
    const std::string what = "n_ctx=" + std::to_string(c.n_ctx) + " heads=" + std::to_string(c.n_heads) + "/" +
                              std::to_string(c.n_kv_heads) + " head_dim=" + std::to_string(c.head_dim);
    const auto q = random_floats(static_cast<size_t>(c.n_heads * c.head_dim), seed++, -2.0f, 2.0f);
    const auto k = random_floats(c.n_ctx * c.kv_stride(), seed++, -2.0f, 2.0f);
    const auto v = random_floats(c.n_ctx * c.kv_stride(), seed++);
    const auto expected = attention_reference(q, k, v, c);
    std::vector<float> scratch(static_cast<size_t>(c.n_ctx));
    std::vector<float> out(expected.size(), NAN);
    const float* k_block = k.data();
    const float* v_block = v.data();
    scalar::attention(q.data(), KvBlocks{&k_block, c.n_ctx, c.kv_stride()}, KvBlocks{&v_block, c.n_ctx, c.kv_stride()},
                      c.n_ctx, c.n_heads, c.n_kv_heads, c.head_dim, out.data(), scratch.data());
    expect_near_relative(out, expected, 0.0, 1e-5, "scalar " + what);
    for_each_simd_level([&](const std::string& level) {
      std::vector<float> simd(expected.size(), NAN);
      attention(q.data(), k.data(), v.data(), c.n_ctx, c.n_heads, c.n_kv_heads, c.head_dim, c.kv_stride(),
                simd.data(), scratch.data());
      expect_near_relative(simd, as_double(out), 0.0, 1e-5, level + " " + what);
    });
  }
}

// A paged cache holds the same rows as a contiguous one, block by block at scattered addresses: every level
// must give bitwise the contiguous result, whatever the block size (positions are visited in order).
TEST(Attention, PagedBlocksGiveTheContiguousResultBitwise) {
  const AttentionCase c{75, 8, 2, 64};
  const auto q = random_floats(static_cast<size_t>(c.n_heads * c.head_dim), 90, -2.0f, 2.0f);
  const auto k = random_floats(c.n_ctx * c.kv_stride(), 91, -2.0f, 2.0f);
  const auto v = random_floats(c.n_ctx * c.kv_stride(), 92);
  std::vector<float> scratch(static_cast<size_t>(c.n_ctx));
  auto check = [&](const std::string& level) {
    std::vector<float> contiguous(static_cast<size_t>(c.n_heads * c.head_dim), NAN);
    attention(q.data(), k.data(), v.data(), c.n_ctx, c.n_heads, c.n_kv_heads, c.head_dim, c.kv_stride(),
              contiguous.data(), scratch.data());
    for (int block_size : {1, 7, 16, 75, 128}) {
      const int n_blocks = (c.n_ctx + block_size - 1) / block_size;
      // Blocks stored in reverse order in one pool, with a gap row between them.
      const size_t block_floats = static_cast<size_t>(block_size + 1) * c.kv_stride();
      std::vector<float> k_pool(n_blocks * block_floats, NAN), v_pool(n_blocks * block_floats, NAN);
      std::vector<const float*> k_blocks(n_blocks), v_blocks(n_blocks);
      for (int b = 0; b < n_blocks; ++b) {
        const size_t slot = static_cast<size_t>(n_blocks - 1 - b) * block_floats;
        const int rows = std::min(block_size, c.n_ctx - b * block_size);
        const size_t from = static_cast<size_t>(b) * block_size * c.kv_stride();
        std::copy_n(k.begin() + from, rows * c.kv_stride(), k_pool.begin() + slot);
        std::copy_n(v.begin() + from, rows * c.kv_stride(), v_pool.begin() + slot);
        k_blocks[b] = k_pool.data() + slot;
        v_blocks[b] = v_pool.data() + slot;
      }
      std::vector<float> paged(contiguous.size(), NAN);
      attention(q.data(), KvBlocks{k_blocks.data(), block_size, c.kv_stride()},
                KvBlocks{v_blocks.data(), block_size, c.kv_stride()}, c.n_ctx, c.n_heads, c.n_kv_heads, c.head_dim,
                paged.data(), scratch.data());
      EXPECT_EQ(0, std::memcmp(paged.data(), contiguous.data(), paged.size() * sizeof(float)))
          << level << " block_size=" << block_size;
    }
  };
  {
    KernelSettingsGuard guard;
    set_isa("scalar");
    check("scalar");
  }
  for_each_simd_level(check);
}

TEST(Attention, ReentrantInsideAnOpenMpParallelRegion) {
  const AttentionCase c{200, 8, 2, 64};
  const int n_queries = 16;
  const auto q = random_floats(static_cast<size_t>(n_queries * c.n_heads * c.head_dim), 80, -2.0f, 2.0f);
  const auto k = random_floats(c.n_ctx * c.kv_stride(), 81, -2.0f, 2.0f);
  const auto v = random_floats(c.n_ctx * c.kv_stride(), 82);
  const size_t per_query = static_cast<size_t>(c.n_heads * c.head_dim);
  std::vector<float> serial(n_queries * per_query), parallel(n_queries * per_query);
  std::vector<float> scratch(static_cast<size_t>(c.n_ctx));
  for (int t = 0; t < n_queries; ++t) {
    attention(q.data() + t * per_query, k.data(), v.data(), c.n_ctx - t, c.n_heads, c.n_kv_heads, c.head_dim,
              c.kv_stride(), serial.data() + t * per_query, scratch.data());
  }
#pragma omp parallel for num_threads(2) schedule(dynamic)
  for (int t = 0; t < n_queries; ++t) {
    std::vector<float> own_scratch(static_cast<size_t>(c.n_ctx));
    attention(q.data() + t * per_query, k.data(), v.data(), c.n_ctx - t, c.n_heads, c.n_kv_heads, c.head_dim,
              c.kv_stride(), parallel.data() + t * per_query, own_scratch.data());
  }
  EXPECT_EQ(0, std::memcmp(serial.data(), parallel.data(), serial.size() * sizeof(float)));
}

TEST(Ops, RejectBadArguments) {
  std::vector<float> buffer(64, 1.0f);
  EXPECT_THROW(rmsnorm(buffer.data(), buffer.data(), -1, 1e-5f, buffer.data()), Error);
  EXPECT_THROW(rope(buffer.data(), 1, 7, buffer.data(), buffer.data()), Error);
  EXPECT_THROW(softmax(buffer.data(), -3), Error);
  EXPECT_THROW(attention(buffer.data(), buffer.data(), buffer.data(), 1, 3, 2, 8, 16, buffer.data(), buffer.data()),
               Error);
}

}  // namespace
}  // namespace llama31::kernels
