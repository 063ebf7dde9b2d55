// Byte-exactness against Hugging Face: llama.cpp's vectors (ids from HF tokenizers) and our own
// corpus with ids from transformers.js (tools/tokenizer-reference/).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "llama_tokenizer.h"

namespace llama31::testing {
namespace {

std::vector<TokenId> parse_ids(const std::string& line) {
  std::vector<TokenId> ids;
  std::istringstream in(line);
  TokenId id = 0;
  while (in >> id) ids.push_back(id);
  return ids;
}

std::string show(std::string_view text) { return nlohmann::json(std::string(text)).dump(); }

TEST(ReferenceIds, MatchesEveryLlamaCppVector) {
  const std::string inputs = read_file(source_path("tests/data/tokenizer-vectors/ggml-vocab-llama-bpe.gguf.inp"));
  const std::string outputs = read_file(source_path("tests/data/tokenizer-vectors/ggml-vocab-llama-bpe.gguf.out"));
  ASSERT_FALSE(inputs.empty());
  // Texts are separated by a line "__ggml_vocab_test__"; the file ends with one.
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t start = 0;
  for (size_t at; (at = inputs.find(separator, start)) != std::string::npos; start = at + separator.size()) {
    texts.push_back(inputs.substr(start, at - start));
  }
  std::vector<std::string> lines;
  std::istringstream out_stream(outputs);
  for (std::string line; std::getline(out_stream, line);) lines.push_back(line);
  ASSERT_EQ(texts.size(), lines.size());
  ASSERT_GE(texts.size(), 40u);
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ids = llama_tokenizer().encode(texts[i]);
    EXPECT_EQ(ids, parse_ids(lines[i])) << "vector " << i << ": " << show(texts[i]);
    EXPECT_EQ(llama_tokenizer().decode(ids), texts[i]) << "vector " << i;
  }
}

TEST(ReferenceIds, MatchesTransformersJsOnTheCorpus) {
  const auto corpus = nlohmann::json::parse(read_file(source_path("tests/data/tokenizer-corpus/corpus.json")));
  const auto expected = nlohmann::json::parse(read_file(source_path("tests/data/tokenizer-corpus/expected.json")));
  const auto& cases = expected.at("cases");
  ASSERT_EQ(corpus.size(), cases.size()) << "regenerate expected.json with tools/tokenizer-reference";
  ASSERT_GE(corpus.size(), 60u);
  size_t special_cases = 0;
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string name = corpus[i].at("name");
    const std::string text = corpus[i].at("text");
    const bool parse_special = corpus[i].at("parse_special");
    ASSERT_EQ(cases[i].at("name"), name) << "expected.json is stale";
    ASSERT_EQ(cases[i].at("parse_special"), parse_special) << "expected.json is stale";
    special_cases += parse_special ? 1 : 0;
    const auto ids = llama_tokenizer().encode(text, parse_special);
    EXPECT_EQ(ids, cases[i].at("ids").get<std::vector<TokenId>>()) << name << ": " << show(text);
    EXPECT_EQ(llama_tokenizer().decode(ids), text) << name;
  }
  EXPECT_GE(special_cases, 3u);
}

}  // namespace
}  // namespace llama31::testing
