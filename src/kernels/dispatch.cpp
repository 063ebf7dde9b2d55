// Run-time choice of the instruction-set level, argument checks, and the OpenMP threading of matmul.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "kernels/isa_table.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

// Below this many multiply-adds a matmul runs on the calling thread: waking the team costs more.
constexpr size_t kParallelMinWork = size_t{1} << 18;

#if defined(__x86_64__)
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
#endif

std::vector<const IsaKernels*> available_tables() {
  std::vector<const IsaKernels*> tables;
#if defined(__x86_64__)
  if (cpu_has_avx512()) tables.push_back(&avx512_kernels());
  if (cpu_has_avx2()) tables.push_back(&avx2_kernels());
#elif defined(__aarch64__)
  tables.push_back(&neon_kernels());  // Advanced SIMD is part of every AArch64 CPU
#endif
  tables.push_back(&scalar_kernels());
  return tables;
}

const IsaKernels* table_named(std::string_view name, std::string_view source) {
  if (name != "avx512" && name != "avx2" && name != "neon" && name != "scalar") {
    fail("{}: unknown instruction-set level '{}' (expected avx512, avx2, neon or scalar)", source, name);
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
  if (is_kquant_dtype(w_type) && in % 256 != 0) {
    fail("kernels::matmul: {} rows must be a multiple of 256, got {}", dtype_name(w_type), in);
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

// The many-rows kernel over every chunk of every product, x prepared once per weight type for all of
// them. Preparing (quantizing x for the int8 kernels) is split over the threads by rows in the same
// parallel region, so the team is woken once per group and no thread idles while another quantizes.
void many_rows(const IsaKernels& kernels, const float* x, int rows, int in, std::span<const GemmProduct> products) {
  struct Prepared {
    DType type;
    size_t row_floats;  // 0: the kernel reads x as given
    size_t offset;      // of this type's rows in scratch
  };
  std::vector<Prepared> prepared;
  size_t scratch_floats = 0;
  auto prepared_for = [&](DType type) -> const Prepared* {
    for (const Prepared& p : prepared) {
      if (p.type == type) return &p;
    }
    return nullptr;
  };
  std::vector<int> first_chunk;  // of each product in the flattened list of chunks
  int n_chunks = 0;
  size_t work = 0;
  for (const GemmProduct& product : products) {
    if (prepared_for(product.w_type) == nullptr) {
      const size_t row_floats = kernels.many_rows_scratch(1, in, product.w_type);
      prepared.push_back({product.w_type, row_floats, scratch_floats});
      scratch_floats += row_floats * static_cast<size_t>(rows);
    }
    first_chunk.push_back(n_chunks);
    n_chunks += (product.out + kMatmulChunk - 1) / kMatmulChunk;
    work += static_cast<size_t>(rows) * static_cast<size_t>(product.out) * static_cast<size_t>(in);
  }
  thread_local std::vector<float> scratch;
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  float* const scratch_rows = scratch.data();  // the calling thread's buffer, shared with the team below
  constexpr int kPrepareRows = 8;
  const int row_slices = (rows + kPrepareRows - 1) / kPrepareRows;
  const int threads = threads_to_use();
  const bool parallel = threads > 1 && n_chunks > 1 && work >= kParallelMinWork && !omp_in_parallel();
#pragma omp parallel num_threads(threads) if (parallel)
  {
#pragma omp for schedule(static)
    for (int item = 0; item < row_slices * static_cast<int>(prepared.size()); ++item) {
      const Prepared& p = prepared[static_cast<size_t>(item / row_slices)];
      const int r0 = (item % row_slices) * kPrepareRows;
      if (p.row_floats == 0) continue;
      float* rows_scratch = scratch_rows + p.offset + static_cast<size_t>(r0) * p.row_floats;
      const float* result = kernels.many_rows_prepare(x + static_cast<size_t>(r0) * static_cast<size_t>(in),
                                                      std::min(kPrepareRows, rows - r0), in, p.type, rows_scratch);
      (void)result;  // the rows land in rows_scratch (the tables' contract, isa_table.h)
    }
#pragma omp for schedule(static)
    for (int chunk = 0; chunk < n_chunks; ++chunk) {
      const size_t index = static_cast<size_t>(std::upper_bound(first_chunk.begin(), first_chunk.end(), chunk) -
                                               first_chunk.begin()) - 1;
      const GemmProduct& product = products[index];
      const Prepared& p = *prepared_for(product.w_type);
      const float* x_prepared = p.row_floats == 0 ? x : scratch_rows + p.offset;
      const int o_begin = (chunk - first_chunk[index]) * kMatmulChunk;
      kernels.many_rows_range(x_prepared, rows, product.w, product.w_type, in, o_begin,
                              std::min(product.out, o_begin + kMatmulChunk), product.y,
                              static_cast<size_t>(product.out));
    }
  }
}

}  // namespace

int small_rows() { return kSmallRows; }

void matmul_gemm(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  if (!matmul_args_ok(x, rows, w, w_type, out, in, y)) return;
  const GemmProduct product{w, w_type, out, y};
  many_rows(isa(), x, rows, in, std::span(&product, 1));
}

void matmul_gemm_group(const float* x, int rows, int in, std::span<const GemmProduct> products) {
  std::vector<GemmProduct> nonempty;
  for (const GemmProduct& p : products) {
    if (matmul_args_ok(x, rows, p.w, p.w_type, p.out, in, p.y)) nonempty.push_back(p);
  }
  if (!nonempty.empty()) many_rows(isa(), x, rows, in, nonempty);
}

void matmul(const float* x, int rows, const void* w, DType w_type, int out, int in, float* y) {
  const GemmProduct product{w, w_type, out, y};
  matmul_group(x, rows, in, std::span(&product, 1));
}

void matmul_group(const float* x, int rows, int in, std::span<const GemmProduct> products) {
  std::vector<GemmProduct> nonempty;
  for (const GemmProduct& p : products) {
    if (matmul_args_ok(x, rows, p.w, p.w_type, p.out, in, p.y)) nonempty.push_back(p);
  }
  if (nonempty.empty()) return;
  const IsaKernels& kernels = isa();
  if (rows > kSmallRows) {
    many_rows(kernels, x, rows, in, nonempty);
    return;
  }
  // x prepared once per weight type (a few rows: on the calling thread), then the chunks of every
  // product shared out in one parallel loop.
  thread_local std::vector<float> scratch;
  std::vector<DType> types;
  std::vector<size_t> offsets;
  size_t scratch_floats = 0;
  for (const GemmProduct& p : nonempty) {
    if (std::find(types.begin(), types.end(), p.w_type) != types.end()) continue;
    types.push_back(p.w_type);
    offsets.push_back(scratch_floats);
    scratch_floats += kernels.small_rows_scratch(rows, in, p.w_type);
  }
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  std::vector<const float*> prepared(types.size());
  for (size_t t = 0; t < types.size(); ++t) {
    prepared[t] = kernels.small_rows_prepare(x, rows, in, types[t], scratch.data() + offsets[t]);
  }
  std::vector<int> first_chunk;
  int n_chunks = 0;
  size_t work = 0;
  for (const GemmProduct& p : nonempty) {
    first_chunk.push_back(n_chunks);
    n_chunks += (p.out + kMatmulChunk - 1) / kMatmulChunk;
    work += static_cast<size_t>(rows) * static_cast<size_t>(p.out) * static_cast<size_t>(in);
  }
  const int threads = threads_to_use();
  const bool parallel = threads > 1 && n_chunks > 1 && work >= kParallelMinWork && !omp_in_parallel();
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
  for (int chunk = 0; chunk < n_chunks; ++chunk) {
    const size_t index = static_cast<size_t>(std::upper_bound(first_chunk.begin(), first_chunk.end(), chunk) -
                                             first_chunk.begin()) - 1;
    const GemmProduct& p = nonempty[index];
    const size_t type = static_cast<size_t>(std::find(types.begin(), types.end(), p.w_type) - types.begin());
    const int o_begin = (chunk - first_chunk[index]) * kMatmulChunk;
    kernels.small_rows_range(prepared[type], rows, p.w, p.w_type, in, o_begin, std::min(p.out, o_begin + kMatmulChunk),
                             p.y, static_cast<size_t>(p.out));
  }
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

void attention_rows(const float* q, int rows, int first_pos, const KvBlocks& keys, const KvBlocks& values,
                    int n_heads, int n_kv_heads, int head_dim, int kv_head, float* out) {
  check_count("attention_rows", "rows", rows);
  check_count("attention_rows", "first_pos", first_pos);
  if (keys.block_size <= 0 || values.block_size <= 0) {
    fail("kernels::attention_rows: block sizes must be positive, got {} and {}", keys.block_size,
         values.block_size);
  }
  if (head_dim <= 0) fail("kernels::attention_rows: head_dim must be positive, got {}", head_dim);
  if (n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) {
    fail("kernels::attention_rows: n_heads ({}) must be a positive multiple of n_kv_heads ({})", n_heads,
         n_kv_heads);
  }
  if (kv_head < 0 || kv_head >= n_kv_heads) {
    fail("kernels::attention_rows: kv_head {} is outside [0, {})", kv_head, n_kv_heads);
  }
  if (rows == 0) return;
  thread_local std::vector<float> scratch;
  const size_t scratch_floats = attention_rows_scratch(rows, n_heads / n_kv_heads, head_dim);
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  isa().attention_rows(q, rows, first_pos, keys, values, n_heads, n_kv_heads, head_dim, kv_head, out,
                       scratch.data());
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
