// Kernel micro-benchmarks: matmul decode (one row of x) and prefill (512 rows) at Llama 3.2 1B shapes
// (BF16, F16, F32, Q8_0, Q4_0 and the K-quants Q4_K and Q6_K),
// per instruction-set level and thread count, and the machine's plain memory-read bandwidth, so decode
// can be read as a fraction of it. Counters: bytes_per_second counts weight bytes (matmul) or buffer
// bytes (memory read); FLOP/s counts 2 * rows * out * in per matmul.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "util/dtype.h"

namespace {

using llama31::DType;
namespace kernels = llama31::kernels;

constexpr size_t kStreamBytes = size_t{256} << 20;  // enough copies of a matrix to defeat the caches

// Deterministic, finite weights in [-0.5, 0.5) of an [out][in] matrix stored as `type`.
std::vector<uint8_t> make_weights(DType type, int out, int in, uint32_t seed) {
  const size_t count = static_cast<size_t>(out) * static_cast<size_t>(in);
  if (type == DType::Q8_0 || type == DType::Q4_0) {
    const std::vector<uint8_t> floats = make_weights(DType::F32, out, in, seed);
    const size_t row = llama31::row_bytes(type, in);
    std::vector<uint8_t> bytes(static_cast<size_t>(out) * row);
    for (int o = 0; o < out; ++o) {
      const float* source = reinterpret_cast<const float*>(floats.data()) + static_cast<size_t>(o) * in;
      uint8_t* dst = bytes.data() + static_cast<size_t>(o) * row;
      if (type == DType::Q8_0) {
        llama31::quantize_row_q8_0(source, static_cast<size_t>(in), dst);
      } else {
        llama31::quantize_row_q4_0(source, static_cast<size_t>(in), dst);
      }
    }
    return bytes;
  }
  if (llama31::is_kquant_dtype(type)) {
    // K-quant super-blocks of random bytes (levels, scales, mins) with small f16 super-block scales:
    // the kernels' work does not depend on the values, and the reference quantizer is slow at these sizes.
    std::vector<uint8_t> bytes(static_cast<size_t>(out) * llama31::row_bytes(type, in));
    uint32_t state = seed * 2654435761u + 1u;
    for (uint8_t& b : bytes) {
      state = state * 1664525u + 1013904223u;
      b = static_cast<uint8_t>(state >> 24);
    }
    const size_t block = llama31::kquant_block_bytes(type);
    const uint16_t scale = llama31::f32_to_f16(1e-3f);
    for (size_t at = 0; at < bytes.size(); at += block) {
      if (type == DType::Q6_K) {
        std::memcpy(bytes.data() + at + 208, &scale, 2);
      } else {
        std::memcpy(bytes.data() + at, &scale, 2);
        std::memcpy(bytes.data() + at + 2, &scale, 2);
      }
    }
    return bytes;
  }
  std::vector<uint8_t> bytes(count * llama31::dtype_size(type));
  uint32_t state = seed * 2654435761u + 1u;
  for (size_t i = 0; i < count; ++i) {
    state = state * 1664525u + 1013904223u;
    const float value = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;
    if (type == DType::F32) {
      std::memcpy(bytes.data() + i * 4, &value, 4);
    } else {
      const uint16_t half = type == DType::BF16 ? llama31::f32_to_bf16(value) : llama31::f32_to_f16(value);
      std::memcpy(bytes.data() + i * 2, &half, 2);
    }
  }
  return bytes;
}

struct MatmulCase {
  std::string isa;
  DType type;
  int rows, out, in, threads;
};

void run_matmul(benchmark::State& state, const MatmulCase& c) {
  kernels::set_isa(c.isa);
  kernels::set_num_threads(c.threads);
  const size_t matrix_elements = static_cast<size_t>(c.out) * static_cast<size_t>(c.in);
  const size_t matrix_bytes = static_cast<size_t>(c.out) * llama31::row_bytes(c.type, c.in);
  // Decode streams weights from memory in the real model; rotate over copies so they are not cached.
  const size_t copies = c.rows <= 4 ? std::max<size_t>(1, kStreamBytes / matrix_bytes) : 1;
  std::vector<std::vector<uint8_t>> weights;
  // As a model load does: the types this level repacks (kernels::packed_weight_type) run as repacked.
  const DType run_type = kernels::packed_weight_type(c.type, c.out, c.in);
  for (size_t k = 0; k < copies; ++k) {
    weights.push_back(make_weights(c.type, c.out, c.in, static_cast<uint32_t>(k + 1)));
    if (run_type == c.type) continue;
    std::vector<uint8_t> packed(weights.back().size());
    if (run_type == DType::Q8_0_R16) llama31::pack_q8_0_r16(weights.back().data(), c.out, c.in, packed.data());
    if (run_type == DType::Q4_0_R16) llama31::pack_q4_0_r16(weights.back().data(), c.out, c.in, packed.data());
    weights.back() = std::move(packed);
  }
  if (run_type != c.type) state.SetLabel(std::string("as ") + std::string(llama31::dtype_name(run_type)));
  std::vector<float> x(static_cast<size_t>(c.rows) * static_cast<size_t>(c.in));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) / 97.0f - 0.5f;
  std::vector<float> y(static_cast<size_t>(c.rows) * static_cast<size_t>(c.out));
  size_t next = 0;
  for (auto _ : state) {
    kernels::matmul(x.data(), c.rows, weights[next].data(), run_type, c.out, c.in, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    next = next + 1 == copies ? 0 : next + 1;
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(matrix_bytes));
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * c.rows * static_cast<double>(matrix_elements),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void run_memory_read(benchmark::State& state, int threads) {
  // The read `llama31 bench` times beside decode (kernels::read_sweep: each thread streams its share
  // with the active level's widest loads), over one buffer.
  std::vector<std::byte> buffer(kStreamBytes);
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<std::byte>(i * 131 >> 3);
  const std::span<const std::byte> regions[1] = {buffer};
  kernels::set_num_threads(threads);
  for (auto _ : state) benchmark::DoNotOptimize(kernels::read_sweep(regions));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(kStreamBytes));
}

std::string type_name(DType type) { return std::string(llama31::dtype_name(type)); }

bool register_benchmarks() {
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark(("MemoryRead/256MiB/threads:" + std::to_string(threads)).c_str(),
                                 [threads](benchmark::State& state) { run_memory_read(state, threads); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  struct Shape {
    int in, out;
  };
  const Shape decode_shapes[] = {{2048, 2048}, {2048, 512}, {2048, 8192}, {8192, 2048}, {2048, 128256}};
  const Shape prefill_shapes[] = {{2048, 2048}, {2048, 512}, {2048, 8192}, {8192, 2048}};
  std::vector<MatmulCase> cases;
  for (const std::string& isa : kernels::available_isas()) {
    for (int threads : {1, 2}) {
      for (Shape s : decode_shapes) cases.push_back({isa, DType::BF16, 1, s.out, s.in, threads});
      if (isa != "scalar") {
        cases.push_back({isa, DType::F16, 1, 8192, 2048, threads});
        cases.push_back({isa, DType::F32, 1, 8192, 2048, threads});
        for (Shape s : decode_shapes) cases.push_back({isa, DType::Q8_0, 1, s.out, s.in, threads});
        cases.push_back({isa, DType::Q8_0, 512, 8192, 2048, threads});
        for (Shape s : decode_shapes) cases.push_back({isa, DType::Q4_0, 1, s.out, s.in, threads});
        for (Shape s : prefill_shapes) cases.push_back({isa, DType::Q4_0, 512, s.out, s.in, threads});
        for (int rows : {4, 16}) cases.push_back({isa, DType::Q4_0, rows, 8192, 2048, threads});  // batches
        for (DType k : {DType::Q4_K, DType::Q6_K}) {
          for (Shape s : decode_shapes) cases.push_back({isa, k, 1, s.out, s.in, threads});
          for (Shape s : prefill_shapes) cases.push_back({isa, k, 512, s.out, s.in, threads});
          cases.push_back({isa, k, 16, 8192, 2048, threads});  // a batch
        }
        for (Shape s : prefill_shapes) cases.push_back({isa, DType::BF16, 512, s.out, s.in, threads});
        for (int rows : {4, 8, 16}) cases.push_back({isa, DType::BF16, rows, 8192, 2048, threads});  // batches
      } else {
        cases.push_back({isa, DType::BF16, 512, 512, 2048, threads});  // scalar prefill is slow: one shape
      }
    }
  }
  for (const MatmulCase& c : cases) {
    const std::string name = std::string(c.rows == 1 ? "Decode" : c.rows < 512 ? "Batch" : "Prefill") + "/" + c.isa + "/" + type_name(c.type) +
                             "/rows:" + std::to_string(c.rows) + "/in:" + std::to_string(c.in) +
                             "/out:" + std::to_string(c.out) + "/threads:" + std::to_string(c.threads);
    benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& state) { run_matmul(state, c); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }
  return true;
}

const bool registered = register_benchmarks();

}  // namespace
