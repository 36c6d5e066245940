// AVX-512 RMSNorm row kernels. The 16 canonical lanes are one zmm register;
// tails use zero-masked loads (the zero lanes add +0, leaving each partial sum
// unchanged) and masked stores. No FMA: see rmsnorm_kernels.h.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h seeds results with _mm512_undefined_*(), which
// -Wall reports as uninitialised at -O3 (a false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "rmsnorm_kernels.h"

namespace ternorm::norm {
namespace {

// Lanes j < r (r in [0, 16]) active.
inline __mmask16 tail_mask(int64_t r) {
  return r >= 16 ? __mmask16(0xffff) : __mmask16((1u << unsigned(r)) - 1u);
}

// The canonical tree: s = 8 (the two 256-bit halves), 4, 2, 1.
inline float fold(__m512 a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

float sumsq_avx512(const float* x, int64_t d) {
  __m512 a = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m512 v = _mm512_loadu_ps(x + c);
    a = _mm512_add_ps(a, _mm512_mul_ps(v, v));
  }
  if (c < d) {
    const __m512 v = _mm512_maskz_loadu_ps(tail_mask(d - c), x + c);
    a = _mm512_add_ps(a, _mm512_mul_ps(v, v));
  }
  return fold(a);
}

void scale_avx512(const float* x, int64_t d, float inv, const float* wg, float* y) {
  const __m512 vi = _mm512_set1_ps(inv);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16)
    _mm512_storeu_ps(
        y + c, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + c), vi), _mm512_loadu_ps(wg + c)));
  if (c < d) {
    const __mmask16 m = tail_mask(d - c);
    _mm512_mask_storeu_ps(y + c, m,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), vi),
                                        _mm512_maskz_loadu_ps(m, wg + c)));
  }
}

float absmax_avx512(const float* x, int64_t d, float inv, const float* wg) {
  const __m512 vi = _mm512_set1_ps(inv);
  __m512 m = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m512 y =
        _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + c), vi), _mm512_loadu_ps(wg + c));
    m = _mm512_max_ps(m, _mm512_abs_ps(y));
  }
  if (c < d) {
    const __mmask16 k = tail_mask(d - c);
    const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + c), vi),
                                   _mm512_maskz_loadu_ps(k, wg + c));
    m = _mm512_max_ps(m, _mm512_abs_ps(y));
  }
  __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(m), _mm512_extractf32x8_ps(m, 1));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// 16 values -> rounded (ties to even), clamped to [-127, 127], narrowed to int8.
inline __m128i quant16(__m512 x, __m512 vi, __m512 w, __m512 vp, __m512 vs) {
  const __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(x, vi), w), vp), vs);
  __m512 r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r));
}

void quantize_avx512(const float* x, int64_t d, int64_t padded, float inv, const float* wg,
                     float pre, float iscale, int8_t* q) {
  const __m512 vi = _mm512_set1_ps(inv), vp = _mm512_set1_ps(pre), vs = _mm512_set1_ps(iscale);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c),
                     quant16(_mm512_loadu_ps(x + c), vi, _mm512_loadu_ps(wg + c), vp, vs));
  if (c < d) {
    // Masked-off lanes read x = 0 and give q = 0: exactly the padding the
    // rest of this 16-column block (inside `padded`) must hold.
    const __mmask16 m = tail_mask(d - c);
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(q + c),
        quant16(_mm512_maskz_loadu_ps(m, x + c), vi, _mm512_maskz_loadu_ps(m, wg + c), vp, vs));
    c += 16;
  }
  if (c < padded) std::memset(q + c, 0, size_t(padded - c));
}

float dot_avx512(const float* dy, const float* wg, const float* x, int64_t d) {
  __m512 a = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16)
    a = _mm512_add_ps(a,
                      _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(dy + c), _mm512_loadu_ps(wg + c)),
                                    _mm512_loadu_ps(x + c)));
  if (c < d) {
    const __mmask16 m = tail_mask(d - c);
    a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + c),
                                                     _mm512_maskz_loadu_ps(m, wg + c)),
                                       _mm512_maskz_loadu_ps(m, x + c)));
  }
  return fold(a);
}

void dx_avx512(const float* dy, const float* wg, const float* x, int64_t d, float k, float inv,
               float* dx) {
  const __m512 vk = _mm512_set1_ps(k), vi = _mm512_set1_ps(inv);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m512 a = _mm512_mul_ps(_mm512_loadu_ps(dy + c), _mm512_loadu_ps(wg + c));
    const __m512 b = _mm512_mul_ps(_mm512_loadu_ps(x + c), vk);
    _mm512_storeu_ps(dx + c, _mm512_mul_ps(_mm512_sub_ps(a, b), vi));
  }
  if (c < d) {
    const __mmask16 m = tail_mask(d - c);
    const __m512 a =
        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + c), _mm512_maskz_loadu_ps(m, wg + c));
    const __m512 b = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), vk);
    _mm512_mask_storeu_ps(dx + c, m, _mm512_mul_ps(_mm512_sub_ps(a, b), vi));
  }
}

void dgain_avx512(const float* x, const float* dy, const float* inv, int64_t n, int64_t d,
                  const float* w, int64_t c0, int64_t c1, float* dgain) {
  int64_t c = c0;
  // 64 channels at a time: four independent per-channel accumulations over t.
  for (; c + 64 <= c1; c += 64) {
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
    for (int64_t t = 0; t < n; ++t) {
      const __m512 vi = _mm512_set1_ps(inv[t]);
      const float* xr = x + t * d + c;
      const float* dr = dy + t * d + c;
      for (int j = 0; j < 4; ++j)
        a[j] = _mm512_add_ps(a[j], _mm512_mul_ps(_mm512_loadu_ps(dr + 16 * j),
                                                 _mm512_mul_ps(_mm512_loadu_ps(xr + 16 * j), vi)));
    }
    for (int j = 0; j < 4; ++j)
      _mm512_storeu_ps(dgain + c + 16 * j, _mm512_mul_ps(a[j], _mm512_loadu_ps(w + c + 16 * j)));
  }
  for (; c < c1; c += 16) {
    const __mmask16 m = tail_mask(c1 - c);
    __m512 a = _mm512_setzero_ps();
    for (int64_t t = 0; t < n; ++t) {
      const __m512 vi = _mm512_set1_ps(inv[t]);
      a = _mm512_add_ps(a,
                        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + t * d + c),
                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + t * d + c), vi)));
    }
    _mm512_mask_storeu_ps(dgain + c, m, _mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, w + c)));
  }
}

}  // namespace

constexpr RmsKernels kRmsKernelsAvx512 = {sumsq_avx512,    scale_avx512, absmax_avx512,
                                          quantize_avx512, dot_avx512,   dx_avx512,
                                          dgain_avx512};

}  // namespace ternorm::norm
