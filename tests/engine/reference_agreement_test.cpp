// The engine, run through the llama31 binary as a user would, against the independent float64
// reference (reference_f64.h) on tiny random Llama 3.1 checkpoints: per-position log-probabilities of a
// short and a 2048-token sequence, text scoring, greedy generation, and tied / F32 / F16 variants.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/reference_f64.h"
#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/token_ids.h"
#include "support/temp_dir.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {
namespace {

using reference::ReferenceLlama;
using reference::ReferenceOptions;
using testing::run_cli;
using testing::join_ids;
using testing::random_ids;
using testing::TempDir;

constexpr double kTolerance = 1e-3;
constexpr int kBos = 128000;
constexpr int kTop = 5;
const std::vector<int> kStopTokens = {128001, 128008, 128009};

struct ScoredPosition {
  std::optional<int> next_token;  // absent at the last position
  double next_logprob = 0.0;
  std::vector<std::pair<int, double>> top;  // (id, logprob), best first
};

struct EngineScore {
  std::vector<int> tokens;
  std::vector<ScoredPosition> positions;
};

// Runs `llama31 score ... --top 5 --json` and parses what it prints.
EngineScore engine_score(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"score"};
  full.insert(full.end(), args.begin(), args.end());
  full.insert(full.end(), {"--top", std::to_string(kTop), "--json"});
  const auto result = run_cli(full);
  EXPECT_EQ(result.exit_code, 0) << "llama31 score failed: " << result.err;
  EngineScore score;
  if (result.exit_code != 0) return score;
  const auto j = nlohmann::json::parse(result.out);
  score.tokens = j.at("tokens").get<std::vector<int>>();
  for (const auto& p : j.at("positions")) {
    ScoredPosition position;
    if (p.contains("token")) {
      position.next_token = p.at("token").get<int>();
      position.next_logprob = p.at("logprob").get<double>();
    }
    for (const auto& t : p.at("top")) position.top.emplace_back(t.at("id").get<int>(), t.at("logprob").get<double>());
    score.positions.push_back(std::move(position));
  }
  return score;
}

struct Agreement {
  double max_difference = 0.0;
  size_t worst_position = 0;
  int violations = 0;           // values off by more than the tolerance
  int top_order_violations = 0;  // engine top-k ids that are not a top-k of the reference
  std::string first_violation;
};

// Compares the engine's top-k and next-token log-probabilities with the reference at every position.
Agreement compare_with_reference(const ReferenceLlama& model, const EngineScore& engine) {
  Agreement agreement;
  auto note = [&](size_t position, int id, double engine_value, double reference_value) {
    const double difference = std::abs(engine_value - reference_value);
    if (difference > agreement.max_difference) {
      agreement.max_difference = difference;
      agreement.worst_position = position;
    }
    if (difference > kTolerance && agreement.violations++ == 0) {
      std::ostringstream message;
      message << "position " << position << " token " << id << ": engine " << engine_value << ", reference "
              << reference_value;
      agreement.first_violation = message.str();
    }
  };
  model.score(engine.tokens, [&](size_t position, std::span<const double> logprobs) {
    const ScoredPosition& p = engine.positions.at(position);
    std::vector<double> sorted(logprobs.begin(), logprobs.end());
    std::nth_element(sorted.begin(), sorted.begin() + (kTop - 1), sorted.end(), std::greater<>());
    const double kth_best = sorted[kTop - 1];
    for (const auto& [id, logprob] : p.top) {
      note(position, id, logprob, logprobs[static_cast<size_t>(id)]);
      if (logprobs[static_cast<size_t>(id)] < kth_best - kTolerance) ++agreement.top_order_violations;
    }
    if (p.next_token) note(position, *p.next_token, p.next_logprob, logprobs[static_cast<size_t>(*p.next_token)]);
  });
  return agreement;
}

void expect_agreement(const ReferenceLlama& model, const EngineScore& engine, size_t expected_length) {
  ASSERT_EQ(engine.positions.size(), expected_length);
  ASSERT_EQ(engine.tokens.size(), expected_length);
  for (size_t i = 0; i < expected_length; ++i) {
    ASSERT_EQ(engine.positions[i].top.size(), static_cast<size_t>(kTop)) << "position " << i;
    ASSERT_EQ(engine.positions[i].next_token.has_value(), i + 1 < expected_length) << "position " << i;
    if (i + 1 < expected_length) {
      EXPECT_EQ(*engine.positions[i].next_token, engine.tokens[i + 1]);
    }
  }
  const Agreement agreement = compare_with_reference(model, engine);
  EXPECT_EQ(agreement.violations, 0) << "first: " << agreement.first_violation;
  EXPECT_EQ(agreement.top_order_violations, 0) << "engine top-" << kTop << " lists ids the reference ranks lower";
  EXPECT_LE(agreement.max_difference, kTolerance) << "worst at position " << agreement.worst_position;
  std::printf("[ reference ] %zu positions, max |engine - reference| logprob difference %.3g\n", expected_length,
              agreement.max_difference);
}

// Scores `ids` with the engine and checks every position against the reference.
void check_ids_agree(const TestModelSpec& spec, const std::vector<int>& ids) {
  TempDir dir("llama31-reference");
  const TestModelWeights weights = write_test_model(dir.path(), spec);
  const ReferenceLlama model(weights);
  const EngineScore engine = engine_score({"-m", dir.path().string(), "--ids", join_ids(ids)});
  ASSERT_EQ(engine.tokens, ids);
  expect_agreement(model, engine, ids.size());
}

TEST(ReferenceAgreement, Random64TokenPromptMatchesReferenceAtEveryPosition) {
  check_ids_agree(TestModelSpec{}, random_ids(64, 64));
}

TEST(ReferenceAgreement, Random2048TokenSequenceMatchesReferenceAndNeedsLlama3RopeScaling) {
  TempDir dir("llama31-reference");
  const TestModelWeights weights = write_test_model(dir.path(), TestModelSpec{});
  ASSERT_TRUE(weights.config.rope_scaling.has_value()) << "the default test model must use llama3 rope scaling";
  ASSERT_EQ(weights.config.rope_scaling->rope_type, "llama3");
  const std::vector<int> ids = random_ids(2048, 2048);
  const EngineScore engine = engine_score({"-m", dir.path().string(), "--ids", join_ids(ids)});
  ASSERT_EQ(engine.tokens, ids);

  const ReferenceLlama scaled(weights);
  expect_agreement(scaled, engine, ids.size());

  // The same comparison against a reference that ignores rope scaling must fail somewhere: otherwise
  // this test could not tell an engine that forgot the llama3 frequencies from a correct one.
  const ReferenceLlama unscaled(weights, ReferenceOptions{.apply_rope_scaling = false});
  ASSERT_NE(scaled.inverse_frequencies(), unscaled.inverse_frequencies());
  const Agreement without_scaling = compare_with_reference(unscaled, engine);
  std::printf("[ reference ] without rope scaling the max difference is %.3g (at position %zu)\n",
              without_scaling.max_difference, without_scaling.worst_position);
  EXPECT_GT(without_scaling.max_difference, kTolerance)
      << "the 2048-token comparison cannot detect a missing llama3 rope scaling";
}

TEST(ReferenceAgreement, TextScoringPrependsBosAndMatchesReference) {
  const std::string text =
      "The quick brown fox jumps over the lazy dog. Llama 3.1 scores text one token at a time, "
      "and every position's distribution must match the float64 reference: 12345, naïve café, 東京.";
  TempDir dir("llama31-reference");
  const TestModelWeights weights = write_test_model(dir.path(), TestModelSpec{});
  const EngineScore engine = engine_score({"-m", dir.path().string(), "--text", text});

  const Tokenizer tokenizer =
      Tokenizer::from_files(dir.path() / "tokenizer.json", dir.path() / "tokenizer_config.json");
  std::vector<int> expected = {kBos};
  for (TokenId id : tokenizer.encode(text)) expected.push_back(id);
  ASSERT_EQ(engine.tokens, expected);
  expect_agreement(ReferenceLlama(weights), engine, expected.size());
}

// The generated ids of `llama31 generate ... --ids-json`: a JSON array on the last stdout line.
std::vector<int> engine_greedy(const std::filesystem::path& dir, const std::string& prompt, int tokens) {
  const auto result = run_cli(
      {"generate", "-m", dir.string(), "-p", prompt, "-n", std::to_string(tokens), "--temp", "0", "--ids-json"});
  EXPECT_EQ(result.exit_code, 0) << "llama31 generate failed: " << result.err;
  std::string out = result.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const std::string last_line = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  return nlohmann::json::parse(last_line).get<std::vector<int>>();
}

std::vector<int> without_trailing_stop(std::vector<int> ids) {
  if (!ids.empty() && std::find(kStopTokens.begin(), kStopTokens.end(), ids.back()) != kStopTokens.end()) {
    ids.pop_back();
  }
  return ids;
}

TEST(ReferenceAgreement, GreedyGenerationEqualsReferenceGreedy) {
  const std::string prompt = "Once upon a time, in a land far away,";
  constexpr int kNewTokens = 32;
  TempDir dir("llama31-reference");
  const TestModelWeights weights = write_test_model(dir.path(), TestModelSpec{});
  const Tokenizer tokenizer =
      Tokenizer::from_files(dir.path() / "tokenizer.json", dir.path() / "tokenizer_config.json");
  std::vector<int> prompt_ids = {kBos};
  for (TokenId id : tokenizer.encode(prompt)) prompt_ids.push_back(id);

  const std::vector<int> expected = ReferenceLlama(weights).greedy(prompt_ids, kNewTokens, kStopTokens);
  const std::vector<int> generated = engine_greedy(dir.path(), prompt, kNewTokens);
  // Whether the stop token itself is printed is the CLI's choice; where generation ends is not.
  EXPECT_EQ(without_trailing_stop(generated), without_trailing_stop(expected));
  EXPECT_LE(generated.size(), static_cast<size_t>(kNewTokens));
}

TEST(ReferenceAgreement, TiedEmbeddingsModelMatchesReference) {
  TestModelSpec spec;
  spec.tie_word_embeddings = true;
  check_ids_agree(spec, random_ids(24, 24));
}

TEST(ReferenceAgreement, Float32ModelMatchesReference) {
  TestModelSpec spec;
  spec.dtype = DType::F32;
  check_ids_agree(spec, random_ids(24, 32));
}

TEST(ReferenceAgreement, Float16ModelMatchesReference) {
  TestModelSpec spec;
  spec.dtype = DType::F16;
  check_ids_agree(spec, random_ids(24, 16));
}

// The reference itself: its llama3 frequencies follow the piecewise definition (kept below
// original / high_freq_factor wavelength, divided by factor above original / low_freq_factor).
TEST(ReferenceModel, Llama3FrequenciesArePiecewiseScaled) {
  LlamaConfig config;
  config.hidden_size = 4096;
  config.num_attention_heads = 32;
  config.head_dim = 128;
  config.rope_theta = 500000.0;
  config.rope_scaling = RopeScaling{"llama3", 8.0, 1.0, 4.0, 8192};
  const auto scaled = reference::llama3_inverse_frequencies(config, true);
  const auto plain = reference::llama3_inverse_frequencies(config, false);
  ASSERT_EQ(scaled.size(), 64u);
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < scaled.size(); ++i) {
    const double wavelength = 2.0 * 3.141592653589793 / plain[i];
    if (wavelength < 8192.0 / 4.0) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i]);
      ++kept;
    } else if (wavelength > 8192.0) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 8.0);
      ++divided;
    } else {
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 8.0);
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

}  // namespace
}  // namespace llama31
