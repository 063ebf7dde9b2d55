#include "support/numeric.h"

#include <cmath>
#include <cstddef>

namespace llama31::testing {

double relative_rms(const std::vector<float>& a, const std::vector<float>& reference) {
  double diff = 0, norm = 0;
  for (size_t k = 0; k < a.size() && k < reference.size(); ++k) {
    diff += (static_cast<double>(a[k]) - reference[k]) * (static_cast<double>(a[k]) - reference[k]);
    norm += static_cast<double>(reference[k]) * reference[k];
  }
  return std::sqrt(diff / norm);
}

}  // namespace llama31::testing
