// kernels::read_sweep, the read the bench times for its bandwidth figure: every byte of every region read
// exactly once whatever the level, the thread count and however regions and shares fall against cache
// lines (the regions below leave partial lines, words and 256-byte steps everywhere). Its
// XOR checksum is compared with a one-thread word-by-word loop over random bytes: a word read twice
// cancels out and a word skipped is missing, so either changes the result.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace llama31 {
namespace {

// The contract written out plainly: each region's 64-bit words, the last partial one zero-padded.
uint64_t expected_checksum(std::span<const std::span<const std::byte>> regions) {
  uint64_t total = 0;
  for (const auto& region : regions) {
    for (size_t i = 0; i < region.size(); i += 8) {
      uint64_t word = 0;
      std::memcpy(&word, region.data() + i, std::min<size_t>(8, region.size() - i));
      total ^= word;
    }
  }
  return total;
}

class ThreadCount {
 public:
  explicit ThreadCount(int n) : saved_(kernels::num_threads()) { kernels::set_num_threads(n); }
  ~ThreadCount() { kernels::set_num_threads(saved_); }

 private:
  int saved_;
};

TEST(ReadSweep, ReadsEveryByteOnceForAnyThreadCountAndRegionLayout) {
  std::mt19937_64 rng(7);
  std::vector<std::byte> memory(1 << 20);
  for (auto& b : memory) b = static_cast<std::byte>(rng());
  // Regions of odd sizes at odd offsets, one empty, one shorter than a cache line, one of 700 KB.
  const std::vector<std::pair<size_t, size_t>> layout = {
      {3, 1000}, {1009, 0}, {1013, 61}, {1100, 4096}, {5203, 700001}, {705300, 129}, {706000, 300000}};
  std::vector<std::span<const std::byte>> regions;
  for (const auto& [offset, size] : layout) regions.emplace_back(memory.data() + offset, size);
  const uint64_t expected = expected_checksum(regions);
  ASSERT_NE(expected, 0u);
  const std::string active = kernels::active_isa();
  for (const std::string& level : kernels::available_isas()) {  // each level's loads, scalar included
    kernels::set_isa(level);
    for (const int threads : {1, 2, 3, 5, 8}) {
      const ThreadCount scoped(threads);
      EXPECT_EQ(kernels::read_sweep(regions), expected) << level << ", " << threads << " threads";
    }
  }
  kernels::set_isa(active);
  // A region read twice cancels out: the checksum sees each byte's count, not just its presence.
  std::vector<std::span<const std::byte>> twice = regions;
  twice.push_back(regions[4]);
  const ThreadCount scoped(2);
  EXPECT_EQ(kernels::read_sweep(twice), expected ^ expected_checksum(std::span(&regions[4], 1)));
  EXPECT_EQ(kernels::read_sweep({}), 0u);
}

}  // namespace
}  // namespace llama31
