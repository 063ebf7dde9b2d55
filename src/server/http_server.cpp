// run_server: the cpp-httplib server, its routes, API-key check, limits, error shapes and lifecycle.
#include <algorithm>
#include <array>
#include <string_view>
#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "server/server_context.h"
#include "server/web_assets.h"
#include "util/error.h"

namespace llama31::server {

namespace {

// No static destructor: handler threads of a server still running at process exit may read it.
constexpr std::array<std::string_view, 8> kKnownRoutes = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                          "/generate", "/generate_stream", "/info", "/health",
                                                          "/metrics"};

bool is_known_route(std::string_view path) {
  return std::find(kKnownRoutes.begin(), kKnownRoutes.end(), path) != kKnownRoutes.end();
}

// Runs a handler, turning every failure into an OpenAI-shaped error (never 500 for bad input).
httplib::Server::Handler guarded(std::function<void(const httplib::Request&, httplib::Response&)> handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    auto reply = [&](int status, const std::string& message, const std::string& param, const std::string& type) {
      res.status = status;
      res.set_content(error_body(status, message, param, type), "application/json");
    };
    try {
      handler(req, res);
    } catch (const HttpError& e) {
      reply(e.status, e.what(), e.param, e.type);
    } catch (const Error& e) {
      reply(400, e.what(), {}, {});
    } catch (const nlohmann::json::exception& e) {
      reply(400, fmt::format("invalid request: {}", e.what()), {}, {});
    } catch (const std::exception& e) {
      reply(500, fmt::format("internal error: {}", e.what()), {}, {});
    }
  };
}

std::string metrics_route(const std::string& path) {
  if (is_known_route(path)) return path;
  if (find_web_asset(path)) return "/";
  return "other";
}

}  // namespace

void run_server(const LoadedModel& model, const ServerOptions& options, const SchedulerOptions& scheduler_options,
                const std::atomic<bool>& stop, const std::function<void(int port)>& on_listening) {
  Scheduler scheduler(model, scheduler_options);
  JsonConstraintFactory constraints(model.tokenizer(), model.stop_ids());
  Metrics metrics;
  std::string name = options.model_name;
  if (name.empty()) name = model.folder().dir.filename().string();
  if (name.empty()) name = model.folder().dir.parent_path().filename().string();
  ServerContext ctx{model,   options, scheduler, constraints, metrics, name,
                    SamplingParams::from_generation_config(model.folder().generation), stop,
                    options.max_prompt_tokens};

  httplib::Server svr;
  const int threads = options.http_threads > 0
                          ? options.http_threads
                          : scheduler_options.max_batch + scheduler_options.max_queue + 4;
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_keep_alive_max_count(1000);

  svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    // The chat page's static files hold no data; the API behind them needs the key.
    if (req.method == "GET" && !is_known_route(req.path) && find_web_asset(req.path))
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + options.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 401;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_content(error_body(401, req.has_header("Authorization") ? "invalid API key"
                                                                     : "missing API key: send Authorization: Bearer <key>",
                               {}, "authentication_error"),
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });

  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    int status = res.status;
    std::string message;
    if (status == 404 && is_known_route(req.path)) {
      status = 405;
      message = fmt::format("method {} is not allowed on {}", req.method, req.path);
    } else if (status == 404) {
      message = fmt::format("no route {} {}", req.method, req.path);
    } else if (status == 413) {
      message = "request body too large";
    } else {
      message = fmt::format("HTTP {}", status);
    }
    res.status = status;
    res.set_content(error_body(status, message), "application/json");
  });

  // Counted once the final status is known but before the response is written (the logger runs after
  // it is sent, so a client's next /metrics could miss the request it had just been answered).
  svr.set_post_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    metrics.count_request(metrics_route(req.path), res.status);
  });

  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(scheduler.stats()), "text/plain; version=0.0.4");
  });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    nlohmann::json m = {{"id", name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "llama31"}};
    res.set_content(nlohmann::json{{"object", "list"}, {"data", {m}}}.dump(), "application/json");
  });
  svr.Get("/v1/models/(.+)", guarded([&](const httplib::Request& req, httplib::Response& res) {
            if (req.matches[1] != name) throw HttpError(404, fmt::format("model '{}' not found", req.matches[1].str()), "model");
            nlohmann::json m = {{"id", name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "llama31"}};
            res.set_content(m.dump(), "application/json");
          }));
  register_openai_chat(svr, ctx);
  register_openai_completions(svr, ctx);
  register_tgi_routes(svr, ctx);
  svr.Get("/.*", [](const httplib::Request& req, httplib::Response& res) {
    auto asset = find_web_asset(req.path);
    if (!asset) {
      res.status = 404;
      return;
    }
    res.set_content(std::string(asset->body), std::string(asset->content_type).c_str());
  });

  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
    if (port < 0) fail("cannot bind {}: no free port", options.host);
  } else if (!svr.bind_to_port(options.host, port)) {
    fail("cannot bind {}:{} (in use, or not an address of this machine)", options.host, port);
  }
  std::thread listener([&] { svr.listen_after_bind(); });
  while (!svr.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (on_listening) on_listening(port);
  while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  svr.stop();
  listener.join();
}

httplib::Server::Handler guarded_handler(std::function<void(const httplib::Request&, httplib::Response&)> handler) {
  return guarded(std::move(handler));
}

}  // namespace llama31::server
