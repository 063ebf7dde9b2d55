// llama31 quantize: writes a quantized copy of a model folder in a published layout (AWQ INT4, FP8), or
// a GGUF file of llama.cpp's quantized types.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "model_files/quantize_folder.h"
#include "util/error.h"

namespace llama31::cli {
namespace {

struct QuantizeOptions {
  std::string model_dir;
  std::string output;
  std::string type = "int4-g128";
};

void run_quantize(const QuantizeOptions& options) {
  // llama.cpp's block types have no Hugging Face layout: they are written as GGUF, as convert does.
  if (const auto gguf_type = gguf_file_type_from_name(options.type);
      gguf_type && *gguf_type != GgufFileType::F32 && *gguf_type != GgufFileType::F16 && *gguf_type != GgufFileType::BF16) {
    write_gguf_file(options.model_dir, options.output, *gguf_type);
    return;
  }
  const QuantizeType type = quantize_type_from_option(options.type);
  const ModelFolder source = ModelFolder::open(options.model_dir);
  const QuantizeReport report = quantize_folder(source, options.output, type, /*show_progress=*/true);
  std::printf("wrote %s (%s, %d linear layers quantized, %.1f MB of weights from %.1f MB)\n", options.output.c_str(),
              std::string(quantize_type_name(type)).c_str(), report.layers_quantized,
              static_cast<double>(report.bytes_written) / 1e6, static_cast<double>(source.weights.total_bytes()) / 1e6);
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto options = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "quantize", "Write a quantized copy of a model folder in a published layout (loads in llama31 and transformers)");
  cmd->add_option("-m,--model", options->model_dir, "Unquantized Hugging Face model folder")->required();
  cmd->add_option("-o,--output", options->output, "Output folder (absent or empty), or FILE.gguf for the GGUF types")
      ->required();
  cmd->add_option("--type", options->type,
                  "int4-g128: AWQ GEMM layout, 4-bit groups of 128 with zero points, every layer linear; "
                  "fp8: fbgemm_fp8 layout as Meta's FP8 checkpoints, e4m3 MLP weights with per-channel scales; "
                  "q8_0, q4_0, q4_k_m: a GGUF file as llama-quantize writes it (as `convert --type`)")
      ->capture_default_str();
  cmd->callback([options] { run_quantize(*options); });
}

}  // namespace llama31::cli
