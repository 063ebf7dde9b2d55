// llama31 serve: an HTTP server with OpenAI's and Text Generation Inference's APIs over a Scheduler.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>

#include "engine/generator.h"
#include "engine/scheduler.h"

namespace llama31::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                      // 0: pick a free port (printed, and passed to on_listening)
  std::string api_key;                  // non-empty: every route but /health needs "Authorization: Bearer <key>"
  std::string model_name;               // the id /v1/models and responses report; default: the folder's name
  size_t max_body_bytes = 8u << 20;     // larger request bodies get 413
  int max_prompt_tokens = 0;            // 0: the scheduler's max_context; longer prompts get 400
  int http_threads = 0;                 // 0: enough for max_batch + max_queue clients
};

// Serves until stop is set (polled) or the process is interrupted. Calls on_listening(port) once bound.
// Errors (llama31::Error): the address cannot be bound.
void run_server(const LoadedModel& model, const ServerOptions& options, const SchedulerOptions& scheduler_options,
                const std::atomic<bool>& stop, const std::function<void(int port)>& on_listening = {});

}  // namespace llama31::server
