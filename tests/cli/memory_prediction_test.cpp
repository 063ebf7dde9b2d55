// The memory planner's prediction for a loaded folder against the resident memory the process
// really reaches while running it (llama31 bench reports both).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli_runner.h"
#include "support/temp_dir.h"

namespace llama31 {
namespace {

TEST(MemoryPrediction, PlannerMatchesMeasuredResidentMemory) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine change resident memory";
#endif
  testing::TempDir dir("llama31-rss");
  const std::string model = (dir.path() / "model").string();
  // Weights large enough (143 MB) that they, not the runtime, dominate.
  const auto made = testing::run_cli({"make-test-model", model, "--hidden", "256", "--layers", "8"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const auto r = testing::run_cli({"bench", "-m", model, "-p", "256", "-n", "8", "-r", "1", "-t", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1));
  const double predicted = j["predicted_memory_bytes"].get<double>();
  const double weights = j["predicted_weights_bytes"].get<double>();
  const double measured = j["peak_rss_bytes"].get<double>() - j["rss_before_load_bytes"].get<double>();
  EXPECT_GT(weights, 0.6 * predicted) << "the test model should be dominated by its weights";
  // Weights are read in full at load, so the process must hold at least them.
  EXPECT_GE(measured, weights);
  EXPECT_NEAR(measured, predicted, 0.15 * predicted)
      << "predicted " << predicted / 1e6 << " MB, measured " << measured / 1e6 << " MB\n" << r.out;
}

}  // namespace
}  // namespace llama31
