// Repacks a loaded model's matrices once into the layout the active kernels multiply fastest
// (kernels::packed_weight_type): on AVX-512 and AVX2, Q8_0 becomes Q8_0_R16 and Q4_0 becomes Q4_0_R16:
// panels of 16 rows that prefill multiplies without repacking a tile per call and decode streams
// whole. Same numbers, same bytes; owned copies are freed as they are replaced.
#pragma once

#include <cstddef>

#include "model_files/config.h"
#include "model_files/safetensors.h"

namespace llama31 {

struct PackedWeights {
  int tensors = 0;   // matrices repacked
  size_t bytes = 0;  // their bytes
};

// The decoder layers' linear layers and an untied lm_head (the embedding's rows are read one by one and
// stay as they are). Progress on stderr when show_progress and there is anything to repack.
PackedWeights pack_weights_for_kernels(TensorStore& weights, const LlamaConfig& config, bool show_progress);

}  // namespace llama31
