// NEON Q8_0 / Q4_0 kernels without the dot-product extension, the activation quantizer they share with
// the SDOT kernels, and the run-time choice between the two. Per block of 32: vmull_s8 / vmlal_s8 multiply
// weights by x into 16-bit lanes holding two products each (at most 2 * 128 * 127 = 32512, no overflow),
// vpaddlq_s16 / vpadalq_s16 add pairs of those into four int32 lanes; then as int8_neon_kernels.h says.
#include "kernels/int8_neon.h"

#include <arm_neon.h>
#include <sys/auxv.h>

#include "kernels/int8_neon_kernels.h"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

namespace llama31::kernels::neon {
namespace {

struct WideningBlock {
  static int32x4_t block(int8x16_t w_first, int8x16_t w_second, int8x16_t x_first, int8x16_t x_second) {
    int16x8_t low = vmull_s8(vget_low_s8(w_first), vget_low_s8(x_first));
    low = vmlal_s8(low, vget_low_s8(w_second), vget_low_s8(x_second));
    int16x8_t high = vmull_high_s8(w_first, x_first);
    high = vmlal_high_s8(high, w_second, x_second);
    return vpadalq_s16(vpaddlq_s16(low), high);
  }
};

}  // namespace

bool cpu_has_dotprod() {
  static const bool has = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return has;
}

void quantize_activations_q8(const float* x, int n, int8_t* q, float* scales) {
  for (int b = 0; b < n / 32; ++b) {
    const float* block = x + static_cast<size_t>(b) * 32;
    float32x4_t v[8];
    for (int i = 0; i < 8; ++i) v[i] = vld1q_f32(block + 4 * i);
    // maxNum ignores NaN as the scalar std::max chain does.
    float32x4_t largest = vabsq_f32(v[0]);
    for (int i = 1; i < 8; ++i) largest = vmaxnmq_f32(largest, vabsq_f32(v[i]));
    const float max_abs = vmaxnmvq_f32(largest);
    const float inverse = max_abs > 0.0f ? 127.0f / max_abs : 0.0f;
    scales[b] = max_abs / 127.0f;
    // The same products as the scalar version, rounded to nearest even by the conversion.
    int16x8_t halves[4];
    for (int k = 0; k < 4; ++k) {
      const int32x4_t first = vcvtnq_s32_f32(vmulq_n_f32(v[2 * k], inverse));
      const int32x4_t second = vcvtnq_s32_f32(vmulq_n_f32(v[2 * k + 1], inverse));
      halves[k] = vcombine_s16(vmovn_s32(first), vmovn_s32(second));
    }
    int8_t* out = q + static_cast<size_t>(b) * 32;
    vst1q_s8(out, vcombine_s8(vmovn_s16(halves[0]), vmovn_s16(halves[1])));
    vst1q_s8(out + 16, vcombine_s8(vmovn_s16(halves[2]), vmovn_s16(halves[3])));
  }
}

size_t int8_scratch(int rows, int in) { return static_cast<size_t>(rows) * int8_row_floats(in); }

const float* int8_prepare(const float* x, int rows, int in, float* scratch) {
  const size_t n_in = static_cast<size_t>(in);
  for (int r = 0; r < rows; ++r) {
    float* row = scratch + static_cast<size_t>(r) * int8_row_floats(in);
    quantize_activations_q8(x + static_cast<size_t>(r) * n_in, in, reinterpret_cast<int8_t*>(row), row + n_in / 4);
  }
  return scratch;
}

void q8_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  if (cpu_has_dotprod()) {
    q8_0_rows_dotprod(prepared, rows, w, in, o_begin, o_end, y, ldy);
  } else {
    int8_rows<WideningBlock, DType::Q8_0>(prepared, rows, w, in, o_begin, o_end, y, ldy);
  }
}

void q4_0_rows(const float* prepared, int rows, const void* w, int in, int o_begin, int o_end, float* y, size_t ldy) {
  if (cpu_has_dotprod()) {
    q4_0_rows_dotprod(prepared, rows, w, in, o_begin, o_end, y, ldy);
  } else {
    int8_rows<WideningBlock, DType::Q4_0>(prepared, rows, w, in, o_begin, o_end, y, ldy);
  }
}

}  // namespace llama31::kernels::neon
