// Run-time choice of the instruction-set level, argument checks, and the OpenMP threading of matmul.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/chunk_shares.h"
#include "kernels/isa_table.h"
#include "kernels/kernels.h"
#include "util/error.h"

namespace llama31::kernels {
namespace {

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
  if (w_type == DType::Q8_0_R16 && !q8_0_r16_fits(out, in)) {
    fail("kernels::matmul: Q8_0_R16 needs whole panels of {} rows of a multiple of 64 values, got [{}, {}]",
         kQ8_0PanelRows, out, in);
  }
  if (w_type == DType::Q4_0_R16 && !q4_0_r16_fits(out, in)) {
    fail("kernels::matmul: Q4_0_R16 needs whole panels of {} rows of a multiple of 32 values, got [{}, {}]",
         kQ8_0PanelRows, out, in);
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

// The output chunks of a group of products, numbered through all of them, and the distinct weight types
// the group's x is prepared for (each product's index into them).
struct GroupChunks {
  std::vector<int> first_chunk;  // of each product
  int count = 0;
  size_t work = 0;  // multiply-adds
  std::vector<DType> types;
  std::vector<size_t> type_of;  // of each product

  GroupChunks(std::span<const GemmProduct> products, int rows, int in) {
    for (const GemmProduct& product : products) {
      const auto known = std::find(types.begin(), types.end(), product.w_type);
      type_of.push_back(static_cast<size_t>(known - types.begin()));
      if (known == types.end()) types.push_back(product.w_type);
      first_chunk.push_back(count);
      count += (product.out + kMatmulChunk - 1) / kMatmulChunk;
      work += static_cast<size_t>(rows) * static_cast<size_t>(product.out) * static_cast<size_t>(in);
    }
  }
  // The product chunk c belongs to.
  size_t product_of(int chunk) const {
    return static_cast<size_t>(std::upper_bound(first_chunk.begin(), first_chunk.end(), chunk) - first_chunk.begin()) - 1;
  }
  // Its output rows [begin, end) in that product.
  std::pair<int, int> rows_of(int chunk, size_t product, int out) const {
    const int begin = (chunk - first_chunk[product]) * kMatmulChunk;
    return {begin, std::min(out, begin + kMatmulChunk)};
  }
};

// The many-rows kernel over every chunk of every product, x prepared once per weight type for all of
// them. Preparing (quantizing x for the int8 kernels) is split over the threads by rows in the same
// parallel region, so the team is woken once per group and no thread idles while another quantizes.
void many_rows(const IsaKernels& kernels, const float* x, int rows, int in, std::span<const GemmProduct> products) {
  const GroupChunks chunks(products, rows, in);
  std::vector<size_t> row_floats, offsets;  // of each type's prepared rows in scratch (0 floats: x as given)
  size_t scratch_floats = 0;
  for (const DType type : chunks.types) {
    row_floats.push_back(kernels.many_rows_scratch(1, in, type));
    offsets.push_back(scratch_floats);
    scratch_floats += row_floats.back() * static_cast<size_t>(rows);
  }
  thread_local std::vector<float> scratch;
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  float* const scratch_rows = scratch.data();  // the calling thread's buffer, shared with the team below
  constexpr int kPrepareRows = 8;
  const int row_slices = (rows + kPrepareRows - 1) / kPrepareRows;
  const int threads = threads_to_use();
  const bool parallel = threads > 1 && chunks.count > 1 && chunks.work >= kParallelMinWork && !omp_in_parallel();
#pragma omp parallel num_threads(threads) if (parallel)
  {
#pragma omp for schedule(static)
    for (int item = 0; item < row_slices * static_cast<int>(chunks.types.size()); ++item) {
      const auto type = static_cast<size_t>(item / row_slices);
      const int r0 = (item % row_slices) * kPrepareRows;
      if (row_floats[type] == 0) continue;
      float* rows_scratch = scratch_rows + offsets[type] + static_cast<size_t>(r0) * row_floats[type];
      const float* result = kernels.many_rows_prepare(x + static_cast<size_t>(r0) * static_cast<size_t>(in),
                                                      std::min(kPrepareRows, rows - r0), in, chunks.types[type],
                                                      rows_scratch);
      (void)result;  // the rows land in rows_scratch (the tables' contract, isa_table.h)
    }
#pragma omp for schedule(static)
    for (int chunk = 0; chunk < chunks.count; ++chunk) {
      const size_t index = chunks.product_of(chunk);
      const GemmProduct& product = products[index];
      const size_t type = chunks.type_of[index];
      const float* x_prepared = row_floats[type] == 0 ? x : scratch_rows + offsets[type];
      const auto [o_begin, o_end] = chunks.rows_of(chunk, index, product.out);
      kernels.many_rows_range(x_prepared, rows, product.w, product.w_type, in, o_begin, o_end, product.y,
                              static_cast<size_t>(product.out));
    }
  }
}

}  // namespace

int small_rows() { return kSmallRows; }

DType packed_weight_type(DType w_type, int64_t out, int64_t in) {
  const std::string_view level = isa().name;
  // The x86 levels run Q8_0 and Q4_0 from 16-row panels (q8_0_gemm_avx512.cpp, q4_0_gemm_avx512.cpp,
  // r16_panels_avx2.cpp); NEON and scalar read the rows as they are.
  const bool x86 = level == "avx512" || level == "avx2";
  if (w_type == DType::Q8_0 && x86 && q8_0_r16_fits(out, in)) return DType::Q8_0_R16;
  if (w_type == DType::Q4_0 && x86 && q4_0_r16_fits(out, in)) return DType::Q4_0_R16;
  return w_type;
}

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
  const GroupChunks chunks(nonempty, rows, in);
  thread_local std::vector<float> scratch;
  std::vector<size_t> offsets;
  size_t scratch_floats = 0;
  for (const DType type : chunks.types) {
    offsets.push_back(scratch_floats);
    scratch_floats += kernels.small_rows_scratch(rows, in, type);
  }
  if (scratch.size() < scratch_floats) scratch.resize(scratch_floats);
  std::vector<const float*> prepared(chunks.types.size());
  for (size_t t = 0; t < chunks.types.size(); ++t) {
    prepared[t] = kernels.small_rows_prepare(x, rows, in, chunks.types[t], scratch.data() + offsets[t]);
  }
  const int threads = threads_to_use();
  const bool parallel = threads > 1 && chunks.count > 1 && chunks.work >= kParallelMinWork && !omp_in_parallel();
  // Each thread streams its own share of the chunks and then helps with what is left of the other's
  // (chunk_shares.h): a static split left one thread waiting up to 17% of a product on the 2-core VM.
  ChunkShares shares(chunks.count, parallel ? threads : 1);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    const int me = omp_get_thread_num();
    for (int chunk = shares.next(me); chunk >= 0; chunk = shares.next(me)) {
      const size_t index = chunks.product_of(chunk);
      const GemmProduct& p = nonempty[index];
      const auto [o_begin, o_end] = chunks.rows_of(chunk, index, p.out);
      kernels.small_rows_range(prepared[chunks.type_of[index]], rows, p.w, p.w_type, in, o_begin, o_end, p.y,
                               static_cast<size_t>(p.out));
    }
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

// Every byte of the regions once, each thread streaming its own contiguous share of them laid end to
// end, as decode's chunks of output rows do; `llama31 bench` times this over a decode step's weights.
constexpr size_t kSweepLine = 64;  // shares start and end on multiples of a cache line within each region

uint64_t read_sweep(std::span<const std::span<const std::byte>> regions) {
  size_t total_bytes = 0;
  for (const auto& r : regions) total_bytes += r.size();
  const IsaKernels& table = isa();
  const int threads = threads_to_use();
  uint64_t checksum = 0;
#pragma omp parallel num_threads(threads) reduction(^ : checksum) if (threads > 1 && !omp_in_parallel())
  {
    const auto team = static_cast<size_t>(omp_get_num_threads());
    const auto me = static_cast<size_t>(omp_get_thread_num());
    // This thread's share of the regions laid end to end; each cut is rounded down to a line of the
    // region it falls in, the same way for the share that ends there and the one that starts there.
    const size_t share_begin = total_bytes / team * me + std::min(me, total_bytes % team);
    const size_t share_end = share_begin + total_bytes / team + (me < total_bytes % team ? 1 : 0);
    size_t region_begin = 0;
    for (const auto& r : regions) {
      const size_t region_end = region_begin + r.size();
      if (region_end > share_begin && region_begin < share_end) {
        const size_t from = std::max(share_begin, region_begin) - region_begin;
        const size_t to = std::min(share_end, region_end) - region_begin;
        const size_t first = from / kSweepLine * kSweepLine;
        const size_t last = to == r.size() ? to : to / kSweepLine * kSweepLine;
        if (last > first) checksum ^= table.xor_words(r.data() + first, last - first);
      }
      region_begin = region_end;
    }
  }
  return checksum;
}

}  // namespace llama31::kernels
