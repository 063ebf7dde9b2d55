#include "engine/kv_cache.h"

#include "util/error.h"

namespace llama31 {

KvCache::KvCache(const LlamaConfig& config, int capacity)
    : capacity_(capacity),
      row_floats_(static_cast<size_t>(config.num_key_value_heads) * static_cast<size_t>(config.head_dim)) {
  if (capacity <= 0) fail("context size must be positive, got {}", capacity);
  if (capacity > config.max_position_embeddings) {
    fail("context size {} exceeds the model's max_position_embeddings {}", capacity,
         config.max_position_embeddings);
  }
  floats_ = static_cast<size_t>(config.num_hidden_layers) * static_cast<size_t>(capacity) * row_floats_;
  keys_.reset(new float[floats_]);
  values_.reset(new float[floats_]);
}

void KvCache::truncate(int n) {
  if (n < 0 || n > size_) fail("cannot truncate a KV cache of {} positions to {}", size_, n);
  size_ = n;
}

float* KvCache::keys(int layer, int position) {
  return keys_.get() + (static_cast<size_t>(layer) * capacity_ + position) * row_floats_;
}
float* KvCache::values(int layer, int position) {
  return values_.get() + (static_cast<size_t>(layer) * capacity_ + position) * row_floats_;
}
const float* KvCache::keys(int layer, int position) const {
  return keys_.get() + (static_cast<size_t>(layer) * capacity_ + position) * row_floats_;
}
const float* KvCache::values(int layer, int position) const {
  return values_.get() + (static_cast<size_t>(layer) * capacity_ + position) * row_floats_;
}

}  // namespace llama31
