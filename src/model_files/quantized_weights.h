// Dequantization of the published quantized Llama 3.1 layouts into the dense weights the kernels
// multiply by, and the packing that writes those layouts (llama31 quantize).
//
// AWQ (AutoAWQ WQLinear_GEMM): qweight int32 [in, out/8], qzeros int32 [in/g, out/8], scales f16
// [in/g, out]. Word c of a row packs columns 8c..8c+7, nibble i (bits 4i..4i+3) holding column
// 8c + kAwqOrder[i]. W[o][i] = (q - z) * s, computed in f16 as AutoAWQ does.
// GPTQ (AutoGPTQ, checkpoint_format "gptq"): qweight int32 [in/8, out], nibble j of row r is input
// 8r + j; qzeros int32 [groups, out/8], nibble j of word c is column 8c + j, stored as zero - 1;
// scales f16 [groups, out]; g_idx int32 [in] names each input's group (act-order permutes it; absent
// means i / group_size). W[o][i] = (q - (z + 1)) * s.
// FP8 (fbgemm_fp8): weight F8_E4M3 [out, in], weight_scale [out, 1] (or [out]); W = w * scale. The kernels
// multiply by the e4m3 bytes as stored (QuantizedForm::Runtime; the scale is applied to each output after)
// or, for convert and quantize (QuantizedForm::Dense), W is widened to bf16 as the unquantized layers are.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "model_files/config.h"
#include "model_files/model_folder.h"
#include "model_files/safetensors.h"

namespace llama31 {

inline constexpr std::array<int, 8> kAwqOrder = {0, 2, 4, 6, 1, 3, 5, 7};

// One int4 linear layer unpacked from either layout: W[o][i] = (code - zero) * scale with the group of input i.
struct Int4Layer {
  int64_t out = 0, in = 0, groups = 0;
  std::vector<uint8_t> code;       // [out][in], 0..15
  std::vector<uint8_t> zero;       // [groups][out] (GPTQ's stored zero - 1 already added back)
  std::vector<float> scale;        // [groups][out]
  std::vector<int32_t> group_of;   // [in]
};
Int4Layer unpack_awq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales, int group_size);
Int4Layer unpack_gptq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                      const TensorView* g_idx, int group_size);
// Dense [out][in] f16 weights: (code - zero) * scale rounded once to f16, as AutoAWQ / AutoGPTQ compute them.
std::vector<uint16_t> dequantize_int4(const Int4Layer& layer);

// The same layer for the Q4_0 kernels, without rounding anything: since (q - z) * s = (q - 8) * s + (8 - z) * s,
// the codes and f16 scales become Q4_0 rows (each block of 32 inputs takes its group's scale) and the rest is
// an offset per output and group, added as offset x (sum of the group's inputs) after the product:
//   y[o] = Q4_0 row o . x[input_order] + sum_g offsets[g][o] * sum(x over group g).
// input_order is empty unless GPTQ's act-order scattered the groups: the inputs are then sorted by group so
// each group is group_size consecutive inputs, and x is gathered in that order first. No value when the
// layer cannot be held so (groups not of equal size, a size not a multiple of 32, scales that are not f16).
struct Int4AsQ4_0 {
  std::vector<std::byte> rows;       // [out] rows of row_bytes(Q4_0, in)
  std::vector<float> offsets;        // [groups][out] (as the scales: one output's run per group)
  std::vector<int32_t> input_order;  // [in] or empty
  int group_size = 0;
};
std::optional<Int4AsQ4_0> int4_as_q4_0(const Int4Layer& layer);

// Dense [out][in] f16 weights of one AWQ linear layer (tensors named module.qweight etc.).
std::vector<uint16_t> dequantize_awq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                                     int group_size);
// Dense [out][in] f16 weights of one GPTQ linear layer; g_idx may be null.
std::vector<uint16_t> dequantize_gptq(const TensorView& qweight, const TensorView& qzeros, const TensorView& scales,
                                      const TensorView* g_idx, int group_size);
// Dense [out][in] bf16 weights of one FP8 linear layer.
std::vector<uint16_t> dequantize_fp8(const TensorView& weight, const TensorView& weight_scale);
// An FP8 layer's [out] per-channel scales as floats (weight_scale checked against the weight's shape).
std::vector<float> fp8_scales(const TensorView& weight, const TensorView& weight_scale);
// FP8 layers held as stored (QuantizedForm::Runtime) keep "module.weight" F8_E4M3 [out, in] and have
// "module.weight_scale" re-stored as F32 [out]: y[r][o] = scale[o] * sum_i x[r][i] * e4m3(W[o][i]).
inline constexpr const char* kFp8ScaleSuffix = ".weight_scale";

// Replaces each quantized linear layer of a checkpoint by its "module.weight" (held in memory by the store),
// showing progress. Runtime: int4 layers as Q4_0 (int4_as_q4_0) with their offsets in
// "module.weight_group_offsets" (F32 [groups, out]) and, for act-order, "module.weight_input_order" (I32 [in]);
// layers that cannot be held so, and every layer with Dense, become f16 (what convert and quantize read).
// Returns the modules whose activations are quantized too (FP8).
// A layer needs either its quantized tensors or a plain weight; anything inconsistent is an Error naming
// the tensor.
inline constexpr const char* kInt4OffsetsSuffix = ".weight_group_offsets";
inline constexpr const char* kInt4InputOrderSuffix = ".weight_input_order";
std::set<std::string> dequantize_checkpoint(TensorStore& store, const LlamaConfig& config, bool show_progress,
                                            QuantizedForm form);

// Re-stores every layer's linear weights, the embedding and the output head as `to` (Q8_0 or Q4_0) in
// memory, as llama.cpp runs a Q8_0 or Q4_0 GGUF of the same weights (every matrix in that type, rounded
// by the reference quantizer; a tied head stays the embedding). Returns how many matrices were converted.
int quantize_weights_in_memory(TensorStore& store, const LlamaConfig& config, DType to, bool show_progress);

// ---- writing the layouts (round to nearest; used by llama31 quantize) ----

struct PackedInt4 {
  std::vector<int32_t> qweight, qzeros;
  std::vector<uint16_t> scales;  // f16
};
// Asymmetric 4-bit per group of group_size inputs of a dense [out][in] weight (round to nearest, zero
// point so the group's min and max are representable), packed as AWQ GEMM.
PackedInt4 quantize_awq(const std::vector<float>& w, int out, int in, int group_size);
// The dense weights quantize_awq's output stands for (what loading it gives), without packing.
std::vector<float> int4_round_trip(const std::vector<float>& w, int out, int in, int group_size);
struct Fp8Weight {
  std::vector<uint8_t> weight;  // e4m3 [out][in]
  std::vector<float> scale;     // [out]: max|row| / 448
};
Fp8Weight quantize_fp8(const std::vector<float>& w, int out, int in);

}  // namespace llama31
