#include "chat/jinja/value.h"

#include "util/error.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace llama31::jinja {

Value Value::undefined(std::string name) {
  Value v;
  v.text = std::move(name);
  return v;
}
Value Value::none() {
  Value v;
  v.kind = Kind::None;
  return v;
}
Value Value::from_bool(bool b) {
  Value v;
  v.kind = Kind::Bool;
  v.boolean = b;
  return v;
}
Value Value::from_int(std::int64_t i) {
  Value v;
  v.kind = Kind::Int;
  v.integer = i;
  return v;
}
Value Value::from_float(double f) {
  Value v;
  v.kind = Kind::Float;
  v.floating = f;
  return v;
}
Value Value::from_string(std::string s) {
  Value v;
  v.kind = Kind::String;
  v.text = std::move(s);
  return v;
}
Value Value::from_list(ValueList items) {
  Value v;
  v.kind = Kind::List;
  v.list = std::make_shared<ValueList>(std::move(items));
  return v;
}
Value Value::from_tuple(ValueList items) {
  Value v = from_list(std::move(items));
  v.is_tuple = true;
  return v;
}
Value Value::from_dict(ValueDict items) {
  Value v;
  v.kind = Kind::Dict;
  v.dict = std::make_shared<ValueDict>(std::move(items));
  return v;
}
Value Value::from_function(Function f) {
  Value v;
  v.kind = Kind::Callable;
  v.function = std::make_shared<Function>(std::move(f));
  return v;
}

namespace {
template <typename Json>
Value convert_json(const Json& json) {
  switch (json.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::from_bool(json.template get<bool>());
    case Json::value_t::number_integer: return Value::from_int(json.template get<std::int64_t>());
    case Json::value_t::number_unsigned: {
      auto u = json.template get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) return Value::from_float(static_cast<double>(u));
      return Value::from_int(static_cast<std::int64_t>(u));
    }
    case Json::value_t::number_float: return Value::from_float(json.template get<double>());
    case Json::value_t::string: return Value::from_string(json.template get<std::string>());
    case Json::value_t::array: {
      ValueList items;
      for (const auto& item : json) items.push_back(convert_json(item));
      return Value::from_list(std::move(items));
    }
    case Json::value_t::object: {
      ValueDict items;
      for (auto it = json.begin(); it != json.end(); ++it) items.emplace_back(it.key(), convert_json(it.value()));
      return Value::from_dict(std::move(items));
    }
    default: fail("jinja: unsupported JSON value of type {}", json.type_name());
  }
}
}  // namespace

Value Value::from_json(const nlohmann::json& json) { return convert_json(json); }
Value Value::from_json(const nlohmann::ordered_json& json) { return convert_json(json); }

bool Value::truthy() const {
  switch (kind) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return boolean;
    case Kind::Int: return integer != 0;
    case Kind::Float: return floating != 0.0;
    case Kind::String: return !text.empty();
    case Kind::List: return !list->empty();
    case Kind::Dict: return !dict->empty();
    case Kind::Callable:
    case Kind::Namespace: return true;
  }
  return false;
}

double Value::as_double() const {
  if (kind == Kind::Int) return static_cast<double>(integer);
  if (kind == Kind::Float) return floating;
  if (kind == Kind::Bool) return boolean ? 1.0 : 0.0;
  fail("jinja: expected a number, got {}", kind_name(*this));
}

const Value* Value::find(const std::string& key) const {
  if (!dict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

void Value::set_item(const std::string& key, Value value) {
  for (auto& [k, v] : *dict)
    if (k == key) {
      v = std::move(value);
      return;
    }
  dict->emplace_back(key, std::move(value));
}

ValueList Value::iterate() const {
  switch (kind) {
    case Kind::List: return *list;
    case Kind::Dict: {
      ValueList keys;
      for (const auto& entry : *dict) keys.push_back(Value::from_string(entry.first));
      return keys;
    }
    case Kind::String: {
      ValueList chars;
      for (std::size_t i = 0; i < text.size();) {
        std::size_t n = 1;
        auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0xF0) n = 4;
        else if (c >= 0xE0) n = 3;
        else if (c >= 0xC0) n = 2;
        chars.push_back(Value::from_string(text.substr(i, n)));
        i += n;
      }
      return chars;
    }
    case Kind::Undefined: return {};
    default: fail("jinja: '{}' object is not iterable", kind_name(*this));
  }
}

std::size_t utf8_length(const std::string& text) {
  std::size_t count = 0;
  for (char c : text)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++count;
  return count;
}

std::string kind_name(const Value& value) {
  switch (value.kind) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Callable: return "function";
    case Kind::Namespace: return "Namespace";
  }
  return "?";
}

std::string float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  if (value == 0.0) return std::signbit(value) ? "-0.0" : "0.0";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  std::string sci(buffer, result.ptr);  // e.g. -1.2345e+02
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  auto e_pos = sci.find('e');
  int exponent = std::atoi(sci.c_str() + e_pos + 1);
  std::string digits;
  for (std::size_t i = 0; i < e_pos; ++i)
    if (sci[i] != '.') digits += sci[i];
  std::string out;
  if (exponent < -4 || exponent >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    char exp_text[16];
    std::snprintf(exp_text, sizeof exp_text, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp_text;
  } else if (exponent < 0) {
    out = "0.";
    out.append(static_cast<std::size_t>(-exponent - 1), '0');
    out += digits;
  } else {
    auto int_digits = static_cast<std::size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      out = digits;
      out.append(int_digits - digits.size(), '0');
      out += ".0";
    } else {
      out.assign(digits, 0, int_digits);
      out += '.';
      out.append(digits, int_digits);
    }
  }
  if (negative) out.insert(out.begin(), '-');
  return out;
}

namespace {
std::string string_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (ch == quote || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') out += "\\n";
    else if (ch == '\r') out += "\\r";
    else if (ch == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else out += ch;
  }
  out += quote;
  return out;
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\u%04x", c);
          out += hex;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

void json_write(const Value& value, int indent, int level, std::string& out) {
  std::string newline;
  if (indent >= 0) newline = "\n" + std::string(static_cast<std::size_t>(indent * (level + 1)), ' ');
  std::string closing_newline;
  if (indent >= 0) closing_newline = "\n" + std::string(static_cast<std::size_t>(indent * level), ' ');
  const char* item_separator = indent >= 0 ? "," : ", ";
  switch (value.kind) {
    case Kind::Undefined:
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += value.boolean ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(value.integer); return;
    case Kind::Float: {
      if (std::isnan(value.floating)) out += "NaN";
      else if (std::isinf(value.floating)) out += value.floating < 0 ? "-Infinity" : "Infinity";
      else out += float_repr(value.floating);
      return;
    }
    case Kind::String: json_string(value.text, out); return;
    case Kind::List: {
      if (value.list->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      bool first = true;
      for (const auto& item : *value.list) {
        if (!first) out += item_separator;
        first = false;
        out += newline;
        json_write(item, indent, level + 1, out);
      }
      out += closing_newline;
      out += ']';
      return;
    }
    case Kind::Dict: {
      if (value.dict->empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (const auto& [key, item] : *value.dict) {
        if (!first) out += item_separator;
        first = false;
        out += newline;
        json_string(key, out);
        out += ": ";
        json_write(item, indent, level + 1, out);
      }
      out += closing_newline;
      out += '}';
      return;
    }
    default: fail("jinja: tojson: object of type {} is not JSON serializable", kind_name(value));
  }
}
}  // namespace

std::string to_json(const Value& value, int indent) {
  std::string out;
  json_write(value, indent, 0, out);
  return out;
}

std::string to_repr(const Value& value) {
  if (value.kind == Kind::String) return string_repr(value.text);
  return to_str(value);
}

std::string to_str(const Value& value) {
  switch (value.kind) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return value.boolean ? "True" : "False";
    case Kind::Int: return std::to_string(value.integer);
    case Kind::Float: return float_repr(value.floating);
    case Kind::String: return value.text;
    case Kind::List: {
      std::string out = value.is_tuple ? "(" : "[";
      for (std::size_t i = 0; i < value.list->size(); ++i) {
        if (i) out += ", ";
        out += to_repr((*value.list)[i]);
      }
      if (value.is_tuple && value.list->size() == 1) out += ",";
      out += value.is_tuple ? ")" : "]";
      return out;
    }
    case Kind::Dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : *value.dict) {
        if (!first) out += ", ";
        first = false;
        out += string_repr(key) + ": " + to_repr(item);
      }
      return out + "}";
    }
    case Kind::Callable: return "<function>";
    case Kind::Namespace: return "<Namespace>";
  }
  return "";
}

bool values_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind != Kind::Float && b.kind != Kind::Float) {
      auto ai = a.kind == Kind::Bool ? std::int64_t{a.boolean} : a.integer;
      auto bi = b.kind == Kind::Bool ? std::int64_t{b.boolean} : b.integer;
      return ai == bi;
    }
    return a.as_double() == b.as_double();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.text == b.text;
    case Kind::List: {
      if (a.list->size() != b.list->size()) return false;
      for (std::size_t i = 0; i < a.list->size(); ++i)
        if (!values_equal((*a.list)[i], (*b.list)[i])) return false;
      return true;
    }
    case Kind::Dict: {
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [key, item] : *a.dict) {
        const Value* other = b.find(key);
        if (!other || !values_equal(item, *other)) return false;
      }
      return true;
    }
    case Kind::Namespace: return a.dict == b.dict;
    case Kind::Callable: return a.function == b.function;
    default: return false;
  }
}

bool values_less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.kind == Kind::Int && b.kind == Kind::Int) return a.integer < b.integer;
    return a.as_double() < b.as_double();
  }
  if (a.kind == Kind::String && b.kind == Kind::String) return a.text < b.text;
  if (a.kind == Kind::List && b.kind == Kind::List) {
    std::size_t n = std::min(a.list->size(), b.list->size());
    for (std::size_t i = 0; i < n; ++i) {
      if (values_less((*a.list)[i], (*b.list)[i])) return true;
      if (values_less((*b.list)[i], (*a.list)[i])) return false;
    }
    return a.list->size() < b.list->size();
  }
  fail("jinja: '<' not supported between instances of '{}' and '{}'", kind_name(a), kind_name(b));
}

}  // namespace llama31::jinja
