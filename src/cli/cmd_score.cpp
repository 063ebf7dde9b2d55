// llama31 score: log-probabilities of each next token and the top K candidates at every position.
#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

struct ScoreOptions {
  ModelOptions model;
  std::string text;
  std::string ids;
  int top = 5;
  bool json = false;
};

void run_score(const ScoreOptions& o) {
  auto model = load_model(o.model);
  std::vector<TokenId> tokens;
  if (!o.ids.empty()) {
    tokens = parse_id_list(o.ids);
  } else {
    tokens.push_back(model->bos_id());
    const auto ids = model->tokenizer().encode(o.text, /*parse_special=*/false);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  const int vocab = model->model().vocab_size();
  const int top = std::min(o.top, vocab);
  KvCache cache(model->config(), context_size(o.model, model->config(), static_cast<long long>(tokens.size())));

  nlohmann::json positions = nlohmann::json::array();
  double total_logprob = 0;
  std::vector<float> logits;
  std::vector<int> order(static_cast<size_t>(vocab));
  // Chunks bound the logits held at once ([chunk][vocab] floats).
  for (size_t start = 0; start < tokens.size(); start += LlamaModel::max_chunk) {
    const size_t len = std::min<size_t>(LlamaModel::max_chunk, tokens.size() - start);
    model->model().forward(std::span(tokens).subspan(start, len), cache, Logits::All, logits);
    for (size_t i = 0; i < len; ++i) {
      const size_t pos = start + i;
      const auto lp = log_softmax(std::span<const float>(logits).subspan(i * vocab, vocab));
      nlohmann::json entry = nlohmann::json::object();
      if (pos + 1 < tokens.size()) {
        entry["token"] = tokens[pos + 1];
        entry["logprob"] = lp[static_cast<size_t>(tokens[pos + 1])];
        total_logprob += lp[static_cast<size_t>(tokens[pos + 1])];
      }
      for (int v = 0; v < vocab; ++v) order[static_cast<size_t>(v)] = v;
      std::partial_sort(order.begin(), order.begin() + top, order.end(), [&](int a, int b) {
        return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)] || (lp[static_cast<size_t>(a)] == lp[static_cast<size_t>(b)] && a < b);
      });
      nlohmann::json best = nlohmann::json::array();
      for (int r = 0; r < top; ++r) best.push_back({{"id", order[static_cast<size_t>(r)]}, {"logprob", lp[static_cast<size_t>(order[static_cast<size_t>(r)])]}});
      entry["top"] = std::move(best);
      positions.push_back(std::move(entry));
    }
  }
  const size_t scored = tokens.size() - 1;
  if (o.json) {
    nlohmann::json out = {{"tokens", tokens}, {"positions", std::move(positions)}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  for (size_t pos = 0; pos < positions.size(); ++pos) {
    const auto& e = positions[pos];
    std::string line = fmt::format("{:6} {:>8}", pos, tokens[pos]);
    if (e.contains("token")) line += fmt::format("  next {:>8} logprob {:9.4f}", e["token"].get<int>(), e["logprob"].get<double>());
    line += "  top:";
    for (const auto& t : e["top"]) line += fmt::format(" {}:{:.4f}", t["id"].get<int>(), t["logprob"].get<double>());
    std::printf("%s\n", line.c_str());
  }
  if (scored > 0) {
    std::printf("tokens scored: %zu  mean logprob: %.4f  perplexity: %.4f\n", scored,
                total_logprob / static_cast<double>(scored), std::exp(-total_logprob / static_cast<double>(scored)));
  }
}

}  // namespace

void add_score_command(CLI::App& app) {
  auto o = std::make_shared<ScoreOptions>();
  auto* sub = app.add_subcommand("score", "Log-probability of every next token and the top K candidates (perplexity, evals)");
  add_model_options(*sub, o->model);
  auto* text = sub->add_option("--text", o->text, "Text to score (the model's BOS is put first)");
  auto* ids = sub->add_option("--ids", o->ids, "Token ids to score as given: 1,2,3 or [1,2,3]");
  text->excludes(ids);
  sub->add_option("--top", o->top, "How many most likely next tokens to list per position")->capture_default_str()
      ->check(whole_number_at_least(1));
  sub->add_flag("--json", o->json, "Print one JSON object: {tokens, positions: [{token, logprob, top: [{id, logprob}]}]}");
  sub->callback([o, text, ids] {
    if (text->count() == 0 && ids->count() == 0) throw Error("score needs --text or --ids");
    run_score(*o);
  });
}

}  // namespace llama31::cli
