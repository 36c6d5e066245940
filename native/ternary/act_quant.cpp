// quantize_activations: argument checks, the one dispatch on ex.isa, and the
// split of tokens over threads (rows are independent, so the result does not
// depend on the thread count).
#include <algorithm>
#include <atomic>
#include <limits>
#include <stdexcept>
#include <string>

#include "../cpu/dispatch.h"
#include "../cpu/thread_pool.h"
#include "act_quant_kernels.h"
#include "ternary.h"

namespace ternorm::ternary {

namespace {
// The one dispatch point of the family.
constexpr IsaTable<detail::ActQuantKernels> kActQuantTable = {
    "act_quant",
    {&detail::kActQuantKernelsScalar, TERNORM_X86_KERNELS(detail::kActQuantKernelsAvx2),
     TERNORM_X86_KERNELS(detail::kActQuantKernelsAvx512),
     TERNORM_ARM64_KERNELS(detail::kActQuantKernelsNeon)}};
TERNORM_CHECK_TABLE(kActQuantTable, "a compiled path without act_quant kernels");
}  // namespace

void quantize_activations(const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                          const Exec& ex) {
  if (x == nullptr || q == nullptr || scales == nullptr)
    throw std::invalid_argument(
        "quantize_activations: null pointer; expected x, q and scales buffers");
  if (n <= 0 || cols <= 0)
    throw std::invalid_argument("quantize_activations: expected n > 0 and cols > 0, got n=" +
                                std::to_string(n) + ", cols=" + std::to_string(cols));
  if (cols > (int64_t(1) << 31) || n > std::numeric_limits<int64_t>::max() / padded_cols(cols))
    throw std::invalid_argument(
        "quantize_activations: expected cols <= 2^31 and n * cols to fit, got n=" +
        std::to_string(n) + ", cols=" + std::to_string(cols));
  const detail::ActQuantKernels& k = pick_kernels(kActQuantTable, ex.isa, "quantize_activations");
  const int64_t qstride = padded_cols(cols);
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  // About 16K floats per chunk keeps the threading overhead small.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / cols);
  parallel_ranges(ex, n, grain, [&](int64_t begin, int64_t end) {
    const int64_t r =
        k.rows(x + begin * cols, end - begin, cols, qstride, q + begin * qstride, scales + begin);
    if (r >= 0) {
      int64_t cur = bad.load();
      while (begin + r < cur && !bad.compare_exchange_weak(cur, begin + r)) {
      }
    }
  });
  if (bad.load() != std::numeric_limits<int64_t>::max())
    throw std::invalid_argument("quantize_activations: row " + std::to_string(bad.load()) +
                                " of x holds NaN or Inf; expected finite activations");
}

}  // namespace ternorm::ternary
