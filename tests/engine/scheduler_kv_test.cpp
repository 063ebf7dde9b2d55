// The scheduler's paged KV cache, prefix cache and chunked prefill, seen from outside: identical results
// with and without them, bounded work per step, admission bounded by the pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "engine/scheduler.h"
#include "scheduler_test_support.h"

namespace llama31 {
namespace {

using namespace testing_scheduler;

// Tokens and every reported log-probability, bitwise.
void expect_same_run(const Collected& a, const Collected& b, const std::string& what) {
  EXPECT_EQ(a.tokens, b.tokens) << what;
  EXPECT_EQ(a.text, b.text) << what;
  ASSERT_EQ(a.token_events.size(), b.token_events.size()) << what;
  for (size_t i = 0; i < a.token_events.size(); ++i) {
    const StreamEvent& x = a.token_events[i];
    const StreamEvent& y = b.token_events[i];
    ASSERT_TRUE(x.logprob && y.logprob) << what;
    EXPECT_EQ(std::memcmp(&x.logprob->logprob, &y.logprob->logprob, sizeof(double)), 0) << what << " token " << i;
    ASSERT_EQ(x.top_logprobs.size(), y.top_logprobs.size()) << what;
    for (size_t k = 0; k < x.top_logprobs.size(); ++k) {
      EXPECT_EQ(x.top_logprobs[k].token, y.top_logprobs[k].token) << what << " token " << i;
      EXPECT_EQ(x.top_logprobs[k].logprob, y.top_logprobs[k].logprob) << what << " token " << i;
    }
  }
}

SequenceRequest with_logprobs(SequenceRequest r) {
  r.top_logprobs = 5;
  return r;
}

const std::string kSystem =
    "You are a careful assistant. Answer in short sentences, cite the tools you used, never invent facts, and "
    "say so plainly when you do not know. The user is a developer who reads fast and wants the answer first. ";

TEST_F(SchedulerTest, PrefixCacheReusesASharedPromptAndChangesNoNumber) {
  const std::vector<std::string> questions = {"What is 2+2?", "Name a prime.", "Why is the sky blue?",
                                              "Spell cat backwards."};
  std::vector<Collected> alone;
  {
    SchedulerOptions o = small_options();
    o.prefix_cache = false;
    o.max_batch = 1;
    Scheduler plain(*model_, o);
    for (const auto& q : questions) alone.push_back(drain(*plain.submit(with_logprobs(greedy(kSystem + q, 8)))));
    EXPECT_EQ(plain.stats().prefix_cache_hits, 0u);
  }
  SchedulerOptions o = small_options();
  Scheduler cached(*model_, o);
  const Collected first = drain(*cached.submit(with_logprobs(greedy(kSystem + questions[0], 8))));
  EXPECT_EQ(first.finished.cached_prompt_tokens, 0) << "nothing cached yet";
  expect_same_run(first, alone[0], "first");
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (const auto& q : questions) streams.push_back(cached.submit(with_logprobs(greedy(kSystem + q, 8))));
  const int system_tokens = static_cast<int>(prompt(kSystem).size());
  for (size_t i = 0; i < questions.size(); ++i) {
    const Collected c = drain(*streams[i]);
    expect_same_run(c, alone[i], questions[i]);
    // Whole blocks of the shared system prompt come from the cache (the block holding the boundary
    // between system prompt and question cannot).
    EXPECT_GE(c.finished.cached_prompt_tokens, (system_tokens / o.block_size - 1) * o.block_size) << questions[i];
    EXPECT_EQ(c.finished.cached_prompt_tokens % o.block_size, 0);
    EXPECT_LE(c.finished.cached_prompt_tokens, c.finished.prompt_tokens - 2);
  }
  const SchedulerStats s = cached.stats();
  EXPECT_GT(s.prefix_cache_hits, 0u);
  EXPECT_GT(s.kv_blocks_cached, 0);
  EXPECT_EQ(s.kv_blocks_used, 0) << "cached blocks are not held once every request is done";
}

TEST_F(SchedulerTest, ALongPromptIsPrefilledInChunksBesideRunningStreams) {
  SchedulerOptions o = small_options();
  o.prefill_chunk = 16;
  Scheduler sched(*model_, o);
  std::atomic<int> widest_step{0};
  std::atomic<int> steps_with_both{0};
  sched.on_step = [&](const SchedulerStats& st) {
    keep_max(widest_step, st.last_step_positions);
    if (st.last_step_positions > st.last_batch_size && st.last_batch_size > 0) ++steps_with_both;
  };
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "word" + std::to_string(i) + " ";
  auto short_stream = sched.submit(with_logprobs(greedy("Hi", 30)));
  ASSERT_TRUE(short_stream->next().has_value()) << "the short request is decoding";
  auto long_stream = sched.submit(with_logprobs(greedy(long_text, 4)));
  drain(*short_stream);
  const Collected long_run = drain(*long_stream);
  ASSERT_GT(long_run.finished.prompt_tokens, 5 * o.prefill_chunk);
  EXPECT_LE(widest_step.load(), o.prefill_chunk + o.max_batch) << "no step takes the whole prompt";
  EXPECT_GT(steps_with_both.load(), 0) << "prompt chunks and decode rows share forward passes";

  SchedulerOptions whole = small_options();
  whole.prefill_chunk = 512;
  Scheduler one_pass(*model_, whole);
  expect_same_run(long_run, drain(*one_pass.submit(with_logprobs(greedy(long_text, 4)))), "chunked vs whole");
}

TEST_F(SchedulerTest, AdmissionWaitsForKvBlocksAndEveryBlockComesBack) {
  SchedulerOptions o = small_options();
  o.block_size = 16;
  o.kv_tokens = 64;  // four blocks; each request below needs two
  o.prefix_cache = false;
  Scheduler sched(*model_, o);
  std::atomic<int> most_running{0};
  std::atomic<int> most_blocks{0};
  sched.on_step = [&](const SchedulerStats& st) {
    keep_max(most_running, st.running);
    keep_max(most_blocks, st.kv_blocks_used);
  };
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < 3; ++i) streams.push_back(sched.submit(greedy("Request " + std::to_string(i), 20)));
  for (auto& s : streams) EXPECT_EQ(drain(*s).finished.completion_tokens, 20);
  EXPECT_EQ(most_running.load(), 2) << "the third waited for blocks";
  EXPECT_LE(most_blocks.load(), 4);
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
  EXPECT_EQ(sched.stats().kv_blocks_total, 4);
}

}  // namespace
}  // namespace llama31
