// gemm_i8: argument checks, the per-call token sums of q, the one dispatch on
// ex.isa, and the split of row panels over threads. Every output element is
// an exact integer dot product followed by the same two float multiplies, so
// the result depends neither on the thread count nor on the ISA path.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "../cpu/thread_pool.h"
#include "gemm_i8_kernels.h"
#include "ternary.h"

namespace ternorm::ternary {

namespace {
// The one dispatch point of the family.
constexpr IsaTable<detail::GemmI8Kernels> kGemmI8Table = {
    "gemm_i8",
    {&detail::kGemmI8KernelsScalar, TERNORM_X86_KERNELS(detail::kGemmI8KernelsAvx2),
     TERNORM_X86_KERNELS(detail::kGemmI8KernelsAvx512),
     TERNORM_ARM64_KERNELS(detail::kGemmI8KernelsNeon)}};
TERNORM_CHECK_TABLE(kGemmI8Table, "a compiled path without gemm_i8 kernels");

// |dot| <= 128 * cols and the int32 lanes of the SIMD paths hold up to
// 2 * 128 * cols before the token sum comes off: cols <= 2^23 keeps both exact.
constexpr int64_t kMaxCols = int64_t(1) << 23;

void check_finite(const float* v, int64_t count, const char* what) {
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(v[i]))
      throw std::invalid_argument(std::string("gemm_i8: ") + what + "[" + std::to_string(i) +
                                  "] is not finite; expected finite scales");
}
}  // namespace

void gemm_i8(const PackedTernary& w, const int8_t* q, const float* x_scales, int64_t n, float* y,
             const Exec& ex) {
  if (w.data == nullptr || w.scales == nullptr || q == nullptr || x_scales == nullptr ||
      y == nullptr)
    throw std::invalid_argument(
        "gemm_i8: null pointer; expected packed weights, weight scales, q, x_scales and y");
  if (w.rows <= 0 || w.cols <= 0 || n <= 0)
    throw std::invalid_argument(
        "gemm_i8: expected rows, cols and n > 0, got rows=" + std::to_string(w.rows) +
        ", cols=" + std::to_string(w.cols) + ", n=" + std::to_string(n));
  if (w.cols > kMaxCols || w.rows > (int64_t(1) << 31) ||
      n > std::numeric_limits<int64_t>::max() / std::max(padded_cols(w.cols), padded_rows(w.rows)))
    throw std::invalid_argument(
        "gemm_i8: expected cols <= 2^23, rows <= 2^31 and n * cols, n * rows "
        "to fit, got rows=" +
        std::to_string(w.rows) + ", cols=" + std::to_string(w.cols) + ", n=" + std::to_string(n));
  const detail::GemmI8Kernels& k = pick_kernels(kGemmI8Table, ex.isa, "gemm_i8");
  check_finite(w.scales, w.rows, "w.scales");
  check_finite(x_scales, n, "x_scales");

  // Token sums for the (w + 1) trick; the padding must be zero (the SIMD
  // paths read it, the reference does not).
  const int64_t qstride = padded_cols(w.cols);
  // (On the stack for small n, so decode-time GEMV calls do not allocate.)
  int32_t small[64];
  std::vector<int32_t> large;
  if (n > 64) large.resize(static_cast<size_t>(n));
  int32_t* sums = n > 64 ? large.data() : small;
  for (int64_t t = 0; t < n; ++t) {
    const int8_t* qt = q + t * qstride;
    int32_t s = 0;
    for (int64_t c = 0; c < w.cols; ++c) s += qt[c];
    int pad = 0;
    for (int64_t c = w.cols; c < qstride; ++c) pad |= qt[c];
    if (pad != 0)
      throw std::invalid_argument("gemm_i8: q row " + std::to_string(t) +
                                  " has nonzero padding past cols; expected the zero-padded layout "
                                  "written by quantize_activations");
    sums[t] = s;
  }

  detail::GemmI8Args a;
  a.w = w.data;
  a.w_scales = w.scales;
  a.rows = w.rows;
  a.cols = w.cols;
  a.col_blocks = qstride / kColBlock;
  a.q = q;
  a.x_scales = x_scales;
  a.q_sums = sums;
  a.n = n;
  a.y = y;
  // Whole groups of 4 panels (64 rows) per chunk, and at least ~2^20
  // multiply-adds, so small calls stay on one thread.
  const int64_t panels = padded_rows(w.rows) / kRowPanel;
  const int64_t per_panel = kRowPanel * qstride * n;
  const int64_t grain = std::max<int64_t>(4, ((int64_t(1) << 20) / per_panel + 3) / 4 * 4);
  parallel_ranges(ex, panels, grain, [&](int64_t p0, int64_t p1) { k.panels(a, p0, p1); });
}

}  // namespace ternorm::ternary
