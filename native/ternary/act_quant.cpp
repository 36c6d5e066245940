// quantize_activations and quantize_activations_block: argument checks, the
// one dispatch on ex.isa, and the split of tokens over threads (rows are
// independent, so the result does not depend on the thread count).
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

// Both modes: checks, then rows(k, begin, end) over token ranges split across
// threads, which returns -1 or the first token of its range holding NaN/Inf.
template <typename Rows>
void quantize_tokens(const char* fn, const float* x, int64_t n, int64_t cols, int8_t* q,
                     float* scales, const Exec& ex, Rows&& rows) {
  if (x == nullptr || q == nullptr || scales == nullptr)
    throw std::invalid_argument(std::string(fn) +
                                ": null pointer; expected x, q and scales buffers");
  if (n <= 0 || cols <= 0)
    throw std::invalid_argument(std::string(fn) + ": expected n > 0 and cols > 0, got n=" +
                                std::to_string(n) + ", cols=" + std::to_string(cols));
  if (cols > (int64_t(1) << 31) || n > std::numeric_limits<int64_t>::max() / padded_cols(cols))
    throw std::invalid_argument(std::string(fn) +
                                ": expected cols <= 2^31 and n * cols to fit, got n=" +
                                std::to_string(n) + ", cols=" + std::to_string(cols));
  const detail::ActQuantKernels& k = pick_kernels(kActQuantTable, ex.isa, fn);
  std::atomic<int64_t> bad{std::numeric_limits<int64_t>::max()};
  // About 16K floats per chunk keeps the threading overhead small.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / cols);
  parallel_ranges(ex, n, grain, [&](int64_t begin, int64_t end) {
    const int64_t r = rows(k, begin, end);
    if (r >= 0) {
      int64_t cur = bad.load();
      while (begin + r < cur && !bad.compare_exchange_weak(cur, begin + r)) {
      }
    }
  });
  if (bad.load() != std::numeric_limits<int64_t>::max())
    throw std::invalid_argument(std::string(fn) + ": row " + std::to_string(bad.load()) +
                                " of x holds NaN or Inf; expected finite activations");
}
}  // namespace

void quantize_activations(const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                          const Exec& ex) {
  const int64_t qstride = padded_cols(cols);
  quantize_tokens("quantize_activations", x, n, cols, q, scales, ex,
                  [&](const detail::ActQuantKernels& k, int64_t begin, int64_t end) {
                    return k.rows(x + begin * cols, end - begin, cols, qstride, q + begin * qstride,
                                  scales + begin, false);
                  });
}

// A block is quantised exactly like a token of kActBlock values, so the
// per-token kernels run on blocks as if they were rows.
void quantize_activations_block(const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                                const Exec& ex) {
  const int64_t qstride = padded_cols(cols), nb = act_blocks(cols);
  const int64_t full = cols / kActBlock, rest = cols - full * kActBlock;
  quantize_tokens("quantize_activations_block", x, n, cols, q, scales, ex,
                  [&](const detail::ActQuantKernels& k, int64_t begin, int64_t end) -> int64_t {
                    if (rest == 0) {  // tokens are whole blocks back to back (qstride == cols)
                      const int64_t r =
                          k.rows(x + begin * cols, (end - begin) * nb, kActBlock, kActBlock,
                                 q + begin * qstride, scales + begin * nb, true);
                      return r < 0 ? -1 : r / nb;
                    }
                    for (int64_t t = begin; t < end; ++t) {
                      const float* xt = x + t * cols;
                      int8_t* qt = q + t * qstride;
                      float* st = scales + t * nb;
                      if ((full > 0 && k.rows(xt, full, kActBlock, kActBlock, qt, st, true) >= 0) ||
                          k.rows(xt + full * kActBlock, 1, rest, qstride - full * kActBlock,
                                 qt + full * kActBlock, st + full, true) >= 0)
                        return t - begin;
                    }
                    return -1;
                  });
}

}  // namespace ternorm::ternary
