// Tokenizer speed: encoding ~1 MB of mixed text (every text of the test corpus: 8 languages, code,
// emoji, whitespace runs, numbers), decoding it back, and loading tokenizer.json.
#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/tokenizer.h"

namespace {

const std::filesystem::path kTokenizerDir = std::filesystem::path(LLAMA31_DATA_DIR) / "llama-3.1-tokenizer";

const llama31::Tokenizer& tokenizer() {
  static const llama31::Tokenizer instance = llama31::Tokenizer::from_files(
      kTokenizerDir / "tokenizer.json", kTokenizerDir / "tokenizer_config.json");
  return instance;
}

// The corpus texts, repeated with a running number between them until the text reaches 1 MiB.
const std::string& mixed_text() {
  static const std::string text = [] {
    const auto corpus_path =
        std::filesystem::path(LLAMA31_DATA_DIR) / ".." / "tests" / "data" / "tokenizer-corpus" / "corpus.json";
    std::ifstream in(corpus_path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    const auto corpus = nlohmann::json::parse(buffer.str());
    std::string out;
    for (size_t round = 0; out.size() < (1u << 20); ++round) {
      for (const auto& entry : corpus) {
        out += entry.at("text").get<std::string>();
        out += "\n" + std::to_string(round * 7919 % 100003) + " ";
      }
    }
    return out;
  }();
  return text;
}

void BM_EncodeMixed1MiB(benchmark::State& state) {
  const std::string& text = mixed_text();
  size_t tokens = 0;
  for (auto _ : state) {
    const auto ids = tokenizer().encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_EncodeMixed1MiB)->Unit(benchmark::kMillisecond)->Iterations(5);

void BM_DecodeMixed1MiB(benchmark::State& state) {
  const auto ids = tokenizer().encode(mixed_text());
  for (auto _ : state) {
    const std::string text = tokenizer().decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ids.size()));
}
BENCHMARK(BM_DecodeMixed1MiB)->Unit(benchmark::kMillisecond);

void BM_LoadTokenizerJson(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = llama31::Tokenizer::from_files(kTokenizerDir / "tokenizer.json");
    benchmark::DoNotOptimize(loaded.vocab_size());
  }
}
BENCHMARK(BM_LoadTokenizerJson)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
