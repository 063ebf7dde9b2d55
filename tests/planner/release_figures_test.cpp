// The planner against the published Llama 3.1 configs and the release's memory tables
// (Hugging Face blog "Llama 3.1 - 405B, 70B & 8B with multilinguality and long context").
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <string>

#include "planner/memory_planner.h"

namespace {

using llama31::planner::kGB;
using llama31::planner::kGiB;
using llama31::planner::Precision;
using llama31::planner::PublishedSize;

// What the release printed, copied here independently of the library's own table.
struct Published {
  PublishedSize size;
  const char* name;
  long long parameters;  // the safetensors parameter count of the Hugging Face checkpoints
  int hidden, layers, heads, kv_heads, intermediate;
  double nominal;        // the size in the model's name, in billions
  std::array<double, 3> weights_gb;  // FP16, FP8, INT4
  std::array<double, 3> kv_gib;      // 1,024 / 16,000 / 128,000 tokens, FP16
  std::array<double, 3> training_gb;  // full, LoRA, QLoRA
};

const std::array<Published, 3> kPublished{{
    {PublishedSize::B8, "8b", 8030261248LL, 4096, 32, 32, 8, 14336, 8, {16, 8, 4},
     {0.125, 1.95, 15.62}, {60, 16, 6}},
    {PublishedSize::B70, "70b", 70553706496LL, 8192, 80, 64, 8, 28672, 70, {140, 70, 35},
     {0.313, 4.88, 39.06}, {500, 160, 48}},
    {PublishedSize::B405, "405b", 405853388800LL, 16384, 126, 128, 8, 53248, 405, {810, 405, 203},
     {0.984, 15.38, 123.05}, {3250, 950, 250}},
}};

constexpr std::array<long long, 3> kContexts{1024, 16000, 128000};

// Half a unit of the last decimal the release printed (3 decimals below 1, 2 above).
double half_unit(double printed) { return printed < 1.0 ? 0.0005 : 0.005; }

TEST(PublishedConfigs, MatchTheRealConfigJsonValues) {
  for (const auto& p : kPublished) {
    const auto config = llama31::planner::published_config(p.size);
    EXPECT_EQ(config.hidden_size, p.hidden) << p.name;
    EXPECT_EQ(config.num_hidden_layers, p.layers) << p.name;
    EXPECT_EQ(config.num_attention_heads, p.heads) << p.name;
    EXPECT_EQ(config.num_key_value_heads, p.kv_heads) << p.name;
    EXPECT_EQ(config.intermediate_size, p.intermediate) << p.name;
    EXPECT_EQ(config.vocab_size, 128256) << p.name;
    EXPECT_EQ(llama31::planner::effective_head_dim(config), 128) << p.name;
    EXPECT_FALSE(config.tie_word_embeddings) << p.name;
  }
}

TEST(PublishedConfigs, ParameterCountsAreExact) {
  for (const auto& p : kPublished) {
    const auto config = llama31::planner::published_config(p.size);
    const auto counted = llama31::planner::count_parameters(config);
    EXPECT_EQ(counted.total(), p.parameters) << p.name;
    // The planner's breakdown and the model_files count agree.
    EXPECT_EQ(counted.total(), config.parameter_count()) << p.name;
    EXPECT_EQ(counted.lm_head, counted.embedding) << p.name << ": untied head";
  }
}

TEST(PublishedConfigs, ResolvedByNameInAnyCase) {
  EXPECT_EQ(llama31::planner::resolve_model("70B").config.num_hidden_layers, 80);
  const auto choice = llama31::planner::resolve_model("405b");
  ASSERT_TRUE(choice.published.has_value());
  EXPECT_EQ(*choice.published, PublishedSize::B405);
  EXPECT_EQ(choice.label, "Llama 3.1 405B");
}

TEST(ReleaseWeights, ReproducedWithinTheReleasesRounding) {
  const std::array<Precision, 3> precisions{Precision::FP16, Precision::FP8, Precision::INT4};
  for (const auto& p : kPublished) {
    const auto config = llama31::planner::published_config(p.size);
    for (size_t i = 0; i < precisions.size(); ++i) {
      const double exact_gb = llama31::planner::weights_bytes(config, precisions[i]) / kGB;
      const double bytes = llama31::planner::bytes_per_parameter(precisions[i]);
      // The release multiplies the nominal size and rounds to a whole GB...
      EXPECT_LE(std::abs(p.nominal * bytes - p.weights_gb[i]), 0.5) << p.name << " " << i;
      // ...and the exact count times the same bytes is within 1% of it.
      EXPECT_NEAR(exact_gb, p.weights_gb[i], 0.01 * p.weights_gb[i]) << p.name << " " << i;
      EXPECT_DOUBLE_EQ(exact_gb, static_cast<double>(p.parameters) * bytes / 1e9);
    }
  }
  // 8.03 B x 2 bytes = 16.06 GB, which the release prints as 16.
  const double fp16_8b =
      llama31::planner::weights_bytes(llama31::planner::published_config(PublishedSize::B8),
                                      Precision::FP16) / kGB;
  EXPECT_EQ(std::lround(fp16_8b), 16);
}

TEST(ReleaseKvCache, EightAndSeventyBillionMatchToThePrintedDecimals) {
  for (const auto& p : {kPublished[0], kPublished[1]}) {
    const auto config = llama31::planner::published_config(p.size);
    for (size_t i = 0; i < kContexts.size(); ++i) {
      const double gib = llama31::planner::kv_cache_bytes(config, kContexts[i], 1, 2.0) / kGiB;
      EXPECT_LE(std::abs(gib - p.kv_gib[i]), half_unit(p.kv_gib[i]) + 1e-9)
          << p.name << " at " << kContexts[i] << " tokens: " << gib;
      EXPECT_TRUE(llama31::planner::release_kv_agrees(p.kv_gib[i], gib));
    }
  }
}

TEST(ReleaseKvCache, FourOhFiveIsHalfWhatTheReleasePrints) {
  const auto& p = kPublished[2];
  const auto config = llama31::planner::published_config(p.size);
  const double bytes_per_token = 2.0 * p.layers * p.kv_heads * 128 * 2;  // K and V, 16-bit
  for (size_t i = 0; i < kContexts.size(); ++i) {
    const double gib = llama31::planner::kv_cache_bytes(config, kContexts[i], 1, 2.0) / kGiB;
    EXPECT_DOUBLE_EQ(gib, bytes_per_token * static_cast<double>(kContexts[i]) / kGiB);
    // The release's figure is twice the right one, to its printed decimals.
    EXPECT_LE(std::abs(2.0 * gib - p.kv_gib[i]), half_unit(p.kv_gib[i]) + 1e-9) << kContexts[i];
    EXPECT_FALSE(llama31::planner::release_kv_agrees(p.kv_gib[i], gib));
  }
}

TEST(ReleaseKvCache, ReportFlagsThe405BFiguresAndNotTheOthers) {
  llama31::planner::MemoryRequest request;
  request.model = "405b";
  const auto report = llama31::planner::plan_memory(request);
  ASSERT_EQ(report.kv_cache.size(), 3u);
  bool noted = false;
  for (const auto& note : report.notes) noted |= note.find("twice") != std::string::npos;
  EXPECT_TRUE(noted);
  const std::string text = llama31::planner::format_report_text(report);
  EXPECT_NE(text.find("123.05 *"), std::string::npos) << text;

  request.model = "70b";
  const std::string text70 =
      llama31::planner::format_report_text(llama31::planner::plan_memory(request));
  EXPECT_EQ(text70.find(" *\n"), std::string::npos) << text70;
  EXPECT_EQ(text70.find("twice"), std::string::npos);
}

TEST(ReleaseTraining, EstimatesCarryTheReleaseFigureAndAnExplanation) {
  for (const auto& p : kPublished) {
    const auto config = llama31::planner::published_config(p.size);
    const auto estimates =
        llama31::planner::estimate_training(config, llama31::planner::TrainingAssumptions{}, p.size);
    ASSERT_EQ(estimates.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(estimates[i].release_gb.has_value()) << p.name;
      EXPECT_DOUBLE_EQ(*estimates[i].release_gb, p.training_gb[i]) << p.name;
      EXPECT_NE(estimates[i].comparison.find("release"), std::string::npos);
    }
    // Full fine-tuning with fp32 master weights and AdamW states costs at least 16 B/param,
    // more than the release's figure, and the explanation says so.
    EXPECT_GE(estimates[0].total_bytes(), 16.0 * static_cast<double>(p.parameters));
    EXPECT_GT(estimates[0].total_bytes() / kGB, p.training_gb[0]);
    EXPECT_NE(estimates[0].comparison.find("master"), std::string::npos);
    // Adapters make LoRA and QLoRA far cheaper, QLoRA cheaper still.
    EXPECT_LT(estimates[1].total_bytes(), estimates[0].total_bytes() / 4);
    EXPECT_LT(estimates[2].total_bytes(), estimates[1].total_bytes() / 2);
  }
  // For the large models, where the weights dominate, LoRA and QLoRA land near the release.
  for (const auto& p : {kPublished[1], kPublished[2]}) {
    const auto estimates = llama31::planner::estimate_training(
        llama31::planner::published_config(p.size), llama31::planner::TrainingAssumptions{},
        p.size);
    EXPECT_NEAR(estimates[1].total_bytes() / kGB, p.training_gb[1], 0.15 * p.training_gb[1]);
    EXPECT_NEAR(estimates[2].total_bytes() / kGB, p.training_gb[2], 0.15 * p.training_gb[2]);
  }
}

}  // namespace
