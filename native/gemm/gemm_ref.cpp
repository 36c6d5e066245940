// The scalar side of the fp32 GEMM: the plain reference every path is tested
// against, and the portable microkernel and dot kernel the scalar path runs
// (so blocking, packing and the small-m path are exercised on every machine).
#include "../io/gguf_quants.h"
#include "../norm/gain_codec.h"
#include "gemm_kernels.h"

namespace ternorm::gemm {

void widen_scalar(ElemType t, const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i)
    dst[i] = t == ElemType::F16 ? norm::f16_to_f32(src[i]) : gguf::bf16_to_fp32(src[i]);
}

namespace {

float widen_one(ElemType t, uint16_t v) {
  float f;
  widen_scalar(t, &v, 1, &f);
  return f;
}

}  // namespace

void gemm_f32_ref(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      float sum = 0.0f;
      for (int64_t p = 0; p < g.k; ++p) {
        const float av = g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
        const int64_t at = g.trans_b ? j * g.ldb + p : p * g.ldb + j;
        const float bv = g.b_type == ElemType::F32 ? g.b[at] : widen_one(g.b_type, g.b16[at]);
        sum += av * bv;
      }
      float& cv = g.c[i * g.ldc + j];
      cv = g.beta == 0.0f ? g.alpha * sum : g.alpha * sum + g.beta * cv;
    }
  }
}

namespace {

void ukernel_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t m,
                    int64_t n, float alpha, float beta) {
  constexpr int MR = kMrScalar, NR = kNrScalar;
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* ap = a + p * MR;
    const float* bp = b + p * NR;
    for (int64_t i = 0; i < m; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += ap[i] * bp[j];
  }
  for (int64_t i = 0; i < m; ++i) {
    float* cr = c + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < n; ++j) cr[j] = alpha * acc[i][j];
    } else {
      for (int64_t j = 0; j < n; ++j) cr[j] = alpha * acc[i][j] + beta * cr[j];
    }
  }
}

// One B element as fp32.
inline float b_value(const float* b, int64_t p) { return b[p]; }
template <ElemType T>
float b_value16(const uint16_t* b, int64_t p) {
  return widen_one(T, b[p]);
}

template <typename B, float (*Value)(const B*, int64_t)>
void dot_scalar_of(int64_t k, const float* a, int64_t lda, int64_t m, const B* b, int64_t ldb,
                   int64_t n, float* c, int64_t ldc, float alpha, float beta) {
  for (int64_t j = 0; j < n; ++j) {
    const B* bj = b + j * ldb;
    for (int64_t i = 0; i < m; ++i) {
      const float* ai = a + i * lda;
      float sum = 0.0f;
      for (int64_t p = 0; p < k; ++p) sum += ai[p] * Value(bj, p);
      float& cv = c[i * ldc + j];
      cv = beta == 0.0f ? alpha * sum : alpha * sum + beta * cv;
    }
  }
}

void widen_f16_scalar(const uint16_t* src, int64_t n, float* dst) {
  widen_scalar(ElemType::F16, src, n, dst);
}
void widen_bf16_scalar(const uint16_t* src, int64_t n, float* dst) {
  widen_scalar(ElemType::BF16, src, n, dst);
}

}  // namespace

constexpr GemmKernels kGemmKernelsScalar = {ukernel_scalar,
                                            dot_scalar_of<float, b_value>,
                                            dot_scalar_of<uint16_t, b_value16<ElemType::F16>>,
                                            dot_scalar_of<uint16_t, b_value16<ElemType::BF16>>,
                                            widen_f16_scalar,
                                            widen_bf16_scalar,
                                            kMrScalar,
                                            kNrScalar,
                                            128,
                                            256,
                                            2048};
static_assert(blocking_fits(kGemmKernelsScalar), "blocking of the scalar GEMM");

}  // namespace ternorm::gemm
