#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <limits>

#include "tokenizer/added_tokens.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/byte_pair_encoder.h"
#include "tokenizer/tokenizer_json_reader.h"
#include "tokenizer/regex_splitter.h"
#include "tokenizer/utf8.h"
#include "util/error.h"
#include "util/text.h"

namespace llama31 {

using nlohmann::json;

namespace {

// No real vocabulary comes near this; it keeps a corrupt id from sizing a huge table.
constexpr int64_t kMaxTokenId = 16 * 1024 * 1024;

json read_json(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{} is not valid JSON: {}", path.string(), e.what());
  }
}

const json& require(const json& object, const char* key, const std::filesystem::path& file, const char* where) {
  if (!object.is_object() || !object.contains(key)) fail("{}: {} has no \"{}\"", file.string(), where, key);
  return object.at(key);
}

bool flag(const json& object, const char* key, bool fallback) {
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

TokenId checked_id(const json& value, const std::filesystem::path& file, std::string_view what) {
  if (!value.is_number_integer()) fail("{}: id of {} is not an integer", file.string(), what);
  const auto id = value.get<int64_t>();
  if (id < 0 || id >= kMaxTokenId) fail("{}: id {} of {} is out of range", file.string(), id, what);
  return static_cast<TokenId>(id);
}

// A special token name in tokenizer_config.json is a string or {"content": "..."}.
std::optional<std::string> config_token_name(const json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && it->at("content").is_string()) {
    return it->at("content").get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

struct Tokenizer::Impl {
  BytePairEncoder bpe;
  std::vector<RegexSplitter> splitters;  // applied in order, each re-splitting the previous pieces
  AddedTokenMatcher added;
  std::vector<std::string> id_bytes;      // raw bytes per id
  std::vector<uint8_t> id_defined;        // 1 where the id has a token
  std::vector<uint8_t> id_special;        // 1 for special added tokens
  std::optional<TokenId> bos;

  void set_token(TokenId id, std::string bytes, bool special) {
    if (static_cast<size_t>(id) >= id_bytes.size()) {
      id_bytes.resize(static_cast<size_t>(id) + 1);
      id_defined.resize(static_cast<size_t>(id) + 1, 0);
      id_special.resize(static_cast<size_t>(id) + 1, 0);
    }
    id_bytes[static_cast<size_t>(id)] = std::move(bytes);
    id_defined[static_cast<size_t>(id)] = 1;
    id_special[static_cast<size_t>(id)] = special ? 1 : 0;
  }

  void pre_tokenize(std::string_view text, size_t level, std::vector<TokenId>& out) const {
    if (level == splitters.size()) {
      bpe.encode_word(text, out);
      return;
    }
    splitters[level].split(text, [&](std::string_view piece) { pre_tokenize(piece, level + 1, out); });
  }

  void load_pre_tokenizer(const json& config, const std::filesystem::path& file);
  void load_model(const json& model, std::optional<VocabTable> vocab, std::optional<MergeTable> merges,
                  const std::filesystem::path& file);
};

void Tokenizer::Impl::load_pre_tokenizer(const json& config, const std::filesystem::path& file) {
  if (config.is_null()) return;
  const std::string type = require(config, "type", file, "pre_tokenizer").get<std::string>();
  if (type == "Sequence") {
    for (const json& step : require(config, "pretokenizers", file, "pre_tokenizer Sequence")) {
      load_pre_tokenizer(step, file);
    }
  } else if (type == "Split") {
    const json& pattern = require(config, "pattern", file, "pre_tokenizer Split");
    const std::string behavior = config.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated" || flag(config, "invert", false)) {
      fail("{}: pre_tokenizer Split with behavior {} invert {} is not supported (only Isolated, not inverted)",
           file.string(), behavior, flag(config, "invert", false));
    }
    if (pattern.contains("Regex")) {
      splitters.emplace_back(pattern.at("Regex").get<std::string>());
    } else if (pattern.contains("String")) {
      // A literal: quote it for PCRE2.
      splitters.emplace_back("\\Q" + pattern.at("String").get<std::string>() + "\\E");
    } else {
      fail("{}: pre_tokenizer Split pattern has neither Regex nor String", file.string());
    }
  } else if (type == "ByteLevel") {
    if (flag(config, "add_prefix_space", false)) {
      fail("{}: pre_tokenizer ByteLevel with add_prefix_space=true is not supported", file.string());
    }
    if (flag(config, "use_regex", true)) {
      // The GPT-2 pattern Hugging Face's ByteLevel uses when use_regex is on.
      splitters.emplace_back(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
    }
    // The byte -> character mapping itself needs no work: the BPE runs on raw bytes.
  } else {
    fail("{}: pre_tokenizer type {} is not supported", file.string(), type);
  }
}

void Tokenizer::Impl::load_model(const json& model, std::optional<VocabTable> vocab, std::optional<MergeTable> merges,
                                 const std::filesystem::path& file) {
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") fail("{}: model type {} is not supported (only BPE)", file.string(), type);
  if (flag(model, "byte_fallback", false)) fail("{}: BPE byte_fallback is not supported", file.string());
  for (const char* unsupported : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(unsupported);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      fail("{}: BPE {} is not supported", file.string(), unsupported);
    }
  }
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    fail("{}: BPE dropout is not supported", file.string());
  }
  bpe.set_ignore_merges(flag(model, "ignore_merges", false));

  // model.vocab and model.merges: as tables already when read from a file by read_tokenizer_json.
  if (!vocab) {
    const json& object = require(model, "vocab", file, "model");
    if (!object.is_object()) fail("{}: model.vocab is not an object", file.string());
    vocab = vocab_table_of(object);
  }
  if (!merges) {
    const json& array = require(model, "merges", file, "model");
    if (!array.is_array()) fail("{}: model.merges is not an array", file.string());
    merges = merge_table_of(array, file.string());
  }
  bpe.reserve(vocab->size(), merges->size());
  for (auto& [text, id_value] : *vocab) {
    const TokenId id = checked_id(id_value, file, "model.vocab entry " + text);
    auto bytes = byte_level::decode(text);
    if (!bytes) fail("{}: model.vocab token {:?} (id {}) is not in the ByteLevel alphabet", file.string(), text, id);
    if (static_cast<size_t>(id) < id_defined.size() && id_defined[static_cast<size_t>(id)]) {
      fail("{}: model.vocab id {} is used twice (again by {:?})", file.string(), id, text);
    }
    bpe.add_token(*bytes, id);
    set_token(id, std::move(*bytes), false);
  }
  for (const auto& [left, right] : *merges) {
    const auto left_bytes = byte_level::decode(left);
    const auto right_bytes = byte_level::decode(right);
    if (!left_bytes || !right_bytes) {
      fail("{}: merge {:?} + {:?} is not in the ByteLevel alphabet", file.string(), left, right);
    }
    bpe.add_merge(*left_bytes, *right_bytes);
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::from_files(const std::filesystem::path& tokenizer_json,
                                const std::filesystem::path& tokenizer_config_json) {
  TokenizerDocument document = read_tokenizer_json(tokenizer_json);
  const json config = tokenizer_config_json.empty() ? json::object() : read_json(tokenizer_config_json);
  return from_parts(document.rest, &document, config, tokenizer_json.string(), tokenizer_config_json.string());
}

Tokenizer Tokenizer::from_json(const nlohmann::json& root, const nlohmann::json& config,
                               const std::string& tokenizer_source, const std::string& config_source) {
  return from_parts(root, nullptr, config, tokenizer_source, config_source);
}

Tokenizer Tokenizer::from_tables(const nlohmann::json& root, std::vector<std::pair<std::string, int>> vocab,
                                 const std::vector<std::string>& merges, const nlohmann::json& config,
                                 const std::string& tokenizer_source, const std::string& config_source) {
  TokenizerDocument tables;
  tables.vocab.emplace();
  tables.vocab->reserve(vocab.size());
  for (auto& [text, id] : vocab) tables.vocab->emplace_back(std::move(text), json(id));
  tables.merges = merge_table_of(merges, tokenizer_source);
  return from_parts(root, &tables, config, tokenizer_source, config_source);
}

Tokenizer Tokenizer::from_parts(const nlohmann::json& root, TokenizerDocument* tables, const nlohmann::json& config,
                                const std::string& tokenizer_source, const std::string& config_source) {
  auto impl = std::make_unique<Impl>();
  const std::filesystem::path tokenizer_json = tokenizer_source;
  try {
    const auto normalizer = root.find("normalizer");
    if (normalizer != root.end() && !normalizer->is_null()) {
      fail("{}: normalizer {} is not supported (byte-level BPE tokenizers have none)", tokenizer_json.string(),
           normalizer->value("type", std::string("?")));
    }
    impl->load_model(require(root, "model", tokenizer_json, "the file"),
                     tables ? std::move(tables->vocab) : std::nullopt, tables ? std::move(tables->merges) : std::nullopt,
                     tokenizer_json);
    impl->load_pre_tokenizer(root.value("pre_tokenizer", json()), tokenizer_json);

    const auto added = root.find("added_tokens");
    if (added != root.end() && added->is_array()) {
      for (const json& entry : *added) {
        AddedToken token;
        token.content = require(entry, "content", tokenizer_json, "an added_tokens entry").get<std::string>();
        token.id = checked_id(require(entry, "id", tokenizer_json, "an added_tokens entry"), tokenizer_json,
                              "added token " + token.content);
        token.special = flag(entry, "special", false);
        token.lstrip = flag(entry, "lstrip", false);
        token.rstrip = flag(entry, "rstrip", false);
        if (flag(entry, "single_word", false)) {
          fail("{}: added token {:?} has single_word=true, which is not supported", tokenizer_json.string(),
               token.content);
        }
        utf8::require_valid(token.content);
        impl->set_token(token.id, token.content, token.special);
        impl->added.add(std::move(token));
      }
    }
  } catch (const json::exception& e) {
    fail("{}: unexpected structure: {}", tokenizer_json.string(), e.what());
  }

  const std::optional<std::string> bos_name = config.is_object() ? config_token_name(config, "bos_token") : std::nullopt;
  Tokenizer tokenizer(std::move(impl));
  if (bos_name) {
    tokenizer.impl_->bos = tokenizer.token_to_id(*bos_name);
    if (!tokenizer.impl_->bos) {
      fail("{}: bos_token {:?} is not a token of {}", config_source, *bos_name, tokenizer_source);
    }
  } else {
    tokenizer.impl_->bos = tokenizer.token_to_id("<|begin_of_text|>");
  }
  return tokenizer;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool parse_special) const {
  utf8::require_valid(text);
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  impl_->added.split(
      text, parse_special, [&](std::string_view section) { impl_->pre_tokenize(section, 0, ids); },
      [&](int32_t id) { ids.push_back(id); });
  return ids;
}

std::string Tokenizer::token_bytes(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->id_bytes.size() || !impl_->id_defined[static_cast<size_t>(id)]) {
    fail("token id {} is outside the vocabulary of {}", id, vocab_size());
  }
  return impl_->id_bytes[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string text;
  for (const TokenId id : ids) {
    if (skip_special && is_special(id)) continue;
    text += token_bytes(id);
  }
  return text;
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_bytes.size()); }

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& added : impl_->added.tokens()) {
    if (added.content == token) return added.id;
  }
  const auto bytes = byte_level::decode(token);
  if (!bytes) return std::nullopt;
  return impl_->bpe.find(*bytes);
}

bool Tokenizer::is_special(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_special.size() && impl_->id_special[static_cast<size_t>(id)];
}

std::optional<TokenId> Tokenizer::bos_id() const { return impl_->bos; }

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(TokenId id) {
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += tokenizer_->token_bytes(id);
  const size_t ready = utf8::emittable_prefix(pending_);
  std::string text = utf8::to_valid_lossy(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return text;
}

std::string IncrementalDecoder::finish() {
  std::string text = utf8::to_valid_lossy(pending_);
  pending_.clear();
  return text;
}

}  // namespace llama31
