// AVX2 row kernels of the element-wise math: exp_approx 8 lanes at a time
// with the reference's exact operation sequence (no FMA: separate multiply
// and add), max and the double sums kept in the reference's 8 lanes.
#include <immintrin.h>

#include <cstdint>

#include "vec_math_kernels.h"

namespace ternorm::model::detail {
namespace {

#include "vec_math_isa_loops.h"

// All-ones in the lanes below count (0..8).
__m256i first(int64_t count) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(count < 8 ? count : 8)), idx);
}

// exp_approx (vec_math.h) on 8 lanes.
__m256 exp8(__m256 x) {
  const __m256i mag = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i xi = _mm256_castps_si256(x);
  __m256i oi = _mm256_xor_si256(xi, _mm256_and_si256(_mm256_srai_epi32(xi, 31), mag));
  oi = _mm256_max_epi32(oi, _mm256_set1_epi32(int32_t(0xC2AE0000u) ^ 0x7FFFFFFF));
  oi = _mm256_min_epi32(oi, _mm256_set1_epi32(0x42B00000));
  xi = _mm256_xor_si256(oi, _mm256_and_si256(_mm256_srai_epi32(oi, 31), mag));
  x = _mm256_castsi256_ps(xi);
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 n = _mm256_sub_ps(
      _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), magic), magic);
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f))),
                                 _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), _mm256_set1_ps(1.0f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__m256 neg(__m256 x) { return _mm256_xor_ps(x, _mm256_set1_ps(-0.0f)); }

double exp_sum_avx2(const float* x, float shift, float* y, int64_t n) {
  const __m256 sh = _mm256_set1_ps(shift);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // the reference's s[0..3], s[4..7]
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), sh));
    if (y) _mm256_storeu_ps(y + j, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double s[8];
  _mm256_storeu_pd(s, lo);
  _mm256_storeu_pd(s + 4, hi);
  const int64_t left = n - j;
  if (left > 0) {
    const __m256i k = first(left);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, k), sh));
    if (y) _mm256_maskstore_ps(y + j, k, e);
    float tail[8];
    _mm256_storeu_ps(tail, e);
    for (int64_t t = 0; t < left; ++t) s[0] += double(tail[t]);
  }
  return sum_lanes(s);
}

void scale_avx2(float* x, float s, int64_t n) {
  const __m256 v = _mm256_set1_ps(s);
  for (int64_t j = 0; j < n; j += 8) {
    const __m256i k = first(n - j);
    _mm256_maskstore_ps(x + j, k, _mm256_mul_ps(_mm256_maskload_ps(x + j, k), v));
  }
}

__m256 sigmoid8(__m256 g) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(neg(g))));
}

void swiglu_avx2(const float* g, const float* u, float* o, int64_t f) {
  for (int64_t c = 0; c < f; c += 8) {
    const __m256i k = first(f - c);
    const __m256 gv = _mm256_maskload_ps(g + c, k);
    const __m256 uv = _mm256_maskload_ps(u + c, k);
    _mm256_maskstore_ps(o + c, k, _mm256_mul_ps(_mm256_mul_ps(gv, sigmoid8(gv)), uv));
  }
}

void swiglu_backward_avx2(const float* g, const float* u, const float* dy, float* dg, float* du,
                          int64_t f) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for (int64_t c = 0; c < f; c += 8) {
    const __m256i k = first(f - c);
    const __m256 gv = _mm256_maskload_ps(g + c, k);
    const __m256 uv = _mm256_maskload_ps(u + c, k);
    const __m256 d = _mm256_maskload_ps(dy + c, k);
    const __m256 sig = sigmoid8(gv);
    _mm256_maskstore_ps(du + c, k, _mm256_mul_ps(_mm256_mul_ps(d, gv), sig));
    const __m256 slope = _mm256_add_ps(one, _mm256_mul_ps(gv, _mm256_sub_ps(one, sig)));
    _mm256_maskstore_ps(dg + c, k, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, uv), sig), slope));
  }
}

}  // namespace

namespace {
// The reference's lanes, one chain: max_ps(x, m) is "x > m ? x : m", the
// reference's "m < x ? x : m" (NaN in x keeps m).
float max_one_chain(const float* x, int64_t n) {
  __m256 m = _mm256_set1_ps(x[0]);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + j), m);
  float lane[8];
  _mm256_storeu_ps(lane, m);
  return max_finish(lane, x, j, n);
}
}  // namespace

// One chain runs at max_ps's latency; four run at its throughput. Each lane
// still ends at the same value (the largest, NaN in x skipped; a NaN x[0]
// kept, as every chain starts from it), and equal non-zero floats have equal
// bits. Only a zero maximum can differ (which of +0 and -0 came first): that
// row goes through the one chain again.
float max_avx2(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, m2 = m0, m3 = m0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + j + 8), m1);
    m2 = _mm256_max_ps(_mm256_loadu_ps(x + j + 16), m2);
    m3 = _mm256_max_ps(_mm256_loadu_ps(x + j + 24), m3);
  }
  for (; j + 8 <= n; j += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + j), m0);
  m0 = _mm256_max_ps(m1, m0);
  m0 = _mm256_max_ps(m2, m0);
  m0 = _mm256_max_ps(m3, m0);
  float lane[8];
  _mm256_storeu_ps(lane, m0);
  const float r = max_finish(lane, x, j, n);
  return r == 0.0f ? max_one_chain(x, n) : r;
}

namespace {

// 4 pairs at a time: x = (a, b, ...), its pair-swap (b, a, ...), c and si
// each doubled (c0 c0 c1 c1 ...); addsub subtracts in the even lanes, adds in
// the odd ones.
void rope_avx2(float* x, int64_t width, int64_t hd, const float* c, const float* s, float sign) {
  const int64_t half = hd / 2;
  const __m256i twice = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m128 sg = _mm_set1_ps(sign);
  for (int64_t h0 = 0; h0 < width; h0 += hd) {
    float* xh = x + h0;
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
      const __m256 cc =
          _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(c + i)), twice);
      const __m256 ss = _mm256_permutevar8x32_ps(
          _mm256_castps128_ps256(_mm_mul_ps(sg, _mm_loadu_ps(s + i))), twice);
      const __m256 v = _mm256_loadu_ps(xh + 2 * i);
      const __m256 swapped = _mm256_permute_ps(v, 0xB1);
      _mm256_storeu_ps(xh + 2 * i,
                       _mm256_addsub_ps(_mm256_mul_ps(v, cc), _mm256_mul_ps(swapped, ss)));
    }
    rope_pairs(xh, c, s, sign, i, half);
  }
}

}  // namespace

constexpr VecKernels kVecKernelsAvx2 = {max_avx2,    exp_sum_avx2,         scale_avx2,
                                        swiglu_avx2, swiglu_backward_avx2, rope_avx2};

}  // namespace ternorm::model::detail
