// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (Llama 3 / 3.1: 128,000 BPE
// tokens + 256 added special tokens), byte-exact with Hugging Face tokenizers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace llama31 {

using TokenId = int32_t;
struct TokenizerDocument;

class Tokenizer {
 public:
  // Loads tokenizer.json; tokenizer_config.json (optional, may be empty path) supplies bos/eos names.
  static Tokenizer from_files(const std::filesystem::path& tokenizer_json,
                              const std::filesystem::path& tokenizer_config_json = {});
  // The same from the files' parsed contents; config may be an empty object; the sources name the
  // documents in errors.
  static Tokenizer from_json(const nlohmann::json& tokenizer, const nlohmann::json& tokenizer_config,
                             const std::string& tokenizer_source, const std::string& config_source);
  // The same from tables (a GGUF file's vocabulary): `tokenizer` is tokenizer.json's content less
  // model.vocab and model.merges; vocab pairs each token's text (ByteLevel alphabet) with its id; merges
  // are "a b" in rank order.
  static Tokenizer from_tables(const nlohmann::json& tokenizer, std::vector<std::pair<std::string, int>> vocab,
                               const std::vector<std::string>& merges, const nlohmann::json& tokenizer_config,
                               const std::string& tokenizer_source, const std::string& config_source);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Encodes UTF-8 text. With parse_special, added tokens written in the text ("<|eot_id|>") become
  // their ids; without, they are encoded as ordinary text. Invalid UTF-8 throws Error naming the
  // byte offset. No BOS is added.
  std::vector<TokenId> encode(std::string_view text, bool parse_special = false) const;

  // Concatenated bytes of the tokens (special tokens as their text unless skip_special).
  // May end inside a UTF-8 sequence; see IncrementalDecoder for streaming.
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;

  // The raw bytes one token stands for. Throws Error for an id outside the vocabulary.
  std::string token_bytes(TokenId id) const;

  int vocab_size() const;  // including added tokens (128,256 for Llama 3.1)
  std::optional<TokenId> token_to_id(std::string_view token) const;  // exact vocab/added token string
  bool is_special(TokenId id) const;
  std::optional<TokenId> bos_id() const;  // <|begin_of_text|>

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  // The loader behind both: `tables`, where given, holds model.vocab and model.merges already read
  // (read_tokenizer_json took them out of `tokenizer`); their contents are moved from.
  static Tokenizer from_parts(const nlohmann::json& tokenizer, TokenizerDocument* tables,
                              const nlohmann::json& tokenizer_config, const std::string& tokenizer_source,
                              const std::string& config_source);
  std::unique_ptr<Impl> impl_;
};

// Streams text out of a sequence of tokens, never emitting a broken UTF-8 sequence: bytes of an
// incomplete character are held until the character completes.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special = false);
  // Text that became complete with this token (possibly empty).
  std::string push(TokenId id);
  // What is left at the end of the stream; incomplete bytes become U+FFFD, as HF's decode does.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace llama31
