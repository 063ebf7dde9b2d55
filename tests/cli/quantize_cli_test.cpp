// llama31 quantize as a user runs it: the folder it writes loads (in the published layout) and runs
// close to the original model; bad requests fail with one clear line.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <fstream>

#include "engine/llama_model.h"
#include "model_files/test_model.h"
#include "support/cli_runner.h"
#include "support/numeric.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

using testing::run_cli;

class QuantizeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("llama31-quantize");
    TestModelSpec spec;  // int4-g128 needs inputs in groups of 128
    spec.hidden_size = 128;
    spec.intermediate_size = 384;
    spec.num_attention_heads = 8;
    spec.num_key_value_heads = 2;
    spec.head_dim = 16;
    write_test_model(dir_->path() / "model", spec);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string path(const std::string& name) { return (dir_->path() / name).string(); }

  // Relative RMS difference between the quantized model's logits and the original's over a prompt.
  static double logits_error(const std::string& quantized) {
    const std::vector<TokenId> tokens = {128000, 9906, 1917, 11, 358, 1097, 264, 1296, 13};
    auto run = [&](const std::string& dir) {
      const ModelFolder folder = ModelFolder::open(dir);
      LlamaModel model(folder);
      KvCache cache(model.config(), 16);
      std::vector<float> logits;
      model.forward(tokens, cache, Logits::All, logits);
      return logits;
    };
    const std::vector<float> a = run(path("model")), b = run(quantized);
    return testing::relative_rms(b, a);
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(QuantizeCli, Int4G128WritesTheAwqLayoutAndRunsCloseToTheOriginal) {
  const auto r = run_cli({"quantize", "-m", path("model"), "-o", path("int4"), "--type", "int4-g128"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("14 linear layers quantized"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("quantizing to int4-g128"), std::string::npos) << r.err;  // progress
  const auto config = nlohmann::json::parse(std::ifstream(path("int4") + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "awq");
  EXPECT_EQ(config["quantization_config"]["group_size"], 128);
  EXPECT_EQ(config["quantization_config"]["version"], "gemm");
  const SafetensorsFile file(path("int4") + "/model.safetensors");
  const TensorView& qweight = file.tensors().at("model.layers.0.mlp.down_proj.qweight");
  EXPECT_EQ(qweight.dtype, DType::I32);
  EXPECT_EQ(qweight.shape, (std::vector<int64_t>{384, 16}));  // [in, out / 8]
  EXPECT_EQ(file.tensors().count("model.layers.0.mlp.down_proj.weight"), 0u);
  EXPECT_LT(logits_error(path("int4")), 0.25);

  const auto g = run_cli({"generate", "-m", path("int4"), "-p", "Hello", "-n", "4", "--temp", "0"});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  const auto info = run_cli({"info", "-m", path("int4")});
  EXPECT_NE(info.out.find("quantization:          awq (4-bit, group 128; run as Q4_0 plus zero-point offsets)"),
            std::string::npos) << info.out;
  EXPECT_NE(info.out.find("(tensors agree)"), std::string::npos) << info.out;  // offsets are no parameters
  EXPECT_NE(info.out.find("weight bytes:          Q4_0"), std::string::npos) << info.out;
}

TEST_F(QuantizeCli, CalibrationTextScalesBeforeRoundingAndTheFolderStillLoads) {
  const std::string text = path("calibration.txt");
  std::ofstream(text) << "Calibration text: a few sentences of ordinary English, numbers like 1234, and code "
                         "such as for (int i = 0; i < n; ++i) sum += x[i]; to give every channel some activity.";
  const auto r = run_cli({"quantize", "-m", path("model"), "-o", path("awq"), "--type", "int4-g128", "--calibration",
                          text});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("activation-aware scaling: 6 input groups"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("calibrating"), std::string::npos) << r.err;  // progress
  const auto config = nlohmann::json::parse(std::ifstream(path("awq") + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "awq");
  EXPECT_LT(logits_error(path("awq")), 0.25);
  const auto fp8 = run_cli({"quantize", "-m", path("model"), "-o", path("fp8-calibrated"), "--type", "fp8",
                            "--calibration", text});
  EXPECT_EQ(fp8.exit_code, 1);
  EXPECT_NE(fp8.err.find("int4-g128 only"), std::string::npos) << fp8.err;
  const auto missing = run_cli({"quantize", "-m", path("model"), "-o", path("awq2"), "--calibration", path("none.txt")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("none.txt"), std::string::npos) << missing.err;
}

TEST_F(QuantizeCli, Fp8WritesMetasLayoutAndRunsCloseToTheOriginal) {
  const auto r = run_cli({"quantize", "-m", path("model"), "-o", path("fp8"), "--type", "fp8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("6 linear layers quantized"), std::string::npos) << r.out;  // the MLP of 2 layers
  const auto config = nlohmann::json::parse(std::ifstream(path("fp8") + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "fbgemm_fp8");
  const SafetensorsFile file(path("fp8") + "/model.safetensors");
  EXPECT_EQ(file.tensors().at("model.layers.1.mlp.up_proj.weight").dtype, DType::F8_E4M3);
  EXPECT_EQ(file.tensors().at("model.layers.1.mlp.up_proj.weight_scale").shape, (std::vector<int64_t>{384, 1}));
  EXPECT_EQ(file.tensors().at("model.layers.1.self_attn.q_proj.weight").dtype, DType::BF16);
  EXPECT_LT(logits_error(path("fp8")), 0.1);
  // Run as stored: the e4m3 bytes and their f32 scales, which are no parameters of their own.
  const auto info = run_cli({"info", "-m", path("fp8")});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("run as e4m3 with a scale per output channel"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("(tensors agree)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("weight bytes:          F8_E4M3"), std::string::npos) << info.out;
  // Written to GGUF (read widened, e4m3 * scale), it converts as a dense folder does.
  const auto gguf = run_cli({"convert", "-m", path("fp8"), "-o", path("fp8.gguf"), "--type", "q8_0"});
  EXPECT_EQ(gguf.exit_code, 0) << gguf.err;
}

TEST_F(QuantizeCli, CompareReportsKlAndTopTokenAgreementAgainstTheReference) {
  ASSERT_EQ(run_cli({"quantize", "-m", path("model"), "-o", path("cmp"), "--type", "int4-g128"}).exit_code, 0);
  const std::string text = "The quick brown fox jumps over the lazy dog. Llamas live in the Andes.";
  const auto same = run_cli({"compare", "-m", path("model"), "--reference", path("model"), "--text", text, "--json"});
  ASSERT_EQ(same.exit_code, 0) << same.err;
  const auto s = nlohmann::json::parse(same.out);
  EXPECT_EQ(s["mean_kl"], 0.0);
  EXPECT_EQ(s["top1_agreement"], 1.0);
  const auto quant = run_cli({"compare", "-m", path("cmp"), "--reference", path("model"), "--text", text, "--json",
                              "--window", "8"});
  ASSERT_EQ(quant.exit_code, 0) << quant.err;
  const auto q = nlohmann::json::parse(quant.out);
  EXPECT_GT(q["positions"].get<int>(), 16);  // several windows of 8, each with BOS
  EXPECT_GT(q["mean_kl"].get<double>(), 0.0);
  EXPECT_LT(q["mean_kl"].get<double>(), 1.0);
  EXPECT_GT(q["top1_agreement"].get<double>(), 0.5);
  // --weights applies to the model only: the same folder against itself measures what Q8_0 changes.
  const auto q8 = run_cli({"compare", "-m", path("model"), "--reference", path("model"), "--weights", "q8_0",
                           "--text", text, "--json"});
  ASSERT_EQ(q8.exit_code, 0) << q8.err;
  const auto q8_json = nlohmann::json::parse(q8.out);
  EXPECT_GT(q8_json["mean_kl"].get<double>(), 0.0);
  EXPECT_LT(q8_json["mean_kl"].get<double>(), q["mean_kl"].get<double>());  // Q8_0 is closer than int4
  const auto human = run_cli({"compare", "-m", path("cmp"), "--reference", path("model"), "--text", text});
  EXPECT_NE(human.out.find("mean KL:"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("same top token:"), std::string::npos) << human.out;
}

TEST_F(QuantizeCli, BadRequestsFailWithOneClearLine) {
  auto expect_error = [](const testing::CliResult& r, const std::string& needle) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(r.exit_code, 128) << "crashed: " << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  };
  expect_error(run_cli({"quantize", "-m", path("model"), "-o", path("x"), "--type", "int3"}), "int3");
  std::filesystem::create_directories(path("full"));
  std::ofstream(path("full") + "/keep.txt") << "x";
  expect_error(run_cli({"quantize", "-m", path("model"), "-o", path("full"), "--type", "fp8"}), "not empty");
  ASSERT_EQ(run_cli({"quantize", "-m", path("model"), "-o", path("once"), "--type", "fp8"}).exit_code, 0);
  expect_error(run_cli({"quantize", "-m", path("once"), "-o", path("twice"), "--type", "fp8"}), "already quantized");
  // The default tiny model's 64-wide layers are not whole groups of 128.
  write_test_model(path("narrow"));
  expect_error(run_cli({"quantize", "-m", path("narrow"), "-o", path("narrow-q")}), "groups of 128");
}

}  // namespace
}  // namespace llama31
