// The scheduler's public behaviour: outputs equal generate()'s, stop rules, logprobs, constraints,
// cancellation, queue limits and submit-time errors.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "kernels/kernels.h"
#include "scheduler_test_support.h"
#include "util/error.h"

namespace llama31 {
namespace {

using namespace testing_scheduler;

TEST_F(SchedulerTest, GreedyTokensMatchGenerateForSeveralConcurrentRequests) {
  Scheduler sched(*model_, small_options());
  const std::vector<std::string> texts = {"Hello", "The quick brown fox jumps over the lazy dog again and again",
                                          "1 2 3 4 5", "Once upon a time"};
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (const auto& t : texts) streams.push_back(sched.submit(greedy(t, 12)));
  KvCache cache(model_->config(), 512);
  for (size_t i = 0; i < texts.size(); ++i) {
    const Collected c = drain(*streams[i]);
    GenerationRequest g;
    g.prompt = prompt(texts[i]);
    g.max_new_tokens = 12;
    g.sampling.temperature = 0;
    const GenerationResult expect = generate(*model_, cache, g);
    EXPECT_EQ(c.tokens, expect.tokens) << texts[i];
    EXPECT_EQ(c.text, expect.text) << texts[i];
    EXPECT_EQ(c.finished.finish, FinishReason::Length);
    EXPECT_EQ(c.finished.completion_tokens, 12);
    EXPECT_EQ(c.finished.prompt_tokens, static_cast<int>(g.prompt.size()));
    EXPECT_TRUE(c.finished.error.empty());
  }
  const SchedulerStats s = sched.stats();
  EXPECT_EQ(s.requests_finished, texts.size());
  EXPECT_EQ(s.generated_tokens, 12u * texts.size());
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_GT(s.steps, 0u);
}

TEST_F(SchedulerTest, SeededSamplingIsReproducible) {
  Scheduler sched(*model_, small_options());
  auto req = [&] {
    SequenceRequest r = greedy("Sample me", 10);
    r.sampling.temperature = 1.0;
    r.sampling.seed = 42;
    return r;
  };
  auto a = sched.submit(req());
  auto b = sched.submit(req());
  EXPECT_EQ(drain(*a).tokens, drain(*b).tokens);
}

TEST_F(SchedulerTest, StopIdEndsWithAnEmptyTokenEventThenFinished) {
  Scheduler sched(*model_, small_options());
  const Collected first = drain(*sched.submit(greedy("Hello", 6)));
  ASSERT_GE(first.tokens.size(), 3u);
  SequenceRequest r = greedy("Hello", 6);
  r.stop_ids = {first.tokens[2]};
  const Collected c = drain(*sched.submit(std::move(r)));
  ASSERT_EQ(c.tokens.size(), 3u);
  EXPECT_EQ(c.tokens[2], first.tokens[2]);
  EXPECT_EQ(c.finished.finish, FinishReason::Stop);
  EXPECT_EQ(c.token_events.back().text, "");
}

TEST_F(SchedulerTest, StopStringCutsTheText) {
  Scheduler sched(*model_, small_options());
  const Collected first = drain(*sched.submit(greedy("Hello", 8)));
  ASSERT_GE(first.text.size(), 4u);
  const std::string stop = first.text.substr(first.text.size() / 2, 2);
  SequenceRequest r = greedy("Hello", 8);
  r.stop_strings = {stop};
  const Collected c = drain(*sched.submit(std::move(r)));
  EXPECT_EQ(c.finished.finish, FinishReason::Stop);
  EXPECT_EQ(c.text, first.text.substr(0, first.text.find(stop)));
}

TEST_F(SchedulerTest, LogprobsComeFromTheRawLogits) {
  Scheduler sched(*model_, small_options());
  SequenceRequest r = greedy("Hello", 3);
  r.top_logprobs = 3;
  const Collected c = drain(*sched.submit(std::move(r)));
  ASSERT_EQ(c.token_events.size(), 3u);
  for (const auto& ev : c.token_events) {
    ASSERT_TRUE(ev.logprob.has_value());
    EXPECT_EQ(ev.logprob->token, ev.token);
    EXPECT_LE(ev.logprob->logprob, 0.0);
    ASSERT_EQ(ev.top_logprobs.size(), 3u);
    // Greedy: the chosen token is the most likely one.
    EXPECT_EQ(ev.top_logprobs[0].token, ev.token);
    EXPECT_GE(ev.top_logprobs[0].logprob, ev.top_logprobs[1].logprob);
  }
}

// Allows only `allowed` for `count` tokens, then only `end`.
class FixedConstraint : public TokenConstraint {
 public:
  FixedConstraint(TokenId allowed, TokenId end, int count) : allowed_(allowed), end_(end), left_(count) {}
  void mask(std::span<float> logits, int) override {
    const TokenId keep = left_ > 0 ? allowed_ : end_;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (static_cast<TokenId>(i) != keep) logits[i] = -INFINITY;
    }
  }
  int min_tokens_to_complete() const override { return left_; }
  bool accept(TokenId token) override {
    if (token != (left_ > 0 ? allowed_ : end_)) return false;
    --left_;
    return true;
  }
  bool complete() const override { return left_ <= 0; }

 private:
  TokenId allowed_, end_;
  int left_;
};

TEST_F(SchedulerTest, ConstraintDecidesTheTokens) {
  Scheduler sched(*model_, small_options());
  const TokenId a = model_->tokenizer().encode("a").at(0);
  const TokenId end = 128009;  // <|eot_id|>
  SequenceRequest r = greedy("Hello", 10);
  r.stop_ids = {end};
  r.constraint = std::make_unique<FixedConstraint>(a, end, 3);
  const Collected c = drain(*sched.submit(std::move(r)));
  EXPECT_EQ(c.tokens, (std::vector<TokenId>{a, a, a, end}));
  EXPECT_EQ(c.text, "aaa");
  EXPECT_EQ(c.finished.finish, FinishReason::Stop);
}

TEST_F(SchedulerTest, CancelFinishesWithCancelledAndFreesBlocks) {
  Scheduler sched(*model_, small_options());
  auto s = sched.submit(greedy("Hello", 400));
  s->cancel();
  const Collected c = drain(*s);
  EXPECT_TRUE(c.finished.cancelled);
  EXPECT_LT(c.finished.completion_tokens, 400);
  EXPECT_EQ(sched.stats().kv_blocks_used, 0);
}

TEST_F(SchedulerTest, QueueFullAndSubmitErrors) {
  SchedulerOptions o = small_options();
  o.max_queue = 0;
  Scheduler full(*model_, o);
  EXPECT_THROW(full.submit(greedy("Hello", 4)), QueueFull);

  Scheduler sched(*model_, small_options());
  SequenceRequest empty;
  EXPECT_THROW(sched.submit(std::move(empty)), Error);
  EXPECT_THROW(sched.submit(greedy("Hello", 600)), Error);  // beyond max_context 512
  SequenceRequest bad = greedy("Hello", 4);
  bad.prompt.push_back(model_->config().vocab_size);
  EXPECT_THROW(sched.submit(std::move(bad)), Error);
  SequenceRequest bad_sampling = greedy("Hello", 4);
  bad_sampling.sampling.top_p = 2;
  EXPECT_THROW(sched.submit(std::move(bad_sampling)), Error);

  SchedulerOptions tiny = small_options();
  tiny.kv_tokens = 32;
  Scheduler small_cache(*model_, tiny);
  EXPECT_THROW(small_cache.submit(greedy("Hello", 40)), Error);  // never fits the KV cache
}

TEST_F(SchedulerTest, OnStepSeesEverySteps) {
  Scheduler sched(*model_, small_options());
  std::atomic<int> calls{0};
  sched.on_step = [&](const SchedulerStats&) { ++calls; };
  drain(*sched.submit(greedy("Hello", 5)));
  EXPECT_GE(calls.load(), 4);  // the prompt's step also decodes the first sampled token
  EXPECT_EQ(static_cast<uint64_t>(calls.load()), sched.stats().steps);
}

TEST_F(SchedulerTest, AShortRequestFinishesWhileALongOneIsStillRunning) {
  SchedulerOptions o = small_options();
  Scheduler sched(*model_, o);
  std::atomic<int> widest{0};
  sched.on_step = [&](const SchedulerStats& st) {
    EXPECT_LE(st.running, o.max_batch);
    keep_max(widest, st.last_batch_size);
  };
  SequenceRequest long_request = greedy("Tell me a long story", 400);
  long_request.stop_ids.clear();
  auto long_stream = sched.submit(std::move(long_request));
  auto short_stream = sched.submit(greedy("Hi", 4));
  const Collected short_result = drain(*short_stream);
  // Run one after the other, the long request's 400 tokens would all come before the short one's 4.
  const uint64_t generated_when_short_done = sched.stats().generated_tokens;
  EXPECT_EQ(short_result.finished.completion_tokens, 4);
  EXPECT_LT(generated_when_short_done, 400u);
  const Collected long_result = drain(*long_stream);
  EXPECT_EQ(long_result.finished.completion_tokens, 400);
  EXPECT_GE(widest.load(), 2) << "the two sequences decoded in one batched step";
}

TEST_F(SchedulerTest, BatchLargerThanTheKernelGroupGivesEachRequestItsAloneTokens) {
  const int n = kernels::small_rows() + 3;  // two groups of weight products per decode step
  SchedulerOptions o = small_options();
  o.max_batch = n;
  std::vector<Collected> alone;
  {
    Scheduler one_at_a_time(*model_, [&] { auto x = small_options(); x.max_batch = 1; return x; }());
    for (int i = 0; i < n; ++i) {
      SequenceRequest r = greedy("Prompt number " + std::to_string(i), 10);
      r.top_logprobs = 2;
      alone.push_back(drain(*one_at_a_time.submit(std::move(r))));
    }
  }
  Scheduler sched(*model_, o);
  std::atomic<int> widest{0};
  sched.on_step = [&](const SchedulerStats& st) {
    keep_max(widest, st.last_batch_size);
  };
  std::vector<std::unique_ptr<RequestStream>> streams;
  for (int i = 0; i < n; ++i) {
    SequenceRequest r = greedy("Prompt number " + std::to_string(i), 10);
    r.top_logprobs = 2;
    streams.push_back(sched.submit(std::move(r)));
  }
  for (int i = 0; i < n; ++i) {
    const Collected c = drain(*streams[static_cast<size_t>(i)]);
    const Collected& a = alone[static_cast<size_t>(i)];
    EXPECT_EQ(c.tokens, a.tokens) << i;
    ASSERT_EQ(c.token_events.size(), a.token_events.size());
    for (size_t t = 0; t < c.token_events.size(); ++t) {
      EXPECT_EQ(c.token_events[t].logprob->logprob, a.token_events[t].logprob->logprob) << i << " token " << t;
    }
  }
  EXPECT_GT(widest.load(), kernels::small_rows()) << "some step decoded more rows than one kernel group";
}

}  // namespace
}  // namespace llama31
