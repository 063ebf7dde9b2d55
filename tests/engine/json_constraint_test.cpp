// JSON-constrained decoding on the real Llama 3.1 vocabulary: random walks (a weak model picking uniformly
// among the allowed tokens) always end in a valid value within the token budget; the trie-walk mask agrees
// with feeding each token on its own; bad tokens and bad schemas are refused.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>

#include "engine/token_constraint.h"
#include "../tokenizer/llama_tokenizer.h"
#include "util/error.h"

namespace llama31 {
namespace {

using nlohmann::json;

const Tokenizer& tokenizer() { return testing::llama_tokenizer(); }

const JsonConstraintFactory& factory() {
  static const JsonConstraintFactory f(tokenizer(), {*tokenizer().token_to_id("<|eot_id|>"),
                                                     *tokenizer().token_to_id("<|eom_id|>")});
  return f;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// Validates the subset of JSON schema the constraint supports.
bool valid(const json& v, const json& schema, const json& root) {
  if (schema.is_boolean()) return schema.get<bool>();
  if (schema.contains("$ref")) {
    std::string ref = schema["$ref"];
    return valid(v, root[json::json_pointer(ref.substr(1))], root);
  }
  if (schema.contains("const")) return v == schema["const"];
  if (schema.contains("enum")) {
    for (const auto& e : schema["enum"])
      if (e == v) return true;
    return false;
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    if (!schema.contains(key)) continue;
    for (const auto& s : schema[key])
      if (valid(v, s, root)) return true;
    return false;
  }
  if (schema.contains("type")) {
    json types = schema["type"].is_array() ? schema["type"] : json::array({schema["type"]});
    bool ok = false;
    for (const auto& t : types) {
      std::string type = t;
      ok = ok || (type == "object" && v.is_object()) || (type == "array" && v.is_array()) ||
           (type == "string" && v.is_string()) || (type == "number" && v.is_number()) ||
           (type == "integer" && v.is_number_integer()) || (type == "boolean" && v.is_boolean()) ||
           (type == "null" && v.is_null());
    }
    if (!ok) return false;
  }
  if (v.is_object()) {
    for (const auto& r : schema.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) return false;
    for (const auto& [key, value] : v.items()) {
      if (schema.contains("properties") && schema["properties"].contains(key)) {
        if (!valid(value, schema["properties"][key], root)) return false;
      } else if (schema.contains("additionalProperties")) {
        if (!valid(value, schema["additionalProperties"], root)) return false;
      }
    }
  }
  if (v.is_array()) {
    if (v.size() < schema.value("minItems", 0u) || v.size() > schema.value("maxItems", 1u << 30)) return false;
    if (schema.contains("items"))
      for (const auto& e : v)
        if (!valid(e, schema["items"], root)) return false;
  }
  if (v.is_string()) {
    size_t n = utf8_length(v.get<std::string>());
    if (n < schema.value("minLength", 0u) || n > schema.value("maxLength", 1u << 30)) return false;
  }
  return true;
}

int depth_of(const json& v) {
  int d = 0;
  if (v.is_structured())
    for (const auto& e : v) d = std::max(d, depth_of(e));
  return v.is_structured() ? d + 1 : 0;
}

std::vector<TokenId> allowed_tokens(TokenConstraint& c, int remaining) {
  std::vector<float> logits(static_cast<size_t>(tokenizer().vocab_size()), 0.0f);
  c.mask(logits, remaining);
  std::vector<TokenId> allowed;
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isinf(logits[i])) allowed.push_back(static_cast<TokenId>(i));
  return allowed;
}

// A weak model: picks uniformly among allowed tokens until an end token; returns the text.
std::string random_walk(TokenConstraint& c, int budget, uint64_t seed, double* mask_ms = nullptr) {
  std::mt19937_64 rng(seed);
  std::vector<TokenId> generated;
  double total_ms = 0;
  for (int step = 0; step < budget; ++step) {
    auto start = std::chrono::steady_clock::now();
    std::vector<TokenId> allowed = allowed_tokens(c, budget - step);
    total_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_FALSE(allowed.empty());
    if (allowed.empty()) break;
    TokenId t = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    if (tokenizer().is_special(t)) {
      EXPECT_TRUE(c.complete()) << tokenizer().decode(generated);
      EXPECT_TRUE(c.accept(t));
      break;
    }
    EXPECT_TRUE(c.accept(t));
    generated.push_back(t);
  }
  if (mask_ms) *mask_ms = total_ms / static_cast<double>(std::max<size_t>(1, generated.size()));
  EXPECT_TRUE(c.complete()) << tokenizer().decode(generated);
  return tokenizer().decode(generated);
}

void check_walks(const json& schema, std::unique_ptr<TokenConstraint> (*make)(const json&), int walks, int budget) {
  for (int w = 0; w < walks; ++w) {
    auto c = make(schema);
    std::string text = random_walk(*c, budget, static_cast<uint64_t>(w) * 7919 + 1);
    json value;
    ASSERT_NO_THROW(value = json::parse(text)) << text;
    EXPECT_TRUE(valid(value, schema, schema)) << text;
  }
}

std::unique_ptr<TokenConstraint> make_schema(const json& s) { return factory().json_schema(s); }

TEST(JsonConstraint, FlatObjectWalksEndValid) {
  json schema = json::parse(R"({"type":"object","properties":{"name":{"type":"string","maxLength":8},
    "age":{"type":"integer"},"score":{"type":"number"},"ok":{"type":"boolean"},"nothing":{"type":"null"}},
    "required":["name","age"]})");
  check_walks(schema, make_schema, 3, 60);
}

TEST(JsonConstraint, NestedObjectsArraysAndEnumsWalksEndValid) {
  json schema = json::parse(R"({"type":"object","properties":{
    "tags":{"type":"array","items":{"type":"string","minLength":1,"maxLength":4},"minItems":2,"maxItems":3},
    "color":{"enum":["red","green",3,null]},
    "inner":{"type":"object","properties":{"x":{"type":"integer"},"y":{"const":"fixed"}},"required":["x","y"]}},
    "required":["tags","color","inner"]})");
  check_walks(schema, make_schema, 3, 80);
}

TEST(JsonConstraint, AnyOfRefsAndTypeListsWalksEndValid) {
  json schema = json::parse(R"({"$defs":{"point":{"type":"object","properties":{"x":{"type":"number"}},
    "required":["x"]}},"type":"object","properties":{
    "a":{"anyOf":[{"type":"integer"},{"type":"string","maxLength":3}]},
    "b":{"$ref":"#/$defs/point"},"c":{"type":["string","null"],"maxLength":2}},"required":["a","b","c"]})");
  check_walks(schema, make_schema, 3, 60);
}

TEST(JsonConstraint, ToolCallWithTwoFunctionsWalksEndValid) {
  json functions = json::parse(R"([
    {"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":6}},
     "required":["city"]}},
    {"name":"add","parameters":{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},
     "required":["a","b"]}}])");
  for (int w = 0; w < 3; ++w) {
    auto c = factory().tool_call(functions);
    std::string text = random_walk(*c, 60, static_cast<uint64_t>(w) + 11);
    json value = json::parse(text);
    ASSERT_TRUE(value.is_object()) << text;
    ASSERT_EQ(value.size(), 2u) << text;
    EXPECT_EQ(text.substr(0, 8), "{\"name\":") << text;
    std::string name = value["name"];
    const json& fn = name == "add" ? functions[1] : functions[0];
    EXPECT_TRUE(name == "add" || name == "get_weather") << text;
    EXPECT_TRUE(valid(value["parameters"], fn["parameters"], fn["parameters"])) << text;
  }
}

TEST(JsonConstraint, AnyJsonObjectWalksEndInBoundedObjects) {
  double mask_ms = 0;
  for (int w = 0; w < 3; ++w) {
    auto c = factory().any_json_object();
    std::string text = random_walk(*c, 50, static_cast<uint64_t>(w) + 100, &mask_ms);
    json value;
    ASSERT_NO_THROW(value = json::parse(text)) << text;
    EXPECT_TRUE(value.is_object()) << text;
    EXPECT_LE(depth_of(value), 12) << text;
  }
  std::printf("[ info ] mask over %d tokens: %.2f ms per step (any_json_object)\n", tokenizer().vocab_size(), mask_ms);
}

TEST(JsonConstraint, AcceptRejectsBadTokensAndKeepsState) {
  auto c = factory().json_schema(json::parse(R"({"type":"object","properties":{"a":{"type":"integer"}},
    "required":["a"]})"));
  EXPECT_FALSE(c->accept(tokenizer().encode("[")[0]));
  EXPECT_FALSE(c->accept(*tokenizer().token_to_id("<|eot_id|>")));
  EXPECT_FALSE(c->accept(*tokenizer().bos_id()));
  for (TokenId t : tokenizer().encode("{\"a\": 1")) ASSERT_TRUE(c->accept(t));
  EXPECT_FALSE(c->complete());
  EXPECT_FALSE(c->accept(tokenizer().encode("x")[0]));
  EXPECT_EQ(c->min_tokens_to_complete(), 1);
  ASSERT_TRUE(c->accept(tokenizer().encode("}")[0]));
  EXPECT_TRUE(c->complete());
  EXPECT_EQ(allowed_tokens(*c, 10),
            (std::vector<TokenId>{*tokenizer().token_to_id("<|eom_id|>"), *tokenizer().token_to_id("<|eot_id|>")}));
}

TEST(JsonConstraint, SpecialTokensNeverAllowedInsideTheValue) {
  auto c = factory().any_json_object();
  for (TokenId t : tokenizer().encode("{\"k\": \"text")) ASSERT_TRUE(c->accept(t));
  for (TokenId t : allowed_tokens(*c, 1000)) EXPECT_FALSE(tokenizer().is_special(t)) << t;
}

TEST(JsonConstraint, MaskAgreesWithFeedingEachTokenAlone) {
  json schema = json::parse(R"({"type":"object","properties":{"s":{"type":"string"},"n":{"type":"number"},
    "l":{"type":"array","items":{"enum":["x","yy"]}}},"required":["s","n","l"]})");
  // properties come in nlohmann::json's (alphabetical) key order: l, n, s
  for (std::string prefix : {"", "{\"l\": [\"y", "{\"l\": [], \"n\": -1.5e", "{\"l\": [], \"n\": 2, \"s\": \"h\\u00",
                             "{\"l\": [], \"n\": 2, \"s\": \"\xc3"}) {
    auto c = factory().json_schema(schema);
    std::vector<TokenId> prefix_ids;
    // byte-by-byte prefix through single-byte tokens, so partial UTF-8 stays possible
    for (unsigned char ch : prefix) {
      std::string one(1, static_cast<char>(ch));
      TokenId id = -1;
      for (TokenId t = 0; t < 256 * 1024 && t < tokenizer().vocab_size(); ++t) {
        if (!tokenizer().is_special(t) && tokenizer().token_bytes(t) == one) {
          id = t;
          break;
        }
      }
      ASSERT_GE(id, 0);
      ASSERT_TRUE(c->accept(id)) << prefix;
      prefix_ids.push_back(id);
    }
    std::vector<TokenId> masked = allowed_tokens(*c, 1 << 20);
    std::vector<TokenId> brute;
    for (TokenId t = 0; t < tokenizer().vocab_size(); ++t) {
      auto fresh = factory().json_schema(schema);
      for (TokenId p : prefix_ids) fresh->accept(p);
      if (fresh->accept(t)) brute.push_back(t);
    }
    EXPECT_EQ(masked, brute) << prefix;
    EXPECT_FALSE(masked.empty()) << prefix;
  }
}

TEST(JsonConstraint, BadSchemasAreErrorsNamingTheProblem) {
  EXPECT_THROW(factory().json_schema(json("string")), Error);
  try {
    factory().json_schema(json::parse(R"({"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}})"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("#/$defs/missing"), std::string::npos) << e.what();
  }
  try {
    factory().json_schema(json::parse(R"({"type":"integer","minimum":3})"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("minimum"), std::string::npos) << e.what();
  }
  EXPECT_THROW(factory().json_schema(json::parse(R"({"type":"strung"})")), Error);
  EXPECT_THROW(factory().tool_call(json::array()), Error);
}

}  // namespace
}  // namespace llama31
