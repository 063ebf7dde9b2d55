// Compute kernels of the forward pass. Each has a plain scalar twin (kernels/scalar.h) and SIMD
// versions chosen at run time from the CPU's features; tests compare them on random inputs.
// Threading: matmul parallelises with OpenMP over output rows; set the count with set_num_threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/dtype.h"

namespace llama31::kernels {

// y[r][o] = sum_i x[r][i] * W[o][i] for r < rows, o < out.
// x: fp32 [rows][in] (row stride in), W: [out][in] row-major in dtype w_type, y: fp32 [rows][out].
// rows == 1 is the decode matrix-vector product (memory-bound); rows > 1 is prefill (compute-bound).
// Precision: fp32 products and sums, except that with BF16 weights and few rows the AVX-512 path
// holds x as two bf16 halves (16 significant bits, relative error <= 2^-17 per element), within the
// tests' tolerance of 1e-5 * sum|x_i w_i|. Q8_0 weights (in a multiple of 32): each row of x is quantized
// per block of 32 to int8 as llama.cpp does (scalar::quantize_activations_q8) and the blocks are exact
// integer dot products (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, NEON sdot), scaled and summed in fp32; the
// tolerance is then relative to the quantized x. Q4_K, Q5_K and Q6_K weights (llama.cpp's K-quant
// super-blocks, in a multiple of 256): each row of x is quantized per super-block of 256 to int8 as
// llama.cpp's Q8_K (scalar::quantize_activations_q8_k, one fp32 scale per 256), the products with the
// weights' levels and their 6- or 8-bit sub-block scales (and Q4_K / Q5_K's mins times the sub-block sums
// of x) are exact integers per super-block (AVX-512 vpdpbusd / vpmaddubsw + vpdpwssd, AVX2 vpmaddubsw +
// vpmaddwd), scaled by d * dx (and dmin * dx) and summed in fp32; the tolerance is again relative to the
// quantized x. F8_E4M3 weights (torch float8_e4m3fn bytes, no scale:
// y = sum x * e4m3 value) are widened to fp32 exactly and multiplied in fp32 (the NaN codes 0x7f and 0xff
// are not honoured: quantizers never write them).
void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y);

// The same product by the matrix-matrix (prefill) kernel for any number of rows: each row of y comes out
// bitwise the same whatever the other rows and however many there are, so prompts batched together or
// cut into chunks compute exactly what they compute alone.
void matmul_gemm(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y);

// One product of a group that multiplies the same x: y [rows][out] = x W^T, W [out][in] in w_type.
struct GemmProduct {
  const void* w;
  DType w_type;
  int out;
  float* y;
};

// matmul_gemm for several weight matrices of the same x (the q, k and v projections; gate and up), with
// the same results bit for bit: x is prepared once per weight type and one team of threads shares out
// the output chunks of all the products.
void matmul_gemm_group(const float* x, int rows, int in, std::span<const GemmProduct> products);
// The same for matmul: each product bit for bit what matmul gives it alone.
void matmul_group(const float* x, int rows, int in, std::span<const GemmProduct> products);

// The layout the active level multiplies a [out][in] matrix of w_type fastest in, for weights repacked
// once at load: on AVX-512 and AVX2, Q8_0_R16 for Q8_0 and Q4_0_R16 for Q4_0 where the shape fits
// (util/dtype.h), otherwise w_type. Every level multiplies every layout with the same numbers (NEON and
// scalar run the panels on the scalar twin).
DType packed_weight_type(DType w_type, int64_t out, int64_t in);

// Rows up to which matmul takes the matrix-vector kernel, whose per-row results do not depend on the
// number of rows either.
int small_rows();

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], as transformers' LlamaRMSNorm (fp32 math).
void rmsnorm(const float* x, const float* weight, int n, float eps, float* out);

// Rotary embedding in the Hugging Face (rotate_half) layout: for each head, dimension i pairs with
// i + head_dim/2. cos/sin hold head_dim/2 values for this position.
void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin);

// In place: x = exp(x - max) / sum.
void softmax(float* x, int n);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void silu_mul(const float* gate, const float* up, int n, float* out);

// Where one layer's cached keys (or values) live in a paged KV cache: position p at
// blocks[p / block_size] + (p % block_size) * stride, kv head h at + h * head_dim within it.
struct KvBlocks {
  const float* const* blocks;
  int block_size;
  size_t stride;
};

// One query position of grouped-query attention over n_ctx cached positions.
// q: [n_heads][head_dim]; out: [n_heads][head_dim]. Head h reads kv head h / (n_heads / n_kv_heads).
// Scale 1/sqrt(head_dim). scratch: at least n_ctx floats. Positions are visited in order, so the result
// is bitwise the same whatever the block size.
void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch);
// The same over contiguous caches: position p of kv head h at (p * kv_stride + h * head_dim).
void attention(const float* q, const float* k_cache, const float* v_cache, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, size_t kv_stride, float* out, float* scratch);

// Causal attention for a block of `rows` consecutive query positions of one sequence (prefill), for the
// query heads of one kv head: row i is position first_pos + i and attends to positions [0, first_pos + i]
// of keys / values, which must already hold every position up to first_pos + rows - 1.
// q, out: [rows][n_heads][head_dim]; only heads kv_head * group .. (kv_head + 1) * group - 1 of out are
// written (group = n_heads / n_kv_heads), so calls for different kv heads may run on different threads.
// Scale 1/sqrt(head_dim), fp32 throughout. Keys are visited in tiles of 64 positions at fixed absolute
// boundaries, each tile read once for all rows and heads of the call, with an online softmax (running
// max and sum, rescaled accumulator), so each row's result is bitwise the same whatever other rows are in
// the block: prompts cut into chunks or batched compute exactly what they compute alone. It is not
// bitwise the single-row attention above (different summation order); the engine runs both prefill and
// decode (blocks of one row) on this one.
// Reentrant; uses a per-thread scratch buffer.
void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out);

float dot(const float* a, const float* b, int n);

void set_num_threads(int n);
// Below this many multiply-adds a product runs on the calling thread (matmul, and the engine's decode
// attention): waking the team costs more.
inline constexpr size_t kParallelMinWork = size_t{1} << 18;
int num_threads();

// Reads every byte of the regions once with the thread team set above, each thread streaming its own
// contiguous share (as decode's chunks of output rows do), and returns the XOR of each region's 64-bit
// words (its last partial word zero-padded), which does not depend on the thread count. Timed by
// `llama31 bench` over the model's own weights: the read bandwidth decode is compared with.
uint64_t read_sweep(std::span<const std::span<const std::byte>> regions);

// Which implementation dispatch chose: "avx512", "avx2" (x86-64), "neon" (AArch64) or "scalar". The best
// level the CPU supports, unless the environment variable LLAMA31_ISA names one (an unknown or unsupported
// name is an Error).
const char* active_isa();

// The levels this CPU can run, best first (always ends with "scalar").
std::vector<std::string> available_isas();

// Forces a level by name ("avx512", "avx2", "neon", "scalar"), for tests and benchmarks; throws
// llama31::Error for a name that is unknown or that this CPU cannot run. Not to be called while kernels are running.
void set_isa(std::string_view name);

}  // namespace llama31::kernels
