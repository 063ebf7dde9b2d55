#include "chat/jinja/template.h"

#include "chat/jinja/builtins.h"
#include "chat/jinja/lexer.h"
#include "chat/jinja/parser.h"
#include "util/error.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <map>

namespace llama31::jinja {
namespace {

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  Renderer(const std::string& name, const RenderLimits& limits, const std::function<std::tm()>& clock)
      : name_(name), limits_(limits), clock_(clock) {}

  std::string run(const NodeList& nodes, const ValueDict& variables) {
    scopes_.emplace_back();
    install_globals();
    for (const auto& [k, v] : variables) scopes_.back()[k] = v;
    root_ = scopes_.back();
    std::string out;
    render(nodes, out);
    return out;
  }

 private:
  using Scope = std::map<std::string, Value>;

  void install_globals() {
    auto& globals = scopes_.back();
    globals["raise_exception"] = Value::from_function([](CallArgs& a) -> Value {
      throw Error(a.positional.empty() ? std::string("raise_exception called") : to_str(a.positional[0]));
    });
    globals["strftime_now"] = Value::from_function([this](CallArgs& a) {
      std::tm now{};
      if (clock_) {
        now = clock_();
      } else {
        std::time_t t = std::time(nullptr);
        localtime_r(&t, &now);
      }
      std::string format = a.positional.empty() ? "" : to_str(a.positional[0]);
      char buffer[512];
      std::size_t n = format.empty() ? 0 : std::strftime(buffer, sizeof buffer, format.c_str(), &now);
      return Value::from_string(std::string(buffer, n));
    });
    globals["range"] = Value::from_function([](CallArgs& a) {
      std::int64_t start = 0, stop = 0, step = 1;
      if (a.positional.size() == 1) stop = a.positional[0].integer;
      else if (a.positional.size() >= 2) {
        start = a.positional[0].integer;
        stop = a.positional[1].integer;
        if (a.positional.size() >= 3) step = a.positional[2].integer;
      }
      if (step == 0) fail("jinja: range() arg 3 must not be zero");
      ValueList items;
      for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (items.size() >= 100000) fail("jinja: range() too large (limit 100000 items)");
        items.push_back(Value::from_int(i));
      }
      return Value::from_list(std::move(items));
    });
    globals["namespace"] = Value::from_function([](CallArgs& a) {
      Value ns = Value::from_dict({});
      ns.kind = Kind::Namespace;
      for (const auto& positional : a.positional)
        if (positional.is_mapping())
          for (const auto& [k, v] : *positional.dict) ns.set_item(k, v);
      for (const auto& [k, v] : a.keywords) ns.set_item(k, v);
      return ns;
    });
  }

  [[noreturn]] void error_at(const SourcePosition& p, const std::string& message) const {
    fail("{}:{}:{}: {}", name_, p.line, p.column, message);
  }

  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value::undefined(name);
  }

  void count_iteration() {
    if (++iterations_ > limits_.max_loop_iterations)
      fail("jinja: loop iteration limit exceeded ({} iterations)", limits_.max_loop_iterations);
  }

  void write(std::string& out, const std::string& text) {
    if (out.size() + text.size() > limits_.max_output_bytes) fail("jinja: output larger than {} bytes", limits_.max_output_bytes);
    out += text;
  }

  Flow render(const NodeList& nodes, std::string& out) {
    for (const auto& node : nodes) {
      Flow flow = render_node(*node, out);
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  void assign(const std::vector<std::string>& targets, const Value& value) {
    if (targets.size() == 1) {
      scopes_.back()[targets[0]] = value;
      return;
    }
    ValueList items = value.iterate();
    if (items.size() != targets.size())
      fail("jinja: cannot unpack {} values into {} names", items.size(), targets.size());
    for (std::size_t i = 0; i < targets.size(); ++i) scopes_.back()[targets[i]] = items[i];
  }

  Flow render_node(const Node& node, std::string& out) {
    switch (node.kind) {
      case NodeKind::Text: write(out, node.text); return Flow::Normal;
      case NodeKind::Output: write(out, to_str(eval(*node.value))); return Flow::Normal;
      case NodeKind::If:
        for (std::size_t i = 0; i < node.bodies.size(); ++i)
          if (i >= node.conditions.size() || eval(*node.conditions[i]).truthy()) return render(node.bodies[i], out);
        return Flow::Normal;
      case NodeKind::For: return render_for(node, out);
      case NodeKind::Set: {
        Value value = eval(*node.value);
        if (!node.attribute.empty()) {
          Value target = lookup(node.targets[0]);
          if (target.kind != Kind::Namespace) error_at(node.position, "can only assign attributes of a namespace()");
          target.set_item(node.attribute, value);
        } else {
          assign(node.targets, value);
        }
        return Flow::Normal;
      }
      case NodeKind::SetBlock: {
        std::string captured;
        render(node.bodies[0], captured);
        scopes_.back()[node.targets[0]] = Value::from_string(std::move(captured));
        return Flow::Normal;
      }
      case NodeKind::Macro: scopes_.back()[node.text] = make_macro(node); return Flow::Normal;
      case NodeKind::Break: return Flow::Break;
      case NodeKind::Continue: return Flow::Continue;
    }
    return Flow::Normal;
  }

  Flow render_for(const Node& node, std::string& out) {
    Value iterable = eval(*node.conditions[0]);
    ValueList items = iterable.iterate();  // like Jinja's Undefined, an undefined value iterates as empty
    if (node.conditions.size() > 1) {
      ValueList kept;
      for (const auto& item : items) {
        count_iteration();
        scopes_.emplace_back();
        assign(node.targets, item);
        bool keep = eval(*node.conditions[1]).truthy();
        scopes_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (node.bodies.size() > 1) return render(node.bodies[1], out);
      return Flow::Normal;
    }
    auto length = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < length; ++i) {
      count_iteration();
      scopes_.emplace_back();
      ValueDict loop{{"index0", Value::from_int(i)},
                     {"index", Value::from_int(i + 1)},
                     {"revindex", Value::from_int(length - i)},
                     {"revindex0", Value::from_int(length - i - 1)},
                     {"first", Value::from_bool(i == 0)},
                     {"last", Value::from_bool(i == length - 1)},
                     {"length", Value::from_int(length)},
                     {"depth", Value::from_int(1)},
                     {"depth0", Value::from_int(0)},
                     {"previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)] : Value::undefined("previtem")},
                     {"nextitem", i + 1 < length ? items[static_cast<std::size_t>(i + 1)] : Value::undefined("nextitem")}};
      Value loop_value = Value::from_dict(std::move(loop));
      loop_value.kind = Kind::Namespace;  // attribute access only, no dict methods
      loop_value.set_item("cycle", Value::from_function([i](CallArgs& a) {
        if (a.positional.empty()) fail("jinja: loop.cycle needs arguments");
        return a.positional[static_cast<std::size_t>(i) % a.positional.size()];
      }));
      scopes_.back()["loop"] = loop_value;
      assign(node.targets, items[static_cast<std::size_t>(i)]);
      Flow flow = render(node.bodies[0], out);
      scopes_.pop_back();
      if (flow == Flow::Break) break;
    }
    return Flow::Normal;
  }

  Value make_macro(const Node& node) {
    const Node* macro = &node;
    return Value::from_function([this, macro](CallArgs& a) {
      if (depth_ >= limits_.max_call_depth) fail("jinja: macro recursion deeper than {}", limits_.max_call_depth);
      Scope frame;
      for (std::size_t i = 0; i < macro->parameters.size(); ++i) {
        const std::string& parameter = macro->parameters[i];
        if (i < a.positional.size()) frame[parameter] = a.positional[i];
        else if (macro->defaults[i]) frame[parameter] = eval(*macro->defaults[i]);
        else frame[parameter] = Value::undefined(parameter);
      }
      for (const auto& [k, v] : a.keywords) {
        if (std::find(macro->parameters.begin(), macro->parameters.end(), k) == macro->parameters.end())
          fail("jinja: macro '{}' takes no keyword argument '{}'", macro->text, k);
        frame[k] = v;
      }
      std::vector<Scope> saved = std::move(scopes_);
      scopes_ = {saved.front(), std::move(frame)};
      ++depth_;
      std::string out;
      try {
        render(macro->bodies[0], out);
      } catch (...) {
        --depth_;
        scopes_ = std::move(saved);
        throw;
      }
      --depth_;
      scopes_ = std::move(saved);
      return Value::from_string(std::move(out));
    });
  }

  CallArgs eval_arguments(const Expr& e, std::size_t first) {
    CallArgs args;
    std::size_t keyword_start = e.children.size() - e.keyword_names.size();
    for (std::size_t i = first; i < keyword_start; ++i) args.positional.push_back(eval(*e.children[i]));
    for (std::size_t i = 0; i < e.keyword_names.size(); ++i)
      args.keywords.emplace_back(e.keyword_names[i], eval(*e.children[keyword_start + i]));
    return args;
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case ExprKind::Literal: return e.literal;
      case ExprKind::Name: return lookup(e.name);
      case ExprKind::GetAttr: {
        Value object = eval(*e.children[0]);
        if (object.is_undefined()) error_at(e.position, fmt::format("'{}' is undefined", object.text));
        return get_attribute(object, e.name);
      }
      case ExprKind::GetItem: {
        Value object = eval(*e.children[0]);
        Value key = eval(*e.children[1]);
        if (object.is_undefined()) error_at(e.position, fmt::format("'{}' is undefined", object.text));
        return get_item(object, key);
      }
      case ExprKind::Slice: {
        Value object = eval(*e.children[0]);
        Value parts[3];
        for (int i = 0; i < 3; ++i)
          parts[i] = e.children[static_cast<std::size_t>(i) + 1] ? eval(*e.children[static_cast<std::size_t>(i) + 1]) : Value::none();
        return slice_value(object, parts[0], parts[1], parts[2]);
      }
      case ExprKind::Call: {
        Value callee = eval(*e.children[0]);
        if (callee.kind != Kind::Callable)
          error_at(e.position, callee.is_undefined() ? fmt::format("'{}' is undefined", callee.text)
                                                     : fmt::format("'{}' object is not callable", kind_name(callee)));
        CallArgs args = eval_arguments(e, 1);
        return (*callee.function)(args);
      }
      case ExprKind::Filter: {
        Value input = eval(*e.children[0]);
        CallArgs args = eval_arguments(e, 1);
        return apply_filter(e.name, input, args, [](const std::string& test, const Value& v, CallArgs& a) { return apply_test(test, v, a); });
      }
      case ExprKind::Test: {
        Value input = eval(*e.children[0]);
        CallArgs args = eval_arguments(e, 1);
        return Value::from_bool(apply_test(e.name, input, args) != e.negated);
      }
      case ExprKind::Negate:
      case ExprKind::Plus: {
        Value v = eval(*e.children[0]);
        if (!v.is_number()) error_at(e.position, fmt::format("bad operand type for unary -: '{}'", kind_name(v)));
        if (e.kind == ExprKind::Plus) return v;
        if (v.kind == Kind::Float) return Value::from_float(-v.floating);
        std::int64_t magnitude = v.kind == Kind::Bool ? std::int64_t{v.boolean} : v.integer;
        if (magnitude == INT64_MIN) error_at(e.position, "integer overflow in unary '-'");
        return Value::from_int(-magnitude);
      }
      case ExprKind::Not: return Value::from_bool(!eval(*e.children[0]).truthy());
      case ExprKind::And: {
        Value left = eval(*e.children[0]);
        return left.truthy() ? eval(*e.children[1]) : left;
      }
      case ExprKind::Or: {
        Value left = eval(*e.children[0]);
        return left.truthy() ? left : eval(*e.children[1]);
      }
      case ExprKind::Binary: return binary(e, eval(*e.children[0]), eval(*e.children[1]));
      case ExprKind::Compare: {
        Value left = eval(*e.children[0]);
        for (std::size_t i = 0; i < e.compare_ops.size(); ++i) {
          Value right = eval(*e.children[i + 1]);
          if (!compare(e, e.compare_ops[i], left, right)) return Value::from_bool(false);
          left = std::move(right);
        }
        return Value::from_bool(true);
      }
      case ExprKind::Conditional:
        if (eval(*e.children[0]).truthy()) return eval(*e.children[1]);
        return e.children[2] ? eval(*e.children[2]) : Value::undefined();
      case ExprKind::ListLiteral:
      case ExprKind::TupleLiteral: {
        ValueList items;
        for (const auto& child : e.children) items.push_back(eval(*child));
        return e.kind == ExprKind::TupleLiteral ? Value::from_tuple(std::move(items)) : Value::from_list(std::move(items));
      }
      case ExprKind::DictLiteral: {
        Value dict = Value::from_dict({});
        for (std::size_t i = 0; i + 1 < e.children.size(); i += 2) {
          Value key = eval(*e.children[i]);
          if (key.kind != Kind::String) error_at(e.position, "dict literal keys must be strings");
          dict.set_item(key.text, eval(*e.children[i + 1]));
        }
        return dict;
      }
    }
    return Value::undefined();
  }

  bool compare(const Expr& e, const std::string& op, const Value& left, const Value& right) {
    if (op == "==") return values_equal(left, right);
    if (op == "!=") return !values_equal(left, right);
    if (op == "in" || op == "not in") {
      bool found = false;
      if (right.kind == Kind::String) {
        if (left.kind != Kind::String) error_at(e.position, "'in <string>' requires string as left operand");
        found = right.text.find(left.text) != std::string::npos;
      } else if (right.is_mapping()) {
        found = left.kind == Kind::String && right.find(left.text) != nullptr;
      } else if (right.kind == Kind::List) {
        for (const auto& item : *right.list)
          if (values_equal(item, left)) found = true;
      } else {
        error_at(e.position, fmt::format("argument of type '{}' is not iterable", kind_name(right)));
      }
      return op == "in" ? found : !found;
    }
    if (op == "<") return values_less(left, right);
    if (op == ">") return values_less(right, left);
    if (op == "<=") return !values_less(right, left);
    if (op == ">=") return !values_less(left, right);
    error_at(e.position, "unknown comparison " + op);
  }

  Value binary(const Expr& e, const Value& a, const Value& b) {
    const std::string& op = e.name;
    if (op == "~") return Value::from_string(to_str(a) + to_str(b));
    if (op == "+") {
      if (a.kind == Kind::String && b.kind == Kind::String) return Value::from_string(a.text + b.text);
      if (a.kind == Kind::List && b.kind == Kind::List) {
        ValueList items = *a.list;
        items.insert(items.end(), b.list->begin(), b.list->end());
        return Value::from_list(std::move(items));
      }
    }
    if (op == "*" && ((a.kind == Kind::String && b.kind == Kind::Int) || (a.kind == Kind::Int && b.kind == Kind::String))) {
      const Value& s = a.kind == Kind::String ? a : b;
      std::int64_t n = a.kind == Kind::Int ? a.integer : b.integer;
      if (n > 0 && s.text.size() * static_cast<std::size_t>(n) > limits_.max_output_bytes) error_at(e.position, "string repetition too large");
      std::string out;
      for (std::int64_t i = 0; i < n; ++i) out += s.text;
      return Value::from_string(std::move(out));
    }
    if (!a.is_number() || !b.is_number())
      error_at(e.position, fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, kind_name(a), kind_name(b)));
    bool integers = a.kind != Kind::Float && b.kind != Kind::Float;
    auto ai = a.kind == Kind::Bool ? std::int64_t{a.boolean} : a.integer;
    auto bi = b.kind == Kind::Bool ? std::int64_t{b.boolean} : b.integer;
    double af = a.as_double(), bf = b.as_double();
    std::int64_t exact = 0;
    auto checked = [&](bool overflowed) {
      if (overflowed) error_at(e.position, "integer overflow in '" + op + "'");
      return Value::from_int(exact);
    };
    if (op == "+") return integers ? checked(__builtin_add_overflow(ai, bi, &exact)) : Value::from_float(af + bf);
    if (op == "-") return integers ? checked(__builtin_sub_overflow(ai, bi, &exact)) : Value::from_float(af - bf);
    if (op == "*") return integers ? checked(__builtin_mul_overflow(ai, bi, &exact)) : Value::from_float(af * bf);
    if (op == "/") {
      if (bf == 0.0) error_at(e.position, "division by zero");
      return Value::from_float(af / bf);
    }
    if (op == "//" || op == "%") {
      if (bf == 0.0) error_at(e.position, "integer division or modulo by zero");
      if (integers) {
        if (ai == INT64_MIN && bi == -1) error_at(e.position, "integer overflow in '" + op + "'");
        std::int64_t q = ai / bi, r = ai % bi;
        if (r != 0 && ((r < 0) != (bi < 0))) {
          --q;
          r += bi;
        }
        return Value::from_int(op == "//" ? q : r);
      }
      double q = std::floor(af / bf);
      return Value::from_float(op == "//" ? q : af - q * bf);
    }
    if (op == "**") {
      if (integers && bi >= 0) {
        if (ai == 0 || ai == 1) return Value::from_int(bi == 0 ? 1 : ai);
        if (ai == -1) return Value::from_int(bi % 2 == 0 ? 1 : -1);
        exact = 1;
        for (std::int64_t i = 0; i < bi; ++i)  // |ai| >= 2: overflows within 64 steps
          if (__builtin_mul_overflow(exact, ai, &exact)) error_at(e.position, "integer overflow in '**'");
        return Value::from_int(exact);
      }
      return Value::from_float(std::pow(af, bf));
    }
    error_at(e.position, "unknown operator " + op);
  }

  const std::string& name_;
  const RenderLimits& limits_;
  const std::function<std::tm()>& clock_;
  std::vector<Scope> scopes_;
  Scope root_;
  std::size_t iterations_ = 0;
  int depth_ = 0;
};

}  // namespace

JinjaTemplate JinjaTemplate::parse(std::string_view source, std::string name) {
  JinjaTemplate result;
  result.name_ = std::move(name);
  auto tokens = tokenize(source, result.name_, LexerOptions{});
  result.nodes_ = std::make_shared<const NodeList>(parse_tokens(tokens, result.name_));
  return result;
}

std::string JinjaTemplate::render_values(const ValueDict& variables) const {
  Renderer renderer(name_, limits_, clock_);
  return renderer.run(*nodes_, variables);
}

std::string JinjaTemplate::render(const nlohmann::json& context) const {
  Value root = Value::from_json(context);
  if (!root.is_mapping()) fail("jinja: template '{}': the context must be a JSON object", name_);
  return render_values(*root.dict);
}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context) const {
  Value root = Value::from_json(context);
  if (!root.is_mapping()) fail("jinja: template '{}': the context must be a JSON object", name_);
  return render_values(*root.dict);
}

}  // namespace llama31::jinja
