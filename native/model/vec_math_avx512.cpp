// AVX-512 row kernels of the element-wise math: exp_approx 16 lanes at a time
// with the reference's exact operation sequence (no FMA: separate multiply
// and add), the double sums kept in the reference's 8 lanes; max is the
// AVX2 kernel.
// GCC 12's AVX-512 headers trip a false -W(maybe-)uninitialized on their
// _mm512_undefined_* placeholders (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "vec_math_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "vec_math_isa_loops.h"

__mmask16 first(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
}

// exp_approx (vec_math.h) on 16 lanes.
__m512 exp16(__m512 x) {
  const __m512i mag = _mm512_set1_epi32(0x7FFFFFFF);
  __m512i xi = _mm512_castps_si512(x);
  __m512i oi = _mm512_xor_si512(xi, _mm512_and_si512(_mm512_srai_epi32(xi, 31), mag));
  oi = _mm512_max_epi32(oi, _mm512_set1_epi32(int32_t(0xC2AE0000u) ^ 0x7FFFFFFF));
  oi = _mm512_min_epi32(oi, _mm512_set1_epi32(0x42B00000));
  xi = _mm512_xor_si512(oi, _mm512_and_si512(_mm512_srai_epi32(oi, 31), mag));
  x = _mm512_castsi512_ps(xi);
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  const __m512 n = _mm512_sub_ps(
      _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic), magic);
  const __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))),
                                 _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
  const __m512i bits =
      _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

__m512 neg(__m512 x) {
  return _mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int32_t(0x80000000u))));
}

double exp_sum_avx512(const float* x, float shift, float* y, int64_t n) {
  const __m512 sh = _mm512_set1_ps(shift);
  __m512d acc = _mm512_setzero_pd();  // lane k: the reference's s[k]
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), sh));
    if (y) _mm512_storeu_ps(y + j, e);
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
  }
  double s[8];
  float tail[16];
  const int64_t left = n - j;
  if (left > 0) {
    const __mmask16 k = first(left);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), sh));
    if (y) _mm512_mask_storeu_ps(y + j, k, e);
    if (left >= 8) acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    _mm512_storeu_ps(tail, e);
  }
  _mm512_storeu_pd(s, acc);
  for (int64_t t = left >= 8 ? 8 : 0; t < left; ++t) s[0] += double(tail[t]);
  return sum_lanes(s);
}

void scale_avx512(float* x, float s, int64_t n) {
  const __m512 v = _mm512_set1_ps(s);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = first(n - j);
    _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), v));
  }
}

__m512 sigmoid16(__m512 g) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(neg(g))));
}

void swiglu_avx512(const float* g, const float* u, float* o, int64_t f) {
  for (int64_t c = 0; c < f; c += 16) {
    const __mmask16 k = first(f - c);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + c);
    const __m512 uv = _mm512_maskz_loadu_ps(k, u + c);
    _mm512_mask_storeu_ps(o + c, k, _mm512_mul_ps(_mm512_mul_ps(gv, sigmoid16(gv)), uv));
  }
}

void swiglu_backward_avx512(const float* g, const float* u, const float* dy, float* dg, float* du,
                            int64_t f) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t c = 0; c < f; c += 16) {
    const __mmask16 k = first(f - c);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + c);
    const __m512 uv = _mm512_maskz_loadu_ps(k, u + c);
    const __m512 d = _mm512_maskz_loadu_ps(k, dy + c);
    const __m512 sig = sigmoid16(gv);
    _mm512_mask_storeu_ps(du + c, k, _mm512_mul_ps(_mm512_mul_ps(d, gv), sig));
    const __m512 slope = _mm512_add_ps(one, _mm512_mul_ps(gv, _mm512_sub_ps(one, sig)));
    _mm512_mask_storeu_ps(dg + c, k,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, uv), sig), slope));
  }
}

// 8 pairs at a time, the last ones masked: x = (a, b, ...), its pair-swap
// (b, a, ...), c and si each doubled (c0 c0 c1 c1 ...); the even lanes take
// the difference, the odd ones the sum.
void rope_avx512(float* x, int64_t width, int64_t hd, const float* c, const float* s, float sign) {
  const int64_t half = hd / 2;
  const __m512i twice = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m256 sg = _mm256_set1_ps(sign);
  for (int64_t h0 = 0; h0 < width; h0 += hd) {
    float* xh = x + h0;
    for (int64_t i = 0; i < half; i += 8) {
      const int64_t pairs = half - i < 8 ? half - i : 8;
      const __mmask8 kp = __mmask8((1u << pairs) - 1u);
      const __mmask16 kx = first(2 * pairs);
      const __m512 cc =
          _mm512_permutexvar_ps(twice, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(kp, c + i)));
      const __m512 ss = _mm512_permutexvar_ps(
          twice, _mm512_castps256_ps512(_mm256_mul_ps(sg, _mm256_maskz_loadu_ps(kp, s + i))));
      const __m512 v = _mm512_maskz_loadu_ps(kx, xh + 2 * i);
      const __m512 p = _mm512_mul_ps(v, cc);
      const __m512 q = _mm512_mul_ps(_mm512_permute_ps(v, 0xB1), ss);
      _mm512_mask_storeu_ps(xh + 2 * i, kx, _mm512_mask_sub_ps(_mm512_add_ps(p, q), 0x5555, p, q));
    }
  }
}

}  // namespace

constexpr VecKernels kVecKernelsAvx512 = {max_avx2,      exp_sum_avx512,         scale_avx512,
                                          swiglu_avx512, swiglu_backward_avx512, rope_avx512};

}  // namespace ternorm::model::detail
