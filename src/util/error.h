// Errors with context: every failure names the file, tensor, field or value that caused it.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace llama31 {

// The one exception type the library throws for bad input or unmet expectations.
// Front ends print what() on one line and exit non-zero; servers turn it into a 400.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace llama31
