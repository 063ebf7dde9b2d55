// Added tokens (Llama 3.1's 256 "<|...|>" tokens) are found in the raw text before
// pre-tokenization, as Hugging Face does: leftmost match first, the longest one where several start
// at the same byte, with lstrip/rstrip swallowing Unicode white space beside the token.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace llama31 {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

class AddedTokenMatcher {
 public:
  void add(AddedToken token);
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  // Splits text into ordinary sections (on_text) and added tokens (on_token, with the token's id),
  // in order. Special tokens are matched only when include_special; other added tokens always.
  void split(std::string_view text, bool include_special, const std::function<void(std::string_view)>& on_text,
             const std::function<void(int32_t)>& on_token) const;

 private:
  std::vector<AddedToken> tokens_;
  // Indices into tokens_ by first byte, longest content first.
  std::array<std::vector<size_t>, 256> by_first_byte_;
};

}  // namespace llama31
