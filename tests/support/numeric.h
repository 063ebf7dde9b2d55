// Numeric comparisons the tests share.
#pragma once

#include <vector>

namespace llama31::testing {

// sqrt(sum (a - reference)^2 / sum reference^2): the RMS error of a relative to the RMS of reference.
double relative_rms(const std::vector<float>& a, const std::vector<float>& reference);

}  // namespace llama31::testing
