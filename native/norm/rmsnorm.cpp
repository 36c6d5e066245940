// The fused RMSNorm-with-gain driver: argument checks, gain decoding, the one
// dispatch point of the family, the per-row scalar steps (1/rms, int8 scale)
// shared by every path, and threading. Rows are independent, so the forward
// and dx split rows across threads; dgain splits channels and sums tokens in
// order per channel, so no result depends on the thread count.
#include "rmsnorm.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "../cpu/thread_pool.h"
#include "../ternary/act_quant_kernels.h"
#include "../ternary/ternary.h"
#include "rmsnorm_kernels.h"

namespace ternorm::norm {
namespace {

// d above any model width; keeps float(d) exact and the |x| * inv_rms <= 2 sqrt(d)
// bound of effective_weight valid.
constexpr int64_t kMaxD = int64_t(1) << 24;

// Below these the float sum of squares may lose accuracy to underflow while eps
// does not hide it; such rows (and overflowing ones) take the double path.
constexpr float kTinySum = 0x1p-80f;
constexpr float kTinyEps = 0x1p-100f;

// ---- the one dispatch point ------------------------------------------------------
constexpr IsaTable<RmsKernels> kRmsTable = {
    "rmsnorm",
    {&kRmsKernelsScalar, TERNORM_X86_KERNELS(kRmsKernelsAvx2),
     TERNORM_X86_KERNELS(kRmsKernelsAvx512), TERNORM_ARM64_KERNELS(kRmsKernelsNeon)}};
TERNORM_CHECK_TABLE(kRmsTable, "a compiled path without rmsnorm kernels");

// ---- argument checks ----------------------------------------------------------------
[[noreturn]] void fail(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void validate_args(const RmsNormArgs& a, const char* fn) {
  if (a.x == nullptr) fail(fn, "x is null, expected n*d floats");
  if (a.d <= 0 || a.d > kMaxD)
    fail(fn, "d = " + std::to_string(a.d) + ", expected 0 < d <= " + std::to_string(kMaxD));
  const int64_t max_n = std::numeric_limits<int64_t>::max() / 4 / ternary::padded_cols(a.d);
  if (a.n <= 0 || a.n > max_n)
    fail(fn, "n = " + std::to_string(a.n) + ", expected 0 < n <= " + std::to_string(max_n));
  if (a.w_base == nullptr) fail(fn, "w_base is null, expected d floats");
  if (a.gain.d != a.d)
    fail(fn, "gain has d = " + std::to_string(a.gain.d) + ", expected d = " + std::to_string(a.d) +
                 " (one gain per channel)");
  try {
    validate_gain(a.gain);
  } catch (const std::invalid_argument& e) {
    fail(fn, e.what());
  }
  if (!(a.eps > 0.0f) || !std::isfinite(a.eps))
    fail(fn, "eps = " + num(a.eps) + ", expected a finite eps > 0");
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a != nullptr && b != nullptr && pa < pb + b_bytes && pb < pa + a_bytes;
}

// wg[c] = w_base[c] * g[c], the per-call effective weight. |x * inv_rms| <=
// sqrt(d) (up to rounding, < 2 sqrt(d)), so capping |wg| at FLT_MAX / (2 sqrt(d))
// keeps every output finite.
std::vector<float> effective_weight(const RmsNormArgs& a, const char* fn) {
  std::vector<float> wg(static_cast<size_t>(a.d));
  try {
    decode_gain(a.gain, wg.data());
  } catch (const std::invalid_argument& e) {
    fail(fn, e.what());
  }
  const double limit = FLT_MAX / (2.0 * std::sqrt(double(a.d)));
  for (int64_t c = 0; c < a.d; ++c) {
    if (!std::isfinite(a.w_base[c]))
      fail(fn,
           "w_base[" + std::to_string(c) + "] = " + num(a.w_base[c]) + ", expected finite weights");
    wg[size_t(c)] = a.w_base[c] * wg[size_t(c)];
    if (!(std::fabs(double(wg[size_t(c)])) <= limit))
      fail(fn, "w_base[" + std::to_string(c) + "] * gain[" + std::to_string(c) +
                   "] = " + num(wg[size_t(c)]) + ", expected magnitude <= " + num(limit) +
                   " (FLT_MAX / (2 sqrt(d)), so the output cannot overflow)");
  }
  return wg;
}

int64_t row_grain(int64_t d) { return std::max<int64_t>(1, 4096 / d); }

void atomic_min(std::atomic<int64_t>& v, int64_t x) {
  int64_t cur = v.load();
  while (x < cur && !v.compare_exchange_weak(cur, x)) {
  }
}

// Names the first NaN/inf of row t of m (n x d), which the caller found.
[[noreturn]] void fail_non_finite(const char* fn, const char* name, const float* m, int64_t t,
                                  int64_t d) {
  int64_t c = 0;
  while (c < d - 1 && std::isfinite(m[t * d + c])) ++c;
  fail(fn, std::string(name) + "[" + std::to_string(t) + "][" + std::to_string(c) +
               "] = " + num(m[t * d + c]) + ", expected finite values");
}

// ---- per-row scalar steps (shared by every path) -----------------------------------
// inv_rms of one row: 1 / sqrt(sum_sq / d + eps) from the canonical float sum
// of squares, correctly rounded sqrt and division. When that sum overflows
// (|x| above ~1.8e19 / sqrt(d)), or is tiny while eps is too (float squares
// underflowing would matter), the sum is redone in double, in order, which is
// exact enough for every finite float row. Returns false when the row holds a
// NaN or inf.
bool row_inv_rms(const RmsKernels& k, const float* x, int64_t d, float eps, float* inv) {
  const float ss = k.sumsq(x, d);
  if (ss <= FLT_MAX && (ss >= kTinySum || eps >= kTinyEps)) {
    *inv = 1.0f / std::sqrt(ss / float(d) + eps);
    return true;
  }
  for (int64_t c = 0; c < d; ++c)
    if (!std::isfinite(x[c])) return false;
  double s = 0.0;
  for (int64_t c = 0; c < d; ++c) s += double(x[c]) * double(x[c]);
  *inv = float(1.0 / std::sqrt(s / double(d) + double(eps)));
  return true;
}

}  // namespace

// ---- forward, fp32 out --------------------------------------------------------------
void rmsnorm_gain_f32(const RmsNormArgs& a, float* y, const Exec& ex) {
  const char* fn = "rmsnorm_gain_f32";
  validate_args(a, fn);
  if (y == nullptr) fail(fn, "y is null, expected n*d floats");
  const size_t bytes = size_t(a.n * a.d) * sizeof(float);
  if (y != a.x && overlaps(y, bytes, a.x, bytes))
    fail(fn, "y partly overlaps x, expected separate buffers (or y == x, in place)");
  const RmsKernels& k = pick_kernels(kRmsTable, ex.isa, fn);
  const std::vector<float> wg = effective_weight(a, fn);
  const int64_t d = a.d;
  std::atomic<int64_t> bad{a.n};
  parallel_ranges(ex, a.n, row_grain(d), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float inv;
      if (!row_inv_rms(k, a.x + t * d, d, a.eps, &inv)) {
        atomic_min(bad, t);
        return;
      }
      k.scale(a.x + t * d, d, inv, wg.data(), y + t * d);
    }
  });
  if (bad.load() < a.n) fail_non_finite(fn, "x", a.x, bad.load(), d);
}

// ---- forward, int8 out -----------------------------------------------------------------
void rmsnorm_gain_i8(const RmsNormArgs& a, int8_t* q, float* scales, const Exec& ex) {
  const char* fn = "rmsnorm_gain_i8";
  validate_args(a, fn);
  if (q == nullptr) fail(fn, "q is null, expected n * padded_cols(d) int8");
  if (scales == nullptr) fail(fn, "scales is null, expected n floats");
  const int64_t d = a.d, padded = ternary::padded_cols(d);
  const size_t x_bytes = size_t(a.n * d) * sizeof(float), q_bytes = size_t(a.n * padded),
               s_bytes = size_t(a.n) * sizeof(float);
  if (overlaps(q, q_bytes, a.x, x_bytes) || overlaps(scales, s_bytes, a.x, x_bytes) ||
      overlaps(q, q_bytes, scales, s_bytes))
    fail(fn, "q, scales and x overlap, expected separate buffers");
  const RmsKernels& k = pick_kernels(kRmsTable, ex.isa, fn);
  const std::vector<float> wg = effective_weight(a, fn);
  std::atomic<int64_t> bad{a.n};
  parallel_ranges(ex, a.n, row_grain(d), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = a.x + t * d;
      int8_t* qr = q + t * padded;
      float inv;
      if (!row_inv_rms(k, xr, d, a.eps, &inv)) {
        atomic_min(bad, t);
        return;
      }
      // The per-token quantisation of ternary::quantize_activations (its own
      // row parameters, so the two agree by construction) applied to
      // y = (x * inv) * wg, which the kernels recompute bit for bit.
      const float amax = k.absmax(xr, d, inv, wg.data());
      if (amax == 0.0f) {
        scales[t] = 0.0f;
        std::memset(qr, 0, size_t(padded));
        continue;
      }
      const ternary::detail::ActRowParams p = ternary::detail::act_row_params(amax);
      scales[t] = p.scale;
      k.quantize(xr, d, padded, inv, wg.data(), p.pre, p.inv, qr);
    }
  });
  if (bad.load() < a.n) fail_non_finite(fn, "x", a.x, bad.load(), d);
}

// ---- backward --------------------------------------------------------------------------
// With xh = x * inv, y = xh * wg:
//   dx[c]   = inv * (dy[c] * wg[c] - x[c] * inv^2 * dot / d),  dot = sum_j dy[j] wg[j] x[j]
//   dgain[c] = w_base[c] * sum_t dy[t][c] * xh[t][c]
void rmsnorm_gain_backward(const RmsNormArgs& a, const float* dy, float* dx, float* dgain,
                           const Exec& ex) {
  const char* fn = "rmsnorm_gain_backward";
  validate_args(a, fn);
  if (dy == nullptr) fail(fn, "dy is null, expected n*d floats");
  const int64_t n = a.n, d = a.d;
  const size_t m_bytes = size_t(n * d) * sizeof(float), g_bytes = size_t(d) * sizeof(float);
  if (overlaps(dx, m_bytes, a.x, m_bytes) || overlaps(dx, m_bytes, dy, m_bytes))
    fail(fn, "dx overlaps x or dy, expected a separate buffer");
  if (overlaps(dgain, g_bytes, a.x, m_bytes) || overlaps(dgain, g_bytes, dy, m_bytes) ||
      overlaps(dgain, g_bytes, dx, m_bytes) || overlaps(dgain, g_bytes, a.w_base, g_bytes))
    fail(fn, "dgain overlaps x, dy, dx or w_base, expected a separate buffer");
  const RmsKernels& k = pick_kernels(kRmsTable, ex.isa, fn);
  const std::vector<float> wg = effective_weight(a, fn);
  if (dx == nullptr && dgain == nullptr) return;

  // Pass over rows: inv_rms (kept for dgain), and dx. bad = 2t for a
  // non-finite x row, 2t + 1 for a non-finite dy row: the smallest wins.
  std::vector<float> inv(static_cast<size_t>(n));
  std::atomic<int64_t> bad{2 * n};
  parallel_ranges(ex, n, row_grain(d), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = a.x + t * d;
      const float* dyr = dy + t * d;
      if (!row_inv_rms(k, xr, d, a.eps, &inv[size_t(t)])) {
        atomic_min(bad, 2 * t);
        return;
      }
      if (dx == nullptr) continue;
      double dot = k.dot(dyr, wg.data(), xr, d);
      if (!(std::fabs(dot) <= FLT_MAX)) {
        // A non-finite dy always makes the dot non-finite. Otherwise the
        // float sum overflowed: redo it in double, in order.
        for (int64_t c = 0; c < d; ++c)
          if (!std::isfinite(dyr[c])) {
            atomic_min(bad, 2 * t + 1);
            return;
          }
        dot = 0.0;
        for (int64_t c = 0; c < d; ++c)
          dot += double(dyr[c]) * double(wg[size_t(c)]) * double(xr[c]);
      }
      const double iv = inv[size_t(t)];
      const float kk = float(((dot / double(d)) * iv) * iv);
      k.dx(dyr, wg.data(), xr, d, kk, inv[size_t(t)], dx + t * d);
    }
  });
  if (bad.load() < 2 * n) {
    const int64_t b = bad.load();
    if (b % 2 == 0) fail_non_finite(fn, "x", a.x, b / 2, d);
    fail_non_finite(fn, "dy", dy, b / 2, d);
  }

  if (dgain != nullptr) {
    parallel_ranges(ex, d, 64, [&](int64_t c0, int64_t c1) {
      k.dgain(a.x, dy, inv.data(), n, d, a.w_base, c0, c1, dgain);
    });
    // Without dx the rows' dy were not checked: a non-finite dy always makes
    // some dgain non-finite, so look for it only then.
    if (dx == nullptr) {
      bool finite = true;
      for (int64_t c = 0; c < d; ++c) finite = finite && std::isfinite(dgain[c]);
      if (!finite)
        for (int64_t t = 0; t < n; ++t)
          for (int64_t c = 0; c < d; ++c)
            if (!std::isfinite(dy[t * d + c])) fail_non_finite(fn, "dy", dy, t, d);
    }
  }
}

}  // namespace ternorm::norm
