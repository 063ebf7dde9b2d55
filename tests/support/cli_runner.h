// Runs the built llama31 binary as a user would and captures what it prints.
#pragma once

#include <string>
#include <vector>

namespace llama31::testing {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs LLAMA31_BINARY with args (no shell), stdin from /dev/null.
CliResult run_cli(const std::vector<std::string>& args);

}  // namespace llama31::testing
