// AVX2 attention_rows: the AVX-512 kernel's structure (attention_avx512.cpp) with 8 queries per vector:
// per key tile, lane-wise scores (queries transposed, key dimensions broadcast), a lane-wise online
// softmax, and the values accumulated for 2 queries x 32 dimensions in registers. Scheme and determinism
// rules in attention_tiles.h. The fixed-count loops over accumulators carry `#pragma GCC unroll` so that
// the accumulator arrays stay in registers at -O2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/attention_tiles.h"
#include "kernels/exp_avx2.h"

namespace llama31::kernels::avx2 {
namespace {

constexpr int kLanes = 8;
constexpr int kTile = kAttentionTile;
constexpr int kKeysPerPass = 8;   // score accumulators per vector of queries
constexpr int kValueQueries = 2;  // queries per pass of the value accumulation
constexpr int kValueWidth = 32;   // dimensions per pass of the value accumulation (4 vectors)
static_assert(kTile % kKeysPerPass == 0);
static_assert(kLanes <= kAttentionLanes);

// Lanes [0, count) set, for maskload / maskstore.
inline __m256i lane_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Lanes whose position is at least `from`, as a float mask.
inline __m256 at_or_after(__m256i pos, int from) {
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(pos, _mm256_set1_epi32(from - 1)));
}


// Everything one call works with.
struct Block {
  int group, queries, head_dim;
  size_t row_floats;   // floats per row of q and out (n_heads * head_dim)
  size_t head_offset;  // of the group's first query head within a row
  float scale;
  const float* q;
  float* out;

  const float* query_of(int k) const {
    return q + static_cast<size_t>(k / group) * row_floats + head_offset +
           static_cast<size_t>(k % group) * static_cast<size_t>(head_dim);
  }
  float* out_of(int k) const {
    return out + static_cast<size_t>(k / group) * row_floats + head_offset +
           static_cast<size_t>(k % group) * static_cast<size_t>(head_dim);
  }
};

// qt[vector][d][lane] = dimension d of query vector * 8 + lane (0 in padding lanes): blocks of 8 queries
// x 8 dimensions transposed in registers (pairs interleaved, then quads, then 128-bit halves swapped).
void transpose_queries(const Block& b, int vectors, float* qt) {
  for (int vec = 0; vec < vectors; ++vec) {
    for (int d0 = 0; d0 < b.head_dim; d0 += 8) {
      const __m256i mask = lane_mask(b.head_dim - d0);
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        const int query = vec * kLanes + i;
        r[i] = query < b.queries ? _mm256_maskload_ps(b.query_of(query) + d0, mask) : _mm256_setzero_ps();
      }
      // t: rows 2i, 2i+1 interleaved; s: 4-row groups, element 4i+j of each 128-bit half from row j.
      __m256 t[8], s[8], out[8];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
#pragma GCC unroll 2
      for (int g = 0; g < 2; ++g) {
        s[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        s[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        out[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        out[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
      }
      float* dst = qt + (static_cast<size_t>(vec) * static_cast<size_t>(b.head_dim) + static_cast<size_t>(d0)) * kLanes;
      const int dims = std::min(8, b.head_dim - d0);
      for (int j = 0; j < dims; ++j) _mm256_storeu_ps(dst + static_cast<size_t>(j) * kLanes, out[j]);
    }
  }
}

// Scores of one vector of queries against the tile's keys [0, valid), -inf where a key lies after the
// lane's position (and for keys at or past `valid`); returns their lane-wise maximum.
// qt: this vector's queries transposed, [head_dim][8]. scores: [kTile][8].
__m256 tile_scores(const Block& b, const float* qt, const float* const* key_rows, int valid, __m256i pos,
                   int tile_start, float* scores) {
  const __m256 minus_inf = _mm256_set1_ps(-INFINITY);
  const __m256 scale = _mm256_set1_ps(b.scale);
  __m256 tile_max = minus_inf;
  for (int j0 = 0; j0 < valid; j0 += kKeysPerPass) {
    // Keys past `valid` are not read: their pass reuses the last valid row and masks the result.
    const float* rows[kKeysPerPass];
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) rows[j] = key_rows[std::min(j0 + j, valid - 1)];
    __m256 acc[kKeysPerPass];
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) acc[j] = _mm256_setzero_ps();
    for (int d = 0; d < b.head_dim; ++d) {
      const __m256 qd = _mm256_loadu_ps(qt + static_cast<size_t>(d) * kLanes);
#pragma GCC unroll 8
      for (int j = 0; j < kKeysPerPass; ++j) acc[j] = _mm256_fmadd_ps(qd, _mm256_set1_ps(rows[j][d]), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) {
      const __m256 visible = j0 + j < valid ? at_or_after(pos, tile_start + j0 + j) : _mm256_setzero_ps();
      const __m256 s = _mm256_blendv_ps(minus_inf, _mm256_mul_ps(acc[j], scale), visible);
      _mm256_storeu_ps(scores + static_cast<size_t>(j0 + j) * kLanes, s);
      tile_max = _mm256_max_ps(tile_max, s);
    }
  }
  return tile_max;
}

// acc (in out) = acc * alpha + sum_j p_j v_j over each query's visible keys, for R queries (lanes) of one
// vector; dimensions 32 at a time, keys in order.
template <int R>
void accumulate_values(const Block& b, const float* probs, const int* lane, const int* count, const float* alpha,
                       float* const* outs, const float* const* value_rows) {
  int j_common = count[0], j_end = count[0];
  for (int r = 1; r < R; ++r) {
    j_common = std::min(j_common, count[r]);
    j_end = std::max(j_end, count[r]);
  }
  for (int d0 = 0; d0 < b.head_dim; d0 += kValueWidth) {
    __m256i masks[4];
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) masks[c] = lane_mask(b.head_dim - d0 - 8 * c);
    __m256 acc[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_mul_ps(_mm256_maskload_ps(outs[r] + d0 + 8 * c, masks[c]), a);
    }
    // Key j into every query that sees it (all of them when `every`).
    auto add_key = [&](int j, bool every) {
      const float* v_row = value_rows[j] + d0;
      __m256 v[4];
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) v[c] = _mm256_maskload_ps(v_row + 8 * c, masks[c]);
      const float* p_row = probs + static_cast<size_t>(j) * kLanes;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (!every && j >= count[r]) continue;
        const __m256 p = _mm256_set1_ps(p_row[lane[r]]);
#pragma GCC unroll 8
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(p, v[c], acc[r][c]);
      }
    };
    // The keys all R queries see, then the diagonal ones only some of them see.
    for (int j = 0; j < j_common; ++j) add_key(j, true);
    for (int j = j_common; j < j_end; ++j) add_key(j, false);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) _mm256_maskstore_ps(outs[r] + d0 + 8 * c, masks[c], acc[r][c]);
    }
  }
}

}  // namespace

void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch) {
  const int group = n_heads / n_kv_heads;
  Block b{group,
          rows * group,
          head_dim,
          static_cast<size_t>(n_heads) * static_cast<size_t>(head_dim),
          static_cast<size_t>(kv_head) * static_cast<size_t>(group) * static_cast<size_t>(head_dim),
          1.0f / std::sqrt(static_cast<float>(head_dim)),
          q,
          out};
  const size_t dim = static_cast<size_t>(head_dim);
  const size_t kv_offset = static_cast<size_t>(kv_head) * dim;
  const int vectors = (b.queries + kLanes - 1) / kLanes;
  const size_t padded = static_cast<size_t>(vectors) * kLanes;

  // Scratch: queries transposed [vector][head_dim][8], one tile of scores [kTile][8], and per query the
  // running max, running sum and this tile's rescale factor.
  float* qt = scratch;
  float* scores = qt + padded * dim;
  float* running_max = scores + static_cast<size_t>(kTile) * kLanes;
  float* running_sum = running_max + padded;
  float* alpha = running_sum + padded;

  transpose_queries(b, vectors, qt);
  for (size_t k = 0; k < padded; ++k) {
    running_max[k] = -INFINITY;
    running_sum[k] = 0.0f;
    const int query = static_cast<int>(k);
    if (query < b.queries) std::fill(b.out_of(query), b.out_of(query) + dim, 0.0f);
  }

  const int last_pos = first_pos + rows - 1;
  const float* key_rows[kTile];
  const float* value_rows[kTile];
  for (int tile_start = 0; tile_start <= last_pos; tile_start += kTile) {
    const int valid = std::min(kTile, last_pos + 1 - tile_start);  // keys of this tile any query sees
    for (int j = 0; j < valid; ++j) {
      const int p = tile_start + j;
      key_rows[j] =
          keys.blocks[p / keys.block_size] + static_cast<size_t>(p % keys.block_size) * keys.stride + kv_offset;
      value_rows[j] =
          values.blocks[p / values.block_size] + static_cast<size_t>(p % values.block_size) * values.stride + kv_offset;
    }
    // Vectors whose queries all lie before the tile skip it; later vectors hold later rows.
    const int first_row = std::max(0, tile_start - first_pos);
    for (int vec = first_row * group / kLanes; vec < vectors; ++vec) {
      alignas(32) int lane_pos[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const int query = vec * kLanes + l;
        lane_pos[l] = query < b.queries ? first_pos + query / group : -1;  // -1: a padding lane, never visible
      }
      const __m256i pos = _mm256_load_si256(reinterpret_cast<const __m256i*>(lane_pos));
      const __m256 active = at_or_after(pos, tile_start);
      const int active_bits = _mm256_movemask_ps(active);
      if (active_bits == 0) continue;
      const float* qt_vec = qt + static_cast<size_t>(vec) * dim * kLanes;
      const __m256 tile_max = tile_scores(b, qt_vec, key_rows, valid, pos, tile_start, scores);

      // Online softmax, lane by lane; lanes that see none of the tile keep their state.
      float* m_vec = running_max + static_cast<size_t>(vec) * kLanes;
      float* l_vec = running_sum + static_cast<size_t>(vec) * kLanes;
      const __m256 m_old = _mm256_loadu_ps(m_vec);
      const __m256 m_new = _mm256_blendv_ps(m_old, _mm256_max_ps(m_old, tile_max), active);
      const __m256 a = _mm256_blendv_ps(_mm256_set1_ps(1.0f), exp_ps(_mm256_sub_ps(m_old, m_new)), active);
      __m256 tile_sum = _mm256_setzero_ps();
      for (int j = 0; j < valid; ++j) {
        float* s_row = scores + static_cast<size_t>(j) * kLanes;
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s_row), m_new));
        const __m256 p = _mm256_and_ps(e, at_or_after(pos, tile_start + j));
        _mm256_storeu_ps(s_row, p);
        tile_sum = _mm256_add_ps(tile_sum, p);
      }
      const __m256 l_old = _mm256_loadu_ps(l_vec);
      _mm256_storeu_ps(m_vec, m_new);
      _mm256_storeu_ps(l_vec, _mm256_blendv_ps(l_old, _mm256_fmadd_ps(l_old, a, tile_sum), active));
      _mm256_storeu_ps(alpha, a);

      // Values, kValueQueries active lanes at a time.
      int lanes[kLanes], counts[kLanes];
      float alphas[kLanes];
      float* outs[kLanes];
      int n_active = 0;
      for (int l = 0; l < kLanes; ++l) {
        if (((active_bits >> l) & 1) == 0) continue;
        lanes[n_active] = l;
        counts[n_active] = std::min(kTile, lane_pos[l] - tile_start + 1);
        alphas[n_active] = alpha[l];
        outs[n_active] = b.out_of(vec * kLanes + l);
        ++n_active;
      }
      int r = 0;
      for (; r + kValueQueries <= n_active; r += kValueQueries) {
        accumulate_values<kValueQueries>(b, scores, lanes + r, counts + r, alphas + r, outs + r, value_rows);
      }
      if (r < n_active) accumulate_values<1>(b, scores, lanes + r, counts + r, alphas + r, outs + r, value_rows);
    }
  }

  for (int k = 0; k < b.queries; ++k) {
    float* acc = b.out_of(k);
    const __m256 l = _mm256_set1_ps(running_sum[k]);
    for (int d = 0; d < head_dim; d += 8) {
      const __m256i mask = lane_mask(head_dim - d);
      _mm256_maskstore_ps(acc + d, mask, _mm256_div_ps(_mm256_maskload_ps(acc + d, mask), l));
    }
  }
}

}  // namespace llama31::kernels::avx2
