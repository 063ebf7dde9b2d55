// `llama31 memory`: weights, KV cache and training memory of Llama 3.1, with every assumption printed.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "planner/memory_planner.h"

namespace llama31::cli {

void add_memory_command(CLI::App& app) {
  struct Options {
    planner::MemoryRequest request;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand(
      "memory",
      "Memory needed by Llama 3.1: weights per precision, KV cache per context, training "
      "estimates (full AdamW, LoRA, QLoRA), compared with the release's tables");
  command->add_option("--model", options->request.model,
                      "8b, 70b, 405b (built-in configs) or a folder holding config.json")
      ->capture_default_str();
  command->add_option("--dtype", options->request.dtype,
                      "weight precision for the inference totals: bf16, fp16, fp8, int4 (or fp32)")
      ->capture_default_str();
  command
      ->add_option("--context", options->request.contexts,
                   "context length(s) in tokens, comma separated; the first is also the training "
                   "sequence length (default: the release's 1024,16000,128000; 2048 for training)")
      ->delimiter(',');
  command->add_option("--batch", options->request.batch, "sequences in the batch")
      ->capture_default_str();
  command->add_flag("--json", options->json, "print the report as JSON");
  command->callback([options] {
    const planner::MemoryReport report = planner::plan_memory(options->request);
    if (options->json) {
      std::fputs((planner::report_to_json(report).dump(2) + "\n").c_str(), stdout);
    } else {
      std::fputs(planner::format_report_text(report).c_str(), stdout);
    }
  });
}

}  // namespace llama31::cli
