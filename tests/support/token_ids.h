// Token id sequences for tests that drive the CLI.
#pragma once

#include <string>
#include <vector>

namespace llama31::testing {

// "1,2,3", as `llama31 score --ids` takes them.
std::string join_ids(const std::vector<int>& ids);

// count ordinary (non-special, < 128000) Llama 3 token ids, the same for the same seed.
std::vector<int> random_ids(size_t count, unsigned seed);

}  // namespace llama31::testing
