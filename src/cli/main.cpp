// llama31: run, score, benchmark and plan Llama 3.1 models. One subcommand per file in src/cli/.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"llama31: run Meta's Llama 3.1 models from Hugging Face folders and GGUF files"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "llama31 0.1.0");
  llama31::cli::add_generate_command(app);
  llama31::cli::add_score_command(app);
  llama31::cli::add_bench_command(app);
  llama31::cli::add_info_command(app);
  llama31::cli::add_tokenize_commands(app);
  llama31::cli::add_memory_command(app);
  llama31::cli::add_make_test_model_command(app);
  llama31::cli::add_convert_command(app);
  llama31::cli::add_quantize_command(app);
  llama31::cli::add_compare_command(app);
  llama31::cli::add_template_command(app);
  llama31::cli::add_chat_command(app);
  llama31::cli::add_guard_command(app);
  llama31::cli::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const llama31::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "llama31: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "llama31: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
