// llama31 compare: a (quantized) model's next-token distributions against a reference model's over a
// text, as llama-perplexity --kl-divergence reports them.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "engine/distribution_compare.h"
#include "util/error.h"

namespace llama31::cli {
namespace {

struct CompareOptions {
  ModelOptions model;
  std::string reference_dir;
  std::string text;
  std::string file;
  int window = 512;
  bool json = false;
};

void run_compare(const CompareOptions& o) {
  std::string text = o.text;
  if (!o.file.empty()) {
    std::ifstream in(o.file, std::ios::binary);
    if (!in) fail("--file {}: cannot read it", o.file);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    text = buffer.str();
  }
  auto model = load_model(o.model);
  ModelOptions reference_options = o.model;
  reference_options.model_dir = o.reference_dir;
  reference_options.weights.clear();  // the reference runs as stored: `-m DIR --reference DIR --weights q8_0`
                                      // measures what Q8_0 changes
  auto reference = load_model(reference_options);
  if (reference->model().vocab_size() != model->model().vocab_size()) {
    fail("--reference has {} tokens in its vocabulary, the model {}", reference->model().vocab_size(),
         model->model().vocab_size());
  }
  const std::vector<TokenId> ids = model->tokenizer().encode(text, /*parse_special=*/false);
  if (ids.size() < 2) fail("the text is too short to compare on ({} tokens)", ids.size());
  const int window = std::min(o.window, context_size(o.model, model->config(), o.window));
  if (window < 2) fail("--window must be at least 2");
  const size_t vocab = static_cast<size_t>(model->model().vocab_size());
  DistributionComparer comparer;
  std::vector<float> a, b;
  // Windows of the text, each after BOS in a fresh cache (as llama-perplexity scores chunks).
  for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(window - 1)) {
    std::vector<TokenId> tokens = {model->bos_id()};
    const size_t end = std::min(ids.size(), start + static_cast<size_t>(window - 1));
    tokens.insert(tokens.end(), ids.begin() + static_cast<std::ptrdiff_t>(start), ids.begin() + static_cast<std::ptrdiff_t>(end));
    KvCache ref_cache(reference->config(), window), cache(model->config(), window);
    reference->model().forward(tokens, ref_cache, Logits::All, a);
    model->model().forward(tokens, cache, Logits::All, b);
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::optional<TokenId> next = i + 1 < tokens.size() ? std::optional<TokenId>(tokens[i + 1]) : std::nullopt;
      comparer.add(std::span<const float>(a).subspan(i * vocab, vocab), std::span<const float>(b).subspan(i * vocab, vocab),
                   next);
    }
  }
  const DistributionComparison r = comparer.result();
  if (o.json) {
    const nlohmann::json out = {{"positions", r.positions},         {"mean_kl", r.mean_kl},
                                {"median_kl", r.median_kl},         {"p99_kl", r.p99_kl},
                                {"max_kl", r.max_kl},               {"top1_agreement", r.top1_agreement},
                                {"reference_perplexity", r.reference_perplexity}, {"perplexity", r.perplexity},
                                {"rms_prob_delta", r.rms_prob_delta}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("positions:         %d\n", r.positions);
  std::printf("mean KL:           %.6f nats (median %.6f, 99%% %.6f, max %.6f)\n", r.mean_kl, r.median_kl, r.p99_kl,
              r.max_kl);
  std::printf("same top token:    %.2f%%\n", 100.0 * r.top1_agreement);
  std::printf("perplexity:        %.4f (reference %.4f, ratio %.4f)\n", r.perplexity, r.reference_perplexity,
              r.reference_perplexity > 0 ? r.perplexity / r.reference_perplexity : 0.0);
  std::printf("RMS delta p(next): %.4f%%\n", 100.0 * r.rms_prob_delta);
}

}  // namespace

void add_compare_command(CLI::App& app) {
  auto o = std::make_shared<CompareOptions>();
  auto* sub = app.add_subcommand(
      "compare", "KL divergence and top-token agreement of a model against a reference (quantization quality)");
  add_model_options(*sub, o->model);
  sub->add_option("--reference", o->reference_dir,
                  "Reference model folder (e.g. the bf16 original), run as stored even with --weights")
      ->required();
  auto* text = sub->add_option("--text", o->text, "Text to compare on");
  auto* file = sub->add_option("-f,--file", o->file, "File holding the text to compare on");
  text->excludes(file);
  sub->add_option("--window", o->window, "Tokens per window (each starts with BOS in a fresh context)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  sub->add_flag("--json", o->json, "Print one JSON object");
  sub->callback([o, text, file] {
    if (text->count() == 0 && file->count() == 0) throw Error("compare needs --text or --file");
    run_compare(*o);
  });
}

}  // namespace llama31::cli
