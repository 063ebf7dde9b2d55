#include "chat/jinja/parser.h"

#include "util/error.h"

#include <cstdlib>

namespace llama31::jinja {
namespace {

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const std::string& name) : tokens_(tokens), name_(name) {}

  NodeList parse_all() {
    std::string end_tag;
    auto body = parse_body({}, end_tag);
    return body;
  }

 private:
  const Token& peek(std::size_t ahead = 0) const {
    return tokens_[std::min(index_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() {
    const Token& t = peek();
    if (index_ < tokens_.size() - 1) ++index_;
    return t;
  }
  [[noreturn]] void error(const Token& at, const std::string& message) const {
    fail("{}:{}:{}: {}", name_, at.position.line, at.position.column, message);
  }
  bool is_op(const char* op, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::Operator && peek(ahead).text == op;
  }
  bool is_name(const char* word, std::size_t ahead = 0) const {
    return peek(ahead).kind == TokenKind::Name && peek(ahead).text == word;
  }
  void expect_op(const char* op) {
    if (!is_op(op)) error(peek(), fmt::format("expected '{}', got '{}'", op, describe(peek())));
    next();
  }
  void expect_block_end() {
    if (peek().kind != TokenKind::BlockEnd) error(peek(), fmt::format("expected end of statement block, got '{}'", describe(peek())));
    next();
  }
  std::string expect_name() {
    if (peek().kind != TokenKind::Name) error(peek(), fmt::format("expected a name, got '{}'", describe(peek())));
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::End: return "end of template";
      case TokenKind::BlockEnd: return "end of statement block";
      case TokenKind::VariableEnd: return "end of print statement";
      default: return t.text;
    }
  }

  // Parses nodes until a block whose keyword is in end_words; stores that keyword (its tag is consumed up to
  // the keyword; the caller parses the rest of the tag).
  NodeList parse_body(const std::vector<std::string>& end_words, std::string& found_end) {
    NodeList nodes;
    while (true) {
      const Token& t = peek();
      if (t.kind == TokenKind::End) {
        if (!end_words.empty()) error(t, fmt::format("unexpected end of template, expected '{}'", end_words.back()));
        return nodes;
      }
      if (t.kind == TokenKind::Text) {
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::Text;
        node->text = t.text;
        node->position = t.position;
        nodes.push_back(std::move(node));
        next();
      } else if (t.kind == TokenKind::VariableBegin) {
        next();
        auto node = std::make_unique<Node>();
        node->kind = NodeKind::Output;
        node->position = t.position;
        node->value = parse_expression();
        if (peek().kind != TokenKind::VariableEnd) error(peek(), fmt::format("expected end of print statement, got '{}'", describe(peek())));
        next();
        nodes.push_back(std::move(node));
      } else if (t.kind == TokenKind::BlockBegin) {
        next();
        const Token& keyword = peek();
        if (keyword.kind != TokenKind::Name) error(keyword, "tag name expected");
        for (const auto& word : end_words)
          if (keyword.text == word) {
            found_end = word;
            next();
            return nodes;
          }
        nodes.push_back(parse_statement());
      } else {
        error(t, "unexpected token");
      }
    }
  }

  NodePtr parse_statement() {
    const Token& keyword = next();
    struct DepthGuard {
      int& depth;
      ~DepthGuard() { --depth; }
    } guard{++statement_depth_};
    if (statement_depth_ > kMaxStatementDepth) error(keyword, fmt::format("blocks nested deeper than {}", kMaxStatementDepth));
    auto node = std::make_unique<Node>();
    node->position = keyword.position;
    const std::string& word = keyword.text;
    if (word == "if") {
      node->kind = NodeKind::If;
      node->conditions.push_back(parse_expression());
      expect_block_end();
      while (true) {
        std::string end;
        node->bodies.push_back(parse_body({"elif", "else", "endif"}, end));
        if (end == "elif") {
          node->conditions.push_back(parse_expression());
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          node->bodies.push_back(parse_body({"endif"}, end));
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
    } else if (word == "for") {
      node->kind = NodeKind::For;
      node->targets = parse_targets();
      if (!is_name("in")) error(peek(), "expected 'in'");
      next();
      node->conditions.push_back(parse_expression(false));
      if (is_name("if")) {
        next();
        node->conditions.push_back(parse_expression());
      }
      if (is_name("recursive")) error(peek(), "recursive loops are not supported");
      expect_block_end();
      std::string end;
      node->bodies.push_back(parse_body({"else", "endfor"}, end));
      if (end == "else") {
        expect_block_end();
        node->bodies.push_back(parse_body({"endfor"}, end));
      }
      expect_block_end();
    } else if (word == "set") {
      node->targets = parse_targets();
      if (node->targets.size() == 1 && is_op(".")) {
        next();
        node->attribute = expect_name();
      }
      if (is_op("=")) {
        next();
        node->kind = NodeKind::Set;
        node->value = parse_expression();
        expect_block_end();
      } else {
        node->kind = NodeKind::SetBlock;
        if (!node->attribute.empty() || node->targets.size() != 1) error(peek(), "expected '='");
        expect_block_end();
        std::string end;
        node->bodies.push_back(parse_body({"endset"}, end));
        expect_block_end();
      }
    } else if (word == "macro") {
      node->kind = NodeKind::Macro;
      node->text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        node->parameters.push_back(expect_name());
        if (is_op("=")) {
          next();
          node->defaults.push_back(parse_expression());
        } else {
          node->defaults.push_back(nullptr);
        }
        if (!is_op(")")) expect_op(",");
      }
      next();
      expect_block_end();
      std::string end;
      node->bodies.push_back(parse_body({"endmacro"}, end));
      if (peek().kind == TokenKind::Name) next();
      expect_block_end();
    } else if (word == "break" || word == "continue") {
      node->kind = word == "break" ? NodeKind::Break : NodeKind::Continue;
      expect_block_end();
    } else {
      error(keyword, fmt::format("encountered unknown tag '{}'", word));
    }
    return node;
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool parenthesized = is_op("(");
    if (parenthesized) next();
    names.push_back(expect_name());
    while (is_op(",")) {
      next();
      names.push_back(expect_name());
    }
    if (parenthesized) expect_op(")");
    return names;
  }

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->position = at.position;
    return e;
  }

  ExprPtr parse_expression(bool with_condition = true) {
    const Token& start = peek();
    auto expr = parse_or();
    if (with_condition && is_name("if")) {
      next();
      auto conditional = make(ExprKind::Conditional, start);
      auto condition = parse_or();
      ExprPtr otherwise;
      if (is_name("else")) {
        next();
        otherwise = parse_expression();
      }
      conditional->children.push_back(std::move(condition));
      conditional->children.push_back(std::move(expr));
      conditional->children.push_back(std::move(otherwise));
      return conditional;
    }
    return expr;
  }

  ExprPtr binary(ExprKind kind, const Token& at, ExprPtr left, ExprPtr right, std::string op = {}) {
    auto e = make(kind, at);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  ExprPtr parse_or() {
    auto left = parse_and();
    while (is_name("or")) {
      const Token& at = next();
      left = binary(ExprKind::Or, at, std::move(left), parse_and());
    }
    return left;
  }
  ExprPtr parse_and() {
    auto left = parse_not();
    while (is_name("and")) {
      const Token& at = next();
      left = binary(ExprKind::And, at, std::move(left), parse_not());
    }
    return left;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      const Token& at = next();
      auto e = make(ExprKind::Not, at);
      e->children.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const Token& start = peek();
    auto first = parse_add();
    ExprPtr compare;
    while (true) {
      std::string op;
      if (peek().kind == TokenKind::Operator &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">=")) {
        op = next().text;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!compare) {
        compare = make(ExprKind::Compare, start);
        compare->children.push_back(std::move(first));
      }
      compare->compare_ops.push_back(op);
      compare->children.push_back(parse_add());
    }
    return compare ? std::move(compare) : std::move(first);
  }
  ExprPtr parse_add() {
    auto left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = next();
      left = binary(ExprKind::Binary, at, std::move(left), parse_concat(), at.text);
    }
    return left;
  }
  ExprPtr parse_concat() {
    auto left = parse_multiply();
    while (is_op("~")) {
      const Token& at = next();
      left = binary(ExprKind::Binary, at, std::move(left), parse_multiply(), "~");
    }
    return left;
  }
  ExprPtr parse_multiply() {
    auto left = parse_power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = next();
      left = binary(ExprKind::Binary, at, std::move(left), parse_power(), at.text);
    }
    return left;
  }
  ExprPtr parse_power() {
    auto left = parse_unary(true);
    while (is_op("**")) {
      const Token& at = next();
      left = binary(ExprKind::Binary, at, std::move(left), parse_unary(true), "**");
    }
    return left;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const Token& at = next();
      node = make(at.text == "-" ? ExprKind::Negate : ExprKind::Plus, at);
      node->children.push_back(parse_unary(false));
    } else {
      node = parse_postfix(parse_primary());
    }
    if (with_filter) node = parse_filters(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    if (t.kind == TokenKind::Name) {
      next();
      if (t.text == "true" || t.text == "True") return literal(t, Value::from_bool(true));
      if (t.text == "false" || t.text == "False") return literal(t, Value::from_bool(false));
      if (t.text == "none" || t.text == "None") return literal(t, Value::none());
      auto e = make(ExprKind::Name, t);
      e->name = t.text;
      return e;
    }
    if (t.kind == TokenKind::String) {
      std::string text;
      while (peek().kind == TokenKind::String) text += next().text;
      return literal(t, Value::from_string(std::move(text)));
    }
    if (t.kind == TokenKind::Integer) {
      next();
      return literal(t, Value::from_int(std::strtoll(t.text.c_str(), nullptr, 10)));
    }
    if (t.kind == TokenKind::Float) {
      next();
      return literal(t, Value::from_float(std::strtod(t.text.c_str(), nullptr)));
    }
    if (is_op("(")) {
      next();
      if (is_op(")")) {
        next();
        return make(ExprKind::TupleLiteral, t);
      }
      auto first = parse_expression();
      if (is_op(",")) {
        auto tuple = make(ExprKind::TupleLiteral, t);
        tuple->children.push_back(std::move(first));
        while (is_op(",")) {
          next();
          if (is_op(")")) break;
          tuple->children.push_back(parse_expression());
        }
        expect_op(")");
        return tuple;
      }
      expect_op(")");
      return first;
    }
    if (is_op("[")) {
      next();
      auto list = make(ExprKind::ListLiteral, t);
      while (!is_op("]")) {
        list->children.push_back(parse_expression());
        if (!is_op("]")) expect_op(",");
      }
      next();
      return list;
    }
    if (is_op("{")) {
      next();
      auto dict = make(ExprKind::DictLiteral, t);
      while (!is_op("}")) {
        dict->children.push_back(parse_expression());
        expect_op(":");
        dict->children.push_back(parse_expression());
        if (!is_op("}")) expect_op(",");
      }
      next();
      return dict;
    }
    error(t, fmt::format("unexpected '{}'", describe(t)));
  }

  ExprPtr literal(const Token& t, Value value) {
    auto e = make(ExprKind::Literal, t);
    e->literal = std::move(value);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const Token& t = peek();
      if (is_op(".")) {
        next();
        auto e = make(ExprKind::GetAttr, t);
        if (peek().kind == TokenKind::Integer) e->name = next().text;
        else e->name = expect_name();
        e->children.push_back(std::move(node));
        node = std::move(e);
      } else if (is_op("[")) {
        next();
        node = parse_subscript(std::move(node), t);
      } else if (is_op("(")) {
        auto e = make(ExprKind::Call, t);
        e->children.push_back(std::move(node));
        parse_call_arguments(*e);
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object, const Token& at) {
    ExprPtr parts[3];
    bool is_slice = false;
    int part = 0;
    while (!is_op("]")) {
      if (is_op(":")) {
        next();
        is_slice = true;
        if (++part > 2) error(peek(), "too many ':' in slice");
        continue;
      }
      if (parts[part]) error(peek(), "expected ']'");
      parts[part] = parse_expression();
    }
    next();
    if (!is_slice) {
      if (!parts[0]) error(at, "expected subscript expression");
      return binary(ExprKind::GetItem, at, std::move(object), std::move(parts[0]));
    }
    auto e = make(ExprKind::Slice, at);
    e->children.push_back(std::move(object));
    for (auto& p : parts) e->children.push_back(std::move(p));
    return e;
  }

  void parse_call_arguments(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == TokenKind::Name && is_op("=", 1)) {
        call.keyword_names.push_back(next().text);
        next();
        call.children.push_back(parse_expression());
      } else {
        if (!call.keyword_names.empty()) error(peek(), "positional argument follows keyword argument");
        call.children.push_back(parse_expression());
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }

  ExprPtr parse_filters(ExprPtr node) {
    while (true) {
      const Token& t = peek();
      if (is_op("|")) {
        next();
        auto e = make(ExprKind::Filter, t);
        e->name = expect_name();
        while (is_op(".")) {
          next();
          e->name += '.';
          e->name += expect_name();
        }
        e->children.push_back(std::move(node));
        if (is_op("(")) parse_call_arguments(*e);
        node = std::move(e);
      } else if (is_name("is")) {
        next();
        auto e = make(ExprKind::Test, t);
        if (is_name("not")) {
          next();
          e->negated = true;
        }
        e->name = expect_name();
        e->children.push_back(std::move(node));
        if (is_op("(")) {
          parse_call_arguments(*e);
        } else {
          const Token& arg = peek();
          bool starts_argument = arg.kind == TokenKind::String || arg.kind == TokenKind::Integer ||
                                 arg.kind == TokenKind::Float || is_op("[") || is_op("{") ||
                                 (arg.kind == TokenKind::Name && arg.text != "else" && arg.text != "or" &&
                                  arg.text != "and" && arg.text != "if" && arg.text != "is" && arg.text != "in" &&
                                  arg.text != "not");
          if (starts_argument) e->children.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(e);
      } else if (is_op("(")) {
        auto e = make(ExprKind::Call, t);
        e->children.push_back(std::move(node));
        parse_call_arguments(*e);
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& tokens_;
  const std::string& name_;
  std::size_t index_ = 0;
  int statement_depth_ = 0;
  static constexpr int kMaxStatementDepth = 128;
};

}  // namespace

NodeList parse_tokens(const std::vector<Token>& tokens, const std::string& name) {
  return Parser(tokens, name).parse_all();
}

}  // namespace llama31::jinja
