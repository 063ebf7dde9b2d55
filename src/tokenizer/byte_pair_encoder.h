// The BPE model of a byte-level tokenizer: a vocabulary of byte strings and ranked merges.
// encode_word() turns one pre-token into ids exactly as Hugging Face's BPE does: the word starts as
// single bytes, and the adjacent pair with the lowest merge rank (leftmost on ties) merges until no
// ranked pair is left. With ignore_merges, a word found whole in the vocabulary is one token.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <absl/container/flat_hash_map.h>

namespace llama31 {

class BytePairEncoder {
 public:
  using Id = int32_t;

  // Adds a vocabulary entry (raw bytes). Throws Error if the bytes or id were already added.
  void add_token(std::string bytes, Id id);
  // Adds the next merge (rank = number of merges added before). Both parts and their concatenation
  // must be in the vocabulary; Error names the merge otherwise.
  void add_merge(std::string_view left, std::string_view right);
  void reserve(size_t tokens, size_t merges) {
    ids_.reserve(tokens);
    merges_.reserve(merges);
  }
  void set_ignore_merges(bool ignore_merges) { ignore_merges_ = ignore_merges; }

  // Appends the ids of one pre-token. Throws Error if a byte of it has no token (impossible for
  // a complete byte-level vocabulary).
  void encode_word(std::string_view word, std::vector<Id>& out) const;
  // Reference implementation for tests: repeatedly rescans the whole word for the best pair.
  void encode_word_slow(std::string_view word, std::vector<Id>& out) const;

  std::optional<Id> find(std::string_view bytes) const;
  size_t merge_count() const { return merges_.size(); }
  size_t token_count() const { return ids_.size(); }

 private:
  struct Merge {
    uint32_t rank;
    Id merged;
  };
  static uint64_t pair_key(Id left, Id right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  const Merge* find_merge(Id left, Id right) const;
  Id byte_token(std::string_view word, size_t index) const;

  // Abseil's open-addressing tables: a lookup touches the key's group and slot, where std::unordered_map
  // chased three pointers through separately allocated nodes. Loading the 128,256-token vocabulary and
  // its 280,147 merges looks each merge's parts up (840k lookups), which dominated the tokenizer's load.
  absl::flat_hash_map<std::string, Id> ids_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<Id, 256> byte_ids_{};
  std::array<bool, 256> has_byte_id_{};
  bool ignore_merges_ = false;
};

}  // namespace llama31
