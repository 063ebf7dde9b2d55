#include "tokenizer/utf8.h"

#include <cstdint>

#include "util/error.h"

namespace llama31::utf8 {

namespace {

uint8_t byte_at(std::string_view text, size_t i) { return static_cast<uint8_t>(text[i]); }

// The allowed range of the second byte after lead byte `lead` (Unicode table 3-7), and the total
// sequence length; length 0 for a byte that cannot start a sequence.
struct LeadInfo {
  size_t length;
  uint8_t second_min;
  uint8_t second_max;
};

LeadInfo lead_info(uint8_t lead) {
  if (lead < 0x80) return {1, 0, 0};
  if (lead >= 0xC2 && lead <= 0xDF) return {2, 0x80, 0xBF};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead >= 0xE1 && lead <= 0xEF) return {3, 0x80, 0xBF};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {4, 0x80, 0xBF};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

size_t sequence_length(std::string_view text, size_t* prefix_length) {
  if (text.empty()) {
    if (prefix_length) *prefix_length = 0;
    return 0;
  }
  const LeadInfo info = lead_info(byte_at(text, 0));
  size_t valid = 1;
  if (info.length > 1) {
    for (size_t i = 1; i < info.length && i < text.size(); ++i) {
      const uint8_t b = byte_at(text, i);
      const bool ok = i == 1 ? (b >= info.second_min && b <= info.second_max) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
      ++valid;
    }
  }
  if (prefix_length) *prefix_length = valid;
  return (info.length != 0 && valid == info.length) ? info.length : 0;
}

std::optional<size_t> first_invalid_byte(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (byte_at(text, i) < 0x80) {
      ++i;
      continue;
    }
    size_t prefix = 0;
    const size_t length = sequence_length(text.substr(i), &prefix);
    if (length == 0) {
      // Name the byte that broke the sequence: the lead itself if it cannot start one, else the
      // first byte after the valid prefix (or the end of the text for a cut-off sequence).
      return lead_info(byte_at(text, i)).length == 0 ? i : i + prefix;
    }
    i += length;
  }
  return std::nullopt;
}

void require_valid(std::string_view text) {
  if (const auto offset = first_invalid_byte(text)) {
    if (*offset >= text.size()) fail("invalid UTF-8 at byte {}: the text ends inside a character", *offset);
    fail("invalid UTF-8 at byte {} (0x{:02X})", *offset, byte_at(text, *offset));
  }
}

size_t emittable_prefix(std::string_view bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    size_t prefix = 0;
    const size_t length = sequence_length(bytes.substr(i), &prefix);
    if (length != 0) {
      i += length;
    } else if (i + prefix == bytes.size() && lead_info(byte_at(bytes, i)).length > prefix) {
      return i;  // a valid start cut off by the end: wait for more bytes
    } else {
      i += prefix;  // an invalid subpart: emitted as U+FFFD
    }
  }
  return i;
}

std::string to_valid_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    size_t prefix = 0;
    const size_t length = sequence_length(bytes.substr(i), &prefix);
    if (length != 0) {
      out.append(bytes.substr(i, length));
      i += length;
    } else {
      append_code_point(out, U'\uFFFD');
      i += prefix;
    }
  }
  return out;
}

char32_t decode_first(std::string_view text, size_t* length) {
  const size_t n = sequence_length(text);
  *length = n == 0 ? 1 : n;
  if (n <= 1) return static_cast<char32_t>(byte_at(text, 0));
  uint32_t code_point = byte_at(text, 0) & (0x7Fu >> n);
  for (size_t i = 1; i < n; ++i) code_point = (code_point << 6) | (byte_at(text, i) & 0x3Fu);
  return static_cast<char32_t>(code_point);
}

bool is_white_space(char32_t code_point) {
  const auto cp = static_cast<uint32_t>(code_point);
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

void append_code_point(std::string& out, char32_t code_point) {
  const auto cp = static_cast<uint32_t>(code_point);
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace llama31::utf8
