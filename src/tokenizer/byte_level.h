// The GPT-2 "ByteLevel" alphabet: every byte 0-255 stands for one printable Unicode character, so
// byte strings can live in a JSON vocabulary. Bytes 33-126, 161-172 and 174-255 stand for
// themselves; the others, in order, for U+0100 onwards ("Ġ" = U+0120 is the space byte 0x20).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace llama31::byte_level {

// The character byte b stands for.
char32_t byte_to_char(unsigned char b);

// Raw bytes of a vocabulary string written in the ByteLevel alphabet; nullopt if it holds a
// character outside the alphabet or is not valid UTF-8.
std::optional<std::string> decode(std::string_view token_text);

// The vocabulary spelling of raw bytes (the inverse of decode).
std::string encode(std::string_view bytes);

}  // namespace llama31::byte_level
