// Continuous batching: many requests share one model. A worker thread runs steps; each step admits
// waiting requests into the running batch (up to max_batch sequences, as KV room allows), gives every
// decoding sequence one token and the prefilling ones chunks of their prompts (at most prefill_chunk
// positions per step in all, so a long prompt never stalls running streams), runs all of it in one
// forward pass, and retires sequences that finished, so short requests never wait for long ones.
//
// KV cache: a pool of kv_tokens / block_size blocks of block_size positions; each sequence holds a block
// table and takes blocks as it fills. A request is admitted only when the pool can hold it at its full
// length (prompt + max_new_tokens), so a running sequence never waits for memory. Prefix cache: full
// blocks of prompt tokens are published, and a later prompt that starts with the same tokens adopts them
// instead of computing them (a shared system prompt is computed once); unheld cached blocks are evicted
// least recently released first.
//
// Determinism: a request's greedy output is the same whether it runs alone or in a full batch, and
// whether its prefix came from the cache: LlamaModel::forward_batch computes each sequence's rows
// independently of the others, and prompts are only ever cut into chunks of two positions or more.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/sampler.h"
#include "engine/token_constraint.h"
#include "util/error.h"

namespace llama31 {

struct SchedulerOptions {
  // KV positions shared by all sequences; 0: max_context * max_batch, at most 65536 and at most what half
  // of the machine's memory holds.
  int kv_tokens = 0;
  int block_size = 16;         // positions per KV block
  int max_batch = 16;          // sequences decoding at once
  int max_queue = 64;          // waiting requests; submit() throws QueueFull beyond
  int prefill_chunk = 256;     // prompt positions per step, across requests (keeps streams flowing)
  int max_context = 8192;      // positions per sequence (prompt + generation), at most the model's limit
  bool prefix_cache = true;    // reuse cached prompt-prefix blocks across requests
};

struct TokenLogprob {
  TokenId token = 0;
  std::string text;  // the token's text (may be a partial UTF-8 sequence)
  double logprob = 0;
};

struct SequenceRequest {
  std::vector<TokenId> prompt;  // tokenized, BOS included
  int max_new_tokens = 256;
  SamplingParams sampling;
  std::vector<TokenId> stop_ids;          // end the sequence when sampled; not part of the text
  std::vector<std::string> stop_strings;  // end before the first occurrence in the text
  int top_logprobs = -1;                  // -1: no logprobs; 0..20: the chosen token's and this many others
  std::unique_ptr<TokenConstraint> constraint;  // optional grammar for the generated tokens
};

// One step's output for one sequence, or its end.
struct StreamEvent {
  enum class Kind { Token, Finished };
  Kind kind = Kind::Token;
  // Token: the id sampled, and the text that became final with it (held back while it might be part of
  // a stop string or an incomplete UTF-8 character; may be empty).
  TokenId token = 0;
  std::string text;
  std::optional<TokenLogprob> logprob;    // when top_logprobs >= 0
  std::vector<TokenLogprob> top_logprobs;
  // Finished: why, and counts. The stop token (if any) arrives as a Token event with empty text first.
  FinishReason finish = FinishReason::Length;
  bool cancelled = false;
  std::string error;                      // non-empty if the sequence failed (the server stays up)
  int prompt_tokens = 0;
  int cached_prompt_tokens = 0;           // prompt positions served from the prefix cache
  int completion_tokens = 0;
};

// The consumer side of one submitted request. Thread-safe; destroying it cancels the request.
class RequestStream {
 public:
  ~RequestStream();
  // Blocks until the next event; nullopt once the Finished event has been returned.
  std::optional<StreamEvent> next();
  // Like next() but gives up after timeout (returns nullopt with timed_out() true).
  std::optional<StreamEvent> next_for(std::chrono::milliseconds timeout);
  bool timed_out() const { return timed_out_; }
  // Frees the sequence's batch slot and KV blocks at the next step; a Finished event with cancelled follows.
  void cancel();
  uint64_t id() const { return id_; }

 private:
  friend class Scheduler;
  struct Shared;
  RequestStream(uint64_t id, std::shared_ptr<Shared> shared) : id_(id), shared_(std::move(shared)) {}
  uint64_t id_;
  std::shared_ptr<Shared> shared_;
  bool done_ = false;
  bool timed_out_ = false;
};

struct SchedulerStats {
  int running = 0;          // sequences in the batch
  int waiting = 0;          // queued, not yet admitted
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;            // held by sequences
  int kv_blocks_cached = 0;          // holding published prompt prefixes (held or not)
  int block_size = 0;
  uint64_t requests_finished = 0;
  uint64_t prompt_tokens = 0;        // prompt positions submitted
  uint64_t prefix_cache_hits = 0;    // prompt positions reused from the prefix cache
  uint64_t generated_tokens = 0;
  uint64_t steps = 0;
  int last_batch_size = 0;           // sequences that got a token in the most recent step
  int last_step_positions = 0;       // positions (prompt chunks and decode rows) in its forward pass
};

// Thrown by submit() when max_queue requests are already waiting (the server answers 429/503).
struct QueueFull : Error {
  using Error::Error;
};

class Scheduler {
 public:
  // Starts the worker thread. The model must outlive the scheduler.
  Scheduler(const LoadedModel& model, SchedulerOptions options);
  ~Scheduler();  // cancels everything and joins the worker
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Errors (llama31::Error, before queueing): empty prompt, a prompt plus max_new_tokens
  // beyond max_context or beyond the whole KV cache, a token id outside the vocabulary, invalid sampling.
  // QueueFull when the queue is full.
  std::unique_ptr<RequestStream> submit(SequenceRequest request);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

  // Called on the worker thread after every step (for metrics); set before submitting.
  std::function<void(const SchedulerStats&)> on_step;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  SchedulerOptions options_;
};

}  // namespace llama31
