// Scheduler, first version: a worker thread runs queued requests one at a time on one contiguous
// KvCache, step by step (one forward pass per step), with the same text rules as generate().
// Continuous batching over a paged KV cache replaces the run loop later; the public API stays.
#include "engine/scheduler.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "engine/kv_cache.h"
#include "util/error.h"

namespace llama31 {

struct RequestStream::Shared {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<StreamEvent> events;
  std::atomic<bool> cancelled{false};

  void push(StreamEvent event) {
    {
      std::lock_guard lock(mutex);
      events.push_back(std::move(event));
    }
    cv.notify_all();
  }
};

RequestStream::~RequestStream() { cancel(); }

void RequestStream::cancel() { shared_->cancelled = true; }

std::optional<StreamEvent> RequestStream::next() {
  timed_out_ = false;
  if (done_) return std::nullopt;
  std::unique_lock lock(shared_->mutex);
  shared_->cv.wait(lock, [&] { return !shared_->events.empty(); });
  StreamEvent event = std::move(shared_->events.front());
  shared_->events.pop_front();
  if (event.kind == StreamEvent::Kind::Finished) done_ = true;
  return event;
}

std::optional<StreamEvent> RequestStream::next_for(std::chrono::milliseconds timeout) {
  timed_out_ = false;
  if (done_) return std::nullopt;
  std::unique_lock lock(shared_->mutex);
  if (!shared_->cv.wait_for(lock, timeout, [&] { return !shared_->events.empty(); })) {
    timed_out_ = true;
    return std::nullopt;
  }
  StreamEvent event = std::move(shared_->events.front());
  shared_->events.pop_front();
  if (event.kind == StreamEvent::Kind::Finished) done_ = true;
  return event;
}

namespace {

// Chosen token's log-probability and the top_n best, from the raw logits.
void fill_logprobs(const Tokenizer& tokenizer, std::span<const float> raw, TokenId chosen, int top_n,
                   StreamEvent& event) {
  const std::vector<double> lp = log_softmax(raw);
  auto entry = [&](TokenId id) {
    TokenLogprob t;
    t.token = id;
    t.text = tokenizer.token_bytes(id);
    t.logprob = lp[static_cast<size_t>(id)];
    return t;
  };
  event.logprob = entry(chosen);
  if (top_n <= 0) return;
  std::vector<TokenId> ids(lp.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>(i);
  const size_t n = std::min(ids.size(), static_cast<size_t>(top_n));
  std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(),
                    [&](TokenId a, TokenId b) {
                      const double la = lp[static_cast<size_t>(a)], lb = lp[static_cast<size_t>(b)];
                      return la != lb ? la > lb : a < b;
                    });
  for (size_t i = 0; i < n; ++i) event.top_logprobs.push_back(entry(ids[i]));
}

}  // namespace

struct Scheduler::Impl {
  struct Pending {
    uint64_t id = 0;
    SequenceRequest request;
    std::shared_ptr<RequestStream::Shared> shared;
  };
  const LoadedModel& model;
  SchedulerOptions options;
  mutable std::mutex mutex;
  std::condition_variable cv;
  std::deque<Pending> queue;
  bool stopping = false;
  uint64_t next_id = 1;
  SchedulerStats stats;
  std::function<void(const SchedulerStats&)>* on_step = nullptr;
  KvCache cache;
  std::thread worker;

  Impl(const LoadedModel& m, SchedulerOptions o)
      : model(m), options(o), cache(m.config(), o.max_context) {}

  int blocks_for(int positions) const { return (positions + options.block_size - 1) / options.block_size; }

  void step_done(int positions) {
    SchedulerStats copy;
    {
      std::lock_guard lock(mutex);
      stats.steps++;
      stats.kv_blocks_used = blocks_for(positions);
      copy = stats;
      copy.waiting = static_cast<int>(queue.size());
    }
    if (on_step && *on_step) (*on_step)(copy);
  }

  void finish(Pending& p, StreamEvent event) {
    event.kind = StreamEvent::Kind::Finished;
    event.prompt_tokens = static_cast<int>(p.request.prompt.size());
    {
      std::lock_guard lock(mutex);
      stats.requests_finished++;
      stats.running = 0;
      stats.kv_blocks_used = 0;
    }
    p.shared->push(std::move(event));
  }

  void run(Pending& p) {
    SequenceRequest& req = p.request;
    const Tokenizer& tokenizer = model.tokenizer();
    Sampler sampler(req.sampling);
    IncrementalDecoder decoder(tokenizer, /*skip_special=*/false);
    StopStringMatcher stops(req.stop_strings);
    std::vector<TokenId> history = req.prompt;
    std::vector<float> logits, raw;
    StreamEvent done;
    done.finish = FinishReason::Length;

    cache.clear();
    model.model().forward(req.prompt, cache, Logits::Last, logits);
    {
      std::lock_guard lock(mutex);
      stats.last_batch_size = 1;
    }
    step_done(cache.size());
    for (int step = 0; step < req.max_new_tokens; ++step) {
      if (p.shared->cancelled || stopping_now()) {
        done.cancelled = true;
        break;
      }
      if (req.top_logprobs >= 0) raw = logits;
      if (req.constraint) req.constraint->mask(logits, req.max_new_tokens - step);
      const TokenId next = sampler.sample(logits, history);
      history.push_back(next);
      done.completion_tokens++;
      {
        std::lock_guard lock(mutex);
        stats.generated_tokens++;
      }
      StreamEvent ev;
      ev.token = next;
      if (req.top_logprobs >= 0) fill_logprobs(tokenizer, raw, next, req.top_logprobs, ev);
      const bool is_stop = std::find(req.stop_ids.begin(), req.stop_ids.end(), next) != req.stop_ids.end();
      bool last = false;
      if (is_stop) {
        done.finish = FinishReason::Stop;
        last = true;
      } else {
        if (req.constraint && !req.constraint->accept(next)) {
          fail("the constraint rejected token {} that it allowed", next);
        }
        ev.text = stops.push(decoder.push(next));
        if (stops.stopped()) {
          done.finish = FinishReason::Stop;
          last = true;
        } else if (step + 1 == req.max_new_tokens) {
          last = true;
        } else if (cache.size() >= cache.capacity()) {
          done.finish = FinishReason::ContextFull;
          last = true;
        }
      }
      // Text still held back goes out with the last token (empty in the usual case).
      if (last && !stops.stopped()) {
        ev.text += stops.push(decoder.finish());
        ev.text += stops.flush();
      }
      p.shared->push(std::move(ev));
      if (last) break;
      const TokenId one[1] = {next};
      model.model().forward(one, cache, Logits::Last, logits);
      step_done(cache.size());
    }
    finish(p, std::move(done));
  }

  bool stopping_now() {
    std::lock_guard lock(mutex);
    return stopping;
  }

  void loop() {
    for (;;) {
      Pending p;
      {
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        p = std::move(queue.front());
        queue.pop_front();
        stats.waiting = static_cast<int>(queue.size());
        if (!p.shared->cancelled && !stopping) stats.running = 1;
      }
      if (p.shared->cancelled || stopping_now()) {
        StreamEvent ev;
        ev.cancelled = true;
        finish(p, std::move(ev));
        continue;
      }
      try {
        run(p);
      } catch (const std::exception& e) {
        StreamEvent ev;
        ev.error = e.what();
        ev.finish = FinishReason::Stop;
        finish(p, std::move(ev));
      }
    }
  }
};

Scheduler::Scheduler(const LoadedModel& model, SchedulerOptions options) {
  const LlamaConfig& config = model.config();
  if (options.block_size <= 0) fail("block_size must be > 0, got {}", options.block_size);
  if (options.max_batch <= 0) fail("max_batch must be > 0, got {}", options.max_batch);
  if (options.max_queue < 0) fail("max_queue must be >= 0, got {}", options.max_queue);
  if (options.prefill_chunk <= 0) fail("prefill_chunk must be > 0, got {}", options.prefill_chunk);
  if (options.max_context <= 0) fail("max_context must be > 0, got {}", options.max_context);
  if (config.max_position_embeddings > 0) {
    options.max_context = std::min(options.max_context, config.max_position_embeddings);
  }
  if (options.kv_tokens < 0) fail("kv_tokens must be >= 0, got {}", options.kv_tokens);
  if (options.kv_tokens == 0) {
    options.kv_tokens = static_cast<int>(
        std::min<long long>(static_cast<long long>(options.max_context) * options.max_batch, 65536));
  }
  options.kv_tokens = std::max(options.kv_tokens / options.block_size, 1) * options.block_size;
  options_ = options;
  impl_ = std::make_unique<Impl>(model, options);
  impl_->stats.kv_blocks_total = options.kv_tokens / options.block_size;
  impl_->stats.block_size = options.block_size;
  impl_->on_step = &on_step;
  impl_->worker = std::thread([this] { impl_->loop(); });
}

Scheduler::~Scheduler() {
  std::deque<Impl::Pending> dropped;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    dropped.swap(impl_->queue);
  }
  impl_->cv.notify_all();
  for (auto& p : dropped) {
    StreamEvent ev;
    ev.kind = StreamEvent::Kind::Finished;
    ev.cancelled = true;
    ev.prompt_tokens = static_cast<int>(p.request.prompt.size());
    p.shared->push(std::move(ev));
  }
  if (impl_->worker.joinable()) impl_->worker.join();
}

std::unique_ptr<RequestStream> Scheduler::submit(SequenceRequest request) {
  const LlamaConfig& config = impl_->model.config();
  if (request.prompt.empty()) fail("the prompt is empty");
  if (request.max_new_tokens < 0) fail("max_new_tokens must be >= 0, got {}", request.max_new_tokens);
  if (request.top_logprobs < -1 || request.top_logprobs > 20) {
    fail("top_logprobs must be -1 (off) or 0..20, got {}", request.top_logprobs);
  }
  for (TokenId id : request.prompt) {
    if (id < 0 || id >= config.vocab_size) {
      fail("prompt token id {} is outside the vocabulary (size {})", id, config.vocab_size);
    }
  }
  request.sampling.validate();
  const long long need = static_cast<long long>(request.prompt.size()) + request.max_new_tokens;
  if (need > options_.max_context) {
    fail("the prompt ({} tokens) plus max_new_tokens ({}) exceeds the context of {} positions",
         request.prompt.size(), request.max_new_tokens, options_.max_context);
  }
  if (need > options_.kv_tokens) {
    fail("the prompt ({} tokens) plus max_new_tokens ({}) exceeds the whole KV cache of {} positions",
         request.prompt.size(), request.max_new_tokens, options_.kv_tokens);
  }
  auto shared = std::make_shared<RequestStream::Shared>();
  uint64_t id = 0;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) fail("the scheduler is shutting down");
    if (static_cast<int>(impl_->queue.size()) >= options_.max_queue) {
      throw QueueFull(fmt::format("the queue is full ({} requests waiting)", impl_->queue.size()));
    }
    id = impl_->next_id++;
    impl_->stats.prompt_tokens += request.prompt.size();
    impl_->queue.push_back(Impl::Pending{id, std::move(request), shared});
    impl_->stats.waiting = static_cast<int>(impl_->queue.size());
  }
  impl_->cv.notify_all();
  return std::unique_ptr<RequestStream>(new RequestStream(id, std::move(shared)));
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(impl_->mutex);
  SchedulerStats s = impl_->stats;
  s.waiting = static_cast<int>(impl_->queue.size());
  return s;
}

}  // namespace llama31
