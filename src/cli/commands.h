// The subcommands of the llama31 binary: each file cmd_<name>.cpp adds one to the CLI11 app.
// Commands report bad input by throwing llama31::Error; main prints it on one line and exits 1.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "model_files/gguf_writer.h"

namespace llama31::cli {

void add_generate_command(CLI::App& app);
void add_score_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_info_command(CLI::App& app);
void add_tokenize_commands(CLI::App& app);  // tokenize and detokenize
void add_memory_command(CLI::App& app);
void add_make_test_model_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_compare_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_guard_command(CLI::App& app);
void add_serve_command(CLI::App& app);

// Writes a Hugging Face folder or a GGUF file as a GGUF file of this type, with progress (convert, and
// quantize's GGUF types); a note on stderr when quantized weights are quantized again.
void write_gguf_file(const std::string& model_dir, const std::string& output, GgufFileType type);
// "note: SOURCE holds Q8_0 and Q6_K weights; re-quantizing them to TARGET adds its rounding on top of
// theirs" on stderr (nothing when types is empty).
void print_requantize_note(const std::string& source, const std::vector<std::string>& types, std::string target);

}  // namespace llama31::cli
