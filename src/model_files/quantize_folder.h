// llama31 quantize: writes a model folder in a published quantized layout that llama31 loads and
// transformers / vLLM load as they load hugging-quants' and Meta's checkpoints.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>

#include "model_files/model_folder.h"

namespace llama31 {

enum class QuantizeType {
  Int4G128,  // AWQ GEMM layout: 4-bit, groups of 128 inputs, f16 scales and zero points; every layer linear
  Fp8,       // fbgemm_fp8 layout: e4m3 MLP weights with per-channel scales, attention kept as stored
};

// "int4-g128" or "fp8"; option names the flag in the error.
QuantizeType quantize_type_from_option(std::string_view name, std::string_view option = "--type");
std::string_view quantize_type_name(QuantizeType type);

struct QuantizeReport {
  size_t bytes_written = 0;
  int layers_quantized = 0;
};

// Writes config.json (with quantization_config), the tokenizer and generation files, and the weights
// (sharded past 4 GiB) into out, which must be absent or empty. The source must not be a quantized
// checkpoint; a GGUF file is read as float (its block types too) and gives the tokenizer files its metadata
// stands for, rope_scaling from its rope_freqs, and kept tensors widened to f16 (int4-g128) or bf16 (fp8).
QuantizeReport quantize_folder(const ModelFolder& source, const std::filesystem::path& out, QuantizeType type,
                               bool show_progress);

}  // namespace llama31
