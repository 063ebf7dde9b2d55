// llama31 convert: exports a Hugging Face Llama 3.1 folder to GGUF, the format llama.cpp loads, or rewrites
// a GGUF file as another file type (tensors already of the type asked for are copied as they are).
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "model_files/gguf_writer.h"
#include "model_files/model_folder.h"
#include "util/error.h"

namespace llama31::cli {
namespace {

struct ConvertOptions {
  std::string model_dir;
  std::string format = "gguf";
  std::string output;
  std::string type = "bf16";
};

void run_convert(const ConvertOptions& options) {
  if (options.format != "gguf") fail("--to {}: only gguf is supported", options.format);
  const std::optional<GgufFileType> type = gguf_file_type_from_name(options.type);
  if (!type) fail("--type {}: expected one of {}", options.type, gguf_file_type_names());
  write_gguf_file(options.model_dir, options.output, *type);
}

}  // namespace

void print_requantize_note(const std::string& source, const std::vector<std::string>& types, std::string target) {
  if (types.empty()) return;
  std::string names;
  for (size_t i = 0; i < types.size(); ++i) names += (i == 0 ? "" : i + 1 == types.size() ? " and " : ", ") + types[i];
  std::fprintf(stderr, "note: %s holds %s weights; re-quantizing them to %s adds its rounding on top of theirs\n",
               source.c_str(), names.c_str(), target.c_str());
  std::fflush(stderr);
}

void write_gguf_file(const std::string& model_dir, const std::string& output, GgufFileType type) {
  const ModelFolder model = ModelFolder::open(model_dir, QuantizedForm::Dense);
  // As llama-quantize's --allow-requantize warns: rounding quantized numbers again loses more than
  // quantizing the original weights once.
  std::string target(gguf_file_type_name(type));
  for (char& ch : target) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  print_requantize_note(model_dir, gguf_requantized_sources(model, type), target);
  GgufExportOptions export_options;
  export_options.type = type;
  const bool tty = isatty(fileno(stderr)) != 0;
  export_options.on_tensor = [tty](const std::string& name, size_t index, size_t count) {
    if (tty) {
      std::fprintf(stderr, "\r\033[K[%zu/%zu] %s", index + 1, count, name.c_str());
      if (index + 1 == count) std::fputc('\n', stderr);
    } else {
      std::fprintf(stderr, "[%zu/%zu] %s\n", index + 1, count, name.c_str());
    }
    std::fflush(stderr);
  };
  export_gguf(model, output, export_options);
  std::printf("wrote %s (%s, %ju bytes)\n", output.c_str(), std::string(gguf_file_type_name(type)).c_str(),
              static_cast<uintmax_t>(std::filesystem::file_size(output)));
}

void add_convert_command(CLI::App& app) {
  auto options = std::make_shared<ConvertOptions>();
  CLI::App* cmd = app.add_subcommand(
      "convert", "Convert a Hugging Face Llama 3.1 folder, or a GGUF file, to GGUF of a given type (for llama.cpp)");
  cmd->add_option("-m,--model", options->model_dir, "Hugging Face model folder or .gguf file")->required();
  cmd->add_option("--to", options->format, "Output format (gguf)")->capture_default_str();
  cmd->add_option("-o,--output", options->output, "Output file, e.g. model.gguf")->required();
  cmd->add_option("--type,--dtype", options->type,
                  "File type: bf16, f16, f32, q8_0, q4_0 or q4_k_m (quantized as llama-quantize does, with its "
                  "per-tensor types; norms stay f32)")
      ->capture_default_str();
  cmd->callback([options] { run_convert(*options); });
}

}  // namespace llama31::cli
