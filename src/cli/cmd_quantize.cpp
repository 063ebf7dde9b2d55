// llama31 quantize: writes a quantized copy of a model folder or GGUF file in a published layout (AWQ INT4,
// FP8), or a GGUF file of llama.cpp's quantized types.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/awq_scaling.h"
#include "engine/generator.h"
#include "model_files/gguf_reader.h"
#include "model_files/quantize_folder.h"
#include "util/error.h"

namespace llama31::cli {
namespace {

struct QuantizeOptions {
  std::string model_dir;
  std::string output;
  std::string type = "int4-g128";
  std::string calibration;      // text file for activation-aware scaling (int4-g128)
  int calibration_tokens = 4096;
};

// AWQ's activation-aware scaling from a calibration text, applied to the folder's weights in memory.
void scale_from_calibration(ModelFolder& source, const QuantizeOptions& options) {
  std::ifstream in(options.calibration, std::ios::binary);
  if (!in) fail("--calibration {}: cannot open the file", options.calibration);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<TokenId> tokens;
  if (source.config.bos_token_id) tokens.push_back(*source.config.bos_token_id);
  const std::vector<TokenId> body = load_tokenizer(source).encode(text.str());
  tokens.insert(tokens.end(), body.begin(), body.begin() + std::min<size_t>(body.size(), options.calibration_tokens));
  if (body.empty()) fail("--calibration {}: the file holds no text", options.calibration);
  const AwqScalingReport r = apply_awq_scaling(source, tokens, AwqScalingOptions{}, /*show_progress=*/true);
  std::printf("activation-aware scaling: %d input groups, %d calibration tokens, mean alpha %.2f; int4 output error "
              "on the calibration rows %.4g of round to nearest's\n",
              r.groups, r.calibration_tokens, r.mean_alpha,
              r.error_round_to_nearest > 0 ? r.error_scaled / r.error_round_to_nearest : 1.0);
}

void run_quantize(const QuantizeOptions& options) {
  // llama.cpp's block types have no Hugging Face layout: they are written as GGUF, as convert does.
  if (const auto gguf_type = gguf_file_type_from_name(options.type);
      gguf_type && *gguf_type != GgufFileType::F32 && *gguf_type != GgufFileType::F16 && *gguf_type != GgufFileType::BF16) {
    write_gguf_file(options.model_dir, options.output, *gguf_type);
    return;
  }
  const QuantizeType type = quantize_type_from_option(options.type);
  if (!options.calibration.empty() && type != QuantizeType::Int4G128) {
    fail("--calibration: activation-aware scaling applies to --type int4-g128 only");
  }
  ModelFolder source = ModelFolder::open(options.model_dir, QuantizedForm::Dense);
  if (!options.calibration.empty() && !source.config.quantization) {
    // The scaling re-stores the weights it scales in their own dtype: float matrices only.
    for (const std::string& name : source.weights.names()) {
      if (const DType dtype = source.weights.get(name).dtype; !is_compute_dtype(dtype)) {
        fail("--calibration: {} holds {} weights ({}); activation-aware scaling needs float weights (a folder, "
             "or a bf16/f16/f32 GGUF file)",
             options.model_dir, dtype_name(dtype), name);
      }
    }
    scale_from_calibration(source, options);
  }
  if (source.is_gguf()) {  // the file's block types, read as float and rounded to the new layout
    std::vector<std::string> types;
    for (const GgufTensorInfo& t : source.gguf->tensors()) {
      std::string name(ggml_type_name(t.type));
      for (char& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      if (t.shape.size() == 2 && ggml_is_quantized(t.type) && std::find(types.begin(), types.end(), name) == types.end()) {
        types.push_back(name);
      }
    }
    print_requantize_note(options.model_dir, types, std::string(quantize_type_name(type)));
  }
  const QuantizeReport report = quantize_folder(source, options.output, type, /*show_progress=*/true);
  std::printf("wrote %s (%s, %d linear layers quantized, %.1f MB of weights from %.1f MB)\n", options.output.c_str(),
              std::string(quantize_type_name(type)).c_str(), report.layers_quantized,
              static_cast<double>(report.bytes_written) / 1e6, static_cast<double>(source.weights.total_bytes()) / 1e6);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize",
      "Write a quantized copy of a model folder or GGUF file in a published layout (loads in llama31 and transformers)");
  cmd->add_option("-m,--model", options->model_dir, "Hugging Face model folder (unquantized) or .gguf file")
      ->required();
  cmd->add_option("-o,--output", options->output, "Output folder (absent or empty), or FILE.gguf for the GGUF types")
      ->required();
  cmd->add_option("--type", options->type,
                  "int4-g128: AWQ GEMM layout, 4-bit groups of 128 with zero points, every layer linear; "
                  "fp8: fbgemm_fp8 layout as Meta's FP8 checkpoints, e4m3 MLP weights with per-channel scales; "
                  "q8_0, q4_0, q4_k_m: a GGUF file as llama-quantize writes it (as `convert --type`)")
      ->capture_default_str();
  cmd->add_option("--calibration", options->calibration,
                  "Text file: with int4-g128, scale each layer's inputs by their activations on this text before "
                  "rounding (AWQ's activation-aware scaling, folded into the norms and up_proj)");
  cmd->add_option("--calibration-tokens", options->calibration_tokens, "Tokens of the calibration text to use")
      ->check(whole_number_at_least(1))
      ->capture_default_str();
  cmd->callback([options] { run_quantize(*options); });
}

}  // namespace llama31::cli
