// The paged KV cache: block pool reference counts, the prefix cache's exact identity of blocks and its
// least-recently-released eviction, and block tables that address the same positions as a contiguous cache.
#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <numeric>

#include "util/error.h"

namespace llama31 {
namespace {

LlamaConfig small_config() {
  LlamaConfig c;
  c.num_hidden_layers = 2;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.max_position_embeddings = 1024;
  return c;
}

std::vector<TokenId> tokens(int first, int n) {
  std::vector<TokenId> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(KvBlockPool, AllocatesEveryBlockOnceAndCountsHolders) {
  KvBlockPool pool(small_config(), 3, 4);
  const int a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  EXPECT_EQ(pool.allocate(), -1) << "every block is held";
  EXPECT_EQ(pool.used_blocks(), 3);
  pool.retain(b);
  pool.release(b);
  EXPECT_EQ(pool.used_blocks(), 3) << "b still has a holder";
  pool.release(b);
  EXPECT_EQ(pool.used_blocks(), 2);
  EXPECT_EQ(pool.allocate(), b) << "the only free block";
  EXPECT_THROW(pool.release(-1), std::exception);
  pool.release(a);
  EXPECT_THROW(pool.release(a), Error) << "released more often than held";
  EXPECT_THROW(pool.retain(a), Error) << "a free, unpublished block cannot be retained";
}

TEST(KvBlockPool, PrefixLookupMatchesOnlyTheSameTokensAfterTheSameParent) {
  KvBlockPool pool(small_config(), 8, 4);
  const auto first = tokens(10, 4), second = tokens(20, 4);
  const int b0 = pool.allocate(), b1 = pool.allocate();
  pool.publish(b0, -1, first);
  pool.publish(b1, b0, second);
  EXPECT_EQ(pool.cached_blocks(), 2);

  EXPECT_EQ(pool.lookup(-1, first), b0);
  EXPECT_EQ(pool.ref_count(b0), 2) << "lookup retains for the caller";
  EXPECT_EQ(pool.lookup(b0, second), b1);
  EXPECT_EQ(pool.lookup(-1, second), -1) << "same tokens, different parent";
  EXPECT_EQ(pool.lookup(b0, tokens(21, 4)), -1) << "different tokens";
  EXPECT_EQ(pool.lookup(-1, tokens(10, 3)), -1) << "only full blocks";
  for (int b : {b1, b0, b1, b0}) pool.release(b);
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.cached_blocks(), 2) << "unheld blocks stay cached";
  EXPECT_EQ(pool.lookup(-1, first), b0) << "and can be found again";
  pool.release(b0);
}

TEST(KvBlockPool, EvictsTheLeastRecentlyReleasedAndForgetsItsChildren) {
  KvBlockPool pool(small_config(), 2, 4);
  const int parent = pool.allocate(), child = pool.allocate();
  pool.publish(parent, -1, tokens(0, 4));
  pool.publish(child, parent, tokens(4, 4));
  pool.release(child);   // released first: evicted first
  pool.release(parent);
  EXPECT_EQ(pool.available_blocks(), 2);
  const int fresh = pool.allocate();
  EXPECT_EQ(fresh, child);
  EXPECT_EQ(pool.cached_blocks(), 1);
  EXPECT_EQ(pool.lookup(-1, tokens(0, 4)), parent);
  pool.release(parent);
  pool.release(fresh);
  // Evict the parent too; its slot is reused for other tokens, and nothing published under the old parent
  // may be found under the new one.
  const int a = pool.allocate(), b = pool.allocate();
  EXPECT_EQ(pool.cached_blocks(), 0);
  pool.publish(a, -1, tokens(100, 4));
  pool.publish(b, a, tokens(4, 4));
  EXPECT_EQ(pool.lookup(-1, tokens(0, 4)), -1);
  EXPECT_EQ(pool.lookup(a, tokens(4, 4)), b);
  for (int x : {b, b, a}) pool.release(x);
}

TEST(KvBlockPool, PublishingAnEqualBlockTwiceKeepsTheFirst) {
  KvBlockPool pool(small_config(), 4, 4);
  const int a = pool.allocate(), b = pool.allocate();
  pool.publish(a, -1, tokens(0, 4));
  pool.publish(b, -1, tokens(0, 4));
  EXPECT_EQ(pool.cached_blocks(), 1);
  EXPECT_EQ(pool.lookup(-1, tokens(0, 4)), a);
  pool.release(a);
  pool.release(a);
  pool.release(b);
  EXPECT_THROW(pool.publish(b, -1, tokens(8, 4)), Error) << "nobody holds b";
}

TEST(KvCache, BlockTableAddressesTheSameRowsAsAContiguousCache) {
  const LlamaConfig config = small_config();
  KvBlockPool pool(config, 16, 3);
  KvCache paged(pool, 10);
  KvCache contiguous(config, 10);
  paged.reserve(10);
  EXPECT_EQ(paged.blocks().size(), 4u);
  EXPECT_THROW(paged.reserve(11), Error) << "beyond the capacity";
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    for (int p = 0; p < 10; ++p) {
      for (size_t i = 0; i < paged.row_floats(); ++i) {
        const float value = static_cast<float>(l * 1000 + p * 10) + static_cast<float>(i);
        paged.keys(l, p)[i] = value;
        paged.values(l, p)[i] = -value;
      }
    }
    const kernels::KvBlocks keys = paged.key_blocks(l), values = paged.value_blocks(l);
    for (int p = 0; p < 10; ++p) {
      const float* k = keys.blocks[p / keys.block_size] + static_cast<size_t>(p % keys.block_size) * keys.stride;
      const float* v = values.blocks[p / values.block_size] + static_cast<size_t>(p % values.block_size) * values.stride;
      EXPECT_EQ(k[1], static_cast<float>(l * 1000 + p * 10 + 1));
      EXPECT_EQ(v[2], -static_cast<float>(l * 1000 + p * 10 + 2));
    }
  }
  EXPECT_EQ(contiguous.blocks().size(), 1u);
  EXPECT_EQ(contiguous.key_blocks(1).block_size, 10);
  paged.clear();
  EXPECT_EQ(pool.used_blocks(), 0) << "clear gives the blocks back";
}

TEST(KvCache, AdoptsAPrefixAndGivesItBackOnDestruction) {
  const LlamaConfig config = small_config();
  KvBlockPool pool(config, 8, 4);
  {
    KvCache first(pool, 16);
    first.reserve(8);
    pool.publish(first.blocks()[0], -1, tokens(0, 4));
    pool.publish(first.blocks()[1], first.blocks()[0], tokens(4, 4));
    const int b0 = pool.lookup(-1, tokens(0, 4));
    const int b1 = pool.lookup(b0, tokens(4, 4));
    KvCache second(pool, 16);
    second.adopt_prefix(std::vector<int>{b0, b1});
    EXPECT_EQ(second.size(), 8);
    EXPECT_EQ(second.keys(1, 5), first.keys(1, 5)) << "the same memory";
    EXPECT_THROW(second.adopt_prefix(std::vector<int>{b0}), Error) << "only into an empty cache";
    EXPECT_EQ(pool.ref_count(b0), 2);
  }
  EXPECT_EQ(pool.used_blocks(), 0);
  EXPECT_EQ(pool.cached_blocks(), 2);
  KvCache own(config, 4);
  EXPECT_THROW(own.adopt_prefix(std::vector<int>{0}), Error);
}

TEST(KvCache, RejectsBadSizes) {
  EXPECT_THROW(KvBlockPool(small_config(), 0, 4), Error);
  EXPECT_THROW(KvBlockPool(small_config(), 4, 0), Error);
  KvBlockPool pool(small_config(), 2, 4);
  EXPECT_THROW(KvCache(pool, 0), Error);
  KvCache a(pool, 16);
  EXPECT_THROW(a.reserve(12), Error) << "the pool has only two blocks";
}

}  // namespace
}  // namespace llama31
