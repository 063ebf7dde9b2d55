// Measures sustained memory read bandwidth: the best of several passes summing a buffer far larger than
// the caches, split over T OpenMP threads. Prints {"read_gb_per_s": x, "threads": T, "bytes": n}.
// Build: g++ -O3 -march=native -fopenmp bandwidth_probe.cpp -o bandwidth_probe
// Usage: bandwidth_probe [threads] [MiB]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 && std::atoi(argv[1]) > 0 ? std::atoi(argv[1]) : omp_get_max_threads();
  const size_t mib = argc > 2 && std::atoi(argv[2]) > 0 ? static_cast<size_t>(std::atoi(argv[2])) : 1024;
  const size_t count = mib * 1024 * 1024 / sizeof(double);
  std::vector<double> buffer(count);
  omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < count; ++i) buffer[i] = static_cast<double>(i & 1023);  // first touch per thread
  double best = 0.0, checksum = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < count; i += 4) total += buffer[i] + buffer[i + 1] + buffer[i + 2] + buffer[i + 3];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    checksum += total;
    const double gbps = static_cast<double>(count * sizeof(double)) / seconds / 1e9;
    if (gbps > best) best = gbps;
  }
  std::printf("{\"read_gb_per_s\": %.3f, \"threads\": %d, \"bytes\": %zu, \"checksum\": %.0f}\n", best, threads,
              count * sizeof(double), checksum);
  return 0;
}
