// The priority-queue BPE merge (the optimized path) against the plain rescan-everything merge.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/byte_pair_encoder.h"

namespace llama31 {
namespace {

// A small alphabet with many overlapping merges makes rank ties and stale queue entries common.
BytePairEncoder small_encoder(bool ignore_merges) {
  BytePairEncoder bpe;
  int next_id = 0;
  for (const char* token : {"a", "b", "c", "aa", "ab", "bc", "ca", "aaa", "aab", "abc", "bca", "aaaa", "abca", "cab",
                            "bcab", "aabc", "cc", "ccc"}) {
    bpe.add_token(token, next_id++);
  }
  for (const auto& [left, right] : std::vector<std::pair<const char*, const char*>>{
           {"a", "a"}, {"b", "c"}, {"a", "b"}, {"c", "a"}, {"aa", "a"}, {"a", "bc"}, {"aa", "b"}, {"aa", "aa"},
           {"ab", "ca"}, {"c", "ab"}, {"bc", "ab"}, {"aa", "bc"}, {"c", "c"}, {"cc", "c"}, {"bc", "a"}}) {
    bpe.add_merge(left, right);
  }
  bpe.set_ignore_merges(ignore_merges);
  return bpe;
}

TEST(BytePairEncoder, QueueMergeEqualsRescanMergeOnRandomWords) {
  std::mt19937 rng(1234);
  for (const bool ignore_merges : {false, true}) {
    const BytePairEncoder bpe = small_encoder(ignore_merges);
    for (int round = 0; round < 5000; ++round) {
      std::string word(1 + rng() % 24, 'a');
      for (char& c : word) c = static_cast<char>('a' + rng() % 3);
      std::vector<BytePairEncoder::Id> fast;
      std::vector<BytePairEncoder::Id> slow;
      bpe.encode_word(word, fast);
      bpe.encode_word_slow(word, slow);
      ASSERT_EQ(fast, slow) << word;
    }
  }
}

TEST(BytePairEncoder, MergesLowestRankLeftmostFirst) {
  const BytePairEncoder bpe = small_encoder(false);
  std::vector<BytePairEncoder::Id> ids;
  bpe.encode_word("aaa", ids);  // "a a" (rank 0) merges at the left first -> "aa" + "a" -> "aaa"
  EXPECT_EQ(ids, std::vector<BytePairEncoder::Id>{*bpe.find("aaa")});
  ids.clear();
  bpe.encode_word("abc", ids);  // "b c" (rank 1) beats "a b" (rank 2), then "a bc"
  EXPECT_EQ(ids, std::vector<BytePairEncoder::Id>{*bpe.find("abc")});
}

}  // namespace
}  // namespace llama31
