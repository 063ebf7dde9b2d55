// Work chunks shared out over a team of threads: each thread first takes its own contiguous share, front
// to back, and when that is done takes chunks from the back of the share with the most left.
//
// Decode's products are a stream of weights from memory: a static split keeps each thread's stream in one
// run, but on a shared machine the two cores do not get the same bandwidth (on the 2-core VM one thread
// finished its half of the output head up to 17% earlier and then waited). A dynamic schedule hands out
// chunks in an interleaved order instead and its guided form starts with half the work each. Here a thread
// that runs ahead takes over the far end of a slower thread's share, so both finish within a chunk of
// each other and each still reads its own share in order. Every chunk is taken exactly once; which thread
// takes it does not change what it computes.
//
// Written here because OpenMP has no such schedule (static, dynamic and guided only) and libgomp is the
// team the kernels already run on.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace llama31::kernels {

class ChunkShares {
 public:
  // Chunks [0, count) over `threads` threads (at least 1): thread t's own share is
  // [count * t / threads, count * (t + 1) / threads).
  ChunkShares(int count, int threads) : threads_(threads < 1 ? 1 : threads), shares_(new Share[static_cast<size_t>(threads_)]) {
    for (int t = 0; t < threads_; ++t) {
      const auto front = static_cast<uint64_t>(static_cast<int64_t>(count) * t / threads_);
      const auto back = static_cast<uint64_t>(static_cast<int64_t>(count) * (t + 1) / threads_);
      shares_[static_cast<size_t>(t)].front_back.store(front | back << 32, std::memory_order_relaxed);
    }
  }

  // The next chunk for thread t: from the front of its own share while any is left, then from the back
  // of the fullest other share; -1 when every chunk has been taken. A thread numbered past the shares
  // (a larger team than announced) has no share of its own and only helps.
  int next(int t) {
    if (t >= 0 && t < threads_) {
      if (const int own = take(shares_[static_cast<size_t>(t)], false); own >= 0) return own;
    }
    for (;;) {
      Share* fullest = nullptr;
      uint64_t most = 0;
      for (int v = 0; v < threads_; ++v) {
        const uint64_t left = remaining(shares_[static_cast<size_t>(v)].front_back.load(std::memory_order_relaxed));
        if (left > most) {
          most = left;
          fullest = &shares_[static_cast<size_t>(v)];
        }
      }
      if (fullest == nullptr) return -1;
      if (const int stolen = take(*fullest, true); stolen >= 0) return stolen;
    }
  }

 private:
  // One share as front | back << 32, updated in one compare-and-swap so a front and a back taker never
  // both get the last chunk. On its own cache line: the owner updates it once per chunk.
  struct alignas(64) Share {
    std::atomic<uint64_t> front_back{0};
  };

  static uint64_t remaining(uint64_t v) {
    const uint64_t front = v & 0xffffffffu, back = v >> 32;
    return back > front ? back - front : 0;
  }

  // A chunk off the front (or the back) of the share; -1 once it is empty.
  static int take(Share& share, bool from_back) {
    uint64_t v = share.front_back.load(std::memory_order_relaxed);
    while (remaining(v) > 0) {
      const uint64_t taken = from_back ? v - (uint64_t{1} << 32) : v + 1;
      if (share.front_back.compare_exchange_weak(v, taken, std::memory_order_relaxed)) {
        return static_cast<int>(from_back ? (v >> 32) - 1 : v & 0xffffffffu);
      }
    }
    return -1;
  }

  int threads_;
  std::unique_ptr<Share[]> shares_;
};

}  // namespace llama31::kernels
