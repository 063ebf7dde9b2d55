#include "engine/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace llama31 {

// ---- KvBlockPool ----

KvBlockPool::KvBlockPool(const LlamaConfig& config, int num_blocks, int block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      layers_(config.num_hidden_layers),
      row_floats_(static_cast<size_t>(config.num_key_value_heads) * static_cast<size_t>(config.head_dim)) {
  if (num_blocks <= 0) fail("the KV cache needs at least one block, got {}", num_blocks);
  if (block_size <= 0) fail("KV block size must be positive, got {}", block_size);
  floats_ = static_cast<size_t>(num_blocks) * static_cast<size_t>(layers_) * static_cast<size_t>(block_size) *
            row_floats_;
  // Left uninitialised: the kernel maps pages on first write, so a large pool costs address space only
  // until blocks are used, and the free stack hands out recently used blocks first.
  keys_.reset(new float[floats_]);
  values_.reset(new float[floats_]);
  refs_.assign(static_cast<size_t>(num_blocks), 0);
  published_.resize(static_cast<size_t>(num_blocks));
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

size_t KvBlockPool::KeyHash::operator()(const Key& k) const {
  // FNV-1a over the parent, its serial and the token ids; equality is checked on the whole key.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xffu;
      h *= 1099511628211ull;
    }
  };
  mix(static_cast<uint64_t>(static_cast<int64_t>(k.parent)));
  mix(k.parent_serial);
  for (TokenId t : k.tokens) mix(static_cast<uint64_t>(static_cast<uint32_t>(t)));
  return static_cast<size_t>(h);
}

KvBlockPool::Key KvBlockPool::key_for(int parent, std::span<const TokenId> tokens) const {
  Key key;
  key.parent = parent;
  key.parent_serial = parent < 0 ? 0 : published_[static_cast<size_t>(parent)]->serial;
  key.tokens.assign(tokens.begin(), tokens.end());
  return key;
}

int KvBlockPool::allocate() {
  int block = -1;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    block = evictable_.front();
    evictable_.pop_front();
    published_[static_cast<size_t>(block)]->evictable = false;
    unpublish(block);
  } else {
    return -1;
  }
  refs_[static_cast<size_t>(block)] = 1;
  used_++;
  return block;
}

void KvBlockPool::retain(int block) {
  int& refs = refs_.at(static_cast<size_t>(block));
  if (refs == 0) {
    Published* p = published_[static_cast<size_t>(block)].get();
    if (p == nullptr || !p->evictable) fail("KV block {} is free and cannot be retained", block);
    evictable_.erase(p->lru);
    p->evictable = false;
    used_++;
  }
  refs++;
}

void KvBlockPool::release(int block) {
  int& refs = refs_.at(static_cast<size_t>(block));
  if (refs <= 0) fail("KV block {} released more often than held", block);
  if (--refs > 0) return;
  used_--;
  Published* p = published_[static_cast<size_t>(block)].get();
  if (p != nullptr) {
    p->lru = evictable_.insert(evictable_.end(), block);
    p->evictable = true;
  } else {
    free_.push_back(block);
  }
}

void KvBlockPool::unpublish(int block) {
  auto& p = published_[static_cast<size_t>(block)];
  if (!p) return;
  by_key_.erase(p->key);
  p.reset();
}

int KvBlockPool::lookup(int parent, std::span<const TokenId> tokens) {
  if (static_cast<int>(tokens.size()) != block_size_) return -1;
  if (parent >= 0 && !published_[static_cast<size_t>(parent)]) return -1;
  const auto it = by_key_.find(key_for(parent, tokens));
  if (it == by_key_.end()) return -1;
  retain(it->second);
  return it->second;
}

void KvBlockPool::publish(int block, int parent, std::span<const TokenId> tokens) {
  if (refs_.at(static_cast<size_t>(block)) <= 0) fail("KV block {} is published while nobody holds it", block);
  if (static_cast<int>(tokens.size()) != block_size_) fail("only full KV blocks can be published");
  if (published_[static_cast<size_t>(block)]) return;
  if (parent >= 0 && !published_[static_cast<size_t>(parent)]) return;  // unreachable by lookup
  Key key = key_for(parent, tokens);
  if (by_key_.count(key) != 0) return;  // an equal block is cached already
  auto p = std::make_unique<Published>();
  p->key = key;
  p->serial = next_serial_++;
  by_key_.emplace(std::move(key), block);
  published_[static_cast<size_t>(block)] = std::move(p);
}

// ---- KvCache ----

KvCache::KvCache(const LlamaConfig& config, int capacity) : capacity_(capacity) {
  if (capacity <= 0) fail("context size must be positive, got {}", capacity);
  if (capacity > config.max_position_embeddings) {
    fail("context size {} exceeds the model's max_position_embeddings {}", capacity,
         config.max_position_embeddings);
  }
  owned_pool_ = std::make_unique<KvBlockPool>(config, 1, capacity);
  pool_ = owned_pool_.get();
  max_blocks_ = 1;
  key_ptrs_.assign(static_cast<size_t>(pool_->layers()), nullptr);
  value_ptrs_.assign(static_cast<size_t>(pool_->layers()), nullptr);
  add_block(pool_->allocate());
}

KvCache::KvCache(KvBlockPool& pool, int capacity) : pool_(&pool), capacity_(capacity) {
  if (capacity <= 0) fail("context size must be positive, got {}", capacity);
  max_blocks_ = (capacity + pool.block_size() - 1) / pool.block_size();
  key_ptrs_.assign(static_cast<size_t>(pool.layers()) * static_cast<size_t>(max_blocks_), nullptr);
  value_ptrs_.assign(key_ptrs_.size(), nullptr);
  blocks_.reserve(static_cast<size_t>(max_blocks_));
}

KvCache::~KvCache() {
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) pool_->release(*it);  // tail evicted first
}

void KvCache::clear() {
  size_ = 0;
  if (owned_pool_) return;  // the one block stays
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) pool_->release(*it);
  blocks_.clear();
}

void KvCache::add_block(int block) {
  const size_t i = blocks_.size();
  blocks_.push_back(block);
  for (int l = 0; l < pool_->layers(); ++l) {
    key_ptrs_[static_cast<size_t>(l) * static_cast<size_t>(max_blocks_) + i] = pool_->keys(block, l);
    value_ptrs_[static_cast<size_t>(l) * static_cast<size_t>(max_blocks_) + i] = pool_->values(block, l);
  }
}

void KvCache::reserve(int positions) {
  if (positions > capacity_) {
    fail("the input needs {} positions but the context holds {} ({} already used)", positions, capacity_, size_);
  }
  const int bs = pool_->block_size();
  while (static_cast<int>(blocks_.size()) * bs < positions) {
    const int block = pool_->allocate();
    if (block < 0) fail("the KV cache is full: no free block for position {}", blocks_.size() * bs);
    add_block(block);
  }
}

void KvCache::adopt_prefix(std::span<const int> blocks) {
  if (size_ != 0 || !blocks_.empty()) fail("a prefix can only be adopted by an empty KV cache");
  if (owned_pool_) fail("a private KV cache cannot adopt shared blocks");
  const int positions = static_cast<int>(blocks.size()) * pool_->block_size();
  if (positions > capacity_) fail("an adopted prefix of {} positions exceeds the context of {}", positions, capacity_);
  for (int b : blocks) add_block(b);
  size_ = positions;
}

float* KvCache::keys(int layer, int position) {
  const int bs = pool_->block_size();
  return pool_->keys(blocks_[static_cast<size_t>(position / bs)], layer) + static_cast<size_t>(position % bs) * row_floats();
}
float* KvCache::values(int layer, int position) {
  const int bs = pool_->block_size();
  return pool_->values(blocks_[static_cast<size_t>(position / bs)], layer) +
         static_cast<size_t>(position % bs) * row_floats();
}
const float* KvCache::keys(int layer, int position) const {
  return const_cast<KvCache*>(this)->keys(layer, position);
}
const float* KvCache::values(int layer, int position) const {
  return const_cast<KvCache*>(this)->values(layer, position);
}

kernels::KvBlocks KvCache::key_blocks(int layer) const {
  return {key_ptrs_.data() + static_cast<size_t>(layer) * static_cast<size_t>(max_blocks_), pool_->block_size(),
          row_floats()};
}
kernels::KvBlocks KvCache::value_blocks(int layer) const {
  return {value_ptrs_.data() + static_cast<size_t>(layer) * static_cast<size_t>(max_blocks_), pool_->block_size(),
          row_floats()};
}

}  // namespace llama31
