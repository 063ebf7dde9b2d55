#include "util/progress.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include <fmt/format.h>

namespace llama31 {

namespace {
std::atomic<bool> g_enabled{true};
}

void Progress::set_enabled(bool enabled) { g_enabled = enabled; }

Progress::Progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)),
      total_(total),
      unit_(std::move(unit)),
      tty_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { finish(); }

std::string Progress::format_amount(uint64_t n) const {
  if (unit_ != "B") return fmt::format("{} {}", n, unit_);
  const double v = static_cast<double>(n);
  if (v >= 1e9) return fmt::format("{:.2f} GB", v / 1e9);
  return fmt::format("{:.1f} MB", v / 1e6);
}

void Progress::update(uint64_t done) {
  if (!g_enabled || finished_ || total_ == 0) return;
  const auto now = std::chrono::steady_clock::now();
  const double fraction = static_cast<double>(std::min(done, total_)) / static_cast<double>(total_);
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    constexpr int width = 30;
    const int filled = static_cast<int>(fraction * width);
    std::fprintf(stderr, "\r%s [%s%s] %3.0f%% %s / %s", label_.c_str(), std::string(static_cast<size_t>(filled), '#').c_str(),
                 std::string(static_cast<size_t>(width - filled), '.').c_str(), fraction * 100.0,
                 format_amount(done).c_str(), format_amount(total_).c_str());
    std::fflush(stderr);
  } else {
    // Plain lines: one every 10%, so logs stay short.
    const int decile = static_cast<int>(fraction * 10.0);
    if (decile <= last_decile_ || decile == 10) return;
    last_decile_ = decile;
    if (decile == 0) return;
    std::fprintf(stderr, "%s: %d%% (%s / %s)\n", label_.c_str(), decile * 10, format_amount(done).c_str(),
                 format_amount(total_).c_str());
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (!g_enabled || total_ == 0) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s: done, %s in %.2f s\n", label_.c_str(), format_amount(total_).c_str(), secs);
}

}  // namespace llama31
