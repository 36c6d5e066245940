// AVX2 fp32 GEMM microkernel: up to 6 x 16 of C in 12 ymm accumulators (+2 B
// vectors +1 broadcast = 15 of the 16 registers), 12 FMAs per 8 loads. The
// row count is a template parameter, so a short edge tile does only the FMAs
// its rows need; the column edge uses masked loads/stores. Also the dot
// kernels of the small-m path (8 lanes along k, masked tail), which widen a
// 16-bit B in registers (F16C for binary16, a shift for bfloat16).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemm_kernels.h"

namespace ternorm::gemm {
namespace {

constexpr int MR = kMrAvx2, NR = kNrAvx2;

// All-ones in the lanes first .. first+7 that are < count.
inline __m256i lanes_below(int64_t first, int64_t count) {
  const __m256i idx =
      _mm256_add_epi32(_mm256_set1_epi32(int(first)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count)), idx);
}

template <int ROWS>
void tile(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t n, float alpha,
          float beta) {
  // Start fetching the C tile now so its misses overlap the FMAs.
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  __m256 acc[ROWS][2];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += MR;
    b += NR;
  }
  // C = alpha * acc + beta * C (beta == 0: C not read). A full-width tile uses
  // plain loads/stores, a column edge masked ones: the same arithmetic.
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  const bool beta0 = beta == 0.0f;
  if (n == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      float* cr = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
      if (!beta0) {
        r0 = _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(cr)));
        r1 = _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8)));
      }
      _mm256_storeu_ps(cr, r0);
      _mm256_storeu_ps(cr + 8, r1);
    }
  } else {
    const __m256i m0 = lanes_below(0, n), m1 = lanes_below(8, n);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      float* cr = c + i * ldc;
      __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
      if (!beta0) {
        r0 = _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_maskload_ps(cr, m0)));
        r1 = _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_maskload_ps(cr + 8, m1)));
      }
      _mm256_maskstore_ps(cr, m0, r0);
      _mm256_maskstore_ps(cr + 8, m1, r1);
    }
  }
}

// C[i][j] for MA rows of A and NB rows of B: one accumulator per element,
// 8 lanes over k, the tail masked, then a fixed reduction tree.
// The NB rows of B are NB streams read in lockstep (the decode head: 4 rows
// of 4 KB at d_model 1024, each a new stream on a new page for the hardware
// prefetchers). Each is prefetched this many floats' bytes ahead, one line per two
// steps; past a row's end the prefetch moves on to the same row of the next
// NB (the next call's).
constexpr int64_t kDotPrefetch = 256;

// 8 values of B of type T, widened to fp32 (exactly).
template <ElemType T>
inline __m256 load8(const Elem<T>* p) {
  if constexpr (T == ElemType::F32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (T == ElemType::F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// The first n (0 < n < 8) of them, zero past (what a masked fp32 load gives).
template <ElemType T>
inline __m256 load8_first(const Elem<T>* p, int64_t n) {
  if constexpr (T == ElemType::F32) {
    return _mm256_maskload_ps(p, lanes_below(0, n));
  } else {
    uint16_t part[8] = {};
    std::memcpy(part, p, size_t(n) * sizeof(uint16_t));
    return load8<T>(part);
  }
}

template <ElemType T>
void widen_of(const uint16_t* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(src + i));
  if (i < n) _mm256_maskstore_ps(dst + i, lanes_below(0, n - i), load8_first<T>(src + i, n - i));
}

template <int MA, int NB, ElemType T>
void dot_block(int64_t k, const float* a, int64_t lda, const Elem<T>* b, int64_t ldb, float* c,
               int64_t ldc, float alpha, float beta) {
  __m256 acc[MA][NB];
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_setzero_ps();
  // One prefetch per 64-byte line of B, as many bytes ahead whatever its type.
  constexpr int64_t kLine = 64 / int64_t(sizeof(Elem<T>));
  constexpr int64_t kAhead = kDotPrefetch * int64_t(sizeof(float) / sizeof(Elem<T>));
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    if ((p & (kLine - 1)) == 0) {
      const int64_t off = p + kAhead;
      const Elem<T>* ahead = b + (off < k ? off : off - k + NB * ldb);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + j * ldb), _MM_HINT_T0);
    }
    __m256 bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = load8<T>(b + j * ldb + p);
#pragma GCC unroll 4
    for (int i = 0; i < MA; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  if (p < k) {
    const __m256i tail = lanes_below(0, k - p);
    __m256 bv[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bv[j] = load8_first<T>(b + j * ldb + p, k - p);
#pragma GCC unroll 4
    for (int i = 0; i < MA; ++i) {
      const __m256 av = _mm256_maskload_ps(a + i * lda + p, tail);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MA; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      // Fixed tree: 8 -> 4 -> 2 -> 1 lanes.
      const __m128 h4 =
          _mm_add_ps(_mm256_castps256_ps128(acc[i][j]), _mm256_extractf128_ps(acc[i][j], 1));
      const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
      const float sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
      float& cv = c[i * ldc + j];
      cv = beta == 0.0f ? alpha * sum : alpha * sum + beta * cv;
    }
}

#include "../cpu/counted_loops.h"
#include "gemm_isa_loops.h"

}  // namespace

constexpr GemmKernels kGemmKernelsAvx2 = {
    ukernel, dot, dot_f16, dot_bf16, widen_of<ElemType::F16>, widen_of<ElemType::BF16>, MR,
    NR,      144, 256,     2048};
static_assert(blocking_fits(kGemmKernelsAvx2), "blocking of the Avx2 GEMM");

}  // namespace ternorm::gemm
