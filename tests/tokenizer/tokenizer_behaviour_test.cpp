// What a user of the tokenizer notices: special tokens, errors on bad input, decoding and streaming.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llama_tokenizer.h"
#include "support/temp_dir.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace llama31::testing {
namespace {

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Tokenizer, KnowsLlama31SpecialTokens) {
  const Tokenizer& tok = llama_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 128256);
  EXPECT_EQ(tok.bos_id(), std::optional<TokenId>(128000));
  EXPECT_EQ(tok.token_to_id("<|eom_id|>"), std::optional<TokenId>(128008));
  EXPECT_EQ(tok.token_to_id("<|python_tag|>"), std::optional<TokenId>(128010));
  EXPECT_EQ(tok.token_to_id("<|eot_id|>"), std::optional<TokenId>(128009));
  EXPECT_EQ(tok.token_to_id("Ġthe"), std::optional<TokenId>(279));  // vocabulary spelling
  EXPECT_EQ(tok.token_to_id("not a token at all"), std::nullopt);
  EXPECT_TRUE(tok.is_special(128009));
  EXPECT_FALSE(tok.is_special(279));
  EXPECT_EQ(tok.token_bytes(279), " the");
  EXPECT_EQ(tok.token_bytes(128010), "<|python_tag|>");
}

TEST(Tokenizer, ParsesSpecialTokensOnlyWhenAsked) {
  const Tokenizer& tok = llama_tokenizer();
  const std::string text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const auto parsed = tok.encode(text, true);
  ASSERT_GE(parsed.size(), 4u);
  EXPECT_EQ(parsed.front(), 128006);
  EXPECT_EQ(parsed.back(), 128009);
  const auto plain = tok.encode(text, false);
  for (const TokenId id : plain) EXPECT_FALSE(tok.is_special(id)) << id;
  EXPECT_EQ(tok.decode(plain), text);
  EXPECT_EQ(tok.decode(parsed), text);
  EXPECT_EQ(tok.decode(parsed, /*skip_special=*/true), "user\n\nHi");
}

TEST(Tokenizer, RejectsInvalidUtf8NamingTheByte) {
  const Tokenizer& tok = llama_tokenizer();
  EXPECT_EQ(error_of([&] { tok.encode("0123456789abcdef\xff tail"); }), "invalid UTF-8 at byte 16 (0xFF)");
  EXPECT_NE(error_of([&] { tok.encode("caf\xc3"); }).find("invalid UTF-8 at byte 4"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.encode("\xed\xa0\x80 surrogate"); }).find("invalid UTF-8 at byte 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { tok.encode("overlong \xc0\xaf"); }).find("invalid UTF-8 at byte 9"), std::string::npos);
}

TEST(Tokenizer, NeverCrashesOnRandomBytes) {
  const Tokenizer& tok = llama_tokenizer();
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    try {
      const auto ids = tok.encode(text, round % 2 == 0);
      EXPECT_EQ(tok.decode(ids), text);  // valid input round-trips
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte"), std::string::npos);
    }
  }
}

TEST(Tokenizer, HandlesLongRunsWithoutFailing) {
  const Tokenizer& tok = llama_tokenizer();
  // Built with append: GCC 12 warns falsely (-Warray-bounds) on string + literal inside a braced list.
  std::vector<std::string> texts = {std::string(200000, ' '), std::string(100000, 'a'), std::string(50000, '\n'),
                                    std::string(30000, '7')};
  texts[0].append("x");
  texts[2].append(" \t");
  for (const std::string& text : texts) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
}

TEST(Tokenizer, TokenBytesRejectsUnknownIds) {
  const Tokenizer& tok = llama_tokenizer();
  EXPECT_EQ(error_of([&] { tok.token_bytes(999999); }), "token id 999999 is outside the vocabulary of 128256");
  EXPECT_NE(error_of([&] { tok.token_bytes(-1); }).find("outside the vocabulary"), std::string::npos);
  const std::vector<TokenId> ids = {9906, 128256};
  EXPECT_NE(error_of([&] { tok.decode(ids); }).find("token id 128256"), std::string::npos);
}

TEST(IncrementalDecoder, EmitsOnlyWholeCharacters) {
  const Tokenizer& tok = llama_tokenizer();
  const std::string text = "Hi 👩🏽‍💻 नमस्ते สวัสดี ok";
  const auto ids = tok.encode(text);
  IncrementalDecoder decoder(tok);
  std::string streamed;
  for (const TokenId id : ids) {
    const std::string piece = decoder.push(id);
    EXPECT_FALSE(utf8::first_invalid_byte(piece).has_value()) << "broken UTF-8 after token " << id;
    streamed += piece;
  }
  streamed += decoder.finish();
  EXPECT_EQ(streamed, text);
}

TEST(IncrementalDecoder, HoldsAnIncompleteCharacterAndFlushesItAsReplacement) {
  const Tokenizer& tok = llama_tokenizer();
  // Byte tokens: "Ã" is the vocabulary spelling of byte 0xC3, "©" of byte 0xA9.
  const TokenId lead = *tok.token_to_id("Ã");
  const TokenId continuation = *tok.token_to_id("©");
  IncrementalDecoder decoder(tok);
  EXPECT_EQ(decoder.push(lead), "");
  EXPECT_EQ(decoder.push(continuation), "\xc3\xa9");  // é completes
  EXPECT_EQ(decoder.push(lead), "");
  EXPECT_EQ(decoder.finish(), "\xef\xbf\xbd");  // U+FFFD for the dangling lead byte
  EXPECT_EQ(decoder.push(continuation), "\xef\xbf\xbd");  // a stray continuation byte is invalid at once
}

TEST(IncrementalDecoder, StreamEqualsLossyDecodeOfRandomTokens) {
  const Tokenizer& tok = llama_tokenizer();
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<TokenId> ids(rng() % 12);
    for (TokenId& id : ids) id = static_cast<TokenId>(rng() % 128256);
    IncrementalDecoder decoder(tok, /*skip_special=*/true);
    std::string streamed;
    for (const TokenId id : ids) streamed += decoder.push(id);
    streamed += decoder.finish();
    EXPECT_EQ(streamed, utf8::to_valid_lossy(tok.decode(ids, true)));
  }
}

TEST(TokenizerFiles, ReportsBrokenFilesAsErrors) {
  TempDir dir;
  const auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir.path() / name) << content;
    return dir.path() / name;
  };
  EXPECT_NE(error_of([&] { Tokenizer::from_files(dir.path() / "missing.json"); }).find("cannot open"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_files(write("bad.json", "{ not json")); }).find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Tokenizer::from_files(write("nomodel.json", "{}")); }).find("\"model\""),
            std::string::npos);
  const std::string bad_merge =
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, "added_tokens": []})";
  EXPECT_NE(error_of([&] { Tokenizer::from_files(write("merge.json", bad_merge)); }).find("merge #0"),
            std::string::npos);
  const std::string bad_regex = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}})";
  EXPECT_NE(error_of([&] { Tokenizer::from_files(write("regex.json", bad_regex)); }).find("does not compile"),
            std::string::npos);
}

// tokenizer.json's vocabulary and merges are read by a streaming reader (not nlohmann's DOM): each way
// they can be malformed still gives an error naming the file and the entry.
TEST(TokenizerFiles, ReportsMalformedVocabularyAndMergesNamingTheEntry) {
  TempDir dir;
  const auto error_for = [&](const std::string& vocab, const std::string& merges) {
    const std::string json = R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" + merges + "}}";
    std::ofstream(dir.path() / "tokenizer.json") << json;
    return error_of([&] { Tokenizer::from_files(dir.path() / "tokenizer.json"); });
  };
  const std::string vocab = R"({"a": 0, "b": 1, "ab": 2})";
  EXPECT_NE(error_for(R"({"a": "zero"})", "[]").find("id of model.vocab entry a is not an integer"), std::string::npos);
  EXPECT_NE(error_for(R"({"a": {"id": 0}})", "[]").find("id of model.vocab entry a is not an integer"),
            std::string::npos);
  EXPECT_NE(error_for(R"({"a": 1.5})", "[]").find("is not an integer"), std::string::npos);
  EXPECT_NE(error_for(R"(["a"])", "[]").find("model.vocab is not an object"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"(["a b c"])").find("is not two tokens separated by one space"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"(["a b", 7])").find("merge #1 is neither"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"([["a"]])").find("merge #0 is neither"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"([["a", "b", "c"]])").find("merge #0 is neither"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"([{"a": "b"}])").find("merge #0 is neither"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"({"a": "b"})").find("model.merges is not an array"), std::string::npos);
  EXPECT_NE(error_for(vocab, R"(["a b", ["a", "c"]])").find("merge #1"), std::string::npos);  // no token "c"
  std::ofstream(dir.path() / "tokenizer.json") << R"({"model": {"type": "BPE", "vocab": {"a": 0}}})";
  EXPECT_NE(error_of([&] { Tokenizer::from_files(dir.path() / "tokenizer.json"); }).find("has no \"merges\""),
            std::string::npos);
  std::ofstream(dir.path() / "tokenizer.json") << R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [)";
  EXPECT_NE(error_of([&] { Tokenizer::from_files(dir.path() / "tokenizer.json"); }).find("not valid JSON"),
            std::string::npos);
}

// The file reader and the parsed-document path (which GGUF files take) build the same tokenizer; keys named
// "vocab" or "merges" outside the top-level model are ordinary JSON.
TEST(TokenizerFiles, FileAndParsedDocumentGiveTheSameTokens) {
  const auto file = source_path("data/llama-3.1-tokenizer/tokenizer.json");
  nlohmann::json document = nlohmann::json::parse(read_file(file));
  const Tokenizer from_document = Tokenizer::from_json(document, nlohmann::json::object(), file.string(), "");
  const Tokenizer& from_file = llama_tokenizer();
  EXPECT_EQ(from_document.vocab_size(), from_file.vocab_size());
  const std::string text = "Hello world! 12345 naïve café — 日本語 <|eot_id|>   \n\n  tabs\tand 'quotes' I'm";
  EXPECT_EQ(from_document.encode(text, true), from_file.encode(text, true));
  EXPECT_EQ(from_document.encode(text, false), from_file.encode(text, false));
  for (const TokenId id : {0, 1, 500, 127999, 128000, 128009, 128255}) {
    EXPECT_EQ(from_document.token_bytes(id), from_file.token_bytes(id)) << id;
  }

  TempDir dir;
  std::ofstream(dir.path() / "tokenizer.json") << R"({"decoder": {"vocab": {"x": "y"}, "merges": 3},
    "model": {"type": "BPE", "extra": {"vocab": [1], "merges": {}}, "vocab": {"a": 0, "b": 1, "ab": 2},
              "merges": ["a b"]}})";
  const Tokenizer small = Tokenizer::from_files(dir.path() / "tokenizer.json");
  EXPECT_EQ(small.vocab_size(), 3);
  EXPECT_EQ(small.encode("abba"), (std::vector<TokenId>{2, 1, 0}));
}

TEST(TokenizerFiles, LoadsASmallHandWrittenTokenizer) {
  TempDir dir;
  // Bytes "a", "b", " " (written Ġ) and merges a+b -> ab, Ġ+ab -> Ġab; an added token with lstrip.
  const std::string json = R"({
    "model": {"type": "BPE", "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4},
              "merges": ["a b", ["Ġ", "ab"]]},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": " ?[a-z]+|\\s+"}, "behavior": "Isolated"},
    "added_tokens": [{"id": 5, "content": "<x>", "special": true, "lstrip": true, "rstrip": false}]})";
  std::ofstream(dir.path() / "tokenizer.json") << json;
  const Tokenizer tok = Tokenizer::from_files(dir.path() / "tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 6);
  EXPECT_EQ(tok.encode("ab aba"), (std::vector<TokenId>{3, 4, 0}));
  EXPECT_EQ(tok.encode("ab  <x>b", true), (std::vector<TokenId>{3, 5, 1}));  // lstrip eats the spaces
  // Without parse_special "<x>" is ordinary text, and this vocabulary has no byte "<".
  EXPECT_NE(error_of([&] { tok.encode("ab <x>", false); }).find("no token for byte 0x3C"), std::string::npos);
  EXPECT_EQ(tok.bos_id(), std::nullopt);
}

}  // namespace
}  // namespace llama31::testing
