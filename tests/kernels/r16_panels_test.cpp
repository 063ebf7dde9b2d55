// Q8_0_R16 and Q4_0_R16, Q8_0 and Q4_0 repacked once into panels of 16 rows (for the AVX-512 VNNI and the
// AVX2 kernels): packing is exact both ways and keeps the bytes, the scalar twin gives bit for bit what it
// gives for the rows, each panel kernel gives the same bits for any number of rows, decode rows and one
// row at a time included (AVX-512's Q8_0 also the bits of its prefill kernel for the rows: same panels,
// same order of sums), every level agrees with the scalar twin, the result does not depend on the thread
// count, and shapes that are not whole panels are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "kernel_test_support.h"
#include "kernels/kernels.h"
#include "kernels/scalar.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

using testing::describe;
using testing::expect_close;
using testing::KernelSettingsGuard;
using testing::random_floats;
using testing::Shape;

// One row layout and its panel layout.
struct Layout {
  DType rows;
  DType panels;
  void (*quantize_row)(const float*, size_t, void*);
  void (*pack)(const void*, int64_t, int64_t, void*);
  void (*unpack_row)(const void*, int64_t, int64_t, void*);
  bool (*fits)(int64_t, int64_t);
  int in_multiple;           // of the rows' length
  std::vector<std::string> packed_on;  // the levels whose loads repack into the panels
  std::string rows_prefill_same;      // a level whose prefill kernel for the rows goes through the panels
};

const Layout kQ8_0{DType::Q8_0, DType::Q8_0_R16, quantize_row_q8_0, pack_q8_0_r16, unpack_q8_0_r16_row,
                   [](int64_t out, int64_t in) { return q8_0_r16_fits(out, in); }, 64, {"avx512", "avx2"}, "avx512"};
const Layout kQ4_0{DType::Q4_0, DType::Q4_0_R16, quantize_row_q4_0, pack_q4_0_r16, unpack_q4_0_r16_row,
                   [](int64_t out, int64_t in) { return q4_0_r16_fits(out, in); }, 32, {"avx512", "avx2"}, "avx512"};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void PrintTo(const Layout& layout, std::ostream* os) { *os << dtype_name(layout.panels); }

class R16Panels : public ::testing::TestWithParam<Layout> {
 protected:
  const Layout& layout() const { return GetParam(); }

  std::vector<uint8_t> quantized_rows(int out, int in, uint32_t seed) const {
    const std::vector<float> source = random_floats(static_cast<size_t>(out) * in, seed);
    const size_t row = row_bytes(layout().rows, in);
    std::vector<uint8_t> bytes(static_cast<size_t>(out) * row);
    for (int o = 0; o < out; ++o) {
      layout().quantize_row(source.data() + static_cast<size_t>(o) * in, static_cast<size_t>(in), bytes.data() + o * row);
    }
    return bytes;
  }

  std::vector<uint8_t> packed(const std::vector<uint8_t>& rows, int out, int in) const {
    std::vector<uint8_t> result(rows.size());
    layout().pack(rows.data(), out, in, result.data());
    return result;
  }

  std::vector<Shape> shapes() const {
    std::vector<Shape> result;
    for (int rows : {1, 2, 3, 5, 7, 16, 17, 40}) {
      for (int out : {16, 48, 64, 80, 208}) {
        for (int in : {64, 128, 576, 1024}) result.push_back({rows, out, in});
        if (layout().in_multiple == 32) result.push_back({rows, out, 96});  // an odd number of blocks
      }
    }
    return result;
  }

  // On the active level: the panels' products for every shape, through the many-rows kernel, the small-rows
  // one and one row at a time, give the same bits.
  void check_row_counts(const std::string& level, uint32_t& seed) const {
    for (Shape s : shapes()) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const std::vector<uint8_t> rows = quantized_rows(s.out, s.in, seed++);
      const std::vector<uint8_t> panels = packed(rows, s.out, s.in);
      std::vector<float> gemm(static_cast<size_t>(s.rows) * s.out, NAN), decode(gemm.size(), NAN);
      matmul_gemm(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, gemm.data());
      matmul(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, decode.data());  // small-rows path too
      EXPECT_TRUE(same_bits(gemm, decode)) << describe(level + " matmul", s);
      for (int r = 0; r < s.rows; r += 3) {  // decode of one token: the streaming path
        const std::vector<float> x_row(x.begin() + static_cast<ptrdiff_t>(r) * s.in, x.begin() + static_cast<ptrdiff_t>(r + 1) * s.in);
        std::vector<float> one(static_cast<size_t>(s.out), NAN);
        matmul(x_row.data(), 1, panels.data(), layout().panels, s.out, s.in, one.data());
        const std::vector<float> gemm_row(gemm.begin() + static_cast<ptrdiff_t>(r) * s.out,
                                          gemm.begin() + static_cast<ptrdiff_t>(r + 1) * s.out);
        EXPECT_TRUE(same_bits(gemm_row, one)) << describe(level + " one row", s) << " row " << r;
      }
      if (layout().rows_prefill_same == level) {
        std::vector<float> expected(gemm.size(), NAN);
        matmul_gemm(x.data(), s.rows, rows.data(), layout().rows, s.out, s.in, expected.data());
        EXPECT_TRUE(same_bits(expected, gemm)) << describe(level + " gemm of the rows", s);
      }
    }
  }

  // sum |x_i w_i| per output, over the quantized operands: the scale of a product's rounding error.
  std::vector<double> magnitudes(const std::vector<float>& x, const std::vector<uint8_t>& w, Shape s) const {
    const size_t row = row_bytes(layout().rows, s.in);
    std::vector<float> w_values(static_cast<size_t>(s.in));
    std::vector<double> result(static_cast<size_t>(s.rows) * s.out, 0.0);
    for (int o = 0; o < s.out; ++o) {
      convert_to_f32(layout().rows, w.data() + o * row, w_values.data(), w_values.size());
      for (int r = 0; r < s.rows; ++r) {
        for (int i = 0; i < s.in; ++i) {
          result[static_cast<size_t>(r) * s.out + o] +=
              std::fabs(static_cast<double>(x[static_cast<size_t>(r) * s.in + i]) * w_values[static_cast<size_t>(i)]);
        }
      }
    }
    return result;
  }
};

TEST_P(R16Panels, PackingIsExactBothWaysAndKeepsTheBytesPerRow) {
  const int out = 48, in = 320;
  const std::vector<uint8_t> rows = quantized_rows(out, in, 3);
  const std::vector<uint8_t> panels = packed(rows, out, in);
  EXPECT_EQ(static_cast<size_t>(out) * row_bytes(layout().panels, in), panels.size());
  EXPECT_NE(rows, panels);  // a different layout of the same bytes' worth
  const size_t row = row_bytes(layout().rows, in);
  std::vector<uint8_t> back(row);
  for (int o = 0; o < out; ++o) {
    layout().unpack_row(panels.data(), in, o, back.data());
    EXPECT_EQ(0, std::memcmp(back.data(), rows.data() + o * row, row)) << "row " << o;
  }
  const size_t panel_bytes = 16 * row;
  const uint8_t* values = rows.data() + 17 * row + quant_values_offset(in);
  if (layout().rows == DType::Q8_0) {
    // Row 17's value 5 of block 2 is panel 1, block 2 (512 bytes each), step 1, lane 1, byte 1, plus 128.
    const uint8_t stored = panels[panel_bytes + 2 * 512 + 1 * 64 + 1 * 4 + 1];
    EXPECT_EQ(static_cast<int>(static_cast<int8_t>(values[2 * 32 + 5])) + 128, static_cast<int>(stored));
  } else {
    // Row 17's nibble byte 5 of block 2 (values 5 and 21) is panel 1, block 2 (256 bytes each), step 1,
    // lane 1, byte 1, as it was.
    EXPECT_EQ(values[2 * 16 + 5], panels[panel_bytes + 2 * 256 + 1 * 64 + 1 * 4 + 1]);
    // Its scale for block 3 follows all the blocks' nibbles: block 3, row 1 of the panel.
    uint16_t scale, stored_scale;
    std::memcpy(&scale, rows.data() + 17 * row + 3 * 2, 2);
    std::memcpy(&stored_scale, panels.data() + panel_bytes + (in / 32) * 256 + (3 * 16 + 1) * 2, 2);
    EXPECT_EQ(scale, stored_scale);
  }
}

TEST_P(R16Panels, ShapesThatAreNotWholePanelsAreRefused) {
  EXPECT_FALSE(layout().fits(40, 128));
  EXPECT_FALSE(layout().fits(48, 80));
  EXPECT_TRUE(layout().fits(48, 128));
  EXPECT_EQ(layout().in_multiple == 32, layout().fits(48, 96));
  std::vector<uint8_t> rows = quantized_rows(40, 128, 4);
  std::vector<uint8_t> out(rows.size());
  EXPECT_THROW(layout().pack(rows.data(), 40, 128, out.data()), Error);
  std::vector<float> x(128, 0.5f), y(40);
  EXPECT_THROW(matmul(x.data(), 1, rows.data(), layout().panels, 40, 128, y.data()), Error);
  float value = 0.0f;
  EXPECT_THROW(convert_to_f32(layout().panels, rows.data(), &value, 1), Error);
}

TEST_P(R16Panels, ScalarTwinGivesTheRowsResultsBitForBit) {
  uint32_t seed = 10;
  for (Shape s : shapes()) {
    const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
    const std::vector<uint8_t> rows = quantized_rows(s.out, s.in, seed++);
    std::vector<float> expected(static_cast<size_t>(s.rows) * s.out, NAN), y(expected.size(), NAN);
    scalar::matmul(x.data(), s.rows, rows.data(), layout().rows, s.out, s.in, expected.data());
    scalar::matmul(x.data(), s.rows, packed(rows, s.out, s.in).data(), layout().panels, s.out, s.in, y.data());
    EXPECT_TRUE(same_bits(expected, y)) << describe("scalar", s);
  }
}

TEST_P(R16Panels, PanelKernelGivesTheSameBitsForEveryRowCount) {
  KernelSettingsGuard guard;
  const auto levels = available_isas();
  int tested = 0;
  uint32_t seed = 200;
  for (const std::string& level : layout().packed_on) {
    if (std::find(levels.begin(), levels.end(), level) == levels.end()) continue;
    ++tested;
    set_isa(level);
    check_row_counts(level, seed);
  }
  if (tested == 0) GTEST_SKIP() << "none of the levels that read these panels is here";
}

TEST_P(R16Panels, EveryLevelMatchesTheScalarTwin) {
  KernelSettingsGuard guard;
  uint32_t seed = 400;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    for (Shape s : {Shape{1, 64, 512}, Shape{4, 208, 1024}, Shape{17, 80, 576}, Shape{33, 48, 128}}) {
      const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, seed++);
      const std::vector<uint8_t> rows = quantized_rows(s.out, s.in, seed++);
      const std::vector<uint8_t> panels = packed(rows, s.out, s.in);
      std::vector<float> reference(static_cast<size_t>(s.rows) * s.out, NAN), y(reference.size(), NAN);
      scalar::matmul(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, reference.data());
      matmul(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, y.data());
      // Exact integer blocks; only the fp32 scaling and summing of the blocks may round differently.
      expect_close(y, std::vector<double>(reference.begin(), reference.end()), magnitudes(x, rows, s), 1e-5,
                   describe(level, s));
    }
  }
}

TEST_P(R16Panels, ResultDoesNotDependOnThreadCount) {
  KernelSettingsGuard guard;
  const Shape s{9, 1024, 512};
  const auto x = random_floats(static_cast<size_t>(s.rows) * s.in, 600);
  const std::vector<uint8_t> panels = packed(quantized_rows(s.out, s.in, 601), s.out, s.in);
  for (const std::string& level : available_isas()) {
    set_isa(level);
    std::vector<float> one(static_cast<size_t>(s.rows) * s.out, NAN), two(one.size(), NAN);
    set_num_threads(1);
    matmul_gemm(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, one.data());
    set_num_threads(2);
    matmul_gemm(x.data(), s.rows, panels.data(), layout().panels, s.out, s.in, two.data());
    EXPECT_TRUE(same_bits(one, two)) << level;
  }
}

TEST_P(R16Panels, OnlyItsLevelAsksForThePanels) {
  KernelSettingsGuard guard;
  for (const std::string& level : available_isas()) {
    set_isa(level);
    const bool packs = std::find(layout().packed_on.begin(), layout().packed_on.end(), level) != layout().packed_on.end();
    const DType expected = packs ? layout().panels : layout().rows;
    EXPECT_EQ(expected, packed_weight_type(layout().rows, 4096, 4096)) << level;
    EXPECT_EQ(layout().rows, packed_weight_type(layout().rows, 4100, 4096)) << level;  // not whole panels
    EXPECT_EQ(DType::BF16, packed_weight_type(DType::BF16, 4096, 4096)) << level;
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, R16Panels, ::testing::Values(kQ8_0, kQ4_0),
                         [](const ::testing::TestParamInfo<Layout>& layout) {
                           return std::string(dtype_name(layout.param.rows));
                         });

}  // namespace
}  // namespace llama31::kernels
