#include "engine/int4_linear.h"

#include <algorithm>
#include <string>
#include <vector>

#include "model_files/quantized_weights.h"
#include "util/error.h"

namespace llama31 {

Int4Extras find_int4_extras(const TensorStore& store, const std::string& module) {
  Int4Extras extras;
  const TensorView* offsets = store.find(module + kInt4OffsetsSuffix);
  if (offsets == nullptr) return extras;
  const TensorView& weight = store.get(module + ".weight");
  if (offsets->dtype != DType::F32 || offsets->shape.size() != 2 || offsets->shape[1] != weight.shape.at(0) ||
      offsets->shape[0] <= 0 || weight.shape.at(1) % offsets->shape[0] != 0) {
    fail("tensor {} has dtype {} and shape {}; expected F32 [groups dividing {}, {}]", offsets->name,
         dtype_name(offsets->dtype), offsets->shape_string(), weight.shape.at(1), weight.shape.at(0));
  }
  extras.offsets = reinterpret_cast<const float*>(offsets->data);
  extras.groups = static_cast<int>(offsets->shape[0]);
  if (const TensorView* order = store.find(module + kInt4InputOrderSuffix)) {
    if (order->dtype != DType::I32) fail("tensor {} has dtype {}, expected I32", order->name, dtype_name(order->dtype));
    order->require_shape({weight.shape.at(1)});
    const auto* values = reinterpret_cast<const int32_t*>(order->data);
    for (int64_t j = 0; j < weight.shape.at(1); ++j) {
      if (values[j] < 0 || values[j] >= weight.shape.at(1)) {
        fail("tensor {}: entry {} is not an input index below {}", order->name, j, weight.shape.at(1));
      }
    }
    extras.input_order = values;
  }
  return extras;
}

void gather_inputs(const float* x, int rows, int in, const int32_t* order, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* row = x + static_cast<size_t>(r) * in;
    float* dst = out + static_cast<size_t>(r) * in;
    for (int j = 0; j < in; ++j) dst[j] = row[order[j]];
  }
}

void add_group_offsets(const float* x, int rows, int in, const Int4Extras& extras, int out, float* y) {
  const int groups = extras.groups;
  const int group_size = in / groups;
  std::vector<float> sums(static_cast<size_t>(rows) * groups);
  for (int r = 0; r < rows; ++r) {
    for (int g = 0; g < groups; ++g) {
      const float* v = x + static_cast<size_t>(r) * in + static_cast<size_t>(g) * group_size;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int k = 0; k < group_size; ++k) s += v[k];
      sums[static_cast<size_t>(r) * groups + g] = s;
    }
  }
  // Blocks of outputs on threads (each output is independent; within one, groups in order). A decoded
  // token has one row: its offsets table (groups x out floats, ~5% of the layer's bytes) read by one
  // thread while the other waited was ~5% of an INT4 decode step.
  constexpr int kOutputBlock = 512;
  const int blocks = (out + kOutputBlock - 1) / kOutputBlock;
  const bool parallel = static_cast<size_t>(rows) * out * groups >= (size_t{1} << 16);
#pragma omp parallel for schedule(static) if (parallel)
  for (int item = 0; item < rows * blocks; ++item) {
    const int r = item / blocks;
    const int o_begin = item % blocks * kOutputBlock;
    const int o_end = std::min(out, o_begin + kOutputBlock);
    float* y_row = y + static_cast<size_t>(r) * out;
    for (int g = 0; g < groups; ++g) {
      const float s = sums[static_cast<size_t>(r) * groups + g];
      const float* off = extras.offsets + static_cast<size_t>(g) * out;
#pragma omp simd
      for (int o = o_begin; o < o_end; ++o) y_row[o] += off[o] * s;
    }
  }
}

}  // namespace llama31
