#include "tokenizer/tokenizer_json_reader.h"

#include "util/error.h"
#include "util/text.h"

namespace llama31 {

using nlohmann::json;

namespace {

std::pair<std::string, std::string> split_merge(const std::string& pair, const std::string& source) {
  const size_t space = pair.find(' ');
  if (space == std::string::npos || pair.find(' ', space + 1) != std::string::npos) {
    fail("{}: merge {:?} is not two tokens separated by one space", source, pair);
  }
  return {pair.substr(0, space), pair.substr(space + 1)};
}

// Receives nlohmann's parse events. Outside model.vocab and model.merges it builds the DOM as nlohmann's
// own DOM parser does (a stack of open containers; a value lands in the innermost one, under the last
// key for an object). Inside them it appends to the tables.
class TokenizerJsonRouter final : public nlohmann::json_sax<json> {
 public:
  explicit TokenizerJsonRouter(std::string source) : source_(std::move(source)) {}

  TokenizerDocument take() { return TokenizerDocument{std::move(root_), std::move(vocab_), std::move(merges_)}; }

  bool null() override { return scalar(json(nullptr)); }
  bool boolean(bool value) override { return scalar(json(value)); }
  bool number_integer(number_integer_t value) override { return scalar(json(value)); }
  bool number_unsigned(number_unsigned_t value) override { return scalar(json(value)); }
  bool number_float(number_float_t value, const string_t&) override { return scalar(json(value)); }
  bool binary(binary_t& value) override { return scalar(json(std::move(value))); }

  bool string(string_t& value) override {
    switch (mode_) {
      case Mode::Merges:
        merges_->push_back(split_merge(value, source_));
        return true;
      case Mode::MergePair:
        pair_parts_.push_back(std::move(value));
        return true;
      case Mode::Vocab:
      case Mode::Document: return scalar(json(std::move(value)));
    }
    return true;
  }

  bool key(string_t& value) override {
    key_ = std::move(value);
    return true;
  }

  bool start_object(std::size_t) override {
    if (mode_ == Mode::Document && in_model() && key_ == "vocab") {
      mode_ = Mode::Vocab;
      vocab_.emplace();
      return true;
    }
    if (mode_ != Mode::Document) not_a_table_entry();
    json* object = place(json::object());
    if (open_.size() == 1 && open_.back() == &root_ && key_ == "model") model_ = object;
    open_.push_back(object);
    return true;
  }

  bool end_object() override {
    if (mode_ == Mode::Vocab) {
      mode_ = Mode::Document;
    } else {
      open_.pop_back();
    }
    return true;
  }

  bool start_array(std::size_t) override {
    if (mode_ == Mode::Document && in_model() && key_ == "merges") {
      mode_ = Mode::Merges;
      merges_.emplace();
      return true;
    }
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_parts_.clear();
      return true;
    }
    if (mode_ != Mode::Document) not_a_table_entry();
    open_.push_back(place(json::array()));
    return true;
  }

  bool end_array() override {
    if (mode_ == Mode::MergePair) {
      if (pair_parts_.size() != 2) not_a_table_entry();
      merges_->emplace_back(std::move(pair_parts_[0]), std::move(pair_parts_[1]));
      mode_ = Mode::Merges;
    } else if (mode_ == Mode::Merges) {
      mode_ = Mode::Document;
    } else {
      open_.pop_back();
    }
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& error) override {
    fail("{} is not valid JSON: {}", source_, error.what());
  }

 private:
  enum class Mode { Document, Vocab, Merges, MergePair };

  bool in_model() const { return model_ != nullptr && !open_.empty() && open_.back() == model_; }

  bool scalar(json&& value) {
    if (mode_ == Mode::Vocab) {
      vocab_->emplace_back(std::move(key_), std::move(value));
    } else if (mode_ == Mode::Document) {
      place(std::move(value));
    } else {
      not_a_table_entry();
    }
    return true;
  }

  // Puts a value into the innermost open container (or makes it the document) and returns where it is.
  json* place(json&& value) {
    if (open_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    json& container = *open_.back();
    if (container.is_array()) {
      container.push_back(std::move(value));
      return &container.back();
    }
    json& slot = container[key_];
    slot = std::move(value);
    return &slot;
  }

  [[noreturn]] void not_a_table_entry() const {
    if (mode_ == Mode::Vocab) fail("{}: id of model.vocab entry {} is not an integer", source_, key_);
    fail("{}: merge #{} is neither \"a b\" nor [\"a\", \"b\"]", source_, merges_->size());
  }

  std::string source_;
  json root_;
  std::vector<json*> open_;  // the containers being filled, outermost first
  json* model_ = nullptr;    // the top-level "model" object, once opened
  std::string key_;          // the last key read
  Mode mode_ = Mode::Document;
  std::optional<VocabTable> vocab_;
  std::optional<MergeTable> merges_;
  std::vector<std::string> pair_parts_;
};

}  // namespace

TokenizerDocument read_tokenizer_json(const std::filesystem::path& path) {
  const std::string text = read_text_file(path);
  TokenizerJsonRouter router(path.string());
  json::sax_parse(text, &router);
  return router.take();
}

VocabTable vocab_table_of(const json& vocab) {
  VocabTable table;
  table.reserve(vocab.size());
  for (const auto& [text, id] : vocab.items()) table.emplace_back(text, id);
  return table;
}

MergeTable merge_table_of(const json& merges, const std::string& source) {
  MergeTable table;
  table.reserve(merges.size());
  for (const json& merge : merges) {
    if (merge.is_string()) {
      table.push_back(split_merge(merge.get_ref<const std::string&>(), source));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      table.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      fail("{}: merge #{} ({}) is neither \"a b\" nor [\"a\", \"b\"]", source, table.size(), merge.dump());
    }
  }
  return table;
}

MergeTable merge_table_of(const std::vector<std::string>& merges, const std::string& source) {
  MergeTable table;
  table.reserve(merges.size());
  for (const std::string& merge : merges) table.push_back(split_merge(merge, source));
  return table;
}

}  // namespace llama31
