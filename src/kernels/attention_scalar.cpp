// Scalar twin of attention_rows: causal attention for a block of consecutive query rows of one sequence,
// key tile by key tile with an online softmax (the scheme is described in attention_tiles.h). The SIMD
// levels are tested against it, and it against a float64 softmax.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "kernels/attention_tiles.h"

namespace llama31::kernels::scalar {

void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch) {
  const int group = n_heads / n_kv_heads;
  const int queries = rows * group;  // query (row i, head g of the group) is number i * group + g
  const size_t dim = static_cast<size_t>(head_dim);
  const size_t row_floats = static_cast<size_t>(n_heads) * dim;  // q and out: [rows][n_heads][head_dim]
  const size_t kv_offset = static_cast<size_t>(kv_head) * dim;                 // in a cache row
  const size_t head_offset = static_cast<size_t>(kv_head) * static_cast<size_t>(group) * dim;  // in a q row
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

  // Running state per query: max m, sum l; the accumulator lives in out itself.
  float* running_max = scratch;
  float* running_sum = running_max + queries;
  float* score = running_sum + queries;  // one tile of one query
  auto query_of = [&](int k) {
    return q + static_cast<size_t>(k / group) * row_floats + head_offset + static_cast<size_t>(k % group) * dim;
  };
  auto out_of = [&](int k) {
    return out + static_cast<size_t>(k / group) * row_floats + head_offset + static_cast<size_t>(k % group) * dim;
  };
  auto row = [](const KvBlocks& kv, int p) {
    return kv.blocks[p / kv.block_size] + static_cast<size_t>(p % kv.block_size) * kv.stride;
  };
  for (int k = 0; k < queries; ++k) {
    running_max[k] = -std::numeric_limits<float>::infinity();
    running_sum[k] = 0.0f;
    std::fill(out_of(k), out_of(k) + dim, 0.0f);
  }

  const int last_pos = first_pos + rows - 1;
  for (int tile_start = 0; tile_start <= last_pos; tile_start += kAttentionTile) {
    for (int k = 0; k < queries; ++k) {
      const int pos = first_pos + k / group;
      if (pos < tile_start) continue;  // this tile lies wholly in the query's future
      const int count = std::min(kAttentionTile, pos - tile_start + 1);
      const float* qk = query_of(k);

      float tile_max = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < count; ++j) {
        const float* key = row(keys, tile_start + j) + kv_offset;
        float dot = 0.0f;
        for (size_t d = 0; d < dim; ++d) dot += qk[d] * key[d];
        score[j] = dot * scale;
        tile_max = std::max(tile_max, score[j]);
      }
      const float new_max = std::max(running_max[k], tile_max);
      const float alpha = std::exp(running_max[k] - new_max);  // 0 on the first tile (exp(-inf))
      running_max[k] = new_max;

      float tile_sum = 0.0f;
      for (int j = 0; j < count; ++j) {
        score[j] = std::exp(score[j] - new_max);
        tile_sum += score[j];
      }
      running_sum[k] = running_sum[k] * alpha + tile_sum;

      float* acc = out_of(k);
      for (size_t d = 0; d < dim; ++d) acc[d] *= alpha;
      for (int j = 0; j < count; ++j) {
        const float* value = row(values, tile_start + j) + kv_offset;
        for (size_t d = 0; d < dim; ++d) acc[d] += score[j] * value[d];
      }
    }
  }

  for (int k = 0; k < queries; ++k) {
    float* acc = out_of(k);
    for (size_t d = 0; d < dim; ++d) acc[d] /= running_sum[k];
  }
}

}  // namespace llama31::kernels::scalar
