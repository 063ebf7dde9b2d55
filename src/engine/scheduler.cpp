// Scheduler: a worker thread keeps a running batch of up to max_batch sequences. Each step gives every
// decoding sequence one token and the prefilling ones chunks of their prompts (prefill_chunk positions
// in all), runs them in one forward pass, streams the sampled tokens and retires the finished; text
// follows generate()'s rules. KV blocks come from one pool; full blocks of prompt tokens are published
// for later prompts with the same prefix.
#include "engine/scheduler.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include <unistd.h>

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
  // A sequence in the running batch: its KV cache (block table on the pool, at most prompt +
  // max_new_tokens positions), sampler and text state. While prefilled < prompt size it is still
  // prefilling; then logits holds the distribution for the next token to sample.
  struct Running {
    Running(const LoadedModel& m, KvBlockPool& pool, Pending pending)
        : p(std::move(pending)),
          sampler(p.request.sampling),
          decoder(m.tokenizer(), /*skip_special=*/false),
          stops(p.request.stop_strings),
          history(p.request.prompt),
          cache(pool, positions_for(p.request)) {}
    int prompt_size() const { return static_cast<int>(p.request.prompt.size()); }
    bool prefilling() const { return prefilled < prompt_size(); }
    Pending p;
    Sampler sampler;
    IncrementalDecoder decoder;
    StopStringMatcher stops;
    std::vector<TokenId> history;
    KvCache cache;
    std::vector<float> logits;
    StreamEvent done;
    int prefilled = 0;   // prompt positions in the cache
    int published = 0;   // prompt blocks in the prefix cache (adopted or published)
    int step = 0;
    bool finished = false;
    TokenId next = 0;  // the token to feed in the next decode step
  };

  const LoadedModel& model;
  SchedulerOptions options;
  KvBlockPool pool;  // used by the worker thread only
  mutable std::mutex mutex;
  std::condition_variable cv;
  std::deque<Pending> queue;
  bool stopping = false;
  uint64_t next_id = 1;
  SchedulerStats stats;
  std::function<void(const SchedulerStats&)>* on_step = nullptr;
  std::vector<std::unique_ptr<Running>> running;
  std::thread worker;

  Impl(const LoadedModel& m, SchedulerOptions o)
      : model(m), options(o), pool(m.config(), o.kv_tokens / o.block_size, o.block_size) {}

  static int positions_for(const SequenceRequest& r) {
    return static_cast<int>(r.prompt.size()) + std::max(r.max_new_tokens, 1);
  }
  int blocks_for(int positions) const { return (positions + options.block_size - 1) / options.block_size; }
  // Blocks a running sequence may still take from the pool before it ends.
  int future_blocks(const Running& r) const {
    return blocks_for(r.cache.capacity()) - static_cast<int>(r.cache.blocks().size());
  }

  // Called with the mutex held.
  void update_kv_stats() {
    stats.running = static_cast<int>(running.size());
    stats.kv_blocks_used = pool.used_blocks();
    stats.kv_blocks_cached = pool.cached_blocks();
  }

  void step_done(int batch, int positions) {
    SchedulerStats copy;
    {
      std::lock_guard lock(mutex);
      stats.steps++;
      stats.last_batch_size = batch;
      stats.last_step_positions = positions;
      update_kv_stats();
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

  // The cached blocks that hold a prefix of the prompt, retained. At least two prompt positions are left
  // to compute, so the rest is a prefill chunk (never a one-token decode row) as it would be with an
  // empty cache: the sequence's numbers do not depend on what is cached.
  std::vector<int> cached_prefix(const std::vector<TokenId>& prompt) {
    std::vector<int> blocks;
    if (!options.prefix_cache) return blocks;
    const int bs = options.block_size;
    const int usable = (static_cast<int>(prompt.size()) - 2) / bs;
    for (int b = 0; b < usable; ++b) {
      const int block = pool.lookup(blocks.empty() ? -1 : blocks.back(),
                                    std::span(prompt).subspan(static_cast<size_t>(b) * bs, static_cast<size_t>(bs)));
      if (block < 0) break;
      blocks.push_back(block);
    }
    return blocks;
  }

  // Moves queued requests into the batch, first come first served, while there is a free slot and the
  // pool can hold every admitted sequence at its full length (so a running sequence never waits for a
  // block). Returns false when the scheduler stops.
  bool admit() {
    std::vector<Pending> cancelled;
    {
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return stopping || !queue.empty() || !running.empty(); });
      if (stopping) return false;
      int committed = 0;
      for (const auto& r : running) committed += future_blocks(*r);
      while (!queue.empty() && static_cast<int>(running.size()) < options.max_batch) {
        Pending& front = queue.front();
        if (front.shared->cancelled) {
          cancelled.push_back(std::move(front));
          queue.pop_front();
          continue;
        }
        std::vector<int> prefix = cached_prefix(front.request.prompt);
        const int need = blocks_for(positions_for(front.request)) - static_cast<int>(prefix.size());
        if (committed + need > pool.available_blocks()) {
          for (auto it = prefix.rbegin(); it != prefix.rend(); ++it) pool.release(*it);
          break;
        }
        committed += need;
        auto r = std::make_unique<Running>(model, pool, std::move(front));
        queue.pop_front();
        r->cache.adopt_prefix(prefix);
        r->prefilled = r->cache.size();
        r->published = static_cast<int>(prefix.size());
        r->done.cached_prompt_tokens = r->prefilled;
        stats.prefix_cache_hits += static_cast<uint64_t>(r->prefilled);
        running.push_back(std::move(r));
      }
      stats.waiting = static_cast<int>(queue.size());
      update_kv_stats();
    }
    for (auto& p : cancelled) {
      StreamEvent ev;
      ev.cancelled = true;
      finish(p, std::move(ev));
    }
    return true;
  }

  void fail_sequence(Running& r, const std::exception& e) {
    r.done.error = e.what();
    r.done.finish = FinishReason::Stop;
    r.finished = true;
  }

  // Prompt positions the next chunk of r takes out of budget: never a single position unless the prompt
  // has one, and never leaving a single one behind (see cached_prefix).
  static int chunk_size(int remaining, int budget) {
    if (remaining == 1) return budget >= 1 ? 1 : 0;
    int c = std::min(remaining, budget);
    if (c < 2) return 0;
    if (remaining - c == 1) c = c >= 3 ? c - 1 : remaining;
    return c;
  }

  // Publishes r's prompt blocks that the last pass filled.
  void publish_prompt_blocks(Running& r) {
    if (!options.prefix_cache) return;
    const int bs = options.block_size;
    const std::vector<int>& blocks = r.cache.blocks();
    const std::vector<TokenId>& prompt = r.p.request.prompt;
    for (; r.published < r.prefilled / bs; ++r.published) {
      const int b = r.published;
      pool.publish(blocks[static_cast<size_t>(b)], b == 0 ? -1 : blocks[static_cast<size_t>(b - 1)],
                   std::span(prompt).subspan(static_cast<size_t>(b) * bs, static_cast<size_t>(bs)));
    }
  }

  // One step: a token for every decoding sequence and prompt chunks for the prefilling ones, in one
  // forward pass; then sampling, streaming, and retiring the finished.
  void step() {
    std::vector<SequenceChunk> chunks;
    std::vector<Running*> owners;
    int budget = std::max(options.prefill_chunk, 2);
    for (auto& r : running) {
      if (r->finished) continue;
      if (r->p.shared->cancelled) {
        r->done.cancelled = true;
        r->finished = true;
        continue;
      }
      if (!r->prefilling()) {
        chunks.push_back(SequenceChunk{std::span(&r->next, 1), &r->cache, true});
        owners.push_back(r.get());
        continue;
      }
      const int remaining = r->prompt_size() - r->prefilled;
      const int c = chunk_size(remaining, budget);
      if (c == 0) continue;
      budget -= c;
      chunks.push_back(SequenceChunk{std::span(r->p.request.prompt).subspan(static_cast<size_t>(r->prefilled),
                                                                            static_cast<size_t>(c)),
                                     &r->cache, c == remaining});
      owners.push_back(r.get());
    }
    int decoded = 0;
    int positions = 0;
    for (const SequenceChunk& c : chunks) positions += static_cast<int>(c.tokens.size());
    if (!chunks.empty()) {
      std::vector<float> logits;
      try {
        model.model().forward_batch(chunks, logits);
        const size_t vocab = static_cast<size_t>(model.config().vocab_size);
        size_t row = 0;
        for (size_t i = 0; i < chunks.size(); ++i) {
          Running& r = *owners[i];
          if (r.prefilling()) {
            r.prefilled += static_cast<int>(chunks[i].tokens.size());
            publish_prompt_blocks(r);
          }
          if (!chunks[i].logits) continue;
          r.logits.assign(logits.begin() + static_cast<std::ptrdiff_t>(row * vocab),
                          logits.begin() + static_cast<std::ptrdiff_t>((row + 1) * vocab));
          row++;
          decoded++;
          try {
            advance(r);
          } catch (const std::exception& e) {
            fail_sequence(r, e);
          }
        }
      } catch (const std::exception& e) {
        for (Running* r : owners) fail_sequence(*r, e);
      }
    }
    std::vector<std::unique_ptr<Running>> retired;
    {
      std::lock_guard lock(mutex);
      for (auto& r : running) {
        if (r->finished) retired.push_back(std::move(r));
      }
      std::erase(running, nullptr);
    }
    for (auto& r : retired) r->cache.clear();  // blocks back to the pool before anyone sees Finished
    {
      std::lock_guard lock(mutex);
      update_kv_stats();
    }
    step_done(decoded, positions);
    for (auto& r : retired) finish(r->p, std::move(r->done));
  }

  void loop() {
    while (admit()) step();
    for (auto& r : running) {
      r->done.cancelled = true;
      finish(r->p, std::move(r->done));
    }
    running.clear();
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
    long long tokens = std::min<long long>(static_cast<long long>(options.max_context) * options.max_batch, 65536);
    const long long per_token = 2LL * config.num_hidden_layers * config.num_key_value_heads * config.head_dim *
                                static_cast<long long>(sizeof(float));
    const long long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_size > 0 && per_token > 0) {
      tokens = std::min(tokens, std::max<long long>(pages * page_size / 2 / per_token, options.block_size));
    }
    options.kv_tokens = static_cast<int>(tokens);
  }
  options.kv_tokens = std::max(options.kv_tokens / options.block_size, 1) * options.block_size;
  options_ = options;
  impl_ = std::make_unique<Impl>(model, options);
  impl_->stats.kv_blocks_total = impl_->pool.num_blocks();
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
