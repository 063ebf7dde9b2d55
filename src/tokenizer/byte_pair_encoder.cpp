#include "tokenizer/byte_pair_encoder.h"

#include <algorithm>
#include <limits>

#include "util/error.h"

namespace llama31 {

void BytePairEncoder::add_token(std::string bytes, Id id) {
  if (bytes.empty()) fail("tokenizer vocabulary: token id {} is an empty string", id);
  if (bytes.size() == 1) {
    const auto byte = static_cast<unsigned char>(bytes[0]);
    byte_ids_[byte] = id;
    has_byte_id_[byte] = true;
  }
  const auto [it, inserted] = ids_.emplace(std::move(bytes), id);
  if (!inserted) fail("tokenizer vocabulary: ids {} and {} spell the same bytes", it->second, id);
}

void BytePairEncoder::add_merge(std::string_view left, std::string_view right) {
  const auto left_id = find(left);
  const auto right_id = find(right);
  std::string joined;
  joined.reserve(left.size() + right.size());
  joined.append(left).append(right);
  const auto merged_id = find(joined);
  if (!left_id || !right_id || !merged_id) {
    fail("tokenizer merge #{} ({:?} + {:?}) uses a token missing from the vocabulary", merges_.size(),
         std::string(left), std::string(right));
  }
  const auto rank = static_cast<uint32_t>(merges_.size());
  // A repeated pair keeps its first (best) rank, as in Hugging Face.
  merges_.emplace(pair_key(*left_id, *right_id), Merge{rank, *merged_id});
}

std::optional<BytePairEncoder::Id> BytePairEncoder::find(std::string_view bytes) const {
  // Debian's Abseil has its own string_view type, which its transparent string hash takes.
  const auto it = ids_.find(absl::string_view(bytes.data(), bytes.size()));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

const BytePairEncoder::Merge* BytePairEncoder::find_merge(Id left, Id right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

BytePairEncoder::Id BytePairEncoder::byte_token(std::string_view word, size_t index) const {
  const auto byte = static_cast<unsigned char>(word[index]);
  if (!has_byte_id_[byte]) fail("tokenizer vocabulary has no token for byte 0x{:02X}", byte);
  return byte_ids_[byte];
}

namespace {

struct Symbol {
  BytePairEncoder::Id id;
  int prev;
  int next;
  bool alive;
};

struct Candidate {
  uint32_t rank;
  int position;  // index of the left symbol
  BytePairEncoder::Id left;
  BytePairEncoder::Id right;
  BytePairEncoder::Id merged;
};

// Min-heap order: lowest rank first, then leftmost.
bool after(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
}

}  // namespace

void BytePairEncoder::encode_word(std::string_view word, std::vector<Id>& out) const {
  if (word.empty()) return;
  if (ignore_merges_ || word.size() == 1) {
    if (const auto whole = find(word)) {
      out.push_back(*whole);
      return;
    }
  }
  if (word.size() > static_cast<size_t>(std::numeric_limits<int>::max() / 2)) {
    fail("pre-token of {} bytes is too long to encode", word.size());
  }
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  const int count = static_cast<int>(word.size());
  for (int i = 0; i < count; ++i) {
    symbols.push_back(Symbol{byte_token(word, static_cast<size_t>(i)), i - 1, i + 1 < count ? i + 1 : -1, true});
  }
  auto consider = [&](int position) {
    if (position < 0) return;
    const int next = symbols[position].next;
    if (next < 0) return;
    const Id left = symbols[position].id;
    const Id right = symbols[next].id;
    if (const Merge* merge = find_merge(left, right)) {
      heap.push_back(Candidate{merge->rank, position, left, right, merge->merged});
      std::push_heap(heap.begin(), heap.end(), after);
    }
  };
  for (int i = 0; i + 1 < count; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), after);
    const Candidate best = heap.back();
    heap.pop_back();
    Symbol& left = symbols[best.position];
    if (!left.alive || left.id != best.left || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.id != best.right) continue;  // stale: a neighbour merged since this was queued
    left.id = best.merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.position;
    consider(left.prev);
    consider(best.position);
  }
  for (int i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

void BytePairEncoder::encode_word_slow(std::string_view word, std::vector<Id>& out) const {
  if (word.empty()) return;
  if (ignore_merges_ || word.size() == 1) {
    if (const auto whole = find(word)) {
      out.push_back(*whole);
      return;
    }
  }
  std::vector<Id> parts;
  for (size_t i = 0; i < word.size(); ++i) parts.push_back(byte_token(word, i));
  while (parts.size() > 1) {
    size_t best_index = 0;
    const Merge* best = nullptr;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const Merge* merge = find_merge(parts[i], parts[i + 1]);
      if (merge && (!best || merge->rank < best->rank)) {
        best = merge;
        best_index = i;
      }
    }
    if (!best) break;
    parts[best_index] = best->merged;
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best_index) + 1);
  }
  out.insert(out.end(), parts.begin(), parts.end());
}

}  // namespace llama31
