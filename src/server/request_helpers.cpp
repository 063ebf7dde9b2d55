// Field parsing, error bodies, submission and timed event reading shared by the routes.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>

#include <fmt/format.h>

#include "server/server_context.h"
#include "util/error.h"

namespace llama31::server {

std::string error_body(int status, const std::string& message, const std::string& param, const std::string& type) {
  std::string t = type;
  if (t.empty()) {
    t = status == 401   ? "authentication_error"
        : status == 404 ? "not_found_error"
        : status == 429 ? "rate_limit_error"
        : status >= 500 ? "server_error"
                        : "invalid_request_error";
  }
  nlohmann::json e = {{"message", message},
                      {"type", t},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", status}};
  return nlohmann::json{{"error", e}}.dump();
}

ojson parse_body(const httplib::Request& req) {
  ojson body;
  try {
    body = ojson::parse(req.body);
  } catch (const nlohmann::json::exception& e) {
    throw HttpError(400, fmt::format("request body is not valid JSON: {}", e.what()));
  }
  if (!body.is_object()) throw HttpError(400, "request body must be a JSON object");
  return body;
}

std::optional<double> number_field(const ojson& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) throw HttpError(400, fmt::format("'{}' must be a number", name), name);
  return it->get<double>();
}

std::optional<long long> integer_field(const ojson& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (it->is_number_integer()) return it->get<long long>();
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (v == static_cast<double>(static_cast<long long>(v))) return static_cast<long long>(v);
  }
  throw HttpError(400, fmt::format("'{}' must be an integer", name), name);
}

std::optional<bool> bool_field(const ojson& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) throw HttpError(400, fmt::format("'{}' must be true or false", name), name);
  return it->get<bool>();
}

std::optional<std::string> string_field(const ojson& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) throw HttpError(400, fmt::format("'{}' must be a string", name), name);
  return it->get<std::string>();
}

std::vector<std::string> stop_field(const ojson& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  if (!it->is_array()) throw HttpError(400, fmt::format("'{}' must be a string or an array of strings", name), name);
  std::vector<std::string> out;
  for (const auto& s : *it) {
    if (!s.is_string()) throw HttpError(400, fmt::format("'{}' must be a string or an array of strings", name), name);
    if (!s.get<std::string>().empty()) out.push_back(s.get<std::string>());
  }
  return out;
}

int fit_generation(const ServerContext& ctx, size_t prompt_tokens, std::optional<long long> requested,
                   const char* requested_name) {
  const long long context = ctx.scheduler.options().max_context;
  const long long prompt_limit = ctx.max_prompt_tokens > 0 ? std::min<long long>(ctx.max_prompt_tokens, context - 1)
                                                           : context - 1;
  const auto n = static_cast<long long>(prompt_tokens);
  if (n > prompt_limit)
    throw HttpError(400, fmt::format("the prompt has {} tokens, more than the {} this server accepts (context {})", n,
                                     prompt_limit, context), "messages");
  if (requested) {
    if (*requested < 1) throw HttpError(400, fmt::format("'{}' must be at least 1", requested_name), requested_name);
    if (n + *requested > context)
      throw HttpError(400, fmt::format("the prompt's {} tokens plus {} = {} new tokens exceed the context of {}", n,
                                       requested_name, *requested, context), requested_name);
    return static_cast<int>(*requested);
  }
  return static_cast<int>(context - n);
}

std::unique_ptr<RequestStream> submit_request(ServerContext& ctx, SequenceRequest request) {
  try {
    return ctx.scheduler.submit(std::move(request));
  } catch (const QueueFull& e) {
    throw HttpError(429, fmt::format("the server is busy: {}", e.what()), {}, "rate_limit_error");
  } catch (const Error& e) {
    throw HttpError(400, e.what());
  }
}

TimedStream::TimedStream(ServerContext& ctx, std::unique_ptr<RequestStream> stream)
    : ctx_(ctx), stream_(std::move(stream)), start_(std::chrono::steady_clock::now()), last_(start_) {}

std::optional<StreamEvent> TimedStream::next(std::chrono::milliseconds wait) {
  using namespace std::chrono;
  timed_out_ = false;
  const auto deadline = steady_clock::now() + wait;
  for (;;) {
    const auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    auto event = stream_->next_for(std::clamp(left, milliseconds(1), milliseconds(100)));
    if (event) {
      if (event->kind == StreamEvent::Kind::Token) {
        const auto now = steady_clock::now();
        const double dt = duration<double>(now - (first_ ? start_ : last_)).count();
        if (first_) ctx_.metrics.observe_time_to_first_token(dt);
        else ctx_.metrics.observe_inter_token_latency(dt);
        first_ = false;
        last_ = now;
      }
      return event;
    }
    if (!stream_->timed_out()) return std::nullopt;
    if (ctx_.stop.load()) stream_->cancel();
    if (steady_clock::now() >= deadline) {
      timed_out_ = true;
      return std::nullopt;
    }
  }
}

std::string new_completion_id(const char* prefix) {
  static std::atomic<unsigned long long> counter{0};
  static const unsigned long long base = std::random_device{}();
  return fmt::format("{}-{:x}{:06x}", prefix, base & 0xffffffu, ++counter);
}

long long unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SamplingParams openai_sampling(const ServerContext& ctx, const ojson& body) {
  SamplingParams s = ctx.defaults;
  if (auto v = number_field(body, "temperature")) s.temperature = *v;
  if (auto v = number_field(body, "top_p")) s.top_p = *v;
  if (auto v = integer_field(body, "top_k")) s.top_k = static_cast<int>(std::max(*v, 0LL));
  if (auto v = number_field(body, "min_p")) s.min_p = *v;
  if (auto v = number_field(body, "presence_penalty")) s.presence_penalty = *v;
  if (auto v = number_field(body, "frequency_penalty")) s.frequency_penalty = *v;
  if (auto v = number_field(body, "repetition_penalty")) s.repetition_penalty = *v;
  if (auto v = integer_field(body, "seed")) {
    s.seed = static_cast<uint64_t>(*v);
  } else {
    s.seed = std::random_device{}();
  }
  s.validate();
  return s;
}

}  // namespace llama31::server
