// Measures sustained memory read bandwidth: the best of several passes reading a buffer far larger than
// the caches, split over T OpenMP threads. The pass XORs 64-bit words (associative, so -O3 vectorizes it
// and one core's arithmetic outruns memory; an earlier floating-point sum was a serial add chain that
// measured the adder's latency, 17-34 GB/s, below what llama.cpp itself reads). Prints {"read_gb_per_s": x, "threads": T, "bytes": n}.
// Build: g++ -O3 -march=native -fopenmp bandwidth_probe.cpp -o bandwidth_probe
// Usage: bandwidth_probe [threads] [MiB]
#include <omp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 && std::atoi(argv[1]) > 0 ? std::atoi(argv[1]) : omp_get_max_threads();
  const size_t mib = argc > 2 && std::atoi(argv[2]) > 0 ? static_cast<size_t>(std::atoi(argv[2])) : 1024;
  const size_t count = mib * 1024 * 1024 / sizeof(uint64_t);
  std::vector<uint64_t> buffer(count);
  omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; ++i) buffer[i] = i * 0x9e3779b97f4a7c15ull;  // first touch per thread
  double best = 0.0;
  uint64_t checksum = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    uint64_t total = 0;
#pragma omp parallel for schedule(static) reduction(^ : total)
    for (size_t i = 0; i < count; ++i) total ^= buffer[i];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    checksum ^= total + static_cast<uint64_t>(pass);
    const double gbps = static_cast<double>(count * sizeof(uint64_t)) / seconds / 1e9;
    if (gbps > best) best = gbps;
  }
  std::printf("{\"read_gb_per_s\": %.3f, \"threads\": %d, \"bytes\": %zu, \"checksum\": %llu}\n", best, threads,
              count * sizeof(uint64_t), static_cast<unsigned long long>(checksum));
  return 0;
}
