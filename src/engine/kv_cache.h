// The key/value cache of one sequence: fp32, [layer][position][kv_heads * head_dim] for K and for V.
// Positions are appended by LlamaModel::forward; capacity is fixed at creation (the context size).
#pragma once

#include <memory>

#include "model_files/config.h"

namespace llama31 {

class KvCache {
 public:
  KvCache(const LlamaConfig& config, int capacity);

  int capacity() const { return capacity_; }
  int size() const { return size_; }  // positions filled
  void clear() { size_ = 0; }
  // Drops positions from n on (n <= size), e.g. to re-run a suffix.
  void truncate(int n);

  size_t row_floats() const { return row_floats_; }  // kv_heads * head_dim
  float* keys(int layer, int position);
  float* values(int layer, int position);
  const float* keys(int layer, int position) const;
  const float* values(int layer, int position) const;

  // Reserved bytes. Pages are only touched as positions fill, so resident memory grows with use.
  size_t bytes() const { return 2 * floats_ * sizeof(float); }

 private:
  friend class LlamaModel;
  void grow_to(int n) { size_ = n; }

  int capacity_;
  int size_ = 0;
  size_t row_floats_;
  size_t floats_;
  std::unique_ptr<float[]> keys_;  // uninitialised on purpose: see bytes()
  std::unique_ptr<float[]> values_;
};

}  // namespace llama31
