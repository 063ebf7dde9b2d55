// Internal: the NEON kernels for Q8_0 and Q4_0 weights (both row paths), used by matmul_neon.cpp. Per
// block of 32 the int8 products are exact integers: SDOT (vdotq_s32) where the CPU has the dot-product
// extension (int8_neon_dotprod.cpp, chosen at run time from HWCAP_ASIMDDP), else widening multiplies
// (vmull_s8 / vmlal_s8 into 16 bits, vpadalq_s16 into 32). Only for AArch64 builds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llama31::kernels::neon {

// Floats of scratch for `rows` rows of prepared x (each row the same size, one after another), and the
// preparation: each row quantized per block of 32 with the same integers and scales as
// scalar::quantize_activations_q8, bit for bit.
size_t int8_scratch(int rows, int in);
const float* int8_prepare(const float* x, int rows, int in, float* scratch);
// scalar::quantize_activations_q8 vectorized (the same bits); n a multiple of 32.
void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales);

// y[r][o] for o in [o_begin, o_end), any number of rows, from prepared x; the SDOT kernels when the CPU
// has them.
void q8_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy);
void q4_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy);

// Whether the CPU has SDOT (getauxval(AT_HWCAP) & HWCAP_ASIMDDP).
bool cpu_has_dotprod();

// The SDOT kernels (int8_neon_dotprod.cpp, compiled for armv8.2-a+dotprod): call only when
// cpu_has_dotprod().
void q8_0_rows_dotprod(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                       size_t ldy);
void q4_0_rows_dotprod(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                       size_t ldy);

}  // namespace llama31::kernels::neon
