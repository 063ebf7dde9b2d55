// Pre-tokenization by regular expression (Hugging Face's Split pre-tokenizer with behavior
// "Isolated"): every match is a piece, and so is any text between matches. Uses PCRE2 in UTF and
// Unicode-property mode with the JIT compiler, which understands HF's `(?i:...)` groups and
// `\s+(?!\S)` look-aheads as Oniguruma does.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace llama31 {

class RegexSplitter {
 public:
  // Throws Error naming the pattern and PCRE2's message if it does not compile.
  explicit RegexSplitter(const std::string& pattern);
  ~RegexSplitter();
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;

  // Calls on_piece for each non-empty piece of text, in order; the pieces concatenate to text.
  // text must be valid UTF-8 (not checked again here).
  void split(std::string_view text, const std::function<void(std::string_view)>& on_piece) const;

  bool uses_jit() const;
  const std::string& pattern() const;

 private:
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace llama31
