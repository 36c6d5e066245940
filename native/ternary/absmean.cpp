// absmean quantisation of a float matrix to trits (BitNet b1.58).
#include <cmath>
#include <stdexcept>
#include <string>

#include "ternary.h"

namespace ternorm::ternary {
namespace {

// Mean of |w| over n values, summed in double in index order (deterministic,
// and no float cancellation over millions of weights).
float mean_abs(const float* w, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::fabs(double(w[i]));
  return float(sum / double(n));
}

void quantize_span(const float* w, int64_t n, float scale, int8_t* trits) {
  if (scale == 0.0f) {  // all-zero tensor/row
    for (int64_t i = 0; i < n; ++i) trits[i] = 0;
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(w[i] / scale);
    trits[i] = int8_t(v > 1.0f ? 1 : v < -1.0f ? -1 : int(v));
  }
}

}  // namespace

void absmean_quantize(const float* w, int64_t rows, int64_t cols, bool per_row, int8_t* trits,
                      float* scales) {
  if (w == nullptr || trits == nullptr || scales == nullptr)
    throw std::invalid_argument(
        "absmean_quantize: null pointer; expected w, trits and scales buffers");
  if (rows <= 0 || cols <= 0)
    throw std::invalid_argument("absmean_quantize: expected rows > 0 and cols > 0, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
  if (rows > (int64_t(1) << 31) || cols > (int64_t(1) << 31))
    throw std::invalid_argument("absmean_quantize: expected rows and cols <= 2^31, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
  const int64_t count = rows * cols;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(w[i]))
      throw std::invalid_argument("absmean_quantize: w at row " + std::to_string(i / cols) +
                                  ", col " + std::to_string(i % cols) +
                                  " is not finite; expected finite weights");
  if (per_row) {
    for (int64_t r = 0; r < rows; ++r) {
      scales[r] = mean_abs(w + r * cols, cols);
      quantize_span(w + r * cols, cols, scales[r], trits + r * cols);
    }
  } else {
    const float scale = mean_abs(w, count);
    for (int64_t r = 0; r < rows; ++r) scales[r] = scale;
    quantize_span(w, count, scale, trits);
  }
}

}  // namespace ternorm::ternary
