// Published quantized layouts (AWQ GEMM, GPTQ with and without act-order, fbgemm FP8): layers packed by
// the test's own writer from known integers and scales dequantize to exactly the weights they stand for;
// quantization_config parses as the published checkpoints write it; broken layouts fail clearly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "model_files/config.h"
#include "model_files/quantized_weights.h"
#include "model_files_test_util.h"
#include "support/quantized_layouts.h"

namespace llama31 {
namespace {

using testing::expect_error;
using testing::view_of;

std::vector<float> as_floats(const std::vector<uint16_t>& bits, DType dtype) {
  std::vector<float> out(bits.size());
  convert_to_f32(dtype, bits.data(), out.data(), out.size());
  return out;
}

TEST(Fp8E4m3, DecodesKnownCodes) {
  EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x3c), 1.5f);
  EXPECT_EQ(f8e4m3_to_f32(0x40), 2.0f);
  EXPECT_EQ(f8e4m3_to_f32(0xb8), -1.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);            // largest finite
  EXPECT_EQ(f8e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(f8e4m3_to_f32(0x07), 7 * std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0xff)));
}

TEST(Fp8E4m3, EveryCodeRoundTripsAndRoundingIsToNearestEven) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7f) == 0x7f) continue;
    EXPECT_EQ(f32_to_f8e4m3(f8e4m3_to_f32(static_cast<uint8_t>(code))), code) << "code " << code;
  }
  EXPECT_EQ(f32_to_f8e4m3(1.0625f), 0x38);  // halfway between 1 and 1.125: even mantissa (1.0)
  EXPECT_EQ(f32_to_f8e4m3(1.1875f), 0x3a);  // halfway between 1.125 and 1.25: even mantissa (1.25)
  EXPECT_EQ(f32_to_f8e4m3(1.07f), 0x39);
  EXPECT_EQ(f32_to_f8e4m3(1000.0f), 0x7e);  // saturates to 448
  EXPECT_EQ(f32_to_f8e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(f32_to_f8e4m3(std::ldexp(1.0f, -11)), 0x00);  // below half the smallest subnormal
}

TEST(Fp8E4m3, BranchFreeRoundingEqualsTheCodeRoundTripForEveryKindOfFloat) {
  const auto reference = [](float f) { return f8e4m3_to_f32(f32_to_f8e4m3(f)); };
  const auto same = [](float a, float b) {
    return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;  // -0 stays -0
  };
  // Every 61st bit pattern (all binades, subnormals, ties, infinities, NaN), both signs, plus every tie
  // between two neighbouring e4m3 values and the values just around it.
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 61) {
    float f;
    const auto b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, sizeof f);
    ASSERT_TRUE(same(round_to_f8e4m3(f), reference(f))) << "bits 0x" << std::hex << b << " value " << f;
  }
  for (int code = 0; code < 0x7e; ++code) {
    const float lo = f8e4m3_to_f32(static_cast<uint8_t>(code)), hi = f8e4m3_to_f32(static_cast<uint8_t>(code + 1));
    const float mid = (lo + hi) / 2;
    for (const float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1000.0f), -mid, hi, -lo}) {
      ASSERT_TRUE(same(round_to_f8e4m3(f), reference(f))) << "code " << code << " value " << f;
    }
  }
}

TEST(AwqLayout, DequantizesEveryElementOfAPackedLayer) {
  std::mt19937 rng(7);
  const int out = 48, in = 256, group = 128;
  const auto layer = testing::random_awq_linear("m", out, in, group, rng);
  const TensorView qweight = view_of(layer.tensors[0]), qzeros = view_of(layer.tensors[1]),
                   scales = view_of(layer.tensors[2]);
  const std::vector<float> dense = as_floats(dequantize_awq(qweight, qzeros, scales, group), DType::F16);
  ASSERT_EQ(dense.size(), layer.dense.size());
  for (size_t k = 0; k < dense.size(); ++k) {
    ASSERT_EQ(dense[k], layer.dense[k]) << "output " << k / in << " input " << k % in;
  }
}

TEST(GptqLayout, DequantizesEveryElementWithAndWithoutActOrder) {
  std::mt19937 rng(11);
  const int out = 40, in = 256, group = 64;
  for (const bool act_order : {false, true}) {
    for (const bool with_g_idx : {true, false}) {
      if (act_order && !with_g_idx) continue;
      SCOPED_TRACE(::testing::Message() << "act_order " << act_order << " g_idx " << with_g_idx);
      const auto layer = testing::random_gptq_linear("m", out, in, group, act_order, with_g_idx, rng);
      const TensorView qweight = view_of(layer.tensors[0]), qzeros = view_of(layer.tensors[1]),
                       scales = view_of(layer.tensors[2]);
      const TensorView g_idx = with_g_idx ? view_of(layer.tensors[3]) : TensorView{};
      const std::vector<float> dense =
          as_floats(dequantize_gptq(qweight, qzeros, scales, with_g_idx ? &g_idx : nullptr, group), DType::F16);
      ASSERT_EQ(dense.size(), layer.dense.size());
      for (size_t k = 0; k < dense.size(); ++k) {
        ASSERT_EQ(dense[k], layer.dense[k]) << "output " << k / in << " input " << k % in;
      }
    }
  }
}

// What the Q4_0 form of an int4 layer stands for, [out][in] in the layer's own input order: each row's
// Q4_0 values plus the offset of the value's group, the row's position j holding input input_order[j].
std::vector<float> values_of(const Int4AsQ4_0& q4, int out, int in) {
  const int groups = in / q4.group_size;
  EXPECT_EQ(q4.offsets.size(), static_cast<size_t>(out) * groups);
  std::vector<float> row(static_cast<size_t>(in)), result(static_cast<size_t>(out) * in);
  for (int o = 0; o < out; ++o) {
    convert_to_f32(DType::Q4_0, q4.rows.data() + static_cast<size_t>(o) * row_bytes(DType::Q4_0, in), row.data(),
                   row.size());
    for (int j = 0; j < in; ++j) {
      const int input = q4.input_order.empty() ? j : q4.input_order[static_cast<size_t>(j)];
      result[static_cast<size_t>(o) * in + input] =
          row[static_cast<size_t>(j)] + q4.offsets[static_cast<size_t>(j / q4.group_size) * out + o];
    }
  }
  return result;
}

// The Q4_0 form rounds nothing: (q - 8) * s + (8 - z) * s is (q - z) * s exactly, the checkpoint's f16
// value before its one rounding to f16.
void expect_q4_0_form_holds(const Int4Layer& layer, const std::vector<float>& dense, bool permuted) {
  const std::optional<Int4AsQ4_0> q4 = int4_as_q4_0(layer);
  ASSERT_TRUE(q4.has_value());
  EXPECT_EQ(!q4->input_order.empty(), permuted);
  const std::vector<float> values = values_of(*q4, static_cast<int>(layer.out), static_cast<int>(layer.in));
  ASSERT_EQ(values.size(), dense.size());
  for (size_t k = 0; k < values.size(); ++k) {
    ASSERT_EQ(f16_to_f32(f32_to_f16(values[k])), dense[k]) << "output " << k / layer.in << " input " << k % layer.in;
    ASSERT_LE(std::fabs(values[k] - dense[k]), std::ldexp(std::fabs(dense[k]), -11));
  }
}

TEST(Int4AsQ4_0, AwqAndGptqLayersHoldEveryValueWithoutRounding) {
  std::mt19937 rng(17);
  const int out = 40, in = 256;
  {
    const auto awq = testing::random_awq_linear("m", out, in, 128, rng);
    SCOPED_TRACE("awq");
    expect_q4_0_form_holds(unpack_awq(view_of(awq.tensors[0]), view_of(awq.tensors[1]), view_of(awq.tensors[2]), 128),
                           awq.dense, false);
  }
  for (const bool act_order : {false, true}) {
    SCOPED_TRACE(::testing::Message() << "gptq act_order " << act_order);
    const auto gptq = testing::random_gptq_linear("m", out, in, 64, act_order, true, rng);
    const TensorView g_idx = view_of(gptq.tensors[3]);
    expect_q4_0_form_holds(
        unpack_gptq(view_of(gptq.tensors[0]), view_of(gptq.tensors[1]), view_of(gptq.tensors[2]), &g_idx, 64),
        gptq.dense, act_order);
  }
}

TEST(Int4AsQ4_0, GroupsSmallerThanABlockStayDense) {
  std::mt19937 rng(19);
  const auto gptq = testing::random_gptq_linear("m", 16, 64, 16, false, false, rng);
  const Int4Layer layer =
      unpack_gptq(view_of(gptq.tensors[0]), view_of(gptq.tensors[1]), view_of(gptq.tensors[2]), nullptr, 16);
  EXPECT_FALSE(int4_as_q4_0(layer).has_value());
}

TEST(Fp8Layout, DequantizesEveryElementWithF32AndBf16Scales) {
  std::mt19937 rng(13);
  for (const DType scale_dtype : {DType::F32, DType::BF16}) {
    const auto layer = testing::random_fp8_linear("m", 24, 72, scale_dtype, rng);
    const std::vector<float> dense =
        as_floats(dequantize_fp8(view_of(layer.tensors[0]), view_of(layer.tensors[1])), DType::BF16);
    EXPECT_EQ(dense, layer.dense) << dtype_name(scale_dtype);
  }
}

TEST(QuantizeAwq, RoundTripsWithinHalfAStepAndPacksAsAwq) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const int out = 32, in = 256, group = 128;
  std::vector<float> w(static_cast<size_t>(out) * in);
  for (auto& v : w) v = normal(rng);
  const PackedInt4 packed = quantize_awq(w, out, in, group);
  TensorToWrite qweight{"q", DType::I32, {in, out / 8}, {}}, qzeros{"z", DType::I32, {in / group, out / 8}, {}},
      scales{"s", DType::F16, {in / group, out}, {}};
  auto fill = [](TensorToWrite& t, const auto& values) {
    t.data.resize(values.size() * sizeof(values[0]));
    std::memcpy(t.data.data(), values.data(), t.data.size());
  };
  fill(qweight, packed.qweight);
  fill(qzeros, packed.qzeros);
  fill(scales, packed.scales);
  const std::vector<float> back =
      as_floats(dequantize_awq(view_of(qweight), view_of(qzeros), view_of(scales), group), DType::F16);
  // AutoAWQ's order: column 8c + order[n] sits in nibble n of word c.
  const int nibble_of_column[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  auto nibble = [&](const std::vector<int32_t>& words, size_t row, int o) {
    const auto word = static_cast<uint32_t>(words[row * (out / 8) + static_cast<size_t>(o / 8)]);
    return static_cast<int>((word >> (4 * nibble_of_column[o % 8])) & 0xfu);
  };
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      const size_t g = static_cast<size_t>(i / group);
      const float step = f16_to_f32(packed.scales[g * out + o]);
      const size_t k = static_cast<size_t>(o) * in + i;
      ASSERT_LE(std::fabs(back[k] - w[k]), 0.5f * step + 1e-3f * std::fabs(w[k]) + 1e-7f) << o << "," << i;
      const int q = nibble(packed.qweight, static_cast<size_t>(i), o), z = nibble(packed.qzeros, g, o);
      ASSERT_EQ(back[k], f16_to_f32(f32_to_f16(static_cast<float>(q - z) * step))) << o << "," << i;
    }
  }
}

TEST(QuantizeFp8, RowScalesMapTheLargestValueTo448) {
  std::mt19937 rng(19);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int out = 8, in = 64;
  std::vector<float> w(static_cast<size_t>(out) * in);
  for (auto& v : w) v = normal(rng);
  const Fp8Weight q = quantize_fp8(w, out, in);
  for (int o = 0; o < out; ++o) {
    float max_abs = 0.0f;
    for (int i = 0; i < in; ++i) max_abs = std::max(max_abs, std::fabs(w[static_cast<size_t>(o) * in + i]));
    EXPECT_FLOAT_EQ(q.scale[static_cast<size_t>(o)] * 448.0f, max_abs);
    for (int i = 0; i < in; ++i) {
      const size_t k = static_cast<size_t>(o) * in + i;
      // 3 mantissa bits: relative error at most 1/16 for normal values, absolute 2^-10 * scale below.
      EXPECT_NEAR(f8e4m3_to_f32(q.weight[k]) * q.scale[static_cast<size_t>(o)], w[k],
                  std::fabs(w[k]) / 16 + std::ldexp(q.scale[static_cast<size_t>(o)], -10));
    }
  }
}

TEST(QuantizedLayouts, InconsistentTensorsFailNamingTheTensor) {
  std::mt19937 rng(23);
  const auto awq = testing::random_awq_linear("layer", 16, 256, 128, rng);
  TensorToWrite bad_zeros = awq.tensors[1];
  bad_zeros.shape = {1, 2};  // byte count no longer matters: the shape check comes first
  expect_error([&] { dequantize_awq(view_of(awq.tensors[0]), view_of(bad_zeros), view_of(awq.tensors[2]), 128); },
               {"layer.qzeros", "[2, 2]"});
  expect_error([&] { dequantize_awq(view_of(awq.tensors[0]), view_of(awq.tensors[1]), view_of(awq.tensors[2]), 96); },
               {"group_size 96"});
  expect_error([&] { dequantize_awq(view_of(awq.tensors[2]), view_of(awq.tensors[1]), view_of(awq.tensors[2]), 128); },
               {"layer.scales", "I32"});

  auto gptq = testing::random_gptq_linear("g", 16, 128, 64, true, true, rng);
  auto* g_idx = reinterpret_cast<int32_t*>(gptq.tensors[3].data.data());
  g_idx[5] = 9;
  const TensorView g_view = view_of(gptq.tensors[3]);
  expect_error([&] {
    dequantize_gptq(view_of(gptq.tensors[0]), view_of(gptq.tensors[1]), view_of(gptq.tensors[2]), &g_view, 64);
  }, {"g.g_idx", "input 5", "group 9"});

  auto fp8 = testing::random_fp8_linear("f", 8, 16, DType::F32, rng);
  fp8.tensors[1].shape = {4, 2};
  expect_error([&] { dequantize_fp8(view_of(fp8.tensors[0]), view_of(fp8.tensors[1])); },
               {"f.weight_scale", "[8, 1]"});
}

TEST(QuantizationConfig, ParsesThePublishedConfigs) {
  // As in hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4.
  const auto awq = QuantizationConfig::from_json(
      nlohmann::json::parse(R"({"bits": 4, "group_size": 128, "modules_to_not_convert": null,
                                "quant_method": "awq", "version": "gemm", "zero_point": true})"),
      "config.json");
  EXPECT_EQ(awq.method, QuantMethod::Awq);
  EXPECT_EQ(awq.group_size, 128);
  EXPECT_TRUE(awq.zero_point);
  // As in hugging-quants/Meta-Llama-3.1-8B-Instruct-GPTQ-INT4.
  const auto gptq = QuantizationConfig::from_json(
      nlohmann::json::parse(R"({"bits": 4, "damp_percent": 0.1, "desc_act": true, "group_size": 128,
                                "is_marlin_format": false, "quant_method": "gptq", "static_groups": false,
                                "sym": true, "true_sequential": true})"),
      "config.json");
  EXPECT_EQ(gptq.method, QuantMethod::Gptq);
  EXPECT_TRUE(gptq.desc_act);
  // As in meta-llama/Llama-3.1-405B-Instruct-FP8.
  const auto fp8 = QuantizationConfig::from_json(
      nlohmann::json::parse(R"({"activation_scale_ub": 1200.0, "quant_method": "fbgemm_fp8",
                                "modules_to_not_convert": ["model.layers.0.mlp.down_proj", "lm_head",
                                                           "model.layers.1.self_attn.q_proj"]})"),
      "config.json");
  EXPECT_EQ(fp8.method, QuantMethod::FbgemmFp8);
  EXPECT_EQ(fp8.activation_scale_ub, 1200.0);
  EXPECT_TRUE(fp8.keeps_unquantized("model.layers.0.mlp.down_proj"));
  EXPECT_FALSE(fp8.keeps_unquantized("model.layers.10.mlp.down_proj"));
  EXPECT_FALSE(fp8.keeps_unquantized("model.layers.0.mlp.up_proj"));
  // Written back and read again, a config keeps its method and settings.
  const auto again = QuantizationConfig::from_json(gptq.to_json(), "again");
  EXPECT_EQ(again.method, QuantMethod::Gptq);
  EXPECT_TRUE(again.desc_act);
  EXPECT_EQ(again.group_size, 128);
}

TEST(QuantizationConfig, UnsupportedSettingsFailNamingThem) {
  expect_error([] { QuantizationConfig::from_json(nlohmann::json::parse(R"({"quant_method": "bitsandbytes"})"), "c.json"); },
               {"c.json", "bitsandbytes", "awq, gptq, fbgemm_fp8"});
  expect_error([] { QuantizationConfig::from_json(nlohmann::json::parse(R"({"quant_method": "gptq", "bits": 8})"), "c.json"); },
               {"8-bit"});
  expect_error([] { QuantizationConfig::from_json(nlohmann::json::parse(R"({"quant_method": "awq", "version": "gemv"})"), "c.json"); },
               {"gemv"});
  expect_error([] { QuantizationConfig::from_json(nlohmann::json::parse(R"({"bits": 4})"), "c.json"); }, {"quant_method"});
  expect_error([] { QuantizationConfig::from_json(nlohmann::json::parse(R"([1])"), "c.json"); }, {"object"});
}

}  // namespace
}  // namespace llama31
