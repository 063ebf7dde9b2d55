// llama31 generate: raw-text completion (BOS + prompt, no chat template), streamed to stdout.
#include <cstdio>
#include <optional>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt;
  int n_predict = 128;
  std::optional<double> temperature, top_p, min_p, repeat_penalty;
  std::optional<int> top_k;
  double presence_penalty = 0, frequency_penalty = 0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ids_json = false;
  bool no_bos = false;
};

void run_generate(const GenerateOptions& o) {
  auto model = load_model(o.model);
  std::vector<TokenId> prompt;
  if (!o.no_bos) prompt.push_back(model->bos_id());
  const auto text_ids = model->tokenizer().encode(o.prompt, /*parse_special=*/false);
  prompt.insert(prompt.end(), text_ids.begin(), text_ids.end());

  GenerationRequest request;
  request.prompt = prompt;
  request.max_new_tokens = o.n_predict;
  request.stop_ids = model->stop_ids();
  request.stop_strings = o.stop;
  // Defaults come from generation_config.json (Llama 3.1: temperature 0.6, top_p 0.9); flags override.
  SamplingParams& s = request.sampling;
  s = SamplingParams::from_generation_config(model->folder().generation);
  if (o.temperature) s.temperature = *o.temperature;
  if (o.top_p) s.top_p = *o.top_p;
  if (o.top_k) s.top_k = *o.top_k;
  if (o.min_p) s.min_p = *o.min_p;
  if (o.repeat_penalty) s.repetition_penalty = *o.repeat_penalty;
  s.presence_penalty = o.presence_penalty;
  s.frequency_penalty = o.frequency_penalty;
  s.seed = o.seed ? *o.seed : std::random_device{}();
  s.validate();

  KvCache cache(model->config(), context_size(o.model, model->config(),
                                              static_cast<long long>(prompt.size()) + o.n_predict));
  const auto result = generate(*model, cache, request, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::fputc('\n', stdout);
  if (o.ids_json) std::printf("%s\n", nlohmann::json(result.tokens).dump().c_str());
  std::fflush(stdout);  // the completion before the statistics, also when both go to one pipe
  const double n = static_cast<double>(result.tokens.size());
  std::fprintf(stderr,
               "llama31: prompt %zu tokens in %.3f s (%.1f tok/s); generated %zu tokens in %.3f s (%.1f tok/s); "
               "finish: %s; seed %llu\n",
               prompt.size(), result.prefill_seconds,
               static_cast<double>(prompt.size()) / std::max(result.prefill_seconds, 1e-9), result.tokens.size(),
               result.decode_seconds, n / std::max(result.decode_seconds, 1e-9), finish_reason_name(result.finish),
               static_cast<unsigned long long>(s.seed));
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* sub = app.add_subcommand("generate", "Complete raw text (BOS + prompt, no chat template), streaming to stdout");
  add_model_options(*sub, o->model);
  sub->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  sub->add_option("-n,--n-predict", o->n_predict, "Tokens to generate at most")->capture_default_str()
      ->check(whole_number_at_least(0));
  sub->add_option("--temp,--temperature", o->temperature, "Temperature; 0 is greedy (default: generation_config.json)");
  sub->add_option("--top-p", o->top_p, "Nucleus sampling mass (default: generation_config.json)");
  sub->add_option("--top-k", o->top_k, "Keep the K most likely tokens; 0 is off");
  sub->add_option("--min-p", o->min_p, "Drop tokens below min-p times the best one's probability");
  sub->add_option("--repeat-penalty", o->repeat_penalty, "Repetition penalty (1 is off)");
  sub->add_option("--presence-penalty", o->presence_penalty, "Presence penalty (OpenAI)");
  sub->add_option("--frequency-penalty", o->frequency_penalty, "Frequency penalty (OpenAI)");
  sub->add_option("-s,--seed", o->seed, "Random seed (default: random, printed at the end)");
  sub->add_option("--stop", o->stop, "Stop string (repeatable); generation also stops on every eos id of the model");
  sub->add_flag("--ids-json", o->ids_json, "Also print the generated token ids as a JSON array on the last line");
  sub->add_flag("--no-bos", o->no_bos, "Do not put the model's BOS token before the prompt");
  sub->callback([o] { run_generate(*o); });
}

}  // namespace llama31::cli
