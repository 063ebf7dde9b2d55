// Internal: the tiled causal attention for blocks of query rows (kernels::attention_rows), shared by its
// scalar twin (attention_scalar.cpp) and the SIMD levels (attention_avx512.cpp, attention_avx2.cpp).
//
// How every level computes it, so that a query's result never depends on which other rows share its block:
// - Keys are visited in tiles at fixed absolute positions: tile t holds positions [t * kAttentionTile,
//   (t + 1) * kAttentionTile). A query at position p visits tiles 0 .. p / kAttentionTile, in order, and
//   within a tile the positions <= p.
// - Per query and tile, flash-attention style: scores s_j = (q . k_j) * scale with the dot product summed
//   over dimensions in order; tile maximum; running max m' = max(m, tile max); alpha = exp(m - m');
//   p_j = exp(s_j - m'); running sum l = l * alpha + (p_0 + p_1 + ...) in key order; accumulator
//   acc = acc * alpha, then acc += p_j * v_j in key order. At the end out = acc / l.
// - SIMD levels hold 8 or 16 queries in the lanes of a vector and do exactly these steps lane by lane, so
//   which lane (which block) a query sits in changes nothing; masked-out keys leave the lane untouched.
// Only call a SIMD level's function after checking that the CPU supports it (dispatch.cpp does).
#pragma once

#include <cstddef>

#include "kernels/kernels.h"

namespace llama31::kernels {

// Key positions per tile. Part of the numerics (the tile maximum and partial sums follow it): changing it
// changes results in the last bits, never their independence from the block.
inline constexpr int kAttentionTile = 64;

// Queries per vector on the widest level; the scratch is sized for it.
inline constexpr int kAttentionLanes = 16;

// Floats of scratch any level's attention_rows needs for `rows` query rows of `group` heads each:
// the queries transposed, one tile of scores, and the running max / sum / rescale factor per query.
inline size_t attention_rows_scratch(int rows, int group, int head_dim) {
  const size_t queries = static_cast<size_t>(rows) * static_cast<size_t>(group);
  const size_t padded = (queries + kAttentionLanes - 1) / kAttentionLanes * kAttentionLanes;
  return padded * static_cast<size_t>(head_dim) + static_cast<size_t>(kAttentionTile) * kAttentionLanes +
         3 * padded + kAttentionLanes;
}

// The level entries behind kernels::attention_rows (same arguments, plus scratch of at least
// attention_rows_scratch(rows, n_heads / n_kv_heads, head_dim) floats). Arguments are already checked.
namespace scalar {
void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch);
}  // namespace scalar
namespace avx512 {
void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch);
}  // namespace avx512
namespace avx2 {
void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch);
}  // namespace avx2

}  // namespace llama31::kernels
