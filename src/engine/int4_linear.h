// The two steps an int4 checkpoint layer (AWQ, GPTQ) adds around its Q4_0 product when held as
// model_files/quantized_weights.h's int4_as_q4_0 describes: gathering the inputs into group order
// (GPTQ act-order) before, and the zero points' share after.
#pragma once

#include <cstdint>

#include "model_files/safetensors.h"

namespace llama31 {

struct Int4Extras {
  const float* offsets = nullptr;       // [groups][out]: (8 - zero) * scale
  int groups = 0;
  const int32_t* input_order = nullptr;  // [in], or null: inputs already in group order
};

// The extras stored beside "module.weight", or an Int4Extras with offsets null when the layer has none.
Int4Extras find_int4_extras(const TensorStore& store, const std::string& module);

// out[r][j] = x[r][order[j]] for rows r < rows.
void gather_inputs(const float* x, int rows, int in, const int32_t* order, float* out);

// y[r][o] += sum_g offsets[g][o] * (sum of x[r] over inputs [g * in / groups, (g + 1) * in / groups)),
// x in group order. Each row's sums and each output's terms are added in one fixed order (vectorized
// across outputs), so a row's result does not depend on the other rows.
void add_group_offsets(const float* x, int rows, int in, const Int4Extras& extras, int out, float* y);

}  // namespace llama31
