// Compute kernels of the forward pass. Each has a plain scalar twin (kernels/scalar.h) and SIMD
// versions chosen at run time from the CPU's features; tests compare them on random inputs.
// Threading: matmul parallelises with OpenMP over output rows; set the count with set_num_threads.
#pragma once

#include <cstddef>
#include <cstdint>
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
// integer dot products (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw), scaled and summed in fp32; the
// tolerance is then relative to the quantized x. F8_E4M3 weights (torch float8_e4m3fn bytes, no scale:
// y = sum x * e4m3 value) are widened to fp32 exactly and multiplied in fp32 (the NaN codes 0x7f and 0xff
// are not honoured: quantizers never write them).
void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y);

// The same product by the matrix-matrix (prefill) kernel for any number of rows: each row of y comes out
// bitwise the same whatever the other rows and however many there are, so prompts batched together or
// cut into chunks compute exactly what they compute alone.
void matmul_gemm(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y);

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

float dot(const float* a, const float* b, int n);

void set_num_threads(int n);
int num_threads();

// Which implementation dispatch chose: "avx512", "avx2" or "scalar". The best level the CPU supports,
// unless the environment variable LLAMA31_ISA names one (an unknown or unsupported name is an Error).
const char* active_isa();

// The levels this CPU can run, best first (always ends with "scalar").
std::vector<std::string> available_isas();

// Forces a level by name ("avx512", "avx2", "scalar"), for tests and benchmarks; throws llama31::Error
// for a name that is unknown or that this CPU cannot run. Not to be called while kernels are running.
void set_isa(std::string_view name);

}  // namespace llama31::kernels
