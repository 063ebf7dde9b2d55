// llama31 serve: the OpenAI- and TGI-compatible HTTP server with continuous batching and a chat page.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "server/server.h"
#include "util/error.h"

namespace llama31::cli {

namespace {

std::atomic<bool> g_stop{false};

extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct ServeOptions {
  ModelOptions model;
  server::ServerOptions server;
  SchedulerOptions scheduler;
  bool no_prefix_cache = false;
  double kv_memory_gib = 0;
};

void run_serve(ServeOptions& o) {
  auto model = load_model(o.model);
  SchedulerOptions s = o.scheduler;
  s.prefix_cache = !o.no_prefix_cache;
  if (o.kv_memory_gib > 0) {
    if (s.kv_tokens > 0) fail("give --kv-tokens or --kv-memory, not both");
    const LlamaConfig& c = model->config();
    const double per_token = 2.0 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * sizeof(float);
    const double tokens = o.kv_memory_gib * 1024.0 * 1024.0 * 1024.0 / per_token;
    if (tokens < s.block_size) {
      fail("--kv-memory {} GiB holds fewer than one KV block of {} positions ({} bytes per position)",
           o.kv_memory_gib, s.block_size, per_token);
    }
    s.kv_tokens = static_cast<int>(std::min(tokens, 1e9));
  }
  const int model_limit = model->config().max_position_embeddings;
  s.max_context = o.model.ctx_size > 0 ? o.model.ctx_size : std::min(s.max_context, model_limit);
  if (s.max_context > model_limit)
    fail("--ctx-size {} is beyond the model's limit of {} positions", s.max_context, model_limit);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  server::run_server(*model, o.server, s, g_stop, [&](int port) {
    std::printf("llama31 serve: listening on http://%s:%d\n", o.server.host.c_str(), port);
    std::fflush(stdout);
  });
  std::fprintf(stderr, "llama31 serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* sub = app.add_subcommand("serve", "Serve the model over HTTP: OpenAI and TGI APIs, metrics, a chat page");
  add_model_options(*sub, o->model);
  sub->add_option("--host", o->server.host, "Address to bind")->capture_default_str();
  sub->add_option("--port", o->server.port, "Port to bind; 0 picks a free one (printed)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  sub->add_option("--api-key", o->server.api_key, "Require Authorization: Bearer <key> on every route but /health");
  sub->add_option("--model-name", o->server.model_name, "Model id reported by the API (default: the folder's name)");
  sub->add_option("--kv-tokens", o->scheduler.kv_tokens, "KV cache positions shared by all sequences (0: auto)")
      ->check(whole_number_at_least(0));
  sub->add_option("--kv-memory", o->kv_memory_gib, "KV cache size in GiB instead of --kv-tokens")
      ->check(number_above(0));
  sub->add_option("--block-size", o->scheduler.block_size, "Positions per KV cache block (and prefix-cache unit)")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  sub->add_option("--max-batch", o->scheduler.max_batch, "Sequences decoding at once")->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--max-queue", o->scheduler.max_queue, "Waiting requests before 429")->capture_default_str()
      ->check(CLI::Range(0, 100000));
  sub->add_option("--prefill-chunk", o->scheduler.prefill_chunk, "Prompt positions per scheduler step")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-body-bytes", o->server.max_body_bytes, "Largest request body (413 beyond)")
      ->capture_default_str();
  sub->add_flag("--no-prefix-cache", o->no_prefix_cache, "Do not reuse cached prompt prefixes across requests");
  sub->callback([o] { run_serve(*o); });
}

}  // namespace llama31::cli
