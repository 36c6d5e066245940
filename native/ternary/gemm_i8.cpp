// gemm_i8 and gemm_i8_block: argument checks, the per-call token sums of q,
// the one dispatch on ex.isa, and the split of row panels over threads. Every output element is
// an exact integer dot product followed by the same two float multiplies, so
// the result depends neither on the thread count nor on the ISA path.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// A decoding step checks ~11 K weight scales per layer, so the scan is a
// branch-free OR over the exponent bits (which vectorises); only a failed scan
// looks for the index to name.
void check_finite(const float* v, int64_t count, const char* what) {
  uint32_t all_ones = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, v + i, sizeof u);
    all_ones |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  if (all_ones == 0) return;
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(v[i]))
      throw std::invalid_argument(std::string("gemm_i8: ") + what + "[" + std::to_string(i) +
                                  "] is not finite; expected finite scales");
}

// The checks both entry points share; returns the kernels of ex.isa.
const detail::GemmI8Kernels& check_call(const char* fn, const PackedTernary& w, const int8_t* q,
                                        const float* x_scales, int64_t n_scales, int64_t n,
                                        const float* y, const Exec& ex) {
  const std::string f(fn);
  if (w.data == nullptr || w.scales == nullptr || q == nullptr || x_scales == nullptr ||
      y == nullptr)
    throw std::invalid_argument(
        f + ": null pointer; expected packed weights, weight scales, q, x_scales and y");
  if (w.rows <= 0 || w.cols <= 0 || n <= 0)
    throw std::invalid_argument(
        f + ": expected rows, cols and n > 0, got rows=" + std::to_string(w.rows) +
        ", cols=" + std::to_string(w.cols) + ", n=" + std::to_string(n));
  if (w.cols > kMaxCols || w.rows > (int64_t(1) << 31) ||
      n > std::numeric_limits<int64_t>::max() / std::max(padded_cols(w.cols), padded_rows(w.rows)))
    throw std::invalid_argument(f +
                                ": expected cols <= 2^23, rows <= 2^31 and n * cols, n * rows "
                                "to fit, got rows=" +
                                std::to_string(w.rows) + ", cols=" + std::to_string(w.cols) +
                                ", n=" + std::to_string(n));
  const detail::GemmI8Kernels& k = pick_kernels(kGemmI8Table, ex.isa, fn);
  check_finite(w.scales, w.rows, "w.scales");
  check_finite(x_scales, n_scales, "x_scales");
  return k;
}

// sums[t * nb + b] = the sum of q[t][c] over the columns of block b (blocks of
// block_cols columns); throws on nonzero padding, which the SIMD paths read
// (the reference does not). Split over tokens in pieces of ~256 KB of q:
// serial, this pass was most of a prefill GEMM's time outside its parallel
// region; smaller calls (decoding, small models) stay on the calling thread.
void token_sums(const int8_t* q, int64_t n, int64_t cols, int64_t block_cols, int32_t* sums,
                const Exec& ex) {
  const int64_t qstride = padded_cols(cols), nb = (cols + block_cols - 1) / block_cols;
  std::atomic<int64_t> bad{n};  // the first row with nonzero padding
  parallel_ranges(
      ex, n, std::max<int64_t>(1, (int64_t(1) << 18) / qstride), [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int8_t* qt = q + t * qstride;
          for (int64_t b = 0; b < nb; ++b) {
            const int64_t c1 = std::min(cols, (b + 1) * block_cols);
            int32_t s = 0;
            for (int64_t c = b * block_cols; c < c1; ++c) s += qt[c];
            sums[t * nb + b] = s;
          }
          int pad = 0;
          for (int64_t c = cols; c < qstride; ++c) pad |= qt[c];
          if (pad != 0) {
            for (int64_t cur = bad.load(); t < cur && !bad.compare_exchange_weak(cur, t);) {
            }
            return;
          }
        }
      });
  if (bad.load() < n)
    throw std::invalid_argument("gemm_i8: q row " + std::to_string(bad.load()) +
                                " has nonzero padding past cols; expected the zero-padded layout "
                                "written by quantize_activations");
}

// Row panels per thread chunk: whole groups of 4 panels (64 rows), and at
// least ~2^19 multiply-adds (128 KB of weights, several times a dispatch's
// cost), so small calls stay on one thread (the shipped model's GEMVs) while
// a 107 M decoding step's (64 to 352 panels of 16 K) split into 2 to 11
// chunks that share evenly between 2 threads (at 2^20 the 3-chunk QKV split
// 2:1 and the O GEMV did not split).
int64_t panel_grain(int64_t qstride, int64_t n) {
  const int64_t per_panel = kRowPanel * qstride * n;
  return std::max<int64_t>(4, ((int64_t(1) << 19) / per_panel + 3) / 4 * 4);
}
}  // namespace

void gemm_i8(const PackedTernary& w, const int8_t* q, const float* x_scales, int64_t n, float* y,
             const Exec& ex) {
  const detail::GemmI8Kernels& k = check_call("gemm_i8", w, q, x_scales, n, n, y, ex);
  // Token sums for the (w + 1) trick.
  const int64_t qstride = padded_cols(w.cols);
  // (On the stack for small n, so decode-time GEMV calls do not allocate.)
  int32_t small[64];
  std::vector<int32_t> large;
  if (n > 64) large.resize(static_cast<size_t>(n));
  int32_t* sums = n > 64 ? large.data() : small;
  token_sums(q, n, w.cols, qstride, sums, ex);

  detail::GemmI8Args a;
  a.w = w.data;
  a.w_scales = w.scales;
  a.rows = w.rows;
  a.cols = w.cols;
  a.col_blocks = qstride / kColBlock;
  a.b_begin = 0;
  a.b_end = a.col_blocks;
  a.q = q;
  a.x_scales = x_scales;
  a.q_sums = sums;
  a.n = n;
  a.y = y;
  const int64_t panels = padded_rows(w.rows) / kRowPanel;
  parallel_ranges(ex, panels, panel_grain(qstride, n),
                  [&](int64_t p0, int64_t p1) { k.panels(a, p0, p1); });
}

// Per thread chunk of row panels and per group of kBlockTokens tokens: each
// activation block's exact dot products come from the ISA kernel with unit
// scales (float(dot) * 1 * 1 is exact: |dot| <= 128 * 256 < 2^24) into a
// scratch, then are folded into y in block order.
void gemm_i8_block(const PackedTernary& w, const int8_t* q, const float* x_scales, int64_t n,
                   float* y, const Exec& ex) {
  const int64_t nb = act_blocks(w.cols);
  if (n > std::numeric_limits<int64_t>::max() / nb)
    throw std::invalid_argument("gemm_i8_block: n * blocks does not fit, got n=" +
                                std::to_string(n));
  const detail::GemmI8Kernels& k = check_call("gemm_i8_block", w, q, x_scales, n * nb, n, y, ex);
  const int64_t qstride = padded_cols(w.cols);
  std::vector<int32_t> sums(static_cast<size_t>(n * nb));
  token_sums(q, n, w.cols, kActBlock, sums.data(), ex);
  constexpr int64_t kBlockTokens = 64;
  const int64_t cb_per_block = kActBlock / kColBlock, col_blocks = qstride / kColBlock;
  const std::vector<float> ones(static_cast<size_t>(std::max(w.rows, kBlockTokens)), 1.0f);
  const int64_t panels = padded_rows(w.rows) / kRowPanel;
  parallel_ranges(ex, panels, panel_grain(qstride, n), [&](int64_t p0, int64_t p1) {
    const int64_t r0 = p0 * kRowPanel, r1 = std::min(w.rows, p1 * kRowPanel);
    std::vector<float> dots(static_cast<size_t>(std::min(n, kBlockTokens) * w.rows));
    std::vector<int32_t> block_sums(static_cast<size_t>(kBlockTokens));
    for (int64_t t0 = 0; t0 < n; t0 += kBlockTokens) {
      const int64_t nt = std::min(kBlockTokens, n - t0);
      for (int64_t b = 0; b < nb; ++b) {
        for (int64_t t = 0; t < nt; ++t) block_sums[size_t(t)] = sums[size_t((t0 + t) * nb + b)];
        detail::GemmI8Args a;
        a.w = w.data;
        a.w_scales = ones.data();
        a.rows = w.rows;
        a.cols = w.cols;
        a.col_blocks = col_blocks;
        a.b_begin = b * cb_per_block;
        a.b_end = std::min(col_blocks, (b + 1) * cb_per_block);
        a.q = q + t0 * qstride;
        a.x_scales = ones.data();
        a.q_sums = block_sums.data();
        a.n = nt;
        a.y = dots.data();
        k.panels(a, p0, p1);
        for (int64_t t = 0; t < nt; ++t) {
          const float xs = x_scales[(t0 + t) * nb + b];
          const float* dt = dots.data() + t * w.rows;
          float* yt = y + (t0 + t) * w.rows;
          for (int64_t r = r0; r < r1; ++r) {
            const float prev = b == 0 ? 0.0f : yt[r];
            yt[r] = prev + dt[r] * (xs * w.scales[r]);
          }
        }
      }
    }
  });
}

}  // namespace ternorm::ternary
