#include "support/quantized_layouts.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace llama31::testing {
namespace {

// AutoAWQ packs the 8 columns of a word in this order: nibble n holds column kOrder[n].
constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

template <typename T>
TensorToWrite tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  TensorToWrite t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.resize(values.size() * sizeof(T));
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

int32_t set_nibble(int32_t word, int index, int value) {
  return static_cast<int32_t>(static_cast<uint32_t>(word) | (static_cast<uint32_t>(value) << (4 * index)));
}

std::vector<uint16_t> random_f16_scales(size_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<uint16_t> s(n);
  for (auto& v : s) v = f32_to_f16(dist(rng));
  return s;
}

float f16_product(int q, int z, uint16_t scale) { return f16_to_f32(f32_to_f16(static_cast<float>(q - z) * f16_to_f32(scale))); }

}  // namespace

QuantizedLinear random_awq_linear(const std::string& module, int out, int in, int group_size, std::mt19937& rng,
                                  float scale_lo, float scale_hi) {
  const int groups = in / group_size;
  std::uniform_int_distribution<int> nib(0, 15);
  std::vector<int> q(static_cast<size_t>(in) * out), z(static_cast<size_t>(groups) * out);  // [in][out], [g][out]
  for (auto& v : q) v = nib(rng);
  for (auto& v : z) v = nib(rng);
  const std::vector<uint16_t> s = random_f16_scales(static_cast<size_t>(groups) * out, scale_lo, scale_hi, rng);
  std::vector<int32_t> qweight(static_cast<size_t>(in) * (out / 8), 0), qzeros(static_cast<size_t>(groups) * (out / 8), 0);
  for (int i = 0; i < in; ++i) {
    for (int c = 0; c < out / 8; ++c) {
      for (int n = 0; n < 8; ++n) {
        const int o = 8 * c + kOrder[n];
        int32_t& word = qweight[static_cast<size_t>(i) * (out / 8) + c];
        word = set_nibble(word, n, q[static_cast<size_t>(i) * out + o]);
        if (i % group_size == 0) {
          int32_t& zword = qzeros[static_cast<size_t>(i / group_size) * (out / 8) + c];
          zword = set_nibble(zword, n, z[static_cast<size_t>(i / group_size) * out + o]);
        }
      }
    }
  }
  QuantizedLinear r;
  r.dense.resize(static_cast<size_t>(out) * in);
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      const size_t g = static_cast<size_t>(i / group_size);
      r.dense[static_cast<size_t>(o) * in + i] =
          f16_product(q[static_cast<size_t>(i) * out + o], z[g * out + o], s[g * out + o]);
    }
  }
  r.tensors.push_back(tensor(module + ".qweight", DType::I32, {in, out / 8}, qweight));
  r.tensors.push_back(tensor(module + ".qzeros", DType::I32, {groups, out / 8}, qzeros));
  r.tensors.push_back(tensor(module + ".scales", DType::F16, {groups, out}, s));
  return r;
}

QuantizedLinear random_gptq_linear(const std::string& module, int out, int in, int group_size, bool act_order,
                                   bool with_g_idx, std::mt19937& rng, float scale_lo, float scale_hi) {
  const int groups = in / group_size;
  std::vector<int> order(static_cast<size_t>(in));
  std::iota(order.begin(), order.end(), 0);
  if (act_order) std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> g_idx(static_cast<size_t>(in));
  for (int i = 0; i < in; ++i) g_idx[static_cast<size_t>(i)] = order[static_cast<size_t>(i)] / group_size;
  std::uniform_int_distribution<int> nib(0, 15), zero(1, 15);  // stored zero is zero - 1, so zero >= 1
  std::vector<int> q(static_cast<size_t>(in) * out), z(static_cast<size_t>(groups) * out);
  for (auto& v : q) v = nib(rng);
  for (auto& v : z) v = zero(rng);
  const std::vector<uint16_t> s = random_f16_scales(static_cast<size_t>(groups) * out, scale_lo, scale_hi, rng);
  std::vector<int32_t> qweight(static_cast<size_t>(in / 8) * out, 0), qzeros(static_cast<size_t>(groups) * (out / 8), 0);
  for (int i = 0; i < in; ++i) {
    for (int o = 0; o < out; ++o) {
      int32_t& word = qweight[static_cast<size_t>(i / 8) * out + o];
      word = set_nibble(word, i % 8, q[static_cast<size_t>(i) * out + o]);
    }
  }
  for (int g = 0; g < groups; ++g) {
    for (int o = 0; o < out; ++o) {
      int32_t& word = qzeros[static_cast<size_t>(g) * (out / 8) + o / 8];
      word = set_nibble(word, o % 8, z[static_cast<size_t>(g) * out + o] - 1);
    }
  }
  QuantizedLinear r;
  r.dense.resize(static_cast<size_t>(out) * in);
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      const size_t g = static_cast<size_t>(g_idx[static_cast<size_t>(i)]);
      r.dense[static_cast<size_t>(o) * in + i] =
          f16_product(q[static_cast<size_t>(i) * out + o], z[g * out + o], s[g * out + o]);
    }
  }
  r.tensors.push_back(tensor(module + ".qweight", DType::I32, {in / 8, out}, qweight));
  r.tensors.push_back(tensor(module + ".qzeros", DType::I32, {groups, out / 8}, qzeros));
  r.tensors.push_back(tensor(module + ".scales", DType::F16, {groups, out}, s));
  if (with_g_idx) r.tensors.push_back(tensor(module + ".g_idx", DType::I32, {in}, g_idx));
  return r;
}

QuantizedLinear random_fp8_linear(const std::string& module, int out, int in, DType scale_dtype, std::mt19937& rng,
                                  float scale_lo, float scale_hi) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> codes(static_cast<size_t>(out) * in);
  for (auto& c : codes) {
    do {
      c = static_cast<uint8_t>(byte(rng));
    } while ((c & 0x7f) == 0x7f);  // 0x7f and 0xff are NaN
  }
  std::uniform_real_distribution<float> dist(scale_lo, scale_hi);
  std::vector<float> scale(static_cast<size_t>(out));
  for (auto& s : scale) {
    s = dist(rng);
    if (scale_dtype == DType::BF16) s = bf16_to_f32(f32_to_bf16(s));
  }
  QuantizedLinear r;
  r.dense_dtype = DType::BF16;
  r.dense.resize(codes.size());
  for (int o = 0; o < out; ++o) {
    for (int i = 0; i < in; ++i) {
      // e4m3 by definition: sign, 4 exponent bits (bias 7), 3 mantissa bits; exponent 0 is subnormal.
      const uint8_t c = codes[static_cast<size_t>(o) * in + i];
      const int e = (c >> 3) & 0xf;
      const int m = c & 7;
      const double magnitude = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
      const double value = (c & 0x80) ? -magnitude : magnitude;
      r.dense[static_cast<size_t>(o) * in + i] =
          bf16_to_f32(f32_to_bf16(static_cast<float>(value) * scale[static_cast<size_t>(o)]));
    }
  }
  r.tensors.push_back(tensor(module + ".weight", DType::F8_E4M3, {out, in}, codes));
  if (scale_dtype == DType::BF16) {
    std::vector<uint16_t> bits(scale.size());
    for (size_t o = 0; o < scale.size(); ++o) bits[o] = f32_to_bf16(scale[o]);
    r.tensors.push_back(tensor(module + ".weight_scale", DType::BF16, {out, 1}, bits));
  } else {
    r.tensors.push_back(tensor(module + ".weight_scale", DType::F32, {out, 1}, scale));
  }
  return r;
}

TensorView view_of(const TensorToWrite& t) {
  TensorView v;
  v.name = t.name;
  v.dtype = t.dtype;
  v.shape = t.shape;
  v.data = reinterpret_cast<const std::byte*>(t.data.data());
  v.nbytes = t.data.size();
  v.file = "(test)";
  return v;
}

}  // namespace llama31::testing
