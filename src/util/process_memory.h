// The process's resident memory, for checking the memory planner against reality.
#pragma once

#include <cstdint>

namespace llama31 {

uint64_t current_rss_bytes();  // from /proc/self/statm; 0 if unavailable
uint64_t peak_rss_bytes();     // getrusage's ru_maxrss

}  // namespace llama31
