// matmul_gemm_group (several weight matrices of one x, as the q/k/v and gate/up projections) must give
// each product bit for bit what matmul_gemm gives it alone, at every level and thread count, including
// groups that mix weight types (a Q4_K_M file mixes them within a layer's q/k/v).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "util/dtype.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

struct Stored {
  DType type;
  int out;
  std::vector<uint8_t> bytes;
};

Stored make_weights(DType type, int out, int in, uint32_t seed) {
  const std::vector<float> values = testing::random_floats(static_cast<size_t>(out) * in, seed, -0.5f, 0.5f);
  Stored stored{type, out, std::vector<uint8_t>(static_cast<size_t>(out) * row_bytes(type, static_cast<size_t>(in)))};
  const size_t row = row_bytes(type, static_cast<size_t>(in));
  for (int o = 0; o < out; ++o) {
    const float* source = values.data() + static_cast<size_t>(o) * in;
    uint8_t* dst = stored.bytes.data() + static_cast<size_t>(o) * row;
    if (type == DType::Q8_0) {
      quantize_row_q8_0(source, static_cast<size_t>(in), dst);
    } else if (type == DType::Q4_0) {
      quantize_row_q4_0(source, static_cast<size_t>(in), dst);
    } else {  // BF16
      for (int i = 0; i < in; ++i) {
        const uint16_t bits = f32_to_bf16(source[i]);
        std::memcpy(dst + static_cast<size_t>(i) * 2, &bits, 2);
      }
    }
  }
  return stored;
}

void expect_group_matches_alone(const std::vector<Stored>& weights, int rows, int in, const std::string& what) {
  const std::vector<float> x = testing::random_floats(static_cast<size_t>(rows) * in, 99);
  std::vector<std::vector<float>> grouped, alone;
  std::vector<GemmProduct> products;
  for (const Stored& w : weights) {
    grouped.emplace_back(static_cast<size_t>(rows) * w.out, -1.0f);
    alone.emplace_back(static_cast<size_t>(rows) * w.out, -2.0f);
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    products.push_back({weights[i].bytes.data(), weights[i].type, weights[i].out, grouped[i].data()});
    matmul_gemm(x.data(), rows, weights[i].bytes.data(), weights[i].type, weights[i].out, in, alone[i].data());
  }
  matmul_gemm_group(x.data(), rows, in, products);
  for (size_t i = 0; i < weights.size(); ++i) {
    ASSERT_EQ(std::memcmp(grouped[i].data(), alone[i].data(), grouped[i].size() * sizeof(float)), 0)
        << what << ": product " << i << " (" << dtype_name(weights[i].type) << ") differs from matmul_gemm alone";
  }
}

TEST(MatmulGemmGroup, EachProductIsWhatItIsAlone) {
  testing::KernelSettingsGuard guard;
  const int in = 256;
  // q/k/v-like sizes (one not a multiple of the 64-row chunk), then a mixed-type group.
  const std::vector<Stored> same_type = {make_weights(DType::Q8_0, 256, in, 1), make_weights(DType::Q8_0, 64, in, 2),
                                         make_weights(DType::Q8_0, 72, in, 3)};
  const std::vector<Stored> mixed = {make_weights(DType::Q4_0, 96, in, 4), make_weights(DType::Q8_0, 40, in, 5),
                                     make_weights(DType::BF16, 130, in, 6), make_weights(DType::Q4_0, 17, in, 7)};
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      for (int rows : {17, 64, 101}) {
        const std::string what = level + " threads=" + std::to_string(threads) + " rows=" + std::to_string(rows);
        expect_group_matches_alone(same_type, rows, in, what + " Q8_0 group");
        expect_group_matches_alone(mixed, rows, in, what + " mixed group");
      }
    }
  }
}

TEST(MatmulGemmGroup, ChecksEveryProduct) {
  const std::vector<float> x(64, 1.0f);
  std::vector<float> y(64);
  const std::vector<uint8_t> w(row_bytes(DType::Q8_0, 64) * 2);
  const GemmProduct bad_rows[] = {{w.data(), DType::Q8_0, 2, y.data()}, {w.data(), DType::Q8_0, 2, nullptr}};
  EXPECT_THROW(matmul_gemm_group(x.data(), 1, 64, bad_rows), Error);
}

}  // namespace
}  // namespace llama31::kernels
