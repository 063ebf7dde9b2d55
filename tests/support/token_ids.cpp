#include "support/token_ids.h"

#include <random>

namespace llama31::testing {

std::string join_ids(const std::vector<int>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out;
}

std::vector<int> random_ids(size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(0, 127999);
  std::vector<int> ids(count);
  for (int& id : ids) id = pick(rng);
  return ids;
}

}  // namespace llama31::testing
