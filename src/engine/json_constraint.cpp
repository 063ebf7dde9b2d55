// JSON constraints: a byte-level pushdown automaton over the schema graph (json_schema_graph.h), with
// nondeterminism kept as a small set of stacks, and a byte trie of every non-special token text for
// masking: the trie is walked with automaton copies and dead branches are pruned.
// Whitespace: at most one space after ':' and ',' and none elsewhere. Numbers: at most 15 integer and 15
// fraction digits and 2 exponent digits. Strings: UTF-8 checked byte by byte (no overlongs, surrogates)
// and \u escapes exclude surrogates. Budget: a token stays allowed only if the shortest completion after
// it (in single-byte tokens) still fits in remaining_tokens - 1; if none fits, those with the shortest one.
#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/json_schema_graph.h"
#include "engine/token_constraint.h"
#include "util/error.h"

namespace llama31 {

using namespace json_grammar;

namespace {

constexpr int kMaxFrames = 40;
constexpr size_t kMaxStacks = 64;

enum class FrameKind : uint8_t { Value, Object, Array, String, Number, Literal, Key };
// Object phases
enum : uint8_t { kStart, kAfterKey, kAfterColon, kAfterColonSpace, kAfterValue, kAfterComma, kAfterCommaSpace };
// String phases
enum : uint8_t { kText, kEscape, kHex, kUtf8 };
// Number phases
enum : uint8_t { kMinus, kZero, kInt, kDot, kFrac, kExp, kExpSign, kExpDigits };

struct Frame {
  FrameKind kind;
  uint8_t phase;
  int32_t node;
  int32_t a;
  int32_t b;
};

struct Stack {
  int n = 0;
  Frame f[kMaxFrames];
  void copy_from(const Stack& o) {
    n = o.n;
    std::memcpy(f, o.f, sizeof(Frame) * static_cast<size_t>(n));
  }
  bool equals(const Stack& o) const { return n == o.n && std::memcmp(f, o.f, sizeof(Frame) * n) == 0; }
};

// A set of stacks with reusable storage.
struct StateSet {
  std::vector<Stack> stacks;
  size_t size = 0;
  Stack& push_copy(const Stack& s) {
    if (stacks.size() <= size) stacks.emplace_back();
    stacks[size].copy_from(s);
    return stacks[size++];
  }
  void add_unique(const Stack& s) {
    if (size >= kMaxStacks) return;
    for (size_t i = 0; i < size; ++i)
      if (stacks[i].equals(s)) return;
    push_copy(s);
  }
};

struct Automaton {
  const SchemaGraph* g;

  bool push(Stack& s, Frame fr) const {
    if (s.n >= kMaxFrames) return false;
    s.f[s.n++] = fr;
    return true;
  }

  // s: the stack with the Value frame already removed; starts a value of node with byte c.
  void expand(Stack s, int node, uint8_t c, StateSet& out, int guard) const {
    if (guard > 32) return;
    const Node& n = g->nodes[node];
    switch (n.kind) {
      case NodeKind::AnyOf:
        for (int alt : n.alternatives) expand(s, alt, c, out, guard + 1);
        return;
      case NodeKind::Object:
        if (c == '{' && push(s, {FrameKind::Object, kStart, node, 0, -1})) out.add_unique(s);
        return;
      case NodeKind::Array:
        if (c == '[' && push(s, {FrameKind::Array, kStart, node, 0, 0})) out.add_unique(s);
        return;
      case NodeKind::String:
        if (c == '"' && push(s, {FrameKind::String, kText, node, 0, 0})) out.add_unique(s);
        return;
      case NodeKind::Number:
      case NodeKind::Integer: {
        uint8_t phase = c == '-' ? kMinus : c == '0' ? kZero : (c >= '1' && c <= '9') ? kInt : 255;
        if (phase != 255 && push(s, {FrameKind::Number, phase, node, phase == kInt ? 1 : 0, 0})) out.add_unique(s);
        return;
      }
      case NodeKind::Enum:
        for (size_t i = 0; i < n.literals.size(); ++i) {
          if (static_cast<uint8_t>(n.literals[i][0]) != c) continue;
          Stack t = s;
          if (n.literals[i].size() == 1) {
            out.add_unique(t);
          } else if (push(t, {FrameKind::Literal, 0, node, static_cast<int32_t>(i), 1})) {
            out.add_unique(t);
          }
        }
        return;
    }
  }

  void start_value(Stack& s, int node, uint8_t c, StateSet& out) const { expand(s, node, c, out, 0); }

  void start_key(Stack s, uint8_t c, StateSet& out) const {
    if (c != '"') return;
    Frame& o = s.f[s.n - 1];
    const Node& n = g->nodes[o.node];
    o.phase = kAfterKey;
    if (n.properties.empty()) {
      o.b = -1;
      if (push(s, {FrameKind::String, kText, const_cast<SchemaGraph*>(g)->plain_string(), 0, 0})) out.add_unique(s);
      return;
    }
    for (int j = o.a; j < static_cast<int>(n.properties.size()); ++j) {
      Stack t = s;
      Frame& to = t.f[t.n - 1];
      to.a = j + 1;
      to.b = j;
      if (push(t, {FrameKind::Key, 0, o.node, j, 1})) out.add_unique(t);
      if (n.properties[j].required) break;
    }
  }

  static bool required_left(const Node& n, int from) {
    for (size_t j = static_cast<size_t>(from); j < n.properties.size(); ++j)
      if (n.properties[j].required) return true;
    return false;
  }

  // Feeds one byte to stack s, adding the resulting stacks to out.
  void feed(const Stack& in, uint8_t c, StateSet& out) const {
    if (in.n == 0) return;
    Stack s = in;
    Frame& t = s.f[s.n - 1];
    const Node& n = g->nodes[t.node];
    switch (t.kind) {
      case FrameKind::Value:
        --s.n;
        start_value(s, t.node, c, out);
        return;
      case FrameKind::Literal:
      case FrameKind::Key: {
        const std::string& text = t.kind == FrameKind::Key ? n.properties[t.a].key_text : n.literals[t.a];
        if (static_cast<uint8_t>(text[t.b]) != c) return;
        if (++t.b == static_cast<int32_t>(text.size())) --s.n;
        out.add_unique(s);
        return;
      }
      case FrameKind::Object: {
        bool free_keys = n.properties.empty() && n.additional >= 0;
        int value_node = t.b >= 0 ? n.properties[t.b].node : n.additional;
        switch (t.phase) {
          case kStart:
          case kAfterValue:
            if (c == '}' && (free_keys || !required_left(n, t.a))) {
              --s.n;
              out.add_unique(s);
            } else if (t.phase == kStart) {
              if (free_keys || t.a < static_cast<int>(n.properties.size())) start_key(s, c, out);
            } else if (c == ',' && (free_keys || t.a < static_cast<int>(n.properties.size()))) {
              t.phase = kAfterComma;
              out.add_unique(s);
            }
            return;
          case kAfterKey:
            if (c == ':') {
              t.phase = kAfterColon;
              out.add_unique(s);
            }
            return;
          case kAfterColon:
          case kAfterColonSpace:
            if (c == ' ' && t.phase == kAfterColon) {
              t.phase = kAfterColonSpace;
              out.add_unique(s);
              return;
            }
            t.phase = kAfterValue;
            start_value(s, value_node, c, out);
            return;
          case kAfterComma:
          case kAfterCommaSpace:
            if (c == ' ' && t.phase == kAfterComma) {
              t.phase = kAfterCommaSpace;
              out.add_unique(s);
              return;
            }
            start_key(s, c, out);
            return;
        }
        return;
      }
      case FrameKind::Array:
        if (t.phase == kStart || t.phase == kAfterValue) {
          if (c == ']' && t.a >= n.min_count) {
            --s.n;
            out.add_unique(s);
          } else if (t.phase == kAfterValue) {
            if (c == ',' && t.a < n.max_count) {
              t.phase = kAfterComma;
              out.add_unique(s);
            }
          } else if (n.max_count > 0) {
            t.phase = kAfterValue;
            t.a = 1;
            start_value(s, n.item, c, out);
          }
        } else {  // after a comma
          if (c == ' ' && t.phase == kAfterComma) {
            t.phase = kAfterCommaSpace;
            out.add_unique(s);
            return;
          }
          t.phase = kAfterValue;
          ++t.a;
          start_value(s, n.item, c, out);
        }
        return;
      case FrameKind::String:
        if (feed_string(t, n, c, s)) out.add_unique(s);
        return;
      case FrameKind::Number: {
        bool integer = n.kind == NodeKind::Integer;
        bool digit = c >= '0' && c <= '9';
        switch (t.phase) {
          case kMinus:
            if (digit) {
              t.phase = c == '0' ? kZero : kInt;
              t.a = 1;
              out.add_unique(s);
              return;
            }
            return;
          case kZero:
          case kInt:
            if (digit && t.phase == kInt && t.a < 15) {
              ++t.a;
              out.add_unique(s);
              return;
            }
            if (!integer && c == '.') {
              t.phase = kDot;
              out.add_unique(s);
              return;
            }
            if (!integer && (c == 'e' || c == 'E')) {
              t.phase = kExp;
              out.add_unique(s);
              return;
            }
            break;
          case kDot:
            if (digit) {
              t.phase = kFrac;
              t.a = 1;
              out.add_unique(s);
            }
            return;
          case kFrac:
            if (digit && t.a < 15) {
              ++t.a;
              out.add_unique(s);
              return;
            }
            if (c == 'e' || c == 'E') {
              t.phase = kExp;
              out.add_unique(s);
              return;
            }
            break;
          case kExp:
            if (c == '+' || c == '-') {
              t.phase = kExpSign;
              out.add_unique(s);
              return;
            }
            [[fallthrough]];
          case kExpSign:
            if (digit) {
              t.phase = kExpDigits;
              t.a = 1;
              out.add_unique(s);
            }
            return;
          case kExpDigits:
            if (digit && t.a < 2) {
              ++t.a;
              out.add_unique(s);
              return;
            }
            break;
        }
        // a complete number ends at a byte it cannot take: the byte goes to the enclosing frame
        --s.n;
        if (s.n > 0) feed(s, c, out);
        return;
      }
    }
  }

  static bool is_hex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

  bool feed_string(Frame& t, const Node& n, uint8_t c, Stack& s) const {
    switch (t.phase) {
      case kText:
        if (c == '"') {
          if (t.a < n.min_count) return false;
          --s.n;
          return true;
        }
        if (c < 0x20 || t.a >= n.max_count) return false;
        if (c == '\\') {
          t.phase = kEscape;
        } else if (c >= 0x80) {
          int pending;
          int lo = 0x80, hi = 0xBF;
          if (c >= 0xC2 && c <= 0xDF) pending = 1;
          else if (c >= 0xE0 && c <= 0xEF) {
            pending = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
          } else if (c >= 0xF0 && c <= 0xF4) {
            pending = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
          } else {
            return false;
          }
          t.phase = kUtf8;
          t.b = pending | (lo << 8) | (hi << 16);
        }
        ++t.a;
        return true;
      case kEscape:
        if (c == 'u') {
          t.phase = kHex;
          t.b = 0;
          return true;
        }
        if (!std::strchr("\"\\/bfnrt", c) || c == 0) return false;
        t.phase = kText;
        return true;
      case kHex: {
        if (!is_hex(c)) return false;
        int count = t.b & 0xF;
        if (count == 0 && (c == 'd' || c == 'D')) t.b |= 0x10;
        if (count == 1 && (t.b & 0x10) && !(c >= '0' && c <= '7')) return false;  // no surrogates
        t.b = (t.b & ~0xF) | (count + 1);
        if (count + 1 == 4) t.phase = kText;
        return true;
      }
      case kUtf8: {
        int lo = (t.b >> 8) & 0xFF, hi = (t.b >> 16) & 0xFF, pending = t.b & 0xFF;
        if (c < lo || c > hi) return false;
        if (--pending == 0) {
          t.phase = kText;
          t.b = 0;
        } else {
          t.b = pending | (0x80 << 8) | (0xBF << 16);
        }
        return true;
      }
    }
    return false;
  }

  int min_to_complete(const Stack& s) const {
    long total = 0;
    for (int i = s.n - 1; i >= 0; --i) {
      const Frame& t = s.f[i];
      const Node& n = g->nodes[t.node];
      switch (t.kind) {
        case FrameKind::Value: total += n.min_length; break;
        case FrameKind::Literal: total += static_cast<long>(n.literals[t.a].size()) - t.b; break;
        case FrameKind::Key: total += static_cast<long>(n.properties[t.a].key_text.size()) - t.b; break;
        case FrameKind::Number: total += (t.phase == kMinus || t.phase == kDot || t.phase == kExp || t.phase == kExpSign); break;
        case FrameKind::String: {
          int extra = t.phase == kEscape ? 1 : t.phase == kHex ? 4 - (t.b & 0xF) : t.phase == kUtf8 ? (t.b & 0xFF) : 0;
          total += extra + std::max(0, n.min_count - t.a) + 1;
          break;
        }
        case FrameKind::Array: {
          int item = g->nodes[n.item].min_length;
          if (t.phase == kStart) {
            total += n.min_count == 0 ? 1 : static_cast<long>(n.min_count) * (item + 1);
          } else if (t.phase == kAfterValue) {
            total += static_cast<long>(std::max(0, n.min_count - t.a)) * (item + 1) + 1;
          } else {
            long k = std::max(1, n.min_count - t.a);
            total += k * (item + 1);
          }
          break;
        }
        case FrameKind::Object: {
          if (n.properties.empty()) {
            int value = n.additional >= 0 ? g->nodes[n.additional].min_length : 0;
            switch (t.phase) {
              case kAfterKey: total += 2 + value; break;
              case kAfterColon:
              case kAfterColonSpace: total += 1 + value; break;
              case kAfterComma:
              case kAfterCommaSpace: total += 4 + value; break;
              default: total += 1;
            }
            break;
          }
          int value = t.b >= 0 ? g->nodes[n.properties[t.b].node].min_length : 0;
          int rest = n.rest_min[t.a];
          switch (t.phase) {
            case kStart: total += rest > 1 ? rest - 1 : 1; break;
            case kAfterKey: total += 1 + value + rest; break;
            case kAfterColon:
            case kAfterColonSpace: total += value + rest; break;
            case kAfterValue: total += rest; break;
            default: total += n.after_comma_min[t.a];
          }
          break;
        }
      }
    }
    return static_cast<int>(std::min<long>(total, kInfinity));
  }
};

}  // namespace

// The vocabulary index the factory shares with its constraints. Not in the anonymous namespace: the
// factory's Index (declared in the header) derives from it.
namespace json_constraint_detail {

struct Trie {
  // children of node i: edges[first[i] .. first[i] + count[i])
  std::vector<uint32_t> first;
  std::vector<uint32_t> count;
  std::vector<uint8_t> edge_byte;
  std::vector<uint32_t> edge_child;
  std::vector<std::vector<TokenId>> tokens;  // tokens ending at node i
};

struct VocabIndex {
  const Tokenizer* tokenizer = nullptr;
  std::vector<std::string> token_text;  // empty for special tokens
  std::vector<bool> special;
  Trie trie;
};

}  // namespace json_constraint_detail

struct JsonConstraintFactory::Index : json_constraint_detail::VocabIndex {};

namespace {

using json_constraint_detail::Trie;

using Index = json_constraint_detail::VocabIndex;

uint32_t build_trie(Trie& trie, const std::vector<std::string>& texts, const std::vector<TokenId>& sorted, size_t lo,
                    size_t hi, size_t depth) {
  uint32_t node = static_cast<uint32_t>(trie.tokens.size());
  trie.tokens.emplace_back();
  trie.first.push_back(0);
  trie.count.push_back(0);
  while (lo < hi && texts[sorted[lo]].size() == depth) trie.tokens[node].push_back(sorted[lo++]);
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t i = lo; i < hi;) {
    size_t j = i;
    while (j < hi && texts[sorted[j]][depth] == texts[sorted[i]][depth]) ++j;
    groups.emplace_back(i, j);
    i = j;
  }
  size_t base = trie.edge_byte.size();
  trie.first[node] = static_cast<uint32_t>(base);
  trie.count[node] = static_cast<uint32_t>(groups.size());
  trie.edge_byte.resize(base + groups.size());
  trie.edge_child.resize(base + groups.size());
  for (size_t k = 0; k < groups.size(); ++k) trie.edge_byte[base + k] = static_cast<uint8_t>(texts[sorted[groups[k].first]][depth]);
  for (size_t k = 0; k < groups.size(); ++k)
    trie.edge_child[base + k] = build_trie(trie, texts, sorted, groups[k].first, groups[k].second, depth + 1);
  return node;
}

class JsonConstraint final : public TokenConstraint {
 public:
  JsonConstraint(const Index& index, std::shared_ptr<SchemaGraph> graph, std::vector<TokenId> end_tokens)
      : index_(index), graph_(std::move(graph)), automaton_{graph_.get()}, end_tokens_(std::move(end_tokens)) {
    Stack s;
    s.f[0] = {FrameKind::Value, 0, graph_->root, 0, 0};
    s.n = 1;
    state_.push_copy(s);
  }

  int min_tokens_to_complete() const override { return min_of(state_); }

  bool complete() const override {
    for (size_t i = 0; i < state_.size; ++i) {
      const Stack& s = state_.stacks[i];
      if (s.n == 0) return true;
      if (s.n == 1 && s.f[0].kind == FrameKind::Number && automaton_.min_to_complete(s) == 0) return true;
    }
    return false;
  }

  bool accept(TokenId token) override {
    if (token < 0 || token >= static_cast<TokenId>(index_.special.size())) return false;
    if (std::find(end_tokens_.begin(), end_tokens_.end(), token) != end_tokens_.end()) return complete();
    if (index_.special[token]) return false;
    StateSet next = advance(state_, index_.token_text[token]);
    if (next.size == 0) return false;
    state_ = std::move(next);
    return true;
  }

  void mask(std::span<float> logits, int remaining_tokens) override {
    allowed_.assign(logits.size(), 0);
    budget_ = std::max(remaining_tokens, 1) - 1;
    best_ = kInfinity;
    best_tokens_.clear();
    if (levels_.size() < 2) levels_.resize(2);
    levels_[0].size = 0;
    for (size_t i = 0; i < state_.size; ++i) levels_[0].push_copy(state_.stacks[i]);
    walk(0, 0);
    bool any = std::find(allowed_.begin(), allowed_.end(), 1) != allowed_.end();
    if (!any)
      for (TokenId t : best_tokens_)
        if (static_cast<size_t>(t) < allowed_.size()) allowed_[t] = 1;
    if (complete() || std::find(allowed_.begin(), allowed_.end(), 1) == allowed_.end())
      for (TokenId t : end_tokens_)
        if (t >= 0 && static_cast<size_t>(t) < allowed_.size()) allowed_[t] = 1;
    for (size_t i = 0; i < logits.size(); ++i)
      if (!allowed_[i]) logits[i] = -std::numeric_limits<float>::infinity();
  }

  // The scalar twin of the trie walk, for tests: is this token allowed by the grammar alone (no budget)?
  StateSet advance(const StateSet& from, const std::string& bytes) const {
    StateSet cur;
    for (size_t i = 0; i < from.size; ++i) cur.push_copy(from.stacks[i]);
    StateSet next;
    for (char ch : bytes) {
      next.size = 0;
      for (size_t i = 0; i < cur.size; ++i) automaton_.feed(cur.stacks[i], static_cast<uint8_t>(ch), next);
      std::swap(cur, next);
      if (cur.size == 0) break;
    }
    return cur;
  }

 private:
  int min_of(const StateSet& set) const {
    int m = kInfinity;
    for (size_t i = 0; i < set.size; ++i) m = std::min(m, automaton_.min_to_complete(set.stacks[i]));
    return m;
  }

  void walk(uint32_t node, size_t depth) {
    const Trie& trie = index_.trie;
    uint32_t begin = trie.first[node];
    uint32_t end = begin + trie.count[node];
    if (levels_.size() <= depth + 1) levels_.resize(depth + 2);
    for (uint32_t e = begin; e < end; ++e) {
      StateSet& next = levels_[depth + 1];
      const StateSet& cur = levels_[depth];
      next.size = 0;
      uint8_t c = trie.edge_byte[e];
      for (size_t i = 0; i < cur.size; ++i) automaton_.feed(cur.stacks[i], c, next);
      if (next.size == 0) continue;
      uint32_t child = trie.edge_child[e];
      if (!trie.tokens[child].empty()) {
        int m = min_of(next);
        for (TokenId t : trie.tokens[child]) {
          if (m <= budget_) allowed_[t] = 1;
          if (m < best_) {
            best_ = m;
            best_tokens_.clear();
          }
          if (m == best_) best_tokens_.push_back(t);
        }
      }
      walk(child, depth + 1);
    }
  }

  const Index& index_;
  std::shared_ptr<SchemaGraph> graph_;
  Automaton automaton_;
  std::vector<TokenId> end_tokens_;
  StateSet state_;
  std::vector<StateSet> levels_;
  std::vector<char> allowed_;
  std::vector<TokenId> best_tokens_;
  int budget_ = 0, best_ = 0;
};

}  // namespace

JsonConstraintFactory::JsonConstraintFactory(const Tokenizer& tokenizer, std::vector<TokenId> end_tokens)
    : index_(std::make_unique<Index>()), end_tokens_(std::move(end_tokens)) {
  int vocab = tokenizer.vocab_size();
  index_->tokenizer = &tokenizer;
  index_->token_text.resize(vocab);
  index_->special.assign(vocab, false);
  std::vector<TokenId> sorted;
  for (TokenId id = 0; id < vocab; ++id) {
    if (tokenizer.is_special(id)) {
      index_->special[id] = true;
      continue;
    }
    index_->token_text[id] = tokenizer.token_bytes(id);
    if (!index_->token_text[id].empty()) sorted.push_back(id);
  }
  const auto& texts = index_->token_text;
  std::sort(sorted.begin(), sorted.end(), [&](TokenId a, TokenId b) { return texts[a] < texts[b]; });
  build_trie(index_->trie, texts, sorted, 0, sorted.size(), 0);
  for (TokenId t : end_tokens_)
    if (t < 0 || t >= vocab) fail("JSON constraint: end token {} is outside the vocabulary", t);
}

JsonConstraintFactory::~JsonConstraintFactory() = default;

std::unique_ptr<TokenConstraint> JsonConstraintFactory::any_json_object() const {
  auto graph = std::make_shared<SchemaGraph>();
  graph->root = graph->any_object(12);
  graph->finish();
  return std::make_unique<JsonConstraint>(*index_, std::move(graph), end_tokens_);
}

std::unique_ptr<TokenConstraint> JsonConstraintFactory::json_schema(const nlohmann::json& schema) const {
  auto graph = std::make_shared<SchemaGraph>();
  graph->root = graph->compile(schema, schema, "#");
  graph->finish();
  return std::make_unique<JsonConstraint>(*index_, std::move(graph), end_tokens_);
}

std::unique_ptr<TokenConstraint> JsonConstraintFactory::tool_call(const nlohmann::json& functions) const {
  if (!functions.is_array() || functions.empty()) fail("tool_call: functions must be a non-empty array");
  auto graph = std::make_shared<SchemaGraph>();
  Node any = make_node(NodeKind::AnyOf);
  for (size_t i = 0; i < functions.size(); ++i) {
    const auto& f = functions[i];
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string())
      fail("tool_call: function {} needs a string \"name\"", i);
    std::string name = f["name"].get<std::string>();
    int name_node = static_cast<int>(graph->nodes.size());
    graph->nodes.push_back(make_node(NodeKind::Enum, &Node::literals, {nlohmann::json(name).dump(-1, ' ', false)}));
    int params = f.contains("parameters") && !f["parameters"].is_null()
                     ? graph->compile(f["parameters"], f["parameters"], "#/functions/" + name + "/parameters")
                     : graph->any_object(8);
    Node call = make_node(NodeKind::Object);
    call.properties.push_back(Property{"\"name\"", name_node, true});
    call.properties.push_back(Property{"\"parameters\"", params, true});
    graph->nodes.push_back(std::move(call));
    any.alternatives.push_back(static_cast<int>(graph->nodes.size()) - 1);
  }
  graph->nodes.push_back(std::move(any));
  graph->root = static_cast<int>(graph->nodes.size()) - 1;
  graph->finish();
  return std::make_unique<JsonConstraint>(*index_, std::move(graph), end_tokens_);
}

}  // namespace llama31
