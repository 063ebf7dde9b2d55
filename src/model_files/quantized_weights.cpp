#include "model_files/quantized_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

#include "model_files/model_folder.h"
#include "util/error.h"
#include "util/progress.h"

namespace llama31 {
namespace {

void require_dtype(const TensorView& t, DType dtype) {
  if (t.dtype != dtype) {
    fail("{}: tensor {} has dtype {}, expected {}", t.file.string(), t.name, dtype_name(t.dtype), dtype_name(dtype));
  }
}

void require_float(const TensorView& t) {
  if (!is_compute_dtype(t.dtype)) {
    fail("{}: tensor {} has dtype {}, expected F16, BF16 or F32", t.file.string(), t.name, dtype_name(t.dtype));
  }
}

void require_2d(const TensorView& t) {
  if (t.shape.size() != 2 || t.shape[0] <= 0 || t.shape[1] <= 0) {
    fail("{}: tensor {} must be a non-empty matrix, has shape {}", t.file.string(), t.name, t.shape_string());
  }
}

const int32_t* words(const TensorView& t) { return reinterpret_cast<const int32_t*>(t.data); }

int nibble(int32_t word, int index) { return static_cast<int>((static_cast<uint32_t>(word) >> (4 * index)) & 0xfu); }

// (q - z) * s rounded once to f16: the product is exact in fp32, so this is f16 arithmetic's result.
uint16_t dequant_f16(int q, int z, float s) { return f32_to_f16(static_cast<float>(q - z) * s); }

template <typename Bytes>
std::vector<std::byte> as_bytes(const std::vector<Bytes>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(Bytes));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

}  // namespace

Int4Layer unpack_awq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales, int group_size) {
  require_dtype(qweight, DType::I32);
  require_dtype(qzeros, DType::I32);
  require_float(scales);
  require_2d(qweight);
  Int4Layer layer;
  layer.in = qweight.shape[0];
  layer.out = qweight.shape[1] * 8;
  if (group_size <= 0 || layer.in % group_size != 0) {
    fail("{}: tensor {} has {} input rows, not a multiple of group_size {}", qweight.file.string(), qweight.name,
         layer.in, group_size);
  }
  const int64_t in = layer.in, out = layer.out;
  layer.groups = in / group_size;
  qzeros.require_shape({layer.groups, out / 8});
  scales.require_shape({layer.groups, out});
  layer.group_of.resize(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) layer.group_of[static_cast<size_t>(i)] = static_cast<int32_t>(i / group_size);
  layer.scale = scales.values();
  layer.code.resize(static_cast<size_t>(out * in));
  layer.zero.resize(static_cast<size_t>(layer.groups * out));
  const int32_t* q = words(qweight);
  const int32_t* z = words(qzeros);
  const int64_t packed_cols = out / 8;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < packed_cols; ++c) {
    for (int n = 0; n < 8; ++n) {
      const int64_t o = 8 * c + kAwqOrder[static_cast<size_t>(n)];
      for (int64_t g = 0; g < layer.groups; ++g) {
        layer.zero[static_cast<size_t>(g * out + o)] = static_cast<uint8_t>(nibble(z[g * packed_cols + c], n));
      }
      for (int64_t i = 0; i < in; ++i) {
        layer.code[static_cast<size_t>(o * in + i)] = static_cast<uint8_t>(nibble(q[i * packed_cols + c], n));
      }
    }
  }
  return layer;
}

Int4Layer unpack_gptq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                      const TensorView* g_idx, int group_size) {
  require_dtype(qweight, DType::I32);
  require_dtype(qzeros, DType::I32);
  require_float(scales);
  require_2d(qweight);
  Int4Layer layer;
  layer.in = qweight.shape[0] * 8;
  layer.out = qweight.shape[1];
  const int64_t in = layer.in, out = layer.out;
  if (out % 8 != 0) fail("{}: tensor {} has {} columns, not a multiple of 8", qweight.file.string(), qweight.name, out);
  if (group_size != -1 && group_size <= 0) fail("GPTQ group_size {} is not valid", group_size);
  layer.groups = group_size == -1 ? 1 : (in + group_size - 1) / group_size;
  const int64_t groups = layer.groups;
  qzeros.require_shape({groups, out / 8});
  scales.require_shape({groups, out});
  layer.group_of.resize(static_cast<size_t>(in));
  if (g_idx != nullptr) {
    require_dtype(*g_idx, DType::I32);
    g_idx->require_shape({in});
    for (int64_t i = 0; i < in; ++i) {
      const int32_t g = words(*g_idx)[i];
      if (g < 0 || g >= groups) {
        fail("{}: tensor {} maps input {} to group {}, outside 0..{}", g_idx->file.string(), g_idx->name, i, g,
             groups - 1);
      }
      layer.group_of[static_cast<size_t>(i)] = g;
    }
  } else {
    for (int64_t i = 0; i < in; ++i) {
      layer.group_of[static_cast<size_t>(i)] = group_size == -1 ? 0 : static_cast<int32_t>(i / group_size);
    }
  }
  layer.scale = scales.values();
  layer.code.resize(static_cast<size_t>(out * in));
  layer.zero.resize(static_cast<size_t>(groups * out));
  const int32_t* q = words(qweight);
  const int32_t* z = words(qzeros);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t o = 0; o < out; ++o) {  // stored as zero - 1
      layer.zero[static_cast<size_t>(g * out + o)] =
          static_cast<uint8_t>(nibble(z[g * (out / 8) + o / 8], static_cast<int>(o % 8)) + 1);
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      layer.code[static_cast<size_t>(o * in + i)] =
          static_cast<uint8_t>(nibble(q[(i / 8) * out + o], static_cast<int>(i % 8)));
    }
  }
  return layer;
}

std::vector<uint16_t> dequantize_int4(const Int4Layer& layer) {
  std::vector<uint16_t> w(layer.code.size());
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < layer.out; ++o) {
    for (int64_t i = 0; i < layer.in; ++i) {
      const size_t at = static_cast<size_t>(o * layer.in + i);
      const size_t g = static_cast<size_t>(layer.group_of[static_cast<size_t>(i)] * layer.out + o);
      w[at] = dequant_f16(layer.code[at], layer.zero[g], layer.scale[g]);
    }
  }
  return w;
}

std::vector<uint16_t> dequantize_awq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                                     int group_size) {
  return dequantize_int4(unpack_awq(qweight, qzeros, scales, group_size));
}

std::vector<uint16_t> dequantize_gptq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                                      const TensorView* g_idx, int group_size) {
  return dequantize_int4(unpack_gptq(qweight, qzeros, scales, g_idx, group_size));
}

std::optional<Int4AsQ4_0> int4_as_q4_0(const Int4Layer& layer) {
  const int64_t in = layer.in, out = layer.out, groups = layer.groups;
  if (in % 32 != 0 || in % groups != 0) return std::nullopt;
  const int64_t group_size = in / groups;
  // Inputs in group order (a stable sort: identity unless GPTQ's act-order permuted g_idx).
  std::vector<int32_t> order(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) order[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return layer.group_of[static_cast<size_t>(a)] < layer.group_of[static_cast<size_t>(b)];
  });
  for (int64_t j = 0; j < in; ++j) {  // every group must then be one run of group_size inputs
    if (layer.group_of[static_cast<size_t>(order[static_cast<size_t>(j)])] != j / group_size) return std::nullopt;
  }
  if (group_size % 32 != 0) return std::nullopt;
  for (const float s : layer.scale) {  // Q4_0 keeps f16 scales: bf16 or f32 ones must be f16 values
    if (f16_to_f32(f32_to_f16(s)) != s) return std::nullopt;
  }
  Int4AsQ4_0 result;
  result.group_size = static_cast<int>(group_size);
  bool permuted = false;
  for (int64_t j = 0; j < in; ++j) permuted = permuted || order[static_cast<size_t>(j)] != j;
  if (permuted) result.input_order = order;
  const size_t bytes = row_bytes(DType::Q4_0, in);
  result.rows.resize(static_cast<size_t>(out) * bytes);
  result.offsets.resize(static_cast<size_t>(out * groups));
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o) {
    std::byte* row = result.rows.data() + static_cast<size_t>(o) * bytes;
    std::byte* nibbles = row + quant_values_offset(static_cast<size_t>(in));
    for (int64_t b = 0; b < in / 32; ++b) {
      const size_t g = static_cast<size_t>((b * 32 / group_size) * out + o);
      const uint16_t d = f32_to_f16(layer.scale[g]);  // the f16 scale as stored: exact
      std::memcpy(row + 2 * b, &d, sizeof d);
      for (int j = 0; j < 16; ++j) {
        const auto code = [&](int k) {
          return layer.code[static_cast<size_t>(o * in + order[static_cast<size_t>(b * 32 + k)])];
        };
        nibbles[b * 16 + j] = static_cast<std::byte>(code(j) | (code(j + 16) << 4));
      }
    }
    for (int64_t g = 0; g < groups; ++g) {
      const size_t at = static_cast<size_t>(g * out + o);
      result.offsets[at] = static_cast<float>(8 - layer.zero[at]) * layer.scale[at];
    }
  }
  return result;
}

std::vector<float> fp8_scales(const TensorView& weight, const TensorView& weight_scale) {
  require_dtype(weight, DType::F8_E4M3);
  require_float(weight_scale);
  require_2d(weight);
  const int64_t out = weight.shape[0];
  if (weight_scale.shape != std::vector<int64_t>{out, 1} && weight_scale.shape != std::vector<int64_t>{out}) {
    fail("{}: tensor {} has shape {}, expected [{}, 1] (one scale per output channel)", weight_scale.file.string(),
         weight_scale.name, weight_scale.shape_string(), out);
  }
  return weight_scale.values();
}

std::vector<uint16_t> dequantize_fp8(const TensorView& weight, const TensorView& weight_scale) {
  const std::vector<float> scale = fp8_scales(weight, weight_scale);
  const int64_t out = weight.shape[0];
  const int64_t in = weight.shape[1];
  const auto* bytes = reinterpret_cast<const uint8_t*>(weight.data);
  std::vector<uint16_t> w(static_cast<size_t>(out * in));
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t i = 0; i < in; ++i) {
      const size_t at = static_cast<size_t>(o * in + i);
      w[at] = f32_to_bf16(f8e4m3_to_f32(bytes[at]) * scale[static_cast<size_t>(o)]);
    }
  }
  return w;
}

std::set<std::string> dequantize_checkpoint(TensorStore& store, const LlamaConfig& config, bool show_progress,
                                            QuantizedForm form) {
  std::set<std::string> fp8_modules;
  if (!config.quantization) return fp8_modules;
  const QuantizationConfig& quant = *config.quantization;
  const int modules = config.num_hidden_layers * static_cast<int>(kLayerLinearModules.size());
  std::optional<Progress> progress;
  if (show_progress) {  // Runtime keeps the packed numbers (rearranged), Dense widens them
    const char* action = form == QuantizedForm::Dense ? "dequantizing" : "unpacking";
    progress.emplace(fmt::format("{} {}", action, quant_method_name(quant.method)), modules, "layers");
  }
  int done = 0;
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (const char* suffix : kLayerLinearModules) {
      const std::string module = layer_tensor_name(layer, suffix);
      const std::string weight_name = module + ".weight";
      if (quant.method == QuantMethod::FbgemmFp8) {
        const TensorView* weight = store.find(weight_name);
        if (weight != nullptr && weight->dtype == DType::F8_E4M3) {
          const TensorView& weight_scale = store.get(module + kFp8ScaleSuffix);
          if (form == QuantizedForm::Dense) {
            std::vector<int64_t> shape = weight->shape;
            const std::vector<uint16_t> dense = dequantize_fp8(*weight, weight_scale);
            store.add_owned(weight_name, DType::BF16, std::move(shape), as_bytes(dense));
            store.remove(module + kFp8ScaleSuffix);
          } else {  // the e4m3 bytes stay as mapped; the scales become F32 [out] for the model
            const std::vector<float> scale = fp8_scales(*weight, weight_scale);
            store.add_owned(module + kFp8ScaleSuffix, DType::F32, {weight->shape[0]}, as_bytes(scale));
          }
          store.remove(module + ".input_scale_ub");
          fp8_modules.insert(module);
        }
      } else if (const TensorView* qweight = store.find(module + ".qweight"); qweight != nullptr) {
        const TensorView& qzeros = store.get(module + ".qzeros");
        const TensorView& scales = store.get(module + ".scales");
        const Int4Layer int4 = quant.method == QuantMethod::Awq
                                   ? unpack_awq(*qweight, qzeros, scales, quant.group_size)
                                   : unpack_gptq(*qweight, qzeros, scales, store.find(module + ".g_idx"),
                                                 quant.group_size);
        std::optional<Int4AsQ4_0> q4;
        if (form == QuantizedForm::Runtime) q4 = int4_as_q4_0(int4);
        if (q4) {
          store.add_owned(weight_name, DType::Q4_0, {int4.out, int4.in}, std::move(q4->rows));
          store.add_owned(module + kInt4OffsetsSuffix, DType::F32, {int4.groups, int4.out}, as_bytes(q4->offsets));
          if (!q4->input_order.empty()) {
            store.add_owned(module + kInt4InputOrderSuffix, DType::I32, {int4.in}, as_bytes(q4->input_order));
          }
        } else {
          store.add_owned(weight_name, DType::F16, {int4.out, int4.in}, as_bytes(dequantize_int4(int4)));
        }
        for (const char* part : {".qweight", ".qzeros", ".scales", ".g_idx"}) store.remove(module + part);
      }
      if (progress) progress->update(static_cast<uint64_t>(++done));
    }
  }
  if (progress) progress->finish();
  store.release_replaced();
  return fp8_modules;
}

namespace {

// An FP8 weight's per-row scales (the store's F32 [out] scale tensor), or nothing for other dtypes.
std::vector<float> fp8_row_scales(const TensorStore& store, const TensorView& weight, const std::string& scale_name) {
  if (weight.dtype != DType::F8_E4M3) return {};
  const TensorView* scale = store.find(scale_name);
  if (scale == nullptr) {
    fail("{}: FP8 tensor {} has no {} to scale it by", weight.file.string(), weight.name, scale_name);
  }
  return fp8_scales(weight, *scale);
}

}  // namespace

int quantize_weights_in_memory(TensorStore& store, const LlamaConfig& config, DType to, bool show_progress) {
  if (to != DType::Q8_0 && to != DType::Q4_0) {
    fail("weights can be re-stored in memory as q8_0 or q4_0 only, not {}", dtype_name(to));
  }
  std::vector<std::pair<std::string, const TensorView*>> targets;  // (name to store, source)
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (const char* suffix : kLayerLinearModules) {
      const std::string module = layer_tensor_name(layer, suffix);
      if (store.find(module + kInt4OffsetsSuffix) != nullptr) {
        fail("{}: an int4 layer held as Q4_0 with offsets cannot be re-stored; open the checkpoint with "
             "QuantizedForm::Dense", module);
      }
      const std::string name = module + ".weight";
      targets.emplace_back(name, &store.get(name));
    }
  }
  // The embedding too, as llama.cpp's Q8_0 and Q4_0 files hold it (a tied head then stays the embedding).
  targets.emplace_back("model.embed_tokens.weight", &store.get("model.embed_tokens.weight"));
  if (const TensorView* head = store.find("lm_head.weight")) targets.emplace_back("lm_head.weight", head);
  std::optional<Progress> progress;
  if (show_progress) progress.emplace(fmt::format("re-storing weights as {}", dtype_name(to)), targets.size(), "tensors");
  int done = 0;
  for (const auto& [name, source] : targets) {
    if (source->shape.size() != 2 || source->shape[1] % 32 != 0) {
      fail("{}: tensor {} has shape {}; {} needs rows of a multiple of 32", source->file.string(), source->name,
           source->shape_string(), dtype_name(to));
    }
    const int64_t rows = source->shape[0];
    const int64_t in = source->shape[1];
    const size_t bytes = row_bytes(to, in);
    const size_t source_row = row_bytes(source->dtype, in);
    const std::string fp8_scale_name = name.substr(0, name.size() - std::strlen(".weight")) + kFp8ScaleSuffix;
    const std::vector<float> fp8_scale = fp8_row_scales(store, *source, fp8_scale_name);
    std::vector<std::byte> packed(static_cast<size_t>(rows) * bytes);
#pragma omp parallel
    {
      std::vector<float> values(static_cast<size_t>(in));
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        convert_to_f32(source->dtype, source->data + static_cast<size_t>(r) * source_row, values.data(), values.size());
        if (!fp8_scale.empty()) {  // FP8: e4m3 value * the row's scale, the weight it stands for
          for (float& v : values) v *= fp8_scale[static_cast<size_t>(r)];
        }
        std::byte* dst = packed.data() + static_cast<size_t>(r) * bytes;
        if (to == DType::Q8_0) {
          quantize_row_q8_0(values.data(), values.size(), dst);
        } else {
          quantize_row_q4_0(values.data(), values.size(), dst);
        }
      }
    }
    store.add_owned(name, to, source->shape, std::move(packed));
    if (!fp8_scale.empty()) store.remove(fp8_scale_name);  // applied: the layer is plain Q8_0 / Q4_0 now
    if (progress) progress->update(static_cast<uint64_t>(++done));
  }
  if (progress) progress->finish();
  store.release_replaced();
  return done;
}

namespace {

// One group's asymmetric 4-bit grid: round to nearest, zero point so the group's min and max (and 0) fit.
struct Int4Grid {
  uint16_t scale_bits;
  float scale;
  int zero;
  int code(float value) const { return std::clamp(static_cast<int>(std::nearbyint(value / scale)) + zero, 0, 15); }
};

Int4Grid int4_grid(const float* values, int n) {
  const float lo = std::min(0.0f, *std::min_element(values, values + n));
  const float hi = std::max(0.0f, *std::max_element(values, values + n));
  uint16_t scale_bits = f32_to_f16(hi > lo ? (hi - lo) / 15.0f : 1.0f);
  if ((scale_bits & 0x7fffu) == 0) scale_bits = 1;  // a range below f16's smallest step
  const float scale = f16_to_f32(scale_bits);
  return {scale_bits, scale, std::clamp(static_cast<int>(std::nearbyint(-lo / scale)), 0, 15)};
}

void check_int4_shape(size_t size, int out, int in, int group_size) {
  if (out % 8 != 0 || group_size <= 0 || in % group_size != 0 || size != static_cast<size_t>(out) * in) {
    fail("int4 quantization needs out ({}) a multiple of 8 and in ({}) a multiple of the group size ({})", out, in,
         group_size);
  }
}

}  // namespace

PackedInt4 quantize_awq(const std::vector<float>& w, int out, int in, int group_size) {
  check_int4_shape(w.size(), out, in, group_size);
  const int groups = in / group_size;
  const int packed_cols = out / 8;
  PackedInt4 p;
  p.qweight.assign(static_cast<size_t>(in) * packed_cols, 0);
  p.qzeros.assign(static_cast<size_t>(groups) * packed_cols, 0);
  p.scales.assign(static_cast<size_t>(groups) * out, 0);
  std::vector<int> position_in_word(8);  // column offset -> nibble index
  for (int n = 0; n < 8; ++n) position_in_word[static_cast<size_t>(kAwqOrder[static_cast<size_t>(n)])] = n;
  // One thread per word column (8 outputs), so no two threads write the same packed word.
#pragma omp parallel for schedule(static)
  for (int c = 0; c < packed_cols; ++c) {
    for (int column = 0; column < 8; ++column) {
      const int o = 8 * c + column;
      const float* row = w.data() + static_cast<size_t>(o) * in;
      const int shift = 4 * position_in_word[static_cast<size_t>(column)];
      for (int g = 0; g < groups; ++g) {
        const float* values = row + static_cast<size_t>(g) * group_size;
        const Int4Grid grid = int4_grid(values, group_size);
        p.scales[static_cast<size_t>(g) * out + o] = grid.scale_bits;
        p.qzeros[static_cast<size_t>(g) * packed_cols + c] |= static_cast<int32_t>(static_cast<uint32_t>(grid.zero) << shift);
        for (int k = 0; k < group_size; ++k) {
          p.qweight[static_cast<size_t>(g * group_size + k) * packed_cols + c] |=
              static_cast<int32_t>(static_cast<uint32_t>(grid.code(values[k])) << shift);
        }
      }
    }
  }
  return p;
}

std::vector<float> int4_round_trip(const std::vector<float>& w, int out, int in, int group_size) {
  check_int4_shape(w.size(), out, in, group_size);
  std::vector<float> result(w.size());
#pragma omp parallel for schedule(static)
  for (int o = 0; o < out; ++o) {
    for (int g = 0; g < in / group_size; ++g) {
      const size_t at = static_cast<size_t>(o) * in + static_cast<size_t>(g) * group_size;
      const Int4Grid grid = int4_grid(w.data() + at, group_size);
      for (int k = 0; k < group_size; ++k) {  // (q - z) * s in f16, as dequantize_awq computes it
        result[at + k] = f16_to_f32(f32_to_f16(static_cast<float>(grid.code(w[at + k]) - grid.zero) * grid.scale));
      }
    }
  }
  return result;
}

Fp8Weight quantize_fp8(const std::vector<float>& w, int out, int in) {
  if (w.size() != static_cast<size_t>(out) * in) fail("fp8 quantization: {} values for [{}, {}]", w.size(), out, in);
  Fp8Weight r;
  r.weight.resize(w.size());
  r.scale.resize(static_cast<size_t>(out));
#pragma omp parallel for schedule(static)
  for (int o = 0; o < out; ++o) {
    const float* row = w.data() + static_cast<size_t>(o) * in;
    float max_abs = 0.0f;
    for (int i = 0; i < in; ++i) max_abs = std::max(max_abs, std::fabs(row[i]));
    const float scale = max_abs > 0.0f ? max_abs / 448.0f : 1.0f;
    r.scale[static_cast<size_t>(o)] = scale;
    for (int i = 0; i < in; ++i) r.weight[static_cast<size_t>(o) * in + i] = f32_to_f8e4m3(row[i] / scale);
  }
  return r;
}

}  // namespace llama31
