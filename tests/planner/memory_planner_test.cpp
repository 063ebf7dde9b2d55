// The planner on model folders, its assumptions, the inference prediction and bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model_files/gguf_writer.h"
#include "model_files/model_folder.h"
#include "model_files/safetensors.h"
#include "model_files/test_model.h"
#include "planner/memory_planner.h"
#include "support/temp_dir.h"
#include "util/error.h"

namespace {

using llama31::planner::kGiB;
using llama31::planner::MemoryRequest;
using llama31::planner::PublishedSize;

// Runs fn, expects a llama31::Error whose message contains every one of `needles`.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no llama31::Error thrown";
  } catch (const llama31::Error& e) {
    const std::string message = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos) << "'" << needle << "' not in: " << message;
    }
  }
}

void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  std::ofstream(path) << j.dump(2);
}

nlohmann::json config_json_8b() {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"hidden_size", 4096},
          {"intermediate_size", 14336},
          {"num_hidden_layers", 32},
          {"num_attention_heads", 32},
          {"num_key_value_heads", 8},
          {"vocab_size", 128256},
          {"max_position_embeddings", 131072},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"rope_scaling",
           {{"rope_type", "llama3"},
            {"factor", 8.0},
            {"low_freq_factor", 1.0},
            {"high_freq_factor", 4.0},
            {"original_max_position_embeddings", 8192}}},
          {"tie_word_embeddings", false},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"bos_token_id", 128000},
          {"eos_token_id", {128001, 128008, 128009}},
          {"torch_dtype", "bfloat16"},
          {"model_type", "llama"}};
}

TEST(ModelFolderPlanning, ConfigOnlyFolderPlansLikeTheBuiltInSize) {
  llama31::testing::TempDir dir;
  write_json(dir.path() / "config.json", config_json_8b());
  MemoryRequest request;
  request.model = dir.path().string();
  const auto from_folder = llama31::planner::plan_memory(request);
  request.model = "8b";
  const auto built_in = llama31::planner::plan_memory(request);
  EXPECT_FALSE(from_folder.model.published.has_value());
  EXPECT_FALSE(from_folder.model.stored_weight_bytes.has_value());
  EXPECT_EQ(from_folder.parameters.total(), built_in.parameters.total());
  ASSERT_EQ(from_folder.kv_cache.size(), built_in.kv_cache.size());
  EXPECT_DOUBLE_EQ(from_folder.kv_cache[2].bytes_16bit, built_in.kv_cache[2].bytes_16bit);
  // Without a published size there is no release figure to compare with.
  EXPECT_FALSE(from_folder.kv_cache[0].release_gib.has_value());
  EXPECT_FALSE(from_folder.training[0].release_gb.has_value());
}

TEST(ModelFolderPlanning, FolderWithWeightsReportsStoredBytesAndItsOwnShape) {
  llama31::testing::TempDir dir;
  llama31::TestModelSpec spec;
  spec.tie_word_embeddings = true;
  llama31::write_test_model(dir.path(), spec);
  const auto choice = llama31::planner::resolve_model(dir.path().string());
  EXPECT_EQ(choice.config.hidden_size, spec.hidden_size);
  ASSERT_TRUE(choice.stored_weight_bytes.has_value());
  const auto store = llama31::TensorStore::open_folder(dir.path());
  EXPECT_EQ(*choice.stored_weight_bytes, store.total_bytes());
  long long stored_elements = 0;
  for (const auto& name : store.names()) stored_elements += store.get(name).numel();
  EXPECT_EQ(llama31::planner::count_parameters(choice.config).total(), stored_elements);
  EXPECT_EQ(llama31::planner::count_parameters(choice.config).lm_head, 0);
}

TEST(ModelFolderPlanning, InferencePredictionAddsStoredWeightsFp32KvAndScratch) {
  llama31::testing::TempDir dir;
  llama31::TestModelSpec spec;
  llama31::write_test_model(dir.path(), spec);
  llama31::planner::InferenceMemoryOptions options;
  options.context = 300;
  options.batch = 2;
  const auto estimate = llama31::planner::predict_folder_inference_memory(dir.path(), options);
  const auto folder = llama31::ModelFolder::open(dir.path());
  EXPECT_DOUBLE_EQ(estimate.weights_bytes, static_cast<double>(folder.weights.total_bytes()));
  const double kv_expected = 2.0 * spec.num_hidden_layers * spec.num_key_value_heads *
                             spec.head_dim * 300 * 2 * 4;
  EXPECT_DOUBLE_EQ(estimate.kv_cache_bytes, kv_expected);
  EXPECT_GT(estimate.scratch_bytes, 0.0);
  EXPECT_DOUBLE_EQ(estimate.tokenizer_bytes,
                   llama31::planner::kTokenizerBytesPerJsonByte *
                       static_cast<double>(std::filesystem::file_size(folder.tokenizer_json)));
  EXPECT_DOUBLE_EQ(estimate.total_bytes(), estimate.weights_bytes + estimate.kv_cache_bytes +
                                               estimate.scratch_bytes + estimate.tokenizer_bytes);
  // A longer context needs more.
  options.context = 600;
  EXPECT_GT(llama31::planner::predict_folder_inference_memory(folder, options).total_bytes(),
            estimate.total_bytes());
}

TEST(ModelFolderPlanning, GgufModelCountsItsTokenizer) {
  llama31::testing::TempDir dir;
  llama31::write_test_model(dir.path() / "model", llama31::TestModelSpec{});
  const auto folder = llama31::ModelFolder::open(dir.path() / "model");
  llama31::export_gguf(folder, dir.path() / "model.gguf");
  const auto from_folder = llama31::planner::predict_folder_inference_memory(folder);
  const auto from_gguf = llama31::planner::predict_folder_inference_memory(dir.path() / "model.gguf");
  // The GGUF file's tokenizer is the folder's (the real Llama 3.1 one), so its share is about the same.
  EXPECT_GT(from_gguf.tokenizer_bytes, 0.9 * from_folder.tokenizer_bytes);
  EXPECT_LT(from_gguf.tokenizer_bytes, 1.1 * from_folder.tokenizer_bytes);
}

TEST(TrainingAssumptions, ChangingAnAssumptionChangesTheEstimate) {
  const auto config = llama31::planner::published_config(PublishedSize::B8);
  llama31::planner::TrainingAssumptions assumptions;
  const long long rank16 = llama31::planner::lora_parameters(config, assumptions);
  // rank x (in + out) for q, k, v, o, gate, up, down in each of the 32 layers.
  EXPECT_EQ(rank16, 32LL * 16 *
                        ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096) + 3 * (4096 + 14336)));
  assumptions.lora_rank = 32;
  EXPECT_EQ(llama31::planner::lora_parameters(config, assumptions), 2 * rank16);
  assumptions.lora_targets = {"q_proj", "v_proj"};
  EXPECT_EQ(llama31::planner::lora_parameters(config, assumptions),
            32LL * 32 * ((4096 + 4096) + (4096 + 1024)));

  llama31::planner::TrainingAssumptions shorter, longer;
  longer.sequence_length = 2 * shorter.sequence_length;
  EXPECT_GT(llama31::planner::training_activations(config, longer).bytes,
            1.9 * llama31::planner::training_activations(config, shorter).bytes);

  llama31::planner::TrainingAssumptions bad;
  bad.lora_targets = {"lm_head"};
  expect_error([&] { llama31::planner::lora_parameters(config, bad); }, {"lm_head"});
}

TEST(MemoryReport, ContextAndBatchScaleTheKvCache) {
  MemoryRequest request;
  request.contexts = {"4096", "8192"};
  request.batch = "4";
  const auto report = llama31::planner::plan_memory(request);
  ASSERT_EQ(report.kv_cache.size(), 2u);
  EXPECT_EQ(report.kv_cache[0].context, 4096);
  EXPECT_DOUBLE_EQ(report.kv_cache[1].bytes_16bit, 2.0 * report.kv_cache[0].bytes_16bit);
  // 8B: 128 KiB per token in 16-bit, 4 sequences of 4096 tokens = 2 GiB.
  EXPECT_DOUBLE_EQ(report.kv_cache[0].bytes_16bit / kGiB, 128.0 * 1024 * 4096 * 4 / kGiB);
  EXPECT_DOUBLE_EQ(report.kv_cache[0].bytes_8bit * 2, report.kv_cache[0].bytes_16bit);
  EXPECT_EQ(report.training_assumptions.sequence_length, 4096);
  EXPECT_EQ(report.training_assumptions.micro_batch, 4);
}

TEST(MemoryReport, DtypeSetsTheInferenceWeights) {
  MemoryRequest request;
  request.dtype = "int4";
  const auto int4 = llama31::planner::plan_memory(request);
  request.dtype = "BF16";
  const auto bf16 = llama31::planner::plan_memory(request);
  EXPECT_LT(int4.kv_cache[0].inference_total_bytes, bf16.kv_cache[0].inference_total_bytes);
  EXPECT_DOUBLE_EQ(bf16.kv_cache[0].inference_total_bytes - int4.kv_cache[0].inference_total_bytes,
                   1.5 * static_cast<double>(bf16.parameters.total()));
}

TEST(MemoryReport, TextStatesUnitsAndEveryTrainingAssumption) {
  const std::string text = llama31::planner::format_report_text(llama31::planner::plan_memory({}));
  for (const char* needle : {"GB = 10^9 bytes", "GiB = 2^30 bytes", "8,030,261,248", "16.06",
                             "fp32 master weights", "m and v in fp32", "rank 16", "NF4",
                             "gradient checkpointing", "logits", "release"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

TEST(MemoryReport, JsonHasTheSameNumbers) {
  MemoryRequest request;
  request.model = "70b";
  const auto report = llama31::planner::plan_memory(request);
  const auto j = llama31::planner::report_to_json(report);
  EXPECT_EQ(j.at("parameters").at("total").get<long long>(), report.parameters.total());
  ASSERT_EQ(j.at("kv_cache").size(), 3u);
  EXPECT_DOUBLE_EQ(j.at("kv_cache")[2].at("gib_16bit").get<double>(),
                   report.kv_cache[2].bytes_16bit / kGiB);
  EXPECT_EQ(j.at("kv_cache")[2].at("release_gib").get<double>(), 39.06);
  EXPECT_EQ(j.at("training").at("estimates").size(), 3u);
  EXPECT_EQ(j.at("training").at("assumptions").at("lora_rank").get<int>(), 16);
  EXPECT_EQ(j.at("units").at("GiB").get<double>(), 1073741824.0);
}

TEST(BadArguments, UnknownModelSize) {
  MemoryRequest request;
  request.model = "3b";
  expect_error([&] { llama31::planner::plan_memory(request); }, {"--model", "'3b'", "8b"});
}

TEST(BadArguments, NegativeZeroOrNonNumericContext) {
  for (const char* bad : {"-1", "0", "abc", "1.5", ""}) {
    MemoryRequest request;
    request.contexts = {bad};
    expect_error([&] { llama31::planner::plan_memory(request); }, {"--context"});
  }
  MemoryRequest request;
  request.contexts = {"200000"};
  expect_error([&] { llama31::planner::plan_memory(request); },
               {"--context 200000", "max_position_embeddings 131072"});
}

TEST(BadArguments, UnknownDtypeAndBadBatch) {
  MemoryRequest request;
  request.dtype = "q9";
  expect_error([&] { llama31::planner::plan_memory(request); }, {"--dtype", "'q9'", "int4"});
  MemoryRequest batch;
  batch.batch = "-2";
  expect_error([&] { llama31::planner::plan_memory(batch); }, {"--batch", "-2"});
  batch.batch = "99999999999999999999999";
  expect_error([&] { llama31::planner::plan_memory(batch); }, {"--batch", "too large"});
}

TEST(BadArguments, FolderWithoutOrWithBrokenConfig) {
  llama31::testing::TempDir dir;
  MemoryRequest request;
  request.model = dir.path().string();
  expect_error([&] { llama31::planner::plan_memory(request); }, {"config.json"});
  std::ofstream(dir.path() / "config.json") << "{ not json";
  expect_error([&] { llama31::planner::plan_memory(request); }, {"config.json"});
}

}  // namespace
