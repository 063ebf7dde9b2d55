// Scheduler: a worker thread keeps a running batch of up to max_batch sequences. Each step admits
// queued requests (free slot, KV room, prefill budget), prefills them, decodes one token for every
// running sequence in one batched forward pass, and retires the finished; text follows generate()'s rules.
// KV caches are contiguous per sequence, reserved for prompt + max_new_tokens (not paged yet), and
// prompt prefixes are not shared between requests yet.
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
  // A sequence in the running batch: its own KV cache (sized for prompt + max_new_tokens), sampler and
  // text state. logits holds the distribution for the next token to sample.
  struct Running {
    Running(const LoadedModel& m, Pending pending)
        : p(std::move(pending)),
          sampler(p.request.sampling),
          decoder(m.tokenizer(), /*skip_special=*/false),
          stops(p.request.stop_strings),
          history(p.request.prompt),
          cache(m.config(), static_cast<int>(p.request.prompt.size()) + std::max(p.request.max_new_tokens, 1)) {}
    Pending p;
    Sampler sampler;
    IncrementalDecoder decoder;
    StopStringMatcher stops;
    std::vector<TokenId> history;
    KvCache cache;
    std::vector<float> logits;
    StreamEvent done;
    int step = 0;
    bool finished = false;
    TokenId next = 0;  // the token to feed in the next decode step
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
  std::vector<std::unique_ptr<Running>> running;
  std::thread worker;

  Impl(const LoadedModel& m, SchedulerOptions o) : model(m), options(o) {}

  static int positions_for(const SequenceRequest& r) {
    return static_cast<int>(r.prompt.size()) + std::max(r.max_new_tokens, 1);
  }
  int blocks_for(int positions) const { return (positions + options.block_size - 1) / options.block_size; }

  void step_done(int batch) {
    SchedulerStats copy;
    {
      std::lock_guard lock(mutex);
      stats.steps++;
      stats.running = static_cast<int>(running.size());
      stats.last_batch_size = batch;
      int blocks = 0;
      for (const auto& r : running) blocks += blocks_for(r->cache.size());
      stats.kv_blocks_used = blocks;
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
    }
    p.shared->push(std::move(event));
  }

  // Samples the next token from r.logits and streams it; marks r finished when it ends the sequence.
  void advance(Running& r) {
    SequenceRequest& req = r.p.request;
    if (r.step >= req.max_new_tokens) {  // max_new_tokens == 0
      r.finished = true;
      return;
    }
    if (r.p.shared->cancelled) {
      r.done.cancelled = true;
      r.finished = true;
      return;
    }
    std::vector<float> raw;
    if (req.top_logprobs >= 0) raw = r.logits;
    if (req.constraint) req.constraint->mask(r.logits, req.max_new_tokens - r.step);
    const TokenId next = r.sampler.sample(r.logits, r.history);
    r.history.push_back(next);
    r.done.completion_tokens++;
    {
      std::lock_guard lock(mutex);
      stats.generated_tokens++;
    }
    StreamEvent ev;
    ev.token = next;
    if (req.top_logprobs >= 0) fill_logprobs(model.tokenizer(), raw, next, req.top_logprobs, ev);
    const bool is_stop = std::find(req.stop_ids.begin(), req.stop_ids.end(), next) != req.stop_ids.end();
    bool last = false;
    if (is_stop) {
      r.done.finish = FinishReason::Stop;
      last = true;
    } else {
      if (req.constraint && !req.constraint->accept(next)) {
        fail("the constraint rejected token {} that it allowed", next);
      }
      ev.text = r.stops.push(r.decoder.push(next));
      if (r.stops.stopped()) {
        r.done.finish = FinishReason::Stop;
        last = true;
      } else if (r.step + 1 == req.max_new_tokens) {
        last = true;
      } else if (r.cache.size() >= r.cache.capacity()) {
        r.done.finish = FinishReason::ContextFull;
        last = true;
      }
    }
    // Text still held back goes out with the last token (empty in the usual case).
    if (last && !r.stops.stopped()) {
      ev.text += r.stops.push(r.decoder.finish());
      ev.text += r.stops.flush();
    }
    r.p.shared->push(std::move(ev));
    r.step++;
    r.next = next;
    r.finished = last;
  }

  // Moves queued requests into the batch while there is a free slot, KV room and prefill budget left
  // (first come, first served). Returns the admitted ones; false from the wait means stop.
  std::vector<std::unique_ptr<Running>> admit() {
    std::vector<Pending> taken;
    {
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return stopping || !queue.empty() || !running.empty(); });
      if (stopping) return {};
      long long reserved = 0;
      for (const auto& r : running) reserved += r->cache.capacity();
      int prefill = 0;
      while (!queue.empty() && static_cast<int>(running.size() + taken.size()) < options.max_batch) {
        const Pending& front = queue.front();
        const int need = positions_for(front.request);
        if (!front.shared->cancelled) {
          if (reserved + need > options.kv_tokens) break;
          if (prefill > 0 && prefill + static_cast<int>(front.request.prompt.size()) > options.prefill_chunk) break;
          reserved += need;
          prefill += static_cast<int>(front.request.prompt.size());
        }
        taken.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      stats.waiting = static_cast<int>(queue.size());
    }
    std::vector<std::unique_ptr<Running>> admitted;
    for (auto& p : taken) {
      if (p.shared->cancelled) {
        StreamEvent ev;
        ev.cancelled = true;
        finish(p, std::move(ev));
        continue;
      }
      admitted.push_back(std::make_unique<Running>(model, std::move(p)));
    }
    return admitted;
  }

  void fail_sequence(Running& r, const std::exception& e) {
    r.done.error = e.what();
    r.done.finish = FinishReason::Stop;
    r.finished = true;
  }

  // One step: prefill the newly admitted sequences, then decode one token for every running one in a
  // single batched forward pass, then retire the finished.
  void step(std::vector<std::unique_ptr<Running>> admitted) {
    for (auto& r : admitted) {
      try {
        model.model().forward(r->p.request.prompt, r->cache, Logits::Last, r->logits);
        advance(*r);
      } catch (const std::exception& e) {
        fail_sequence(*r, e);
      }
      std::lock_guard lock(mutex);
      running.push_back(std::move(r));
    }
    std::vector<Running*> batch;
    for (auto& r : running) {
      if (r->finished) continue;
      if (r->p.shared->cancelled) {
        r->done.cancelled = true;
        r->finished = true;
        continue;
      }
      batch.push_back(r.get());
    }
    if (!batch.empty()) {
      std::vector<TokenId> tokens;
      std::vector<KvCache*> caches;
      for (Running* r : batch) {
        tokens.push_back(r->next);
        caches.push_back(&r->cache);
      }
      std::vector<float> logits;
      try {
        model.model().forward_decode_batch(tokens, caches, logits);
        const size_t vocab = static_cast<size_t>(model.config().vocab_size);
        for (size_t i = 0; i < batch.size(); ++i) {
          Running& r = *batch[i];
          r.logits.assign(logits.begin() + static_cast<std::ptrdiff_t>(i * vocab),
                          logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * vocab));
          try {
            advance(r);
          } catch (const std::exception& e) {
            fail_sequence(r, e);
          }
        }
      } catch (const std::exception& e) {
        for (Running* r : batch) fail_sequence(*r, e);
      }
    }
    std::vector<std::unique_ptr<Running>> retired;
    {
      std::lock_guard lock(mutex);
      for (auto& r : running) {
        if (r->finished) retired.push_back(std::move(r));
      }
      std::erase(running, nullptr);
      stats.running = static_cast<int>(running.size());
      int blocks = 0;
      for (const auto& r : running) blocks += blocks_for(r->cache.size());
      stats.kv_blocks_used = blocks;  // consistent before any Finished event is seen
    }
    step_done(static_cast<int>(batch.size()));
    for (auto& r : retired) finish(r->p, std::move(r->done));
  }

  void loop() {
    for (;;) {
      auto admitted = admit();
      if (stopping_now()) break;
      step(std::move(admitted));
    }
    for (auto& r : running) {
      r->done.cancelled = true;
      finish(r->p, std::move(r->done));
    }
    running.clear();
  }

  bool stopping_now() {
    std::lock_guard lock(mutex);
    return stopping;
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
