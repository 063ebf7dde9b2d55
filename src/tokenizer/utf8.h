// UTF-8 helpers for the tokenizer: validation with byte offsets, and lossy decoding that replaces
// broken sequences with U+FFFD the way Hugging Face (Rust's String::from_utf8_lossy) does.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace llama31::utf8 {

// Offset of the first byte that does not start or continue a valid UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as is a sequence cut off by the end).
std::optional<size_t> first_invalid_byte(std::string_view text);

// Throws llama31::Error "invalid UTF-8 at byte N" unless text is valid UTF-8.
void require_valid(std::string_view text);

// Length of the valid UTF-8 sequence starting at text[0]: 1-4, or 0 when the bytes there are not a
// complete valid sequence. *prefix_length receives how many leading bytes form a valid (maybe
// incomplete) prefix of some sequence, at least 1 for a non-empty text.
size_t sequence_length(std::string_view text, size_t* prefix_length = nullptr);

// Length of the longest prefix of bytes that can be emitted now: every complete character and every
// invalid byte run, holding back only a trailing incomplete-but-valid-so-far sequence (at most 3 bytes).
size_t emittable_prefix(std::string_view bytes);

// Bytes to UTF-8 text: each maximal invalid subpart becomes one U+FFFD.
std::string to_valid_lossy(std::string_view bytes);

// The code point of the valid sequence starting at text[0] (text must be valid UTF-8, non-empty);
// *length receives its byte count.
char32_t decode_first(std::string_view text, size_t* length);

// Unicode White_Space (what Rust's char::is_whitespace and Hugging Face's lstrip/rstrip use).
bool is_white_space(char32_t code_point);

// Appends the UTF-8 encoding of a code point (must be <= U+10FFFF, not a surrogate).
void append_code_point(std::string& out, char32_t code_point);

}  // namespace llama31::utf8
