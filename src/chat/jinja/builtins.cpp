#include "chat/jinja/builtins.h"

#include "util/error.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cctype>
#include <cmath>

namespace llama31::jinja {
namespace {

const Value* keyword(CallArgs& args, const std::string& name) {
  for (auto& [k, v] : args.keywords)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument `index` or keyword `name`, else nullptr.
const Value* argument(CallArgs& args, std::size_t index, const std::string& name) {
  if (index < args.positional.size()) return &args.positional[index];
  return keyword(args, name);
}

const std::string kWhitespace = " \t\n\r\f\v";

std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
  std::size_t begin = 0, end = s.size();
  if (left)
    while (begin < end && chars.find(s[begin]) != std::string::npos) ++begin;
  if (right)
    while (end > begin && chars.find(s[end - 1]) != std::string::npos) --end;
  return s.substr(begin, end - begin);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string title(std::string s) {
  bool start = true;
  for (auto& c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
      start = false;
    } else {
      start = true;
    }
  }
  return s;
}
std::string capitalize(std::string s) {
  s = lower(std::move(s));
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}
std::string replace_all(const std::string& s, const std::string& from, const std::string& to, std::int64_t count) {
  std::string out;
  std::size_t pos = 0;
  std::int64_t done = 0;
  if (from.empty()) return s;
  while (count < 0 || done < count) {
    auto found = s.find(from, pos);
    if (found == std::string::npos) break;
    out += s.substr(pos, found - pos) + to;
    pos = found + from.size();
    ++done;
  }
  return out + s.substr(pos);
}

Value split(const std::string& s, const Value* separator) {
  ValueList parts;
  if (!separator || separator->is_none()) {
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && kWhitespace.find(s[i]) != std::string::npos) ++i;
      if (i >= s.size()) break;
      std::size_t j = i;
      while (j < s.size() && kWhitespace.find(s[j]) == std::string::npos) ++j;
      parts.push_back(Value::from_string(s.substr(i, j - i)));
      i = j;
    }
  } else {
    const std::string& sep = separator->text;
    if (sep.empty()) fail("jinja: split: empty separator");
    std::size_t pos = 0;
    while (true) {
      auto found = s.find(sep, pos);
      if (found == std::string::npos) break;
      parts.push_back(Value::from_string(s.substr(pos, found - pos)));
      pos = found + sep.size();
    }
    parts.push_back(Value::from_string(s.substr(pos)));
  }
  return Value::from_list(std::move(parts));
}

Value string_method(const std::string& s, const std::string& name) {
  auto chars_of = [](CallArgs& a) {
    const Value* c = argument(a, 0, "chars");
    return (c && c->kind == Kind::String) ? c->text : kWhitespace;
  };
  if (name == "strip") return Value::from_function([s, chars_of](CallArgs& a) { return Value::from_string(strip(s, chars_of(a), true, true)); });
  if (name == "lstrip") return Value::from_function([s, chars_of](CallArgs& a) { return Value::from_string(strip(s, chars_of(a), true, false)); });
  if (name == "rstrip") return Value::from_function([s, chars_of](CallArgs& a) { return Value::from_string(strip(s, chars_of(a), false, true)); });
  if (name == "upper") return Value::from_function([s](CallArgs&) { return Value::from_string(upper(s)); });
  if (name == "lower") return Value::from_function([s](CallArgs&) { return Value::from_string(lower(s)); });
  if (name == "title") return Value::from_function([s](CallArgs&) { return Value::from_string(title(s)); });
  if (name == "capitalize") return Value::from_function([s](CallArgs&) { return Value::from_string(capitalize(s)); });
  if (name == "startswith" || name == "endswith") {
    bool starts = name == "startswith";
    return Value::from_function([s, starts](CallArgs& a) {
      const Value* p = argument(a, 0, "prefix");
      if (!p) fail("jinja: {} needs an argument", starts ? "startswith" : "endswith");
      ValueList options = p->kind == Kind::List ? *p->list : ValueList{*p};
      for (const auto& option : options) {
        if (option.kind != Kind::String) fail("jinja: startswith/endswith expects strings");
        if (starts ? s.starts_with(option.text) : s.ends_with(option.text)) return Value::from_bool(true);
      }
      return Value::from_bool(false);
    });
  }
  if (name == "split") return Value::from_function([s](CallArgs& a) { return split(s, argument(a, 0, "sep")); });
  if (name == "replace")
    return Value::from_function([s](CallArgs& a) {
      const Value* from = argument(a, 0, "old");
      const Value* to = argument(a, 1, "new");
      const Value* count = argument(a, 2, "count");
      if (!from || !to) fail("jinja: replace needs two arguments");
      return Value::from_string(replace_all(s, to_str(*from), to_str(*to), count ? count->integer : -1));
    });
  return Value::undefined(name);
}

Value dict_method(const Value& dict, const std::string& name) {
  if (name == "items")
    return Value::from_function([dict](CallArgs&) {
      ValueList items;
      for (const auto& [k, v] : *dict.dict) items.push_back(Value::from_tuple({Value::from_string(k), v}));
      return Value::from_list(std::move(items));
    });
  if (name == "keys")
    return Value::from_function([dict](CallArgs&) { return Value::from_list(dict.iterate()); });
  if (name == "values")
    return Value::from_function([dict](CallArgs&) {
      ValueList items;
      for (const auto& entry : *dict.dict) items.push_back(entry.second);
      return Value::from_list(std::move(items));
    });
  if (name == "get")
    return Value::from_function([dict](CallArgs& a) {
      const Value* key = argument(a, 0, "key");
      if (!key) fail("jinja: get needs a key");
      const Value* found = key->kind == Kind::String ? dict.find(key->text) : nullptr;
      if (found) return *found;
      const Value* fallback = argument(a, 1, "default");
      return fallback ? *fallback : Value::none();
    });
  return Value::undefined(name);
}

// Digits to an index; out-of-range numbers give an index no list has.
std::int64_t parse_index(const std::string& digits) {
  std::int64_t value = 0;
  auto result = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  return result.ec == std::errc() ? value : INT64_MAX;
}

std::int64_t to_int(const Value& v) {
  if (v.kind == Kind::Int) return v.integer;
  if (v.kind == Kind::Bool) return v.boolean;
  if (v.kind == Kind::Float) return static_cast<std::int64_t>(v.floating);
  if (v.kind == Kind::String) {
    try {
      std::size_t used = 0;
      auto text = strip(v.text, kWhitespace, true, true);
      auto result = std::stoll(text, &used);
      if (used == text.size()) return result;
      return static_cast<std::int64_t>(std::stod(text));
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

Value attribute_of(const Value& item, const std::string& path) {
  Value current = item;
  std::size_t pos = 0;
  while (true) {
    auto dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    current = numeric ? get_item(current, Value::from_int(parse_index(part))) : get_item(current, Value::from_string(part));
    if (dot == std::string::npos) return current;
    pos = dot + 1;
  }
}

CallArgs rest_arguments(CallArgs& args, std::size_t skip) {
  CallArgs rest;
  for (std::size_t i = skip; i < args.positional.size(); ++i) rest.positional.push_back(args.positional[i]);
  return rest;
}

}  // namespace

Value get_item(const Value& object, const Value& key) {
  if (object.is_mapping()) {
    if (key.kind == Kind::String) {
      if (const Value* found = object.find(key.text)) return *found;
      if (object.kind == Kind::Dict) return dict_method(object, key.text);
      return Value::undefined(key.text);
    }
    return Value::undefined(to_str(key));
  }
  if ((object.kind == Kind::List || object.kind == Kind::String) && (key.kind == Kind::Int || key.kind == Kind::Bool)) {
    ValueList chars;
    const ValueList* items = object.list.get();
    if (object.kind == Kind::String) {
      chars = object.iterate();
      items = &chars;
    }
    auto size = static_cast<std::int64_t>(items->size());
    std::int64_t index = key.kind == Kind::Bool ? key.boolean : key.integer;
    if (index < 0) index += size;
    if (index < 0 || index >= size) return Value::undefined(to_str(key));
    return (*items)[static_cast<std::size_t>(index)];
  }
  if (object.kind == Kind::String && key.kind == Kind::String) return string_method(object.text, key.text);
  if (object.is_undefined()) fail("jinja: '{}' is undefined", object.text.empty() ? "value" : object.text);
  return Value::undefined(to_str(key));
}

Value get_attribute(const Value& object, const std::string& name) {
  if (object.kind == Kind::Dict) {
    Value method = dict_method(object, name);
    if (!method.is_undefined()) return method;
    if (const Value* found = object.find(name)) return *found;
    return Value::undefined(name);
  }
  if (object.kind == Kind::Namespace) {
    if (const Value* found = object.find(name)) return *found;
    return Value::undefined(name);
  }
  if (object.kind == Kind::String) return string_method(object.text, name);
  if (object.is_undefined()) return Value::undefined(name);
  if (object.kind == Kind::List && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0])))
    return get_item(object, Value::from_int(parse_index(name)));
  return Value::undefined(name);
}

Value slice_value(const Value& object, const Value& start_value, const Value& stop_value, const Value& step_value) {
  ValueList items = object.kind == Kind::String ? object.iterate() : (object.kind == Kind::List ? *object.list : ValueList{});
  if (object.kind != Kind::String && object.kind != Kind::List) fail("jinja: cannot slice a {}", kind_name(object));
  auto size = static_cast<std::int64_t>(items.size());
  std::int64_t step = step_value.is_none() || step_value.is_undefined() ? 1 : step_value.integer;
  if (step == 0) fail("jinja: slice step cannot be zero");
  auto clamp = [&](const Value& v, std::int64_t fallback) {
    if (v.is_none() || v.is_undefined()) return fallback;
    std::int64_t i = v.integer;
    if (i < 0) i += size;
    if (step > 0) return std::clamp<std::int64_t>(i, 0, size);
    return std::clamp<std::int64_t>(i, -1, size - 1);
  };
  std::int64_t start = clamp(start_value, step > 0 ? 0 : size - 1);
  std::int64_t stop = clamp(stop_value, step > 0 ? size : -1);
  ValueList out;
  for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(items[static_cast<std::size_t>(i)]);
  if (object.kind == Kind::String) {
    std::string text;
    for (const auto& c : out) text += c.text;
    return Value::from_string(std::move(text));
  }
  return Value::from_list(std::move(out));
}

bool apply_test(const std::string& name, const Value& value, CallArgs& args) {
  if (name == "defined") return !value.is_undefined();
  if (name == "undefined") return value.is_undefined();
  if (name == "none") return value.is_none();
  if (name == "string") return value.kind == Kind::String;
  if (name == "mapping") return value.kind == Kind::Dict;
  if (name == "iterable") return value.is_iterable();
  if (name == "sequence") return value.kind == Kind::List || value.kind == Kind::String || value.kind == Kind::Dict;
  if (name == "number") return value.is_number();
  if (name == "boolean") return value.kind == Kind::Bool;
  if (name == "integer") return value.kind == Kind::Int;
  if (name == "float") return value.kind == Kind::Float;
  if (name == "true") return value.kind == Kind::Bool && value.boolean;
  if (name == "false") return value.kind == Kind::Bool && !value.boolean;
  if (name == "callable") return value.kind == Kind::Callable;
  if (name == "lower") return value.kind == Kind::String && lower(value.text) == value.text;
  if (name == "upper") return value.kind == Kind::String && upper(value.text) == value.text;
  if (name == "odd" || name == "even") {
    if (value.kind != Kind::Int) fail("jinja: test '{}' needs an integer", name);
    return (value.integer % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    const Value* n = argument(args, 0, "num");
    if (!n || n->kind != Kind::Int || n->integer == 0 || value.kind != Kind::Int) fail("jinja: divisibleby needs integers");
    return value.integer % n->integer == 0;
  }
  const Value* other = argument(args, 0, "other");
  auto need_other = [&]() -> const Value& {
    if (!other) fail("jinja: test '{}' needs an argument", name);
    return *other;
  };
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return values_equal(value, need_other());
  if (name == "ne" || name == "!=") return !values_equal(value, need_other());
  if (name == "lt" || name == "lessthan" || name == "<") return values_less(value, need_other());
  if (name == "gt" || name == "greaterthan" || name == ">") return values_less(need_other(), value);
  if (name == "le" || name == "<=") return !values_less(need_other(), value);
  if (name == "ge" || name == ">=") return !values_less(value, need_other());
  if (name == "in") {
    const Value& container = need_other();
    if (container.kind == Kind::String) return value.kind == Kind::String && container.text.find(value.text) != std::string::npos;
    for (const auto& item : container.iterate())
      if (values_equal(item, value)) return true;
    return false;
  }
  fail("jinja: no test named '{}'", name);
}

Value apply_filter(const std::string& name, const Value& input, CallArgs& args, const TestRunner& run_test) {
  if (name == "safe") return input;
  if (name == "trim") {
    const Value* chars = argument(args, 0, "chars");
    return Value::from_string(strip(to_str(input), chars && chars->kind == Kind::String ? chars->text : kWhitespace, true, true));
  }
  if (name == "tojson") {
    const Value* indent = argument(args, 0, "indent");
    return Value::from_string(to_json(input, indent && indent->kind == Kind::Int ? static_cast<int>(indent->integer) : -1));
  }
  if (name == "string") return Value::from_string(to_str(input));
  if (name == "upper") return Value::from_string(upper(to_str(input)));
  if (name == "lower") return Value::from_string(lower(to_str(input)));
  if (name == "title") return Value::from_string(title(to_str(input)));
  if (name == "capitalize") return Value::from_string(capitalize(to_str(input)));
  if (name == "length" || name == "count") {
    if (input.kind == Kind::String) return Value::from_int(static_cast<std::int64_t>(utf8_length(input.text)));
    if (input.kind == Kind::List) return Value::from_int(static_cast<std::int64_t>(input.list->size()));
    if (input.is_mapping()) return Value::from_int(static_cast<std::int64_t>(input.dict->size()));
    if (input.is_undefined()) return Value::from_int(0);
    fail("jinja: object of type '{}' has no len()", kind_name(input));
  }
  if (name == "default" || name == "d") {
    const Value* fallback = argument(args, 0, "default_value");
    const Value* boolean = argument(args, 1, "boolean");
    bool use_fallback = input.is_undefined() || (boolean && boolean->truthy() && !input.truthy());
    if (use_fallback) return fallback ? *fallback : Value::from_string("");
    return input;
  }
  if (name == "join") {
    const Value* separator = argument(args, 0, "d");
    const Value* attribute = argument(args, 1, "attribute");
    std::string out;
    bool first = true;
    for (const auto& item : input.iterate()) {
      if (!first) out += separator ? to_str(*separator) : "";
      first = false;
      out += to_str(attribute ? attribute_of(item, to_str(*attribute)) : item);
    }
    return Value::from_string(std::move(out));
  }
  if (name == "first" || name == "last") {
    auto items = input.iterate();
    if (items.empty()) return Value::undefined("first");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::from_list(input.iterate());
  if (name == "items") {
    if (input.is_undefined()) return Value::from_list({});
    if (!input.is_mapping()) fail("jinja: items filter needs a mapping, got {}", kind_name(input));
    ValueList items;
    for (const auto& [k, v] : *input.dict) items.push_back(Value::from_tuple({Value::from_string(k), v}));
    return Value::from_list(std::move(items));
  }
  if (name == "replace") {
    const Value* from = argument(args, 0, "old");
    const Value* to = argument(args, 1, "new");
    const Value* count = argument(args, 2, "count");
    if (!from || !to) fail("jinja: replace needs two arguments");
    return Value::from_string(replace_all(to_str(input), to_str(*from), to_str(*to), count ? count->integer : -1));
  }
  if (name == "int") return Value::from_int(to_int(input));
  if (name == "float") {
    if (input.is_number()) return Value::from_float(input.as_double());
    try {
      return Value::from_float(std::stod(to_str(input)));
    } catch (const std::exception&) {
      return Value::from_float(0.0);
    }
  }
  if (name == "abs") {
    if (input.kind == Kind::Int) return Value::from_int(input.integer < 0 ? -input.integer : input.integer);
    return Value::from_float(std::fabs(input.as_double()));
  }
  if (name == "round") {
    const Value* precision = argument(args, 0, "precision");
    double scale = std::pow(10.0, precision ? static_cast<double>(precision->integer) : 0.0);
    return Value::from_float(std::nearbyint(input.as_double() * scale) / scale);
  }
  if (name == "unique") {
    ValueList out;
    for (const auto& item : input.iterate())
      if (std::none_of(out.begin(), out.end(), [&](const Value& seen) { return values_equal(seen, item); })) out.push_back(item);
    return Value::from_list(std::move(out));
  }
  if (name == "indent") {
    const Value* width_value = argument(args, 0, "width");
    const Value* first_value = argument(args, 1, "first");
    const Value* blank_value = argument(args, 2, "blank");
    std::string pad = width_value ? (width_value->kind == Kind::String ? width_value->text : std::string(static_cast<std::size_t>(width_value->integer), ' ')) : "    ";
    std::string text = to_str(input);
    std::string out;
    std::size_t pos = 0;
    bool first_line = true;
    while (true) {
      auto nl = text.find('\n', pos);
      std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      bool indent_line = first_line ? (first_value && first_value->truthy()) : (!line.empty() || (blank_value && blank_value->truthy()));
      if (indent_line) out += pad;
      out += line;
      if (nl == std::string::npos) break;
      out += '\n';
      pos = nl + 1;
      first_line = false;
    }
    return Value::from_string(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    bool by_attribute = name.ends_with("attr");
    bool keep_matching = name.starts_with("select");
    std::size_t test_index = by_attribute ? 1 : 0;
    std::string attribute = by_attribute && !args.positional.empty() ? to_str(args.positional[0]) : "";
    bool has_test = args.positional.size() > test_index;
    std::string test = has_test ? to_str(args.positional[test_index]) : "";
    CallArgs test_args = rest_arguments(args, test_index + 1);
    ValueList out;
    for (const auto& item : input.iterate()) {
      Value subject = by_attribute ? attribute_of(item, attribute) : item;
      bool matched = has_test ? run_test(test, subject, test_args) : subject.truthy();
      if (matched == keep_matching) out.push_back(item);
    }
    return Value::from_list(std::move(out));
  }
  if (name == "map") {
    ValueList out;
    const Value* attribute = keyword(args, "attribute");
    if (attribute) {
      const Value* fallback = keyword(args, "default");
      for (const auto& item : input.iterate()) {
        Value v = attribute_of(item, to_str(*attribute));
        out.push_back(v.is_undefined() && fallback ? *fallback : v);
      }
    } else {
      if (args.positional.empty()) fail("jinja: map needs a filter name or attribute=");
      std::string filter = to_str(args.positional[0]);
      CallArgs filter_args = rest_arguments(args, 1);
      for (const auto& item : input.iterate()) out.push_back(apply_filter(filter, item, filter_args, run_test));
    }
    return Value::from_list(std::move(out));
  }
  if (name == "dictsort") {
    if (!input.is_mapping()) fail("jinja: dictsort needs a mapping");
    ValueDict sorted = *input.dict;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
    ValueList items;
    for (const auto& [k, v] : sorted) items.push_back(Value::from_tuple({Value::from_string(k), v}));
    return Value::from_list(std::move(items));
  }
  if (name == "sum") {
    Value total = Value::from_int(0);
    for (const auto& item : input.iterate()) {
      if (total.kind == Kind::Int && item.kind == Kind::Int) total.integer += item.integer;
      else total = Value::from_float(total.as_double() + item.as_double());
    }
    return total;
  }
  fail("jinja: no filter named '{}'", name);
}

}  // namespace llama31::jinja
