#include "adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../cpu/thread_pool.h"

namespace ternorm::model {

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step, float lr,
                  float grad_scale, float decay, float center, const AdamWConfig& cfg,
                  const Exec& ex) {
  const float b1 = cfg.beta1, b2 = cfg.beta2;
  const float c1 = float(1.0 / (1.0 - std::pow(double(b1), double(step))));
  const float c2 = float(1.0 / (1.0 - std::pow(double(b2), double(step))));
  parallel_ranges(ex, n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float gi = grad_scale * g[i];
      m[i] = b1 * m[i] + (1.0f - b1) * gi;
      v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
      const float mh = m[i] * c1, vh = v[i] * c2;
      w[i] -= lr * (mh / (std::sqrt(vh) + cfg.eps) + decay * (w[i] - center));
    }
  });
}

double global_norm(const float* g, int64_t n, const Exec& ex) {
  constexpr int64_t kBlock = 8192;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(size_t(std::max<int64_t>(blocks, 1)), 0.0);
  parallel_ranges(ex, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double s = 0;
      for (int64_t i = b * kBlock, e = std::min(n, (b + 1) * kBlock); i < e; ++i)
        s += double(g[i]) * double(g[i]);
      part[size_t(b)] = s;
    }
  });
  double s = 0;
  for (double p : part) s += p;
  return std::sqrt(s);
}

float lr_at(const LrSchedule& s, int64_t step) {
  if (s.warmup > 0 && step <= s.warmup) return s.lr * float(step) / float(s.warmup);
  if (step >= s.total) return s.min_lr;
  const double progress =
      double(step - s.warmup) / double(std::max<int64_t>(1, s.total - s.warmup));
  return float(s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + std::cos(3.141592653589793 * progress)));
}

}  // namespace ternorm::model
