// AdamW (decoupled weight decay), global gradient norm for clipping, and the
// warm-up + cosine learning-rate schedule.
#pragma once
#include <cstdint>

#include "../cpu/isa.h"
#include "limits.h"

namespace ternorm::model {

struct AdamWConfig {  // defaults and ranges: limits::train (limits.h)
  float beta1 = float(limits::train::beta1.def);
  float beta2 = float(limits::train::beta2.def);
  float eps = float(limits::train::eps.def);
  float weight_decay = float(limits::train::weight_decay.def);
};

// One AdamW update of n values at step `step` (1-based, for bias correction):
//   g' = grad_scale * g;  m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
//   w -= lr * (m_hat / (sqrt(v_hat) + eps) + decay * (w - center))
// center is where weight decay pulls: 0 for weights, 1 for adapter gains
// (their identity value). Element-wise, so independent of the thread count.
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, int64_t step, float lr,
                  float grad_scale, float decay, float center, const AdamWConfig& cfg,
                  const Exec& ex);

// sqrt(sum g^2) in double, summed in fixed blocks in a fixed order, so the
// result is the same for any thread count.
double global_norm(const float* g, int64_t n, const Exec& ex);

// Linear warm-up from lr/warmup to lr over `warmup` steps, then cosine decay
// to min_lr at step `total`, min_lr after. step is 1-based.
struct LrSchedule {
  float lr = 1e-3f;
  float min_lr = 1e-4f;
  int64_t warmup = 0;
  int64_t total = 1;
};
float lr_at(const LrSchedule& s, int64_t step);

}  // namespace ternorm::model
