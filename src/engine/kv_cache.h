// The key/value cache, paged: positions live in fixed-size blocks of a KvBlockPool, and each sequence's
// KvCache is a block table (position p in block table[p / block_size], row p % block_size).
//
// KvBlockPool: every block of every sequence, allocated once (fp32, per block [layer][row][kv_heads *
// head_dim] for K and for V), with reference counts so that sequences can share blocks, and a prefix
// cache: full blocks of prompt tokens are published under the tokens they hold and the block before them,
// and a later sequence whose prompt starts with the same tokens adopts them instead of computing them
// again (vLLM's automatic prefix caching). Published blocks nobody holds stay cached until a fresh block
// is needed, least recently released first.
//
// A KvCache built from a config alone owns a pool of one block as large as its capacity: the contiguous
// cache of a single sequence (generate, chat, bench).
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "kernels/kernels.h"
#include "model_files/config.h"
#include "tokenizer/tokenizer.h"

namespace llama31 {

class KvBlockPool {
 public:
  // Errors: non-positive sizes. The memory is reserved, not touched: pages fill as blocks are written.
  KvBlockPool(const LlamaConfig& config, int num_blocks, int block_size);
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  int layers() const { return layers_; }
  size_t row_floats() const { return row_floats_; }
  size_t bytes() const { return 2 * floats_ * sizeof(float); }
  // Blocks held by at least one sequence; the rest can be allocated (cached ones by eviction).
  int used_blocks() const { return used_; }
  int available_blocks() const { return num_blocks_ - used_; }
  int cached_blocks() const { return static_cast<int>(by_key_.size()); }

  // A block for new positions: a never-published free block first, else the least recently released
  // cached one (evicted from the prefix cache). Its count is 1. -1 when every block is held.
  int allocate();
  void retain(int block);
  void release(int block);
  int ref_count(int block) const { return refs_[static_cast<size_t>(block)]; }

  float* keys(int block, int layer) { return keys_.get() + offset(block, layer); }
  float* values(int block, int layer) { return values_.get() + offset(block, layer); }
  const float* keys(int block, int layer) const { return keys_.get() + offset(block, layer); }
  const float* values(int block, int layer) const { return values_.get() + offset(block, layer); }

  // Prefix cache. A block is identified by its tokens and the block before it (-1 for the first); the
  // parent's publication number makes the identity exact even after the parent's slot is reused.
  // lookup: the cached block holding `tokens` after `parent`, retained for the caller, or -1.
  int lookup(int parent, std::span<const TokenId> tokens);
  // Publishes a full block the caller holds; does nothing if an equal block is already cached.
  void publish(int block, int parent, std::span<const TokenId> tokens);

 private:
  struct Key {
    int parent;
    uint64_t parent_serial;
    std::vector<TokenId> tokens;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Published {
    Key key;
    uint64_t serial = 0;
    std::list<int>::iterator lru;  // position in evictable_ while nobody holds it
    bool evictable = false;
  };

  size_t offset(int block, int layer) const {
    return (static_cast<size_t>(block) * static_cast<size_t>(layers_) + static_cast<size_t>(layer)) *
           static_cast<size_t>(block_size_) * row_floats_;
  }
  Key key_for(int parent, std::span<const TokenId> tokens) const;
  void unpublish(int block);

  int num_blocks_;
  int block_size_;
  int layers_;
  size_t row_floats_;
  size_t floats_;
  std::unique_ptr<float[]> keys_;  // uninitialised on purpose: see the constructor
  std::unique_ptr<float[]> values_;
  std::vector<int> refs_;
  std::vector<int> free_;           // unpublished, unheld blocks (a stack: recently used pages first)
  std::list<int> evictable_;        // published, unheld blocks, least recently released first
  std::vector<std::unique_ptr<Published>> published_;  // per block, null when not published
  std::unordered_map<Key, int, KeyHash> by_key_;
  uint64_t next_serial_ = 1;
  int used_ = 0;
};

class KvCache {
 public:
  // A private pool with one block of `capacity` positions. Errors: capacity <= 0 or beyond the model's
  // max_position_embeddings.
  KvCache(const LlamaConfig& config, int capacity);
  // Blocks from a shared pool (which must outlive the cache), taken as positions fill (see reserve).
  KvCache(KvBlockPool& pool, int capacity);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  int capacity() const { return capacity_; }
  int size() const { return size_; }  // positions filled
  // Drops every position and gives the blocks back to the pool.
  void clear();

  // Makes sure blocks exist for positions [0, positions). Errors: beyond capacity, or the pool has no
  // block left.
  void reserve(int positions);
  // Takes already-computed blocks (retained by the caller, now owned by this cache) as its first
  // positions; only on an empty cache, and only whole blocks.
  void adopt_prefix(std::span<const int> blocks);
  const std::vector<int>& blocks() const { return blocks_; }
  KvBlockPool& pool() const { return *pool_; }

  size_t row_floats() const { return pool_->row_floats(); }
  float* keys(int layer, int position);
  float* values(int layer, int position);
  const float* keys(int layer, int position) const;
  const float* values(int layer, int position) const;
  // The layer's blocks for kernels::attention.
  kernels::KvBlocks key_blocks(int layer) const;
  kernels::KvBlocks value_blocks(int layer) const;

  // Reserved bytes of its own pool (0 for a cache on a shared pool). Pages are only touched as positions
  // fill, so resident memory grows with use.
  size_t bytes() const { return owned_pool_ ? owned_pool_->bytes() : 0; }

 private:
  friend class LlamaModel;
  void grow_to(int n) { size_ = n; }
  void add_block(int block);

  std::unique_ptr<KvBlockPool> owned_pool_;
  KvBlockPool* pool_;
  int capacity_;
  int size_ = 0;
  int max_blocks_;
  std::vector<int> blocks_;
  // Per layer, the addresses of the blocks in table order: [layer * max_blocks_ + i].
  std::vector<const float*> key_ptrs_;
  std::vector<const float*> value_ptrs_;
};

}  // namespace llama31
