#include "chat/jinja/lexer.h"

#include "util/error.h"

#include <cctype>

namespace llama31::jinja {
namespace {

constexpr std::size_t kMaxTokensPerTag = 2048;
constexpr int kMaxBracketDepth = 64;

class Lexer {
 public:
  Lexer(std::string_view source, const std::string& name, const LexerOptions& options)
      : source_(source), name_(name), options_(options) {}

  std::vector<Token> run() {
    std::size_t pos = 0;
    bool strip_next_text = false;
    bool trim_next_newline = false;
    while (pos <= source_.size()) {
      std::size_t tag = find_tag(pos);
      std::string text(source_.substr(pos, tag - pos));
      if (trim_next_newline) {
        if (text.starts_with("\r\n")) text.erase(0, 2);
        else if (text.starts_with("\n")) text.erase(0, 1);
      }
      if (strip_next_text) text.erase(0, text.find_first_not_of(" \t\r\n\f\v") == std::string::npos
                                              ? text.size()
                                              : text.find_first_not_of(" \t\r\n\f\v"));
      strip_next_text = trim_next_newline = false;
      if (tag < source_.size()) {
        char type = source_[tag + 1];
        char modifier = tag + 2 < source_.size() ? source_[tag + 2] : '\0';
        if (modifier == '-') {
          auto last = text.find_last_not_of(" \t\r\n\f\v");
          text.erase(last == std::string::npos ? 0 : last + 1);
        } else if (options_.lstrip_blocks && type != '{' && modifier != '+') {
          std::size_t start = tag;
          while (start > 0 && (source_[start - 1] == ' ' || source_[start - 1] == '\t')) --start;
          if (start == 0 || source_[start - 1] == '\n') text.erase(text.size() - std::min(text.size(), tag - start));
        }
      }
      if (!text.empty()) push(TokenKind::Text, std::move(text), pos);
      if (tag >= source_.size()) break;
      char type = source_[tag + 1];
      pos = tag + 2;
      if (pos < source_.size() && (source_[pos] == '-' || source_[pos] == '+')) ++pos;
      bool strip_after = false;
      bool keep_newline = false;
      if (type == '#') {
        auto end = source_.find("#}", pos);
        if (end == std::string_view::npos) error(tag, "missing end of comment tag");
        strip_after = end > pos && source_[end - 1] == '-';
        keep_newline = end > pos && source_[end - 1] == '+';
        pos = end + 2;
      } else {
        bool is_block = type == '%';
        push(is_block ? TokenKind::BlockBegin : TokenKind::VariableBegin, "", tag);
        if (is_block && is_raw_block(pos)) {
          pos = lex_raw(pos, strip_after);
          if (options_.trim_blocks) trim_next_newline = !strip_after;
          strip_next_text = strip_after;
          continue;
        }
        pos = lex_expression(pos, is_block ? '%' : '}', strip_after, keep_newline);
        push(is_block ? TokenKind::BlockEnd : TokenKind::VariableEnd, "", pos);
        if (!is_block) keep_newline = true;
      }
      strip_next_text = strip_after;
      trim_next_newline = options_.trim_blocks && !keep_newline && !strip_after;
    }
    push(TokenKind::End, "", source_.size());
    return std::move(tokens_);
  }

 private:
  std::size_t find_tag(std::size_t from) const {
    for (std::size_t i = from; i + 1 < source_.size(); ++i)
      if (source_[i] == '{' && (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#')) return i;
    return source_.size();
  }

  // Line/column of an offset; resumes from the previous answer when moving forward (tokens come in order).
  SourcePosition position_of(std::size_t offset) const {
    SourcePosition p;
    std::size_t i = 0;
    if (offset >= cached_offset_) {
      p = cached_position_;
      i = cached_offset_;
    }
    for (; i < offset && i < source_.size(); ++i) {
      if (source_[i] == '\n') {
        ++p.line;
        p.column = 1;
      } else {
        ++p.column;
      }
    }
    cached_offset_ = i;
    cached_position_ = p;
    return p;
  }

  [[noreturn]] void error(std::size_t offset, const std::string& message) const {
    auto p = position_of(offset);
    fail("{}:{}:{}: {}", name_, p.line, p.column, message);
  }

  void push(TokenKind kind, std::string text, std::size_t offset) {
    tokens_.push_back(Token{kind, std::move(text), position_of(offset)});
  }

  std::size_t skip_space(std::size_t pos) const {
    while (pos < source_.size() && std::isspace(static_cast<unsigned char>(source_[pos]))) ++pos;
    return pos;
  }

  bool is_raw_block(std::size_t pos) const {
    pos = skip_space(pos);
    if (source_.substr(pos, 3) != "raw") return false;
    pos = skip_space(pos + 3);
    return source_.substr(pos, 2) == "%}" || source_.substr(pos, 3) == "-%}";
  }

  // Emits the raw text up to {% endraw %} as one text token; returns the offset after the end tag.
  std::size_t lex_raw(std::size_t pos, bool& strip_after) {
    tokens_.pop_back();  // the BlockBegin
    auto body_start = source_.find("%}", pos) + 2;
    for (std::size_t search = body_start;;) {
      auto tag = source_.find("{%", search);
      if (tag == std::string_view::npos) error(pos, "missing {% endraw %}");
      std::size_t p = tag + 2;
      if (p < source_.size() && (source_[p] == '-' || source_[p] == '+')) ++p;
      p = skip_space(p);
      if (source_.substr(p, 6) == "endraw") {
        p = skip_space(p + 6);
        strip_after = source_.substr(p, 1) == "-";
        auto end = source_.find("%}", p);
        if (end == std::string_view::npos) error(tag, "unterminated endraw tag");
        std::string body(source_.substr(body_start, tag - body_start));
        if (source_[tag + 2] == '-') {
          auto last = body.find_last_not_of(" \t\r\n\f\v");
          body.erase(last == std::string::npos ? 0 : last + 1);
        }
        if (!body.empty()) push(TokenKind::Text, std::move(body), body_start);
        return end + 2;
      }
      search = tag + 2;
    }
  }

  std::size_t lex_expression(std::size_t pos, char closer, bool& strip_after, bool& keep_newline) {
    int depth = 0;
    std::size_t tag_tokens = 0;
    while (true) {
      // Bounds on one tag keep parsing and evaluation recursion shallow (no stack overflow on hostile input).
      if (++tag_tokens > kMaxTokensPerTag) error(pos, fmt::format("expression too long (more than {} tokens)", kMaxTokensPerTag));
      if (depth > kMaxBracketDepth) error(pos, fmt::format("brackets nested deeper than {}", kMaxBracketDepth));
      pos = skip_space(pos);
      if (pos >= source_.size()) error(pos, closer == '%' ? "unexpected end of template, expected '%}'" : "unexpected end of template, expected '}}'");
      char c = source_[pos];
      if (depth == 0) {
        for (char modifier : {'-', '+', '\0'}) {
          std::size_t p = pos + (modifier ? 1 : 0);
          if (modifier && (pos >= source_.size() || c != modifier)) continue;
          if (p + 1 < source_.size() && source_[p] == closer && source_[p + 1] == '}') {
            strip_after = modifier == '-';
            keep_newline = modifier == '+';
            return p + 2;
          }
        }
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t end = pos;
        while (end < source_.size() && (std::isalnum(static_cast<unsigned char>(source_[end])) || source_[end] == '_')) ++end;
        push(TokenKind::Name, std::string(source_.substr(pos, end - pos)), pos);
        pos = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t end = pos;
        bool is_float = false;
        while (end < source_.size() && (std::isdigit(static_cast<unsigned char>(source_[end])) || source_[end] == '_')) ++end;
        if (end + 1 < source_.size() && source_[end] == '.' && std::isdigit(static_cast<unsigned char>(source_[end + 1]))) {
          is_float = true;
          ++end;
          while (end < source_.size() && std::isdigit(static_cast<unsigned char>(source_[end]))) ++end;
        }
        if (end < source_.size() && (source_[end] == 'e' || source_[end] == 'E')) {
          std::size_t e = end + 1;
          if (e < source_.size() && (source_[e] == '+' || source_[e] == '-')) ++e;
          if (e < source_.size() && std::isdigit(static_cast<unsigned char>(source_[e]))) {
            is_float = true;
            end = e;
            while (end < source_.size() && std::isdigit(static_cast<unsigned char>(source_[end]))) ++end;
          }
        }
        std::string number;
        for (std::size_t i = pos; i < end; ++i)
          if (source_[i] != '_') number += source_[i];
        push(is_float ? TokenKind::Float : TokenKind::Integer, number, pos);
        pos = end;
      } else if (c == '\'' || c == '"') {
        pos = lex_string(pos);
      } else {
        static const char* const operators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                                "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
        bool matched = false;
        for (const char* op : operators) {
          std::string_view spelling(op);
          if (source_.substr(pos, spelling.size()) == spelling) {
            if (spelling == "(" || spelling == "[" || spelling == "{") ++depth;
            if (spelling == ")" || spelling == "]" || spelling == "}") {
              if (depth == 0) error(pos, fmt::format("unexpected '{}'", spelling));
              --depth;
            }
            push(TokenKind::Operator, std::string(spelling), pos);
            pos += spelling.size();
            matched = true;
            break;
          }
        }
        if (!matched) error(pos, fmt::format("unexpected char '{}'", c));
      }
    }
  }

  std::size_t lex_string(std::size_t pos) {
    char quote = source_[pos];
    std::string value;
    std::size_t i = pos + 1;
    while (true) {
      if (i >= source_.size()) error(pos, "unterminated string literal");
      char c = source_[i];
      if (c == quote) break;
      if (c == '\\' && i + 1 < source_.size()) {
        char e = source_[++i];
        switch (e) {
          case 'n': value += '\n'; break;
          case 't': value += '\t'; break;
          case 'r': value += '\r'; break;
          case '\\': value += '\\'; break;
          case '\'': value += '\''; break;
          case '"': value += '"'; break;
          case '\n': break;
          default: value += '\\'; value += e;
        }
      } else {
        value += c;
      }
      ++i;
    }
    push(TokenKind::String, std::move(value), pos);
    return i + 1;
  }

  std::string_view source_;
  const std::string& name_;
  LexerOptions options_;
  std::vector<Token> tokens_;
  mutable std::size_t cached_offset_ = 0;
  mutable SourcePosition cached_position_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const std::string& name, const LexerOptions& options) {
  return Lexer(source, name, options).run();
}

}  // namespace llama31::jinja
