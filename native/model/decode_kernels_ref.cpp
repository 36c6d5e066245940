// The scalar decoding kernels: the reference the SIMD paths are tested
// against, and the scalar path itself, so they do the scalar GEMM
// microkernel's operations (gemm_ref.cpp): a separate multiply and add per
// term (-ffp-contract=off keeps them apart), k-blocks of its kc.
#include "decode_kernels.h"

namespace ternorm::model::detail {
namespace {

void scores_scalar(const float* q, const float* kp, int64_t hd, int64_t n_panels, float scale,
                   float* s) {
  for (int64_t b = 0; b < n_panels; ++b) {
    const float* panel = kp + b * hd * kKeyPanel;
    float acc[kKeyPanel] = {};
    for (int64_t p = 0; p < hd; ++p)
      for (int64_t i = 0; i < kKeyPanel; ++i) acc[i] += q[p] * panel[p * kKeyPanel + i];
    for (int64_t i = 0; i < kKeyPanel; ++i) s[b * kKeyPanel + i] = scale * acc[i];
  }
}

void weighted_sum_scalar(const float* w, const float* v, int64_t ldv, int64_t n, int64_t hd,
                         int64_t kc, float* out) {
  for (int64_t c = 0; c < hd; ++c) {
    float total = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += kc) {
      const int64_t j1 = j0 + kc < n ? j0 + kc : n;
      float acc = 0.0f;
      for (int64_t j = j0; j < j1; ++j) acc += w[j] * v[j * ldv + c];
      total = j0 == 0 ? acc : acc + total;
    }
    out[c] = total;
  }
}

void head_rows_scalar(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t n,
                      int64_t kc, float* c, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j) {
    const float* bj = b + j * ldb;
    float total[kHeadLanes] = {};  // set by the first block
    for (int64_t p0 = 0; p0 < k; p0 += kc) {
      const int64_t p1 = p0 + kc < k ? p0 + kc : k;
      float acc[kHeadLanes] = {};
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t e = 0; e < kHeadLanes; ++e) acc[e] += xt[p * kHeadLanes + e] * bj[p];
      for (int64_t e = 0; e < kHeadLanes; ++e) total[e] = p0 == 0 ? acc[e] : acc[e] + total[e];
    }
    for (int64_t e = 0; e < m; ++e) c[e * ldc + j] = total[e];
  }
}

}  // namespace

constexpr DecodeKernels kDecodeKernelsScalar = {scores_scalar, weighted_sum_scalar,
                                                head_rows_scalar, &gemm::kGemmKernelsScalar};

}  // namespace ternorm::model::detail
