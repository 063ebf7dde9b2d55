// NEON Q8_0 / Q4_0 kernels with the dot-product extension (compiled with -march=armv8.2-a+dotprod, see
// cmake/KernelIsaSources.cmake): per block of 32, two SDOT instructions sum the 32 int8 products into four
// int32 lanes (each at most 8 * 128 * 127, exact). Reached only when the CPU reports HWCAP_ASIMDDP.
#include <arm_neon.h>

#include "kernels/int8_neon.h"
#include "kernels/int8_neon_kernels.h"

namespace llama31::kernels::neon {
namespace {

struct SdotBlock {
  static int32x4_t block(int8x16_t w_first, int8x16_t w_second, int8x16_t x_first, int8x16_t x_second) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w_first, x_first), w_second, x_second);
  }
};

}  // namespace

void q8_0_rows_dotprod(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                       size_t ldy) {
  int8_rows<SdotBlock, DType::Q8_0>(prepared, rows, w, in, o_begin, o_end, y, ldy);
}

void q4_0_rows_dotprod(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y,
                       size_t ldy) {
  int8_rows<SdotBlock, DType::Q4_0>(prepared, rows, w, in, o_begin, o_end, y, ldy);
}

}  // namespace llama31::kernels::neon
