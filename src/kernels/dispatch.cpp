// Run-time choice of the instruction-set level, argument checks, and the OpenMP threading of matmul.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/isa_table.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

// Below this many multiply-adds a matmul runs on the calling thread: waking the team costs more.
constexpr size_t kParallelMinWork = size_t{1} << 18;

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

std::vector<const IsaKernels*> available_tables() {
  std::vector<const IsaKernels*> tables;
  if (cpu_has_avx512()) tables.push_back(&avx512_kernels());
  if (cpu_has_avx2()) tables.push_back(&avx2_kernels());
  tables.push_back(&scalar_kernels());
  return tables;
}

const IsaKernels* table_named(std::string_view name, std::string_view source) {
  if (name != "avx512" && name != "avx2" && name != "scalar") {
    fail("{}: unknown instruction-set level '{}' (expected avx512, avx2 or scalar)", source, name);
  }
  for (const IsaKernels* table : available_tables()) {
    if (name == table->name) return table;
  }
  fail("{}: this CPU cannot run instruction-set level '{}'", source, name);
}

const IsaKernels* default_table() {
  const char* forced = std::getenv("LLAMA31_ISA");
  if (forced != nullptr && *forced != '\0') return table_named(forced, "LLAMA31_ISA");
  return available_tables().front();
}

std::atomic<const IsaKernels*> chosen_table{nullptr};
std::atomic<int> thread_count{0};

const IsaKernels& isa() {
  const IsaKernels* table = chosen_table.load(std::memory_order_acquire);
  if (table == nullptr) {
    table = default_table();
    chosen_table.store(table, std::memory_order_release);
  }
  return *table;
}

int threads_to_use() {
  const int count = thread_count.load(std::memory_order_relaxed);
  return count > 0 ? count : omp_get_max_threads();
}

// Calls body(o_begin, o_end) for every chunk of output rows, on several threads when worth it.
template <typename Body>
void for_each_chunk(int out, size_t work, const Body& body) {
  const int n_chunks = (out + kMatmulChunk - 1) / kMatmulChunk;
  const int threads = threads_to_use();
  const bool parallel = threads > 1 && n_chunks > 1 && work >= kParallelMinWork && !omp_in_parallel();
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
  for (int chunk = 0; chunk < n_chunks; ++chunk) {
    const int o_begin = chunk * kMatmulChunk;
    body(o_begin, std::min(out, o_begin + kMatmulChunk));
  }
}

void check_count(const char* kernel, const char* what, long long value) {
  if (value < 0) fail("kernels::{}: {} must not be negative, got {}", kernel, what, value);
}

void check_pointer(const char* kernel, const char* what, const void* pointer) {
  if (pointer == nullptr) fail("kernels::{}: {} is null", kernel, what);
}

}  // namespace

namespace {

// Argument checks shared by both products; false when there is nothing to compute.
bool matmul_args_ok(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  if (!is_matmul_dtype(w_type)) {
    fail("kernels::matmul: weights of dtype {} must be dequantized first", dtype_name(w_type));
  }
  if ((w_type == DType::Q8_0 || w_type == DType::Q4_0) && in % 32 != 0) {
    fail("kernels::matmul: {} rows must be a multiple of 32, got {}", dtype_name(w_type), in);
  }
  check_count("matmul", "rows", rows);
  check_count("matmul", "out", out);
  check_count("matmul", "in", in);
  if (rows == 0 || out == 0) return false;
  check_pointer("matmul", "y", y);
  if (in == 0) {
    std::fill(y, y + static_cast<size_t>(rows) * static_cast<size_t>(out), 0.0f);
    return false;
  }
  check_pointer("matmul", "x", x);
  check_pointer("matmul", "W", w);
  return true;
}

// The many-rows kernel over every chunk, x prepared once for all of them.
void many_rows(const IsaKernels& kernels, const float* x, int rows, const void* w, DType w_type, int out, int in,
               float* y) {
  thread_local std::vector<float> scratch;
  const size_t scratch_floats = kernels.many_rows_scratch(rows, in, w_type);
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  const float* prepared = kernels.many_rows_prepare(x, rows, in, w_type, scratch.data());
  const size_t work = static_cast<size_t>(rows) * static_cast<size_t>(out) * static_cast<size_t>(in);
  for_each_chunk(out, work, [&](int o_begin, int o_end) {
    kernels.many_rows_range(prepared, rows, w, w_type, in, o_begin, o_end, y, static_cast<size_t>(out));
  });
}

}  // namespace

int small_rows() { return kSmallRows; }

void matmul_gemm(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  if (!matmul_args_ok(x, rows, w, w_type, out, in, y)) return;
  many_rows(isa(), x, rows, w, w_type, out, in, y);
}

void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  if (!matmul_args_ok(x, rows, w, w_type, out, in, y)) return;
  const IsaKernels& kernels = isa();
  const size_t ldy = static_cast<size_t>(out);
  const size_t work = static_cast<size_t>(rows) * static_cast<size_t>(out) * static_cast<size_t>(in);
  if (rows > kSmallRows) {
    many_rows(kernels, x, rows, w, w_type, out, in, y);
    return;
  }
  thread_local std::vector<float> scratch;
  const size_t scratch_floats = kernels.small_rows_scratch(rows, in, w_type);
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  const float* prepared = kernels.small_rows_prepare(x, rows, in, w_type, scratch.data());
  for_each_chunk(out, work, [&](int o_begin, int o_end) {
    kernels.small_rows_range(prepared, rows, w, w_type, in, o_begin, o_end, y, ldy);
  });
}

void rmsnorm(const float* x, const float* weight, int n, float eps, float* out) {
  check_count("rmsnorm", "n", n);
  if (n == 0) return;
  isa().rmsnorm(x, weight, n, eps, out);
}

void rope(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
  check_count("rope", "n_heads", n_heads);
  check_count("rope", "head_dim", head_dim);
  if (head_dim % 2 != 0) fail("kernels::rope: head_dim must be even, got {}", head_dim);
  isa().rope(x, n_heads, head_dim, cos, sin);
}

void softmax(float* x, int n) {
  check_count("softmax", "n", n);
  if (n == 0) return;
  isa().softmax(x, n);
}

void silu_mul(const float* gate, const float* up, int n, float* out) {
  check_count("silu_mul", "n", n);
  isa().silu_mul(gate, up, n, out);
}

void attention(const float* q, const KvBlocks& keys, const KvBlocks& values, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, float* out, float* scratch) {
  check_count("attention", "n_ctx", n_ctx);
  if (keys.block_size <= 0 || values.block_size <= 0) {
    fail("kernels::attention: block sizes must be positive, got {} and {}", keys.block_size, values.block_size);
  }
  check_count("attention", "head_dim", head_dim);
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) {
    fail("kernels::attention: n_heads ({}) must be a positive multiple of n_kv_heads ({})", n_heads,
         n_kv_heads);
  }
  if (n_ctx == 0) {
    std::fill(out, out + static_cast<size_t>(n_heads) * static_cast<size_t>(head_dim), 0.0f);
    return;
  }
  isa().attention(q, keys, values, n_ctx, n_heads, n_kv_heads, head_dim, out, scratch);
}

void attention(const float* q, const float* k_cache, const float* v_cache, int n_ctx, int n_heads,
               int n_kv_heads, int head_dim, size_t kv_stride, float* out, float* scratch) {
  // One block holding every position.
  const KvBlocks keys{&k_cache, std::max(n_ctx, 1), kv_stride};
  const KvBlocks values{&v_cache, std::max(n_ctx, 1), kv_stride};
  attention(q, keys, values, n_ctx, n_heads, n_kv_heads, head_dim, out, scratch);
}

float dot(const float* a, const float* b, int n) {
  check_count("dot", "n", n);
  return isa().dot(a, b, n);
}

void set_num_threads(int n) {
  if (n < 1) fail("kernels::set_num_threads: thread count must be at least 1, got {}", n);
  thread_count.store(n, std::memory_order_relaxed);
  omp_set_num_threads(n);
}

int num_threads() { return threads_to_use(); }

const char* active_isa() { return isa().name; }

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const IsaKernels* table : available_tables()) names.emplace_back(table->name);
  return names;
}

void set_isa(std::string_view name) {
  chosen_table.store(table_named(name, "kernels::set_isa"), std::memory_order_release);
}

}  // namespace llama31::kernels
