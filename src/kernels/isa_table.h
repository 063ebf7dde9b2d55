// Internal: the table of kernel entry points one instruction-set level provides, and the tables of
// the levels compiled into this library. dispatch.cpp picks one and adds threading around matmul.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/attention_tiles.h"
#include "kernels/kernels.h"
#include "util/dtype.h"

namespace llama31::kernels {

// Output rows of W are split into fixed-size chunks that threads share out; a chunk never depends on
// the thread count, and every kernel computes each output element in an order that does not depend on
// where the chunk starts, so results are bitwise the same for any number of threads.
inline constexpr int kMatmulChunk = 64;

// Up to this many rows of x, matmul reads W from memory once for all rows (matrix-vector kernel, four
// rows per pass over each chunk of W, later passes from cache); above it uses the register-blocked
// matrix-matrix kernel. A decode batch of this many sequences costs one pass over the weights.
inline constexpr int kSmallRows = 16;

struct IsaKernels {
  const char* name;
  // Floats of scratch the small-rows kernel wants for rearranged x (0: it reads x as given).
  size_t (*small_rows_scratch)(int rows, int in, DType w_type);
  // Rearranges x into scratch when small_rows_scratch asked for it; returns what to pass to
  // small_rows_range as x.
  const float* (*small_rows_prepare)(const float* x, int rows, int in, DType w_type, float* scratch);
  // y[r][o] for o in [o_begin, o_end), rows <= kSmallRows; y has row stride ldy.
  void (*small_rows_range)(const float* prepared_x, int rows, const void* w, DType w_type, int in,
                           int o_begin, int o_end, float* y, size_t ldy);
  // The same two steps for the many-rows kernel: scratch wanted (0: x as given), and the rearranging.
  // Prepared rows are independent and evenly sized (scratch for r rows is r times that for one, row r at
  // r times one row's floats), so dispatch prepares slices of rows on several threads.
  size_t (*many_rows_scratch)(int rows, int in, DType w_type);
  const float* (*many_rows_prepare)(const float* x, int rows, int in, DType w_type, float* scratch);
  // Same for any number of rows, from what many_rows_prepare returned.
  void (*many_rows_range)(const float* prepared_x, int rows, const void* w, DType w_type, int in, int o_begin,
                          int o_end, float* y, size_t ldy);
  void (*rmsnorm)(const float* x, const float* weight, int n, float eps, float* out);
  void (*rope)(float* x, int n_heads, int head_dim, const float* cos, const float* sin);
  void (*softmax)(float* x, int n);
  void (*silu_mul)(const float* gate, const float* up, int n, float* out);
  void (*attention)(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
                    int n_kv_heads, int head_dim, float* out, float* scratch);
  // Causal attention of a block of consecutive query rows, key tile by key tile (attention_tiles.h);
  // scratch: attention_rows_scratch(rows, n_heads / n_kv_heads, head_dim) floats.
  void (*attention_rows)(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                         int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out, float* scratch);
  float (*dot)(const float* a, const float* b, int n);
  // XOR of the 64-bit words of p[0, n) (the last partial word zero-padded), reading with the widest
  // loads the level has: read_sweep's inner loop. Narrow loads under-read this machine's memory (16-byte
  // loads reached 12-16 GB/s on two cores where 64-byte ones reached 22-30).
  uint64_t (*xor_words)(const std::byte* p, size_t n);
};

const IsaKernels& scalar_kernels();
const IsaKernels& avx2_kernels();
const IsaKernels& avx512_kernels();
const IsaKernels& neon_kernels();  // AArch64 builds only (matmul_neon.cpp)

namespace scalar {
// The scalar matmul over a range of output rows (the scalar level's entry for both row paths; Q8_0
// quantizes each row of x per block, as the SIMD levels do; the K-quants per super-block, kquant.h).
void matmul_range(const float* x, int rows, const void* w, DType w_type, int in, int o_begin, int o_end,
                  float* y, size_t ldy);
}  // namespace scalar

}  // namespace llama31::kernels
