// AVX-512 fp32 GEMM microkernel: up to 14 x 32 of C in 28 zmm accumulators.
// Per k step it loads two B vectors and broadcasts one A value per row: 28
// FMAs for 2 vector loads, so the FMA pipes, not the loads, set the pace.
// The row count is a template parameter, so a short edge tile does only the
// FMAs its rows need; the column edge uses masked loads/stores. Also the dot
// kernels of the small-m path (16 lanes along k, masked tail), which widen a
// 16-bit B in registers (vcvtph2ps for binary16, a shift for bfloat16).
#include <immintrin.h>

#include <cstdint>

#include "gemm_kernels.h"

namespace ternorm::gemm {
namespace {

constexpr int MR = kMrAvx512, NR = kNrAvx512;

inline __mmask16 first_lanes(int64_t count) {
  return count <= 0    ? __mmask16(0)
         : count >= 16 ? __mmask16(0xFFFF)
                       : __mmask16((1u << count) - 1u);
}

template <int ROWS>
void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t n, float alpha,
          float beta) {
  // Start fetching the C tile now so its misses overlap the FMAs.
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  __m512 acc[ROWS][2];
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < ROWS; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
  // C = alpha * acc + beta * C (beta == 0: C not read); columns past n masked off.
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = first_lanes(n), m1 = first_lanes(n - 16);
#pragma GCC unroll 16
  for (int i = 0; i < ROWS; ++i) {
    float* cr = c + i * ldc;
    if (beta == 0.0f) {
      _mm512_mask_storeu_ps(cr, m0, _mm512_mul_ps(va, acc[i][0]));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_mul_ps(va, acc[i][1]));
    } else {
      const __m512 c0 = _mm512_maskz_loadu_ps(m0, cr), c1 = _mm512_maskz_loadu_ps(m1, cr + 16);
      _mm512_mask_storeu_ps(cr, m0, _mm512_fmadd_ps(va, acc[i][0], _mm512_mul_ps(vb, c0)));
      _mm512_mask_storeu_ps(cr + 16, m1, _mm512_fmadd_ps(va, acc[i][1], _mm512_mul_ps(vb, c1)));
    }
  }
}

// The NB rows of B are NB streams read in lockstep (the decode head: 4 rows
// of 4 KB at d_model 1024, each a new stream on a new page for the hardware
// prefetchers). Each is prefetched this many floats' bytes ahead; past a row's end
// the prefetch moves on to the same row of the next NB (the next call's).
constexpr int64_t kDotPrefetch = 256;

// C[i][j] for MA rows of A and NB rows of B: one accumulator per element,
// 16 lanes over k, the tail masked, then a fixed reduction tree.
// 16 values of a 16-bit type T widened to fp32 (exactly). Zero-masking forms
// with a full mask are the plain instructions (the unmasked intrinsics trip
// GCC 12's -Wmaybe-uninitialized).
template <ElemType T>
inline __m512 widen16(__m256i h) {
  if constexpr (T == ElemType::F16) return _mm512_maskz_cvtph_ps(0xFFFF, h);
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(0xFFFF, _mm512_maskz_cvtepu16_epi32(0xFFFF, h), 16));
}

// The values of B of type T in the lanes of `lanes` (16 from p), widened to
// fp32 (exactly), zero elsewhere.
template <ElemType T>
inline __m512 load16(__mmask16 lanes, const Elem<T>* p) {
  if constexpr (T == ElemType::F32) {
    return _mm512_maskz_loadu_ps(lanes, p);
  } else {
    return widen16<T>(_mm256_maskz_loadu_epi16(lanes, p));
  }
}

// All 16 of them.
template <ElemType T>
inline __m512 load16(const Elem<T>* p) {
  if constexpr (T == ElemType::F32) {
    return _mm512_loadu_ps(p);
  } else {
    return widen16<T>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
}

template <ElemType T>
void widen_of(const uint16_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    _mm512_mask_storeu_ps(dst + i, m, load16<T>(m, src + i));
  }
}

template <int MA, int NB, ElemType T>
void dot_block(int64_t k, const float* a, int64_t lda, const Elem<T>* b, int64_t ldb, float* c,
               int64_t ldc, float alpha, float beta) {
  __m512 acc[MA][NB];
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_ps();
  // One prefetch per 64-byte line of B, as many bytes ahead whatever its type.
  constexpr int64_t kLine = 64 / int64_t(sizeof(Elem<T>));
  constexpr int64_t kAhead = kDotPrefetch * int64_t(sizeof(float) / sizeof(Elem<T>));
  int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    if ((p & (kLine - 1)) == 0) {
      const int64_t off = p + kAhead;
      const Elem<T>* ahead = b + (off < k ? off : off - k + NB * ldb);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + j * ldb), _MM_HINT_T0);
    }
    __m512 bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = load16<T>(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MA; ++i) {
      const __m512 av = _mm512_loadu_ps(a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (p < k) {
    const __mmask16 tail = first_lanes(k - p);
    __m512 bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = load16<T>(tail, b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MA; ++i) {
      const __m512 av = _mm512_maskz_loadu_ps(tail, a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      // Fixed tree: 16 -> 8 -> 4 -> 2 -> 1 lanes.
      // (Zero-masking extracts with a full mask are the plain instructions;
      // the unmasked intrinsics trip GCC 12's -Wuninitialized.)
      const __m256 h8 = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, acc[i][j], 0),
                                      _mm512_maskz_extractf32x8_ps(0xFF, acc[i][j], 1));
      const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
      const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
      const float sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
      float& cv = c[i * ldc + j];
      cv = beta == 0.0f ? alpha * sum : alpha * sum + beta * cv;
    }
}

#include "../cpu/counted_loops.h"
#include "gemm_isa_loops.h"

}  // namespace

constexpr GemmKernels kGemmKernelsAvx512 = {
    ukernel, dot, dot_f16, dot_bf16, widen_of<ElemType::F16>, widen_of<ElemType::BF16>, MR,
    NR,      336, 512,     2048};
static_assert(blocking_fits(kGemmKernelsAvx512), "blocking of the Avx512 GEMM");

}  // namespace ternorm::gemm
