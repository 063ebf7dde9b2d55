// Progress for long work (model load, conversion): a redrawn bar on a terminal, plain lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace llama31 {

class Progress {
 public:
  // total: units of work (bytes, tensors); unit: how to print them ("B" prints as MB/GB).
  Progress(std::string label, uint64_t total, std::string unit = "B");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(uint64_t done);
  void finish();
  // Silences all progress output in this process (--quiet, tests).
  static void set_enabled(bool enabled);

 private:
  std::string format_amount(uint64_t n) const;
  std::string label_;
  uint64_t total_;
  std::string unit_;
  bool tty_;
  bool finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace llama31
