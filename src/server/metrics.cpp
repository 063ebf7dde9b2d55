// Prometheus text exposition of the server's metrics.
#include "server/metrics.h"

#include <fmt/format.h>

namespace llama31::server {

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

std::string Histogram::render(const std::string& name) const {
  std::string out;
  unsigned long long cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
  return out;
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{route, status}];
}

void Metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::observe_inter_token_latency(double seconds) {
  std::lock_guard lock(mutex_);
  itl_.observe(seconds);
}

std::string Metrics::render(const SchedulerStats& s) const {
  std::lock_guard lock(mutex_);
  std::string out;
  out += "# HELP llama31_requests_total HTTP requests by route and status.\n# TYPE llama31_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("llama31_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  auto gauge = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  gauge("llama31_queue_depth", "Requests waiting for a batch slot.", s.waiting);
  gauge("llama31_running_sequences", "Sequences in the running batch.", s.running);
  gauge("llama31_batch_size", "Sequences in the most recent decode step.", s.last_batch_size);
  gauge("llama31_kv_cache_blocks_used", "KV cache blocks in use.", s.kv_blocks_used);
  gauge("llama31_kv_cache_blocks_total", "KV cache blocks in all.", s.kv_blocks_total);
  gauge("llama31_kv_cache_blocks_cached", "KV cache blocks holding reusable prompt prefixes.", s.kv_blocks_cached);
  counter("llama31_prompt_tokens_total", "Prompt tokens submitted.", static_cast<double>(s.prompt_tokens));
  counter("llama31_generated_tokens_total", "Tokens generated.", static_cast<double>(s.generated_tokens));
  counter("llama31_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.",
          static_cast<double>(s.prefix_cache_hits));
  counter("llama31_sequences_finished_total", "Sequences finished.", static_cast<double>(s.requests_finished));
  out += "# HELP llama31_time_to_first_token_seconds Time from submission to the first token.\n"
         "# TYPE llama31_time_to_first_token_seconds histogram\n";
  out += ttft_.render("llama31_time_to_first_token_seconds");
  out += "# HELP llama31_inter_token_latency_seconds Time between tokens of one sequence.\n"
         "# TYPE llama31_inter_token_latency_seconds histogram\n";
  out += itl_.render("llama31_inter_token_latency_seconds");
  return out;
}

}  // namespace llama31::server
