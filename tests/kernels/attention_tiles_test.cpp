// attention_rows (tiled causal attention for a block of query rows): the scalar twin against a float64
// softmax, every SIMD level against the scalar twin, each row bitwise the same whatever block it is
// computed in, only the kv head's query heads written, and bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/attention_tiles.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::KernelSettingsGuard;
using testing::random_floats;

// One attention problem: `rows` queries at positions first_pos .. first_pos + rows - 1 over a paged cache
// of first_pos + rows positions.
struct Case {
  int head_dim, n_heads, n_kv_heads, block_size, first_pos, rows;

  int group() const { return n_heads / n_kv_heads; }
  int n_ctx() const { return first_pos + rows; }
  size_t stride() const { return static_cast<size_t>(n_kv_heads * head_dim + 3); }  // padded cache rows
  size_t q_row() const { return static_cast<size_t>(n_heads * head_dim); }
  std::string describe() const {
    return "head_dim=" + std::to_string(head_dim) + " heads=" + std::to_string(n_heads) + "/" +
           std::to_string(n_kv_heads) + " block_size=" + std::to_string(block_size) +
           " first_pos=" + std::to_string(first_pos) + " rows=" + std::to_string(rows);
  }
};

// A paged K or V cache: blocks stored in reverse order in one pool with a gap row between them, and
// NaN wherever no position was written (gaps, padding, positions past the context), so a read of
// anything but a visible position shows up in the result.
struct PagedCache {
  std::vector<float> pool;
  std::vector<const float*> blocks;
  std::vector<float> rows;  // the contents, position after position (stride floats each)
  size_t stride = 0;

  PagedCache(const Case& c, uint32_t seed, float low, float high) : stride(c.stride()) {
    const int n_blocks = (c.n_ctx() + c.block_size - 1) / c.block_size;
    const size_t block_floats = static_cast<size_t>(c.block_size + 1) * stride;
    rows = random_floats(static_cast<size_t>(c.n_ctx()) * stride, seed, low, high);
    pool.assign(static_cast<size_t>(n_blocks) * block_floats, NAN);
    blocks.resize(static_cast<size_t>(n_blocks));
    for (int b = 0; b < n_blocks; ++b) {
      float* block = pool.data() + static_cast<size_t>(n_blocks - 1 - b) * block_floats;
      blocks[static_cast<size_t>(b)] = block;
      for (int r = 0; r < c.block_size && b * c.block_size + r < c.n_ctx(); ++r) {
        const float* from = rows.data() + static_cast<size_t>(b * c.block_size + r) * stride;
        std::copy_n(from, static_cast<size_t>(c.n_kv_heads * c.head_dim), block + static_cast<size_t>(r) * stride);
      }
    }
  }
  KvBlocks view(int block_size) const { return KvBlocks{blocks.data(), block_size, stride}; }
  float at(int pos, size_t offset) const { return rows[static_cast<size_t>(pos) * stride + offset]; }
};

struct Problem {
  Case c;
  std::vector<float> q;
  PagedCache keys, values;

  Problem(const Case& c_, uint32_t seed)
      : c(c_),
        q(random_floats(static_cast<size_t>(c_.rows) * c_.q_row(), seed, -2.0f, 2.0f)),
        keys(c_, seed + 1, -2.0f, 2.0f),
        values(c_, seed + 2, -1.0f, 1.0f) {}

  // Every kv head through `run` (kernels::attention_rows or a level's function) for rows [begin, end).
  template <typename Run>
  std::vector<float> compute(const Run& run, int begin = 0, int end = -1) const {
    if (end < 0) end = c.rows;
    std::vector<float> out(static_cast<size_t>(end - begin) * c.q_row(), NAN);
    for (int h = 0; h < c.n_kv_heads; ++h) {
      run(q.data() + static_cast<size_t>(begin) * c.q_row(), end - begin, c.first_pos + begin,
          keys.view(c.block_size), values.view(c.block_size), h, out.data());
    }
    return out;
  }
};

std::vector<float> scalar_rows(const Problem& p, int begin = 0, int end = -1) {
  return p.compute(
      [&](const float* q, int rows, int first_pos, const KvBlocks& k, const KvBlocks& v, int kv_head, float* out) {
        std::vector<float> scratch(attention_rows_scratch(rows, p.c.group(), p.c.head_dim), NAN);
        scalar::attention_rows(q, rows, first_pos, k, v, p.c.n_heads, p.c.n_kv_heads, p.c.head_dim, kv_head, out,
                               scratch.data());
      },
      begin, end);
}

// Through dispatch, with whatever level is active.
std::vector<float> dispatched_rows(const Problem& p, int begin = 0, int end = -1) {
  return p.compute(
      [&](const float* q, int rows, int first_pos, const KvBlocks& k, const KvBlocks& v, int kv_head, float* out) {
        attention_rows(q, rows, first_pos, k, v, p.c.n_heads, p.c.n_kv_heads, p.c.head_dim, kv_head, out);
      },
      begin, end);
}

// Full softmax in float64 over positions [0, position] for every row and head.
std::vector<double> float64_reference(const Problem& p) {
  const Case& c = p.c;
  std::vector<double> out(static_cast<size_t>(c.rows) * c.q_row());
  for (int i = 0; i < c.rows; ++i) {
    const int n = c.first_pos + i + 1;
    for (int h = 0; h < c.n_heads; ++h) {
      const size_t kv = static_cast<size_t>(h / c.group() * c.head_dim);
      const float* q = p.q.data() + static_cast<size_t>(i) * c.q_row() + static_cast<size_t>(h * c.head_dim);
      std::vector<double> weight(static_cast<size_t>(n));
      for (int pos = 0; pos < n; ++pos) {
        double s = 0.0;
        for (int d = 0; d < c.head_dim; ++d) s += static_cast<double>(q[d]) * p.keys.at(pos, kv + d);
        weight[pos] = s / std::sqrt(static_cast<double>(c.head_dim));
      }
      const double max_score = *std::max_element(weight.begin(), weight.end());
      double sum = 0.0;
      for (double& w : weight) sum += w = std::exp(w - max_score);
      for (int d = 0; d < c.head_dim; ++d) {
        double acc = 0.0;
        for (int pos = 0; pos < n; ++pos) acc += weight[pos] * p.values.at(pos, kv + d);
        out[static_cast<size_t>(i) * c.q_row() + static_cast<size_t>(h * c.head_dim + d)] = acc / sum;
      }
    }
  }
  return out;
}

// Every element within tolerance * max|v| of expected (an output is an average of values).
template <typename T>
void expect_close(const std::vector<float>& actual, const std::vector<T>& expected, double tolerance,
                  const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t k = 0; k < actual.size(); ++k) {
    ASSERT_LE(std::fabs(static_cast<double>(actual[k]) - static_cast<double>(expected[k])), tolerance)
        << what << " element " << k << ": " << actual[k] << " vs " << expected[k];
  }
}

void expect_bitwise(const std::vector<float>& a, const float* b, const std::string& what) {
  ASSERT_EQ(0, std::memcmp(a.data(), b, a.size() * sizeof(float))) << what;
}

// Shapes of Llama 3.1 (head_dim 64 / 128, groups 1, 4 and 8), KV block sizes of the scheduler (16) and
// of a private cache (one big block), contexts that end inside a tile, and blocks that start mid-prompt.
const Case kCases[] = {
    {64, 4, 4, 16, 0, 37},      // group 1, context shorter than a tile
    {64, 32, 8, 16, 100, 29},   // the 1B shape, chunk of a prompt: 129 positions
    {128, 8, 1, 256, 0, 70},    // group 8, one tile and a bit
    {128, 32, 8, 256, 191, 10}, // the 8B shape, block crossing the tile boundary at 192
    {64, 8, 2, 7, 60, 9},       // odd KV block size, block crossing the boundary at 64
    {20, 4, 2, 16, 130, 3},     // head_dim not a multiple of a vector
    {80, 16, 2, 256, 0, 1},     // a single row at position 0
};

// Values are in [-1, 1] (max|v| <= 1), so these are tolerances relative to max|v|. Seen on these cases:
// up to 6e-7 between the scalar twin and float64, 5e-7 between a SIMD level and the scalar twin.
constexpr double kFloat64Tolerance = 3e-6;
constexpr double kLevelTolerance = 3e-6;

TEST(AttentionRows, ScalarTwinMatchesFloat64) {
  uint32_t seed = 300;
  for (const Case& c : kCases) {
    const Problem p(c, seed += 3);
    expect_close(scalar_rows(p), float64_reference(p), kFloat64Tolerance, "scalar " + c.describe());
  }
}

TEST(AttentionRows, EverySimdLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  uint32_t seed = 400;
  for (const Case& c : kCases) {
    const Problem p(c, seed += 3);
    const std::vector<float> scalar = scalar_rows(p);
    set_isa("scalar");
    expect_bitwise(dispatched_rows(p), scalar.data(), "dispatch to scalar " + c.describe());
    for (const std::string& level : testing::simd_levels()) {
      set_isa(level);
      expect_close(dispatched_rows(p), scalar, kLevelTolerance, level + " " + c.describe());
    }
  }
}

// The engine computes a prompt's rows in blocks that depend on how the prompt was cut into chunks and
// how the rows were shared out: a row must come out bitwise the same in a block of 1, of 32, or of any
// size in between, on every level.
TEST(AttentionRows, ARowIsBitwiseTheSameInAnyBlock) {
  KernelSettingsGuard guard;
  const Case cases[] = {{64, 32, 8, 16, 50, 32}, {128, 32, 8, 256, 0, 32}, {64, 4, 4, 16, 120, 32},
                        {20, 6, 2, 7, 61, 32}};
  std::vector<std::string> levels = testing::simd_levels();
  levels.push_back("scalar");
  uint32_t seed = 500;
  for (const Case& c : cases) {
    const Problem p(c, seed += 3);
    for (const std::string& level : levels) {
      set_isa(level);
      const std::string what = level + " " + c.describe();
      const std::vector<float> whole = dispatched_rows(p);
      for (int i = 0; i < c.rows; ++i) {
        expect_bitwise(dispatched_rows(p, i, i + 1), whole.data() + static_cast<size_t>(i) * c.q_row(),
                       what + " row " + std::to_string(i) + " alone");
      }
      for (int size : {2, 5, 13, 17}) {
        for (int begin = 0; begin < c.rows; begin += size) {
          const int end = std::min(c.rows, begin + size);
          expect_bitwise(dispatched_rows(p, begin, end), whole.data() + static_cast<size_t>(begin) * c.q_row(),
                         what + " rows " + std::to_string(begin) + ".." + std::to_string(end));
        }
      }
    }
  }
}

// The result does not depend on the KV cache's block size either (positions are found, not assumed).
TEST(AttentionRows, KvBlockSizeChangesNoBit) {
  KernelSettingsGuard guard;
  std::vector<std::string> levels = testing::simd_levels();
  levels.push_back("scalar");
  const Case base{64, 8, 2, 1, 70, 20};
  for (const std::string& level : levels) {
    set_isa(level);
    std::vector<float> first;
    for (int block_size : {1, 16, 64, 90, 256}) {
      Case c = base;
      c.block_size = block_size;
      const std::vector<float> out = dispatched_rows(Problem(c, 600));
      if (first.empty()) {
        first = out;
      } else {
        expect_bitwise(out, first.data(), level + " " + c.describe());
      }
    }
  }
}

TEST(AttentionRows, WritesOnlyTheQueryHeadsOfItsKvHead) {
  KernelSettingsGuard guard;
  std::vector<std::string> levels = testing::simd_levels();
  levels.push_back("scalar");
  const Case c{64, 8, 4, 16, 10, 5};
  const Problem p(c, 700);
  for (const std::string& level : levels) {
    set_isa(level);
    std::vector<float> out(static_cast<size_t>(c.rows) * c.q_row(), NAN);
    attention_rows(p.q.data(), c.rows, c.first_pos, p.keys.view(c.block_size), p.values.view(c.block_size), c.n_heads,
                   c.n_kv_heads, c.head_dim, 2, out.data());
    for (int i = 0; i < c.rows; ++i) {
      for (int h = 0; h < c.n_heads; ++h) {
        const float value = out[static_cast<size_t>(i) * c.q_row() + static_cast<size_t>(h * c.head_dim)];
        EXPECT_EQ(std::isnan(value), h / c.group() != 2) << level << " row " << i << " head " << h;
      }
    }
  }
}

TEST(AttentionRows, RejectsBadArguments) {
  std::vector<float> buffer(256, 1.0f);
  const float* block = buffer.data();
  const KvBlocks kv{&block, 4, 16};
  float* out = buffer.data();
  EXPECT_THROW(attention_rows(buffer.data(), -1, 0, kv, kv, 2, 1, 8, 0, out), Error);
  EXPECT_THROW(attention_rows(buffer.data(), 1, -1, kv, kv, 2, 1, 8, 0, out), Error);
  EXPECT_THROW(attention_rows(buffer.data(), 1, 0, kv, kv, 3, 2, 8, 0, out), Error);
  EXPECT_THROW(attention_rows(buffer.data(), 1, 0, kv, kv, 2, 1, 8, 1, out), Error);
  EXPECT_THROW(attention_rows(buffer.data(), 1, 0, kv, kv, 2, 1, 0, 0, out), Error);
  EXPECT_THROW(attention_rows(buffer.data(), 1, 0, KvBlocks{&block, 0, 16}, kv, 2, 1, 8, 0, out), Error);
  EXPECT_NO_THROW(attention_rows(buffer.data(), 0, 5, kv, kv, 2, 1, 8, 0, out));
}

}  // namespace
}  // namespace llama31::kernels
