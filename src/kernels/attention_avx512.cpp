// AVX-512 attention_rows: causal attention for a block of consecutive query rows of one sequence, one kv
// head and the query heads of its group (scheme and determinism rules in attention_tiles.h).
//
// Layout of the work: the block's queries (row i, head g of the group: query i * group + g) sit 16 to a
// vector, one query per lane, their dimensions transposed once per call. For each tile of 64 keys:
//   scores   for each vector of queries, 8 keys at a time: acc_j += q[d] (16 queries) * k_j[d] (broadcast),
//            d in order, so each lane is a plain in-order dot product whatever its neighbours;
//   softmax  lane-wise over the tile's keys (vertical max / sum, no horizontal reductions);
//   values   acc[query][d] += p_j * v_j[d] for 4 queries x 64 dimensions in registers.
// The tile's keys and values are read from the cache once per call and reused by every query of the
// group and block from L1/L2; the old per-row kernel re-read them for each query head and row.
// The multiply-adds are the same in number (2 * head_dim per query and key); what goes is the per-key
// horizontal sum of the dot products and the per-row softmax passes over an n_ctx scratch.
// The fixed-count loops over accumulators carry `#pragma GCC unroll`: -O2 does not unroll them fully by
// itself, and the accumulator arrays then live on the stack (3x slower).
// GCC 12 reports its own AVX-512 intrinsics (which start from an undefined register on purpose) as
// using uninitialized values once inlined; the pragma must precede the header to cover its lines.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "kernels/attention_tiles.h"
#include "kernels/exp_avx512.h"

namespace llama31::kernels::avx512 {
namespace {

constexpr int kLanes = 16;
constexpr int kTile = kAttentionTile;
constexpr int kKeysPerPass = 8;     // score accumulators per vector of queries
constexpr int kValueQueries = 4;    // queries per pass of the value accumulation
constexpr int kValueWidth = 64;     // dimensions per pass of the value accumulation (4 vectors)
static_assert(kTile % kKeysPerPass == 0);
static_assert(kLanes <= kAttentionLanes);

inline __mmask16 tail_mask(int count) {
  if (count <= 0) return 0;
  return count >= 16 ? static_cast<__mmask16>(0xffffu) : static_cast<__mmask16>((1u << count) - 1u);
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

// qt[vector][d][lane] = dimension d of query vector * 16 + lane (0 in padding lanes): blocks of 16
// queries x 16 dimensions transposed in registers, in four rounds; round `bit` swaps that bit of the row
// index with the same bit of the column index (two-source permutes of row pairs 2^bit apart).
void transpose_queries(const Block& b, int vectors, float* qt) {
  __m512i low[4], high[4];
  for (int bit = 0; bit < 4; ++bit) {
    const int step = 1 << bit;
    alignas(64) int low_index[16], high_index[16];
    for (int c = 0; c < 16; ++c) {
      const bool upper = (c & step) != 0;  // column c of the new row pair comes from the second row
      low_index[c] = upper ? 16 + c - step : c;
      high_index[c] = upper ? 16 + c : c + step;
    }
    low[bit] = _mm512_load_si512(low_index);
    high[bit] = _mm512_load_si512(high_index);
  }
  for (int vec = 0; vec < vectors; ++vec) {
    for (int d0 = 0; d0 < b.head_dim; d0 += 16) {
      const __mmask16 mask = tail_mask(b.head_dim - d0);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const int query = vec * kLanes + i;
        r[i] = query < b.queries ? _mm512_maskz_loadu_ps(mask, b.query_of(query) + d0) : _mm512_setzero_ps();
      }
#pragma GCC unroll 4
      for (int bit = 0; bit < 4; ++bit) {
#pragma GCC unroll 16
        for (int x = 0; x < 16; ++x) {
          if ((x & (1 << bit)) != 0) continue;
          const __m512 first = r[x];
          const __m512 second = r[x + (1 << bit)];
          r[x] = _mm512_permutex2var_ps(first, low[bit], second);
          r[x + (1 << bit)] = _mm512_permutex2var_ps(first, high[bit], second);
        }
      }
      float* dst = qt + (static_cast<size_t>(vec) * static_cast<size_t>(b.head_dim) + static_cast<size_t>(d0)) * kLanes;
      const int dims = std::min(16, b.head_dim - d0);
      for (int j = 0; j < dims; ++j) _mm512_storeu_ps(dst + static_cast<size_t>(j) * kLanes, r[j]);
    }
  }
}

// Scores of one vector of queries against the tile's keys [0, valid), masked to -inf where a key lies
// after the lane's position (and for keys at or past `valid`); returns their lane-wise maximum.
// qt: this vector's queries transposed, [head_dim][16]. scores: [kTile][16].
__m512 tile_scores(const Block& b, const float* qt, const float* const* key_rows, int valid, __m512i pos,
                   int tile_start, float* scores) {
  const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
  const __m512 scale = _mm512_set1_ps(b.scale);
  __m512 tile_max = minus_inf;
  for (int j0 = 0; j0 < valid; j0 += kKeysPerPass) {
    // Keys past `valid` are not read: their pass reuses the last valid row and masks the result.
    const float* rows[kKeysPerPass];
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) rows[j] = key_rows[std::min(j0 + j, valid - 1)];
    __m512 acc[kKeysPerPass];
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) acc[j] = _mm512_setzero_ps();
    for (int d = 0; d < b.head_dim; ++d) {
      const __m512 qd = _mm512_loadu_ps(qt + static_cast<size_t>(d) * kLanes);
#pragma GCC unroll 8
      for (int j = 0; j < kKeysPerPass; ++j) acc[j] = _mm512_fmadd_ps(qd, _mm512_set1_ps(rows[j][d]), acc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < kKeysPerPass; ++j) {
      // Lane sees key j0 + j when its position is at or after the key's.
      const __mmask16 visible = j0 + j < valid
                                    ? _mm512_cmp_epi32_mask(pos, _mm512_set1_epi32(tile_start + j0 + j), _MM_CMPINT_NLT)
                                    : static_cast<__mmask16>(0);
      const __m512 s = _mm512_mask_mul_ps(minus_inf, visible, acc[j], scale);
      _mm512_storeu_ps(scores + static_cast<size_t>(j0 + j) * kLanes, s);
      tile_max = _mm512_max_ps(tile_max, s);
    }
  }
  return tile_max;
}

// acc (in out) = acc * alpha + sum_j p_j v_j over each query's visible keys, for R queries (lanes) of one
// vector; dimensions 64 at a time, keys in order.
template <int R>
void accumulate_values(const Block& b, const float* probs, const int* lane, const int* count, const float* alpha,
                       float* const* outs, const float* const* value_rows) {
  int j_common = count[0], j_end = count[0];
  for (int r = 1; r < R; ++r) {
    j_common = std::min(j_common, count[r]);
    j_end = std::max(j_end, count[r]);
  }
  for (int d0 = 0; d0 < b.head_dim; d0 += kValueWidth) {
    __mmask16 masks[4];
#pragma GCC unroll 8
    for (int c = 0; c < 4; ++c) masks[c] = tail_mask(b.head_dim - d0 - 16 * c);
    __m512 acc[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(masks[c], outs[r] + d0 + 16 * c), a);
    }
    // Key j into every query that sees it (all of them when `every`).
    auto add_key = [&](int j, bool every) {
      const float* v_row = value_rows[j] + d0;
      __m512 v[4];
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) v[c] = _mm512_maskz_loadu_ps(masks[c], v_row + 16 * c);
      const float* p_row = probs + static_cast<size_t>(j) * kLanes;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (!every && j >= count[r]) continue;
        const __m512 p = _mm512_set1_ps(p_row[lane[r]]);
#pragma GCC unroll 8
        for (int c = 0; c < 4; ++c) acc[r][c] = _mm512_fmadd_ps(p, v[c], acc[r][c]);
      }
    };
    // The keys all R queries see, then the diagonal ones only some of them see.
    for (int j = 0; j < j_common; ++j) add_key(j, true);
    for (int j = j_common; j < j_end; ++j) add_key(j, false);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int c = 0; c < 4; ++c) _mm512_mask_storeu_ps(outs[r] + d0 + 16 * c, masks[c], acc[r][c]);
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

  // Scratch: queries transposed [vector][head_dim][16], one tile of scores [kTile][16], and per query the
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
      int lane_pos[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const int query = vec * kLanes + l;
        lane_pos[l] = query < b.queries ? first_pos + query / group : -1;  // -1: a padding lane, never visible
      }
      const __m512i pos = _mm512_loadu_si512(lane_pos);
      const __mmask16 active = _mm512_cmp_epi32_mask(pos, _mm512_set1_epi32(tile_start), _MM_CMPINT_NLT);
      if (active == 0) continue;
      const float* qt_vec = qt + static_cast<size_t>(vec) * dim * kLanes;
      const __m512 tile_max = tile_scores(b, qt_vec, key_rows, valid, pos, tile_start, scores);

      // Online softmax, lane by lane; lanes that see none of the tile keep their state.
      float* m_vec = running_max + static_cast<size_t>(vec) * kLanes;
      float* l_vec = running_sum + static_cast<size_t>(vec) * kLanes;
      const __m512 m_old = _mm512_loadu_ps(m_vec);
      const __m512 m_new = _mm512_mask_max_ps(m_old, active, m_old, tile_max);
      const __m512 a = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), active, exp_ps(_mm512_sub_ps(m_old, m_new)));
      __m512 tile_sum = _mm512_setzero_ps();
      for (int j = 0; j < valid; ++j) {
        float* s_row = scores + static_cast<size_t>(j) * kLanes;
        const __mmask16 visible = _mm512_cmp_epi32_mask(pos, _mm512_set1_epi32(tile_start + j), _MM_CMPINT_NLT);
        const __m512 p = _mm512_maskz_mov_ps(visible, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s_row), m_new)));
        _mm512_storeu_ps(s_row, p);
        tile_sum = _mm512_add_ps(tile_sum, p);
      }
      _mm512_storeu_ps(m_vec, m_new);
      _mm512_storeu_ps(l_vec, _mm512_mask_fmadd_ps(_mm512_loadu_ps(l_vec), active, a, tile_sum));
      _mm512_storeu_ps(alpha, a);

      // Values, kValueQueries active lanes at a time.
      int lanes[kLanes], counts[kLanes];
      float alphas[kLanes];
      float* outs[kLanes];
      int n_active = 0;
      for (int l = 0; l < kLanes; ++l) {
        if (((active >> l) & 1u) == 0) continue;
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
      switch (n_active - r) {
        case 3: accumulate_values<3>(b, scores, lanes + r, counts + r, alphas + r, outs + r, value_rows); break;
        case 2: accumulate_values<2>(b, scores, lanes + r, counts + r, alphas + r, outs + r, value_rows); break;
        case 1: accumulate_values<1>(b, scores, lanes + r, counts + r, alphas + r, outs + r, value_rows); break;
        default: break;
      }
    }
  }

  for (int k = 0; k < b.queries; ++k) {
    float* acc = b.out_of(k);
    const __m512 l = _mm512_set1_ps(running_sum[k]);
    for (int d = 0; d < head_dim; d += 16) {
      const __mmask16 mask = tail_mask(head_dim - d);
      _mm512_mask_storeu_ps(acc + d, mask, _mm512_div_ps(_mm512_maskz_loadu_ps(mask, acc + d), l));
    }
  }
}

}  // namespace llama31::kernels::avx512
