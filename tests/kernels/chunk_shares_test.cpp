// kernels::ChunkShares, the split of decode's product chunks over the team: each thread's own share comes
// front to back, a thread with nothing left takes the far end of the fullest share, and under real
// contention every chunk is handed out exactly once.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "kernels/chunk_shares.h"

namespace llama31 {
namespace {

using kernels::ChunkShares;

std::vector<int> drain(ChunkShares& shares, int thread) {
  std::vector<int> taken;
  for (int c = shares.next(thread); c >= 0; c = shares.next(thread)) taken.push_back(c);
  return taken;
}

TEST(ChunkShares, AThreadAloneTakesItsShareInOrderThenTheOthersFromTheirBacks) {
  ChunkShares shares(10, 3);  // shares [0, 3), [3, 6), [6, 10)
  EXPECT_EQ(drain(shares, 1), (std::vector<int>{3, 4, 5, 9, 2, 8, 1, 7, 0, 6}));
  EXPECT_EQ(shares.next(0), -1);
  EXPECT_EQ(shares.next(2), -1);
}

TEST(ChunkShares, ASlowThreadKeepsTheFrontOfItsShare) {
  ChunkShares shares(8, 2);  // [0, 4) and [4, 8)
  EXPECT_EQ(shares.next(1), 4);
  EXPECT_EQ(shares.next(0), 0);  // the slow thread's first chunk
  EXPECT_EQ(drain(shares, 1), (std::vector<int>{5, 6, 7, 3, 2, 1}));
  EXPECT_EQ(shares.next(0), -1);
}

TEST(ChunkShares, EmptyAndTinyCounts) {
  ChunkShares none(0, 2);
  EXPECT_EQ(none.next(0), -1);
  EXPECT_EQ(none.next(1), -1);
  ChunkShares one(1, 4);  // three threads without a share of their own
  EXPECT_EQ(one.next(0), 0);
  EXPECT_EQ(one.next(3), -1);
  ChunkShares solo(3, 0);  // a team of zero is taken as one thread
  EXPECT_EQ(drain(solo, 0), (std::vector<int>{0, 1, 2}));
  ChunkShares bigger_team(4, 2);
  EXPECT_EQ(bigger_team.next(5), 1);  // a thread past the shares only helps: the back of the first fullest
}

TEST(ChunkShares, ThreadsRacingTakeEveryChunkExactlyOnce) {
  for (const int threads : {2, 3, 4}) {
    for (const int count : {1, 2, 7, 64, 5000}) {
      ChunkShares shares(count, threads);
      std::vector<std::atomic<int>> times(static_cast<size_t>(count));
      std::vector<std::vector<int>> by_thread(static_cast<size_t>(threads));
      std::atomic<bool> go{false};
      std::vector<std::thread> team;
      for (int t = 0; t < threads; ++t) {
        team.emplace_back([&, t] {
          while (!go.load()) {
          }
          for (int c = shares.next(t); c >= 0; c = shares.next(t)) {
            times[static_cast<size_t>(c)].fetch_add(1);
            by_thread[static_cast<size_t>(t)].push_back(c);
          }
        });
      }
      go.store(true);
      for (std::thread& th : team) th.join();
      for (int c = 0; c < count; ++c) {
        ASSERT_EQ(times[static_cast<size_t>(c)].load(), 1) << "chunk " << c << " of " << count << ", " << threads << " threads";
      }
      // Whatever a thread stole, its own chunks came to it front to back.
      for (int t = 0; t < threads; ++t) {
        const int begin = count * t / threads, end = count * (t + 1) / threads;
        int last_own = begin - 1;
        for (const int c : by_thread[static_cast<size_t>(t)]) {
          if (c < begin || c >= end) continue;
          EXPECT_GT(c, last_own) << "thread " << t;
          last_own = c;
        }
      }
    }
  }
}

}  // namespace
}  // namespace llama31
