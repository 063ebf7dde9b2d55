// AWQ's activation-aware scaling (Lin et al., "AWQ", 2023, as AutoAWQ applies it to Llama) before 4-bit
// quantization: input channels that carry large activations are scaled up in the weights and the inverse
// is folded into the operation that produces them, so the function is unchanged but the salient weights
// lose less to rounding. Groups per decoder layer: q/k/v after input_layernorm, gate/up after
// post_attention_layernorm, down after up_proj. o_proj is left alone: under GQA, v_proj's rows do not map
// one to one onto o_proj's inputs (AutoAWQ skips it for the same reason).
#pragma once

#include <span>
#include <vector>

#include "model_files/model_folder.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

struct AwqScalingOptions {
  int group_size = 128;      // the int4 grid the scales are searched for (int4-g128)
  int grid_points = 20;      // alpha in {0, 1/grid, ..., 1}; alpha 0 is plain round to nearest
  int max_sample_rows = 256;  // calibration rows kept per group for the error search
  int chunk_tokens = 512;    // calibration tokens per forward pass
};

struct AwqScalingReport {
  int groups = 0;
  int calibration_tokens = 0;
  double mean_alpha = 0.0;
  // Output error of the int4 round trip over the calibration rows, summed over the groups: with the
  // chosen scales, and with round to nearest alone (alpha 0).
  double error_scaled = 0.0;
  double error_round_to_nearest = 0.0;
};

// Runs the calibration tokens through the model, picks each group's scales s = mean|x|^alpha (normalized
// by sqrt(max * min)) with the alpha whose int4-g128 round trip gives the smallest output error on the
// calibration rows, and re-stores the folder's affected tensors (in their own dtype) with the scales
// applied and folded. Progress on stderr when show_progress.
AwqScalingReport apply_awq_scaling(ModelFolder& folder, std::span<const TokenId> calibration,
                                   const AwqScalingOptions& options, bool show_progress);

}  // namespace llama31
