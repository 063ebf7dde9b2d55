#include "engine/weight_packing.h"

#include <algorithm>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "model_files/model_folder.h"
#include "util/progress.h"

namespace llama31 {
namespace {

constexpr std::align_val_t kAlignment{64};  // panels are loaded whole by 64-byte vector loads

std::shared_ptr<std::byte> aligned_storage(size_t bytes) {
  return {static_cast<std::byte*>(::operator new(bytes, kAlignment)),
          [](std::byte* p) { ::operator delete(p, kAlignment); }};
}

std::vector<std::string> packable_matrices(const TensorStore& weights, const LlamaConfig& config) {
  std::vector<std::string> names;
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (const char* module : kLayerLinearModules) names.push_back(layer_tensor_name(l, module) + ".weight");
  }
  if (!config.tie_word_embeddings) names.emplace_back("lm_head.weight");
  std::erase_if(names, [&](const std::string& name) {
    const TensorView* view = weights.find(name);
    return view == nullptr || view->shape.size() != 2 ||
           kernels::packed_weight_type(view->dtype, view->shape[0], view->shape[1]) == view->dtype;
  });
  return names;
}

}  // namespace

PackedWeights pack_weights_for_kernels(TensorStore& weights, const LlamaConfig& config, bool show_progress) {
  const std::vector<std::string> names = packable_matrices(weights, config);
  PackedWeights packed;
  for (const std::string& name : names) packed.bytes += weights.get(name).nbytes;
  std::optional<Progress> progress;
  if (show_progress && !names.empty()) progress.emplace("packing weights for the kernels", packed.bytes);
  size_t done = 0;
  for (const std::string& name : names) {
    const TensorView& view = weights.get(name);
    const int64_t out = view.shape[0];
    const int64_t in = view.shape[1];
    const DType to = kernels::packed_weight_type(view.dtype, out, in);  // Q8_0_R16 or Q4_0_R16
    std::shared_ptr<std::byte> storage = aligned_storage(view.nbytes);
    // Panels of 16 rows, each the same bytes as its rows, independent: slices of 64 of them on every thread.
    const int64_t panels = out / kQ8_0PanelRows;
    const size_t source_row = row_bytes(view.dtype, in);
    const size_t panel_bytes = kQ8_0PanelRows * source_row;
    const auto pack = to == DType::Q8_0_R16 ? pack_q8_0_r16 : pack_q4_0_r16;
    constexpr int64_t kSlice = 64;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t first = 0; first < panels; first += kSlice) {
      const int64_t count = std::min(kSlice, panels - first);
      pack(view.data + static_cast<size_t>(first * kQ8_0PanelRows) * source_row, count * kQ8_0PanelRows, in,
           storage.get() + static_cast<size_t>(first) * panel_bytes);
    }
    done += view.nbytes;
    const size_t nbytes = view.nbytes;
    weights.add_owned(name, to, view.shape, std::move(storage), nbytes);  // frees an owned copy (view too)
    ++packed.tensors;
    if (progress) progress->update(done);
  }
  if (progress) progress->finish();
  return packed;
}

}  // namespace llama31
