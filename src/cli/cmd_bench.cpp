// llama31 bench: prompt-processing and generation speed, like llama-bench (pp512 / tg128).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/kernels.h"
#include "planner/memory_planner.h"
#include "util/process_memory.h"

namespace llama31::cli {

namespace {

struct BenchOptions {
  ModelOptions model;
  int n_prompt = 512;
  int n_gen = 128;
  int n_depth = 0;  // tokens already in the context when each test starts (llama-bench's -d)
  int repetitions = 3;
  bool json = false;
};

struct Stats {
  double mean = 0, stdev = 0;
};

Stats stats(const std::vector<double>& v) {
  Stats s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stdev += (x - s.mean) * (x - s.mean);
  s.stdev = v.size() > 1 ? std::sqrt(s.stdev / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

double time_seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run_bench(const BenchOptions& o) {
  const uint64_t rss_before_load = current_rss_bytes();
  auto model = load_model(o.model);
  const LlamaModel& m = model->model();
  const int ctx = context_size(o.model, model->config(), std::max(o.n_prompt, o.n_gen) + o.n_depth + 1);
  KvCache cache(model->config(), ctx);
  std::mt19937 rng(42);
  std::uniform_int_distribution<TokenId> any_token(0, model->tokenizer().vocab_size() - 1);
  std::vector<TokenId> prompt(static_cast<size_t>(o.n_prompt));
  for (auto& t : prompt) t = any_token(rng);
  std::vector<TokenId> depth(static_cast<size_t>(o.n_depth));
  for (auto& t : depth) t = any_token(rng);
  std::vector<float> logits;

  // Each test starts from a context holding the depth tokens, processed untimed.
  auto fill_depth = [&] {
    cache.clear();
    if (!depth.empty()) m.forward(depth, cache, Logits::Last, logits);
  };
  auto run_prefill = [&] { m.forward(prompt, cache, Logits::Last, logits); };
  // Warm-up: fault the mapped weights in and settle the thread pool.
  {
    cache.clear();
    const TokenId one[1] = {model->bos_id()};
    m.forward(one, cache, Logits::Last, logits);
  }
  // The read bandwidth decode is compared with: sweeps over the very bytes a decode step reads, with the
  // same threads, one after each decode step (run_decode below).
  const auto decode_reads = m.bytes_read_per_token_regions();
  size_t decode_bytes = 0;  // m.bytes_read_per_token(), from the regions already listed
  for (const auto& region : decode_reads) decode_bytes += region.size();
  // A decode step also reads the KV cache of every earlier position (fp32 keys and values, every layer):
  // on average over the tg run, depth + (n + 1) / 2 positions.
  const auto& config = model->config();
  const double kv_bytes_per_position = 2.0 * config.num_hidden_layers * config.num_key_value_heads *
                                       config.head_dim * static_cast<double>(sizeof(float));
  const double kv_bytes_per_token = kv_bytes_per_position * (o.n_depth + (o.n_gen + 1) / 2.0);
  const auto bytes_per_token = static_cast<double>(decode_bytes) + kv_bytes_per_token;
  uint64_t checksum = 0;
  // A tg run times each decode step and, right after it, one sweep over the same bytes: the steps give
  // tokens/s, the sweeps the bandwidth over the same seconds. Interleaved step by step, a drift of this
  // machine's bandwidth (tens of percent within seconds on a shared VM) moves both alike.
  struct DecodeRun {
    double step_seconds = 0, sweep_seconds = 0;
  };
  auto run_decode = [&] {
    DecodeRun run;
    TokenId t = depth.empty() ? model->bos_id() : any_token(rng);
    for (int i = 0; i < o.n_gen; ++i) {
      const TokenId one[1] = {t};
      run.step_seconds += time_seconds([&] { m.forward(one, cache, Logits::Last, logits); });
      run.sweep_seconds += time_seconds([&] { checksum += kernels::read_sweep(decode_reads); });
      t = any_token(rng);
    }
    return run;
  };
  std::vector<double> pp, tg, bandwidth, fraction;
  for (int r = 0; r < o.repetitions; ++r) {
    if (o.n_prompt > 0) {
      fill_depth();
      pp.push_back(o.n_prompt / time_seconds(run_prefill));
    }
    if (o.n_gen > 0) {
      fill_depth();
      const DecodeRun run = run_decode();
      tg.push_back(o.n_gen / run.step_seconds);
      bandwidth.push_back(static_cast<double>(decode_bytes) * o.n_gen / run.sweep_seconds);
      fraction.push_back(tg.back() * bytes_per_token / bandwidth.back());
    }
    std::fprintf(stderr, "llama31: bench repetition %d/%d done\n", r + 1, o.repetitions);
  }
  const auto& c = model->config();
  const double weight_gb = static_cast<double>(model->folder().weights.total_bytes()) / 1e9;
  std::printf("| model | size | params | threads | isa | test | t/s |\n|---|---|---|---|---|---|---|\n");
  const std::string name = fmt::format("llama {}L h{}", c.num_hidden_layers, c.hidden_size);
  const std::string at_depth = o.n_depth > 0 ? fmt::format(" @ d{}", o.n_depth) : "";
  auto row = [&](const char* test, int n, const std::vector<double>& v) {
    const Stats s = stats(v);
    std::printf("| %s | %.2f GB | %.2f B | %d | %s | %s%d%s | %.2f ± %.2f |\n", name.c_str(), weight_gb,
                static_cast<double>(c.parameter_count()) / 1e9, kernels::num_threads(), kernels::active_isa(), test,
                n, at_depth.c_str(), s.mean, s.stdev);
  };
  if (!pp.empty()) row("pp", o.n_prompt, pp);
  if (!tg.empty()) {
    row("tg", o.n_gen, tg);
    std::printf("read bandwidth: %.1f GB/s (%d threads reading the %.2f GB of weights a decode step reads, once "
                "after each decode step); with %.3f GB of KV cache per step on average -> decode limit %.2f t/s; "
                "decode ran at %.0f%% of it (checksum %llx)\n",
                stats(bandwidth).mean / 1e9, kernels::num_threads(), static_cast<double>(decode_bytes) / 1e9,
                kv_bytes_per_token / 1e9,
                stats(bandwidth).mean / bytes_per_token, 100.0 * stats(fraction).mean,
                static_cast<unsigned long long>(checksum));
  }
  // The memory planner's prediction for this run, beside what the process really held.
  planner::InferenceMemoryOptions plan;
  plan.context = ctx;
  plan.tokens_per_forward = std::max(1, std::min(o.n_prompt, LlamaModel::max_chunk));
  plan.threads = kernels::num_threads();
  const auto predicted = planner::predict_folder_inference_memory(model->folder(), plan);
  const uint64_t peak = peak_rss_bytes();
  std::printf("memory: planner predicts %.1f MB (weights %.1f, KV cache %.1f, scratch %.1f, tokenizer %.1f); "
              "measured peak resident %.1f MB, of which %.1f MB before loading\n",
              predicted.total_bytes() / 1e6, predicted.weights_bytes / 1e6, predicted.kv_cache_bytes / 1e6,
              predicted.scratch_bytes / 1e6, predicted.tokenizer_bytes / 1e6, static_cast<double>(peak) / 1e6,
              static_cast<double>(rss_before_load) / 1e6);
  if (o.json) {
    nlohmann::json j = {{"prefill_tokens_per_s", pp.empty() ? 0.0 : stats(pp).mean},
                        {"decode_tokens_per_s", tg.empty() ? 0.0 : stats(tg).mean},
                        {"prompt_tokens", o.n_prompt},
                        {"gen_tokens", o.n_gen},
                        {"depth_tokens", o.n_depth},
                        {"kv_bytes_read_per_token", kv_bytes_per_token},
                        {"repetitions", o.repetitions},
                        {"threads", kernels::num_threads()},
                        {"isa", kernels::active_isa()},
                        {"weight_bytes", model->folder().weights.total_bytes()},
                        {"bytes_read_per_token", decode_bytes},
                        {"read_gb_per_s", bandwidth.empty() ? 0.0 : stats(bandwidth).mean / 1e9},
                        {"decode_fraction_of_bandwidth", fraction.empty() ? 0.0 : stats(fraction).mean},
                        {"weights", o.model.weights.empty() ? "as stored" : o.model.weights},
                        {"parameters", c.parameter_count()},
                        {"context", ctx},
                        {"predicted_memory_bytes", predicted.total_bytes()},
                        {"predicted_weights_bytes", predicted.weights_bytes},
                        {"peak_rss_bytes", peak},
                        {"rss_before_load_bytes", rss_before_load}};
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand("bench", "Measure prompt processing and generation tokens per second (like llama-bench)");
  add_model_options(*sub, o->model);
  sub->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens to process")->capture_default_str()->check(whole_number_at_least(0));
  sub->add_option("-n,--n-gen", o->n_gen, "Tokens to generate")->capture_default_str()->check(whole_number_at_least(0));
  sub->add_option("-d,--n-depth", o->n_depth,
                  "Tokens already in the context when each test starts (processed untimed), as llama-bench's -d")
      ->capture_default_str()
      ->check(whole_number_at_least(0));
  sub->add_option("-r,--repetitions", o->repetitions, "Repetitions of each test")->capture_default_str()->check(whole_number_at_least(1));
  sub->add_flag("--json", o->json, "Print a JSON summary as the last line");
  sub->callback([o] { run_bench(*o); });
}

}  // namespace llama31::cli
