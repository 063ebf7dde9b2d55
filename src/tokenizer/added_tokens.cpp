#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace llama31 {

void AddedTokenMatcher::add(AddedToken token) {
  if (token.content.empty()) fail("added token id {} has empty content", token.id);
  auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  tokens_.push_back(std::move(token));
  bucket.push_back(tokens_.size() - 1);
  std::stable_sort(bucket.begin(), bucket.end(),
                   [&](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

namespace {

// Start of the white space run that ends at `end` (not before `floor`).
size_t white_space_start(std::string_view text, size_t floor, size_t end) {
  size_t start = end;
  while (start > floor) {
    size_t lead = start - 1;
    while (lead > floor && (static_cast<unsigned char>(text[lead]) & 0xC0) == 0x80) --lead;
    size_t length = 0;
    if (!utf8::is_white_space(utf8::decode_first(text.substr(lead), &length))) break;
    start = lead;
  }
  return start;
}

size_t white_space_end(std::string_view text, size_t start) {
  size_t end = start;
  while (end < text.size()) {
    size_t length = 0;
    if (!utf8::is_white_space(utf8::decode_first(text.substr(end), &length))) break;
    end += length;
  }
  return end;
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, bool include_special,
                              const std::function<void(std::string_view)>& on_text,
                              const std::function<void(int32_t)>& on_token) const {
  size_t section_start = 0;
  size_t position = 0;
  while (position < text.size()) {
    const AddedToken* found = nullptr;
    for (const size_t index : by_first_byte_[static_cast<unsigned char>(text[position])]) {
      const AddedToken& token = tokens_[index];
      if (token.special && !include_special) continue;
      if (text.substr(position).starts_with(token.content)) {
        found = &token;
        break;
      }
    }
    if (!found) {
      ++position;
      continue;
    }
    const size_t match_start = found->lstrip ? white_space_start(text, section_start, position) : position;
    size_t match_end = position + found->content.size();
    if (found->rstrip) match_end = white_space_end(text, match_end);
    if (match_start > section_start) on_text(text.substr(section_start, match_start - section_start));
    on_token(found->id);
    section_start = match_end;
    position = match_end;
  }
  if (section_start < text.size()) on_text(text.substr(section_start));
}

}  // namespace llama31
