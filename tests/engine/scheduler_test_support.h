// Shared by the scheduler tests: a small random-weight model, greedy requests, and draining a stream.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "model_files/test_model.h"
#include "support/temp_dir.h"

namespace llama31::testing_scheduler {

using llama31::testing::TempDir;

struct Collected {
  std::vector<TokenId> tokens;
  std::string text;
  std::vector<StreamEvent> token_events;
  StreamEvent finished;
};

// Raises `most` to `value` if it is larger (on_step runs on the scheduler's thread).
inline void keep_max(std::atomic<int>& most, int value) {
  int seen = most.load();
  while (value > seen && !most.compare_exchange_weak(seen, value)) {
  }
}

inline Collected drain(RequestStream& s) {
  Collected c;
  while (auto ev = s.next()) {
    if (ev->kind == StreamEvent::Kind::Token) {
      c.tokens.push_back(ev->token);
      c.text += ev->text;
      c.token_events.push_back(*ev);
    } else {
      c.finished = *ev;
    }
  }
  return c;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("llama31-scheduler");
    TestModelSpec spec;
    spec.num_attention_heads = 4;
    spec.head_dim = 16;
    spec.intermediate_size = 128;
    write_test_model(dir_->path(), spec);
    model_ = LoadedModel::load(dir_->path()).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static std::vector<TokenId> prompt(const std::string& text) {
    std::vector<TokenId> p = {model_->bos_id()};
    const auto ids = model_->tokenizer().encode(text);
    p.insert(p.end(), ids.begin(), ids.end());
    return p;
  }
  static SequenceRequest greedy(const std::string& text, int n) {
    SequenceRequest r;
    r.prompt = prompt(text);
    r.max_new_tokens = n;
    r.sampling.temperature = 0;
    return r;
  }
  static SchedulerOptions small_options() {
    SchedulerOptions o;
    o.max_context = 512;
    o.max_batch = 4;
    o.prefill_chunk = 16;
    return o;
  }
  static inline TempDir* dir_ = nullptr;
  static inline LoadedModel* model_ = nullptr;
};

}  // namespace llama31::testing_scheduler
