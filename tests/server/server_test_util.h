// An in-process llama31 server on a free port over a tiny random-weight model, for the server tests.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/generator.h"
#include "model_files/test_model.h"
#include "server/server.h"
#include "support/temp_dir.h"

namespace llama31::server::testing {

// The tiny model, written and loaded once for the whole test program.
inline const LoadedModel& tiny_model() {
  static llama31::testing::TempDir* dir = new llama31::testing::TempDir("llama31-server-test");
  static std::unique_ptr<LoadedModel> model = [] {
    TestModelSpec spec;
    spec.hidden_size = 64;
    spec.num_attention_heads = 4;
    spec.num_key_value_heads = 2;
    spec.head_dim = 16;
    spec.intermediate_size = 128;
    spec.num_hidden_layers = 2;
    const auto path = dir->path() / "tiny-llama";
    write_test_model(path, spec);
    return LoadedModel::load(path);
  }();
  return *model;
}

class TestServer {
 public:
  explicit TestServer(ServerOptions options = {}, SchedulerOptions sched = small_scheduler()) {
    options.port = 0;
    thread_ = std::thread([this, options, sched] {
      try {
        run_server(tiny_model(), options, sched, stop_, [this](int p) {
          std::lock_guard lock(mutex_);
          port_ = p;
          cv_.notify_all();
        });
      } catch (const std::exception&) {
        std::lock_guard lock(mutex_);
        port_ = -1;
        cv_.notify_all();
      }
    });
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return port_ != 0; });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
  }
  static SchedulerOptions small_scheduler() {
    SchedulerOptions s;
    s.max_context = 512;
    s.max_batch = 4;
    s.max_queue = 8;
    s.kv_tokens = 2048;
    return s;
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    return c;
  }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable cv_;
  int port_ = 0;
  std::thread thread_;
};

// The JSON payloads of an SSE body's "data:" lines, "[DONE]" excluded (done set when it was seen).
inline std::vector<nlohmann::json> sse_payloads(const std::string& body, bool* done = nullptr) {
  std::vector<nlohmann::json> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("data:", 0) != 0) continue;
    std::string payload = line.substr(5);
    if (!payload.empty() && payload[0] == ' ') payload.erase(0, 1);
    if (payload == "[DONE]") {
      if (done) *done = true;
      continue;
    }
    out.push_back(nlohmann::json::parse(payload));
  }
  return out;
}

}  // namespace llama31::server::testing
