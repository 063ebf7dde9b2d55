#include "tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "tokenizer/utf8.h"

namespace llama31::byte_level {

namespace {

bool stands_for_itself(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174); }

struct Alphabet {
  std::array<char32_t, 256> char_of_byte{};
  std::array<int, 512> byte_of_char{};  // every alphabet character is below U+0200; -1 = not in it

  Alphabet() {
    byte_of_char.fill(-1);
    unsigned next_extra = 256;
    for (unsigned b = 0; b < 256; ++b) {
      const unsigned ch = stands_for_itself(b) ? b : next_extra++;
      char_of_byte[b] = static_cast<char32_t>(ch);
      byte_of_char[ch] = static_cast<int>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet instance;
  return instance;
}

}  // namespace

char32_t byte_to_char(unsigned char b) { return alphabet().char_of_byte[b]; }

std::optional<std::string> decode(std::string_view token_text) {
  const Alphabet& table = alphabet();
  std::string bytes;
  bytes.reserve(token_text.size());
  size_t i = 0;
  while (i < token_text.size()) {
    const size_t length = utf8::sequence_length(token_text.substr(i));
    if (length == 0 || length > 2) return std::nullopt;  // alphabet characters take 1 or 2 bytes
    uint32_t code_point = static_cast<unsigned char>(token_text[i]);
    if (length == 2) {
      code_point = ((code_point & 0x1Fu) << 6) | (static_cast<unsigned char>(token_text[i + 1]) & 0x3Fu);
    }
    if (code_point >= table.byte_of_char.size() || table.byte_of_char[code_point] < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(table.byte_of_char[code_point]));
    i += length;
  }
  return bytes;
}

std::string encode(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (const char c : bytes) utf8::append_code_point(text, byte_to_char(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace llama31::byte_level
