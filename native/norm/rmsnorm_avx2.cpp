// AVX2 RMSNorm row kernels. The 16 canonical lanes live in two ymm registers
// (lanes 0-7 and 8-15); tails use masked loads, whose zero lanes add +0 and
// leave every partial sum unchanged. No FMA: see rmsnorm_kernels.h.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "rmsnorm_kernels.h"

namespace ternorm::norm {
namespace {

// Lanes j < r (r clamped to [0, 8]) active.
inline __m256i tail_mask(int64_t r) {
  const int rr = r < 0 ? 0 : (r > 8 ? 8 : int(r));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(rr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The canonical tree: s = 8 (a0 + a1), 4, 2, 1.
inline float fold(__m256 a0, __m256 a1) {
  const __m256 s8 = _mm256_add_ps(a0, a1);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_movehdup_ps(s2));
  return _mm_cvtss_f32(s1);
}

float sumsq_avx2(const float* x, int64_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m256 v0 = _mm256_loadu_ps(x + c), v1 = _mm256_loadu_ps(x + c + 8);
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(v0, v0));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(v1, v1));
  }
  if (c < d) {
    const int64_t r = d - c;
    const __m256 v0 = _mm256_maskload_ps(x + c, tail_mask(r));
    const __m256 v1 = _mm256_maskload_ps(x + c + 8, tail_mask(r - 8));
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(v0, v0));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(v1, v1));
  }
  return fold(a0, a1);
}

void scale_avx2(const float* x, int64_t d, float inv, const float* wg, float* y) {
  const __m256 vi = _mm256_set1_ps(inv);
  int64_t c = 0;
  for (; c + 8 <= d; c += 8)
    _mm256_storeu_ps(
        y + c, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vi), _mm256_loadu_ps(wg + c)));
  if (c < d) {
    const __m256i m = tail_mask(d - c);
    _mm256_maskstore_ps(y + c, m,
                        _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(x + c, m), vi),
                                      _mm256_maskload_ps(wg + c, m)));
  }
}

float absmax_avx2(const float* x, int64_t d, float inv, const float* wg) {
  const __m256 vi = _mm256_set1_ps(inv), sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= d; c += 8) {
    const __m256 y =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + c), vi), _mm256_loadu_ps(wg + c));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, y));
  }
  if (c < d) {
    const __m256i k = tail_mask(d - c);
    const __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(x + c, k), vi),
                                   _mm256_maskload_ps(wg + c, k));
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, y));
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// 8 values -> rounded (ties to even) and clamped to [-127, 127], as int32.
inline __m256i quant8(__m256 x, __m256 vi, __m256 w, __m256 vp, __m256 vs) {
  const __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(x, vi), w), vp), vs);
  __m256 r = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
  return _mm256_cvttps_epi32(r);
}

// Two int32 vectors (in range) -> 16 int8 in order.
inline __m128i pack16(__m256i i0, __m256i i1) {
  const __m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
  return _mm_packs_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
}

void quantize_avx2(const float* x, int64_t d, int64_t padded, float inv, const float* wg, float pre,
                   float iscale, int8_t* q) {
  const __m256 vi = _mm256_set1_ps(inv), vp = _mm256_set1_ps(pre), vs = _mm256_set1_ps(iscale);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    const __m256i i0 = quant8(_mm256_loadu_ps(x + c), vi, _mm256_loadu_ps(wg + c), vp, vs);
    const __m256i i1 = quant8(_mm256_loadu_ps(x + c + 8), vi, _mm256_loadu_ps(wg + c + 8), vp, vs);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c), pack16(i0, i1));
  }
  if (c < d) {
    // Masked-off lanes read x = 0 and give q = 0: exactly the padding the
    // rest of this 16-column block (inside `padded`) must hold.
    const __m256i m0 = tail_mask(d - c), m1 = tail_mask(d - c - 8);
    const __m256i i0 =
        quant8(_mm256_maskload_ps(x + c, m0), vi, _mm256_maskload_ps(wg + c, m0), vp, vs);
    const __m256i i1 =
        quant8(_mm256_maskload_ps(x + c + 8, m1), vi, _mm256_maskload_ps(wg + c + 8, m1), vp, vs);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c), pack16(i0, i1));
    c += 16;
  }
  if (c < padded) std::memset(q + c, 0, size_t(padded - c));
}

float dot_avx2(const float* dy, const float* wg, const float* x, int64_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) {
    a0 = _mm256_add_ps(
        a0, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(wg + c)),
                          _mm256_loadu_ps(x + c)));
    a1 = _mm256_add_ps(
        a1, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c + 8), _mm256_loadu_ps(wg + c + 8)),
                          _mm256_loadu_ps(x + c + 8)));
  }
  if (c < d) {
    const __m256i m0 = tail_mask(d - c), m1 = tail_mask(d - c - 8);
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(dy + c, m0),
                                                       _mm256_maskload_ps(wg + c, m0)),
                                         _mm256_maskload_ps(x + c, m0)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(dy + c + 8, m1),
                                                       _mm256_maskload_ps(wg + c + 8, m1)),
                                         _mm256_maskload_ps(x + c + 8, m1)));
  }
  return fold(a0, a1);
}

void dx_avx2(const float* dy, const float* wg, const float* x, int64_t d, float k, float inv,
             float* dx) {
  const __m256 vk = _mm256_set1_ps(k), vi = _mm256_set1_ps(inv);
  int64_t c = 0;
  for (; c + 8 <= d; c += 8) {
    const __m256 a = _mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(wg + c));
    const __m256 b = _mm256_mul_ps(_mm256_loadu_ps(x + c), vk);
    _mm256_storeu_ps(dx + c, _mm256_mul_ps(_mm256_sub_ps(a, b), vi));
  }
  if (c < d) {
    const __m256i m = tail_mask(d - c);
    const __m256 a = _mm256_mul_ps(_mm256_maskload_ps(dy + c, m), _mm256_maskload_ps(wg + c, m));
    const __m256 b = _mm256_mul_ps(_mm256_maskload_ps(x + c, m), vk);
    _mm256_maskstore_ps(dx + c, m, _mm256_mul_ps(_mm256_sub_ps(a, b), vi));
  }
}

void dgain_avx2(const float* x, const float* dy, const float* inv, int64_t n, int64_t d,
                const float* w, int64_t c0, int64_t c1, float* dgain) {
  int64_t c = c0;
  // 32 channels at a time: four independent per-channel accumulations over t.
  for (; c + 32 <= c1; c += 32) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
    for (int64_t t = 0; t < n; ++t) {
      const __m256 vi = _mm256_set1_ps(inv[t]);
      const float* xr = x + t * d + c;
      const float* dr = dy + t * d + c;
      for (int j = 0; j < 4; ++j)
        a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(_mm256_loadu_ps(dr + 8 * j),
                                                 _mm256_mul_ps(_mm256_loadu_ps(xr + 8 * j), vi)));
    }
    for (int j = 0; j < 4; ++j)
      _mm256_storeu_ps(dgain + c + 8 * j, _mm256_mul_ps(a[j], _mm256_loadu_ps(w + c + 8 * j)));
  }
  for (; c < c1; c += 8) {
    const __m256i m = tail_mask(c1 - c);
    __m256 a = _mm256_setzero_ps();
    for (int64_t t = 0; t < n; ++t) {
      const __m256 vi = _mm256_set1_ps(inv[t]);
      a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_maskload_ps(dy + t * d + c, m),
                                         _mm256_mul_ps(_mm256_maskload_ps(x + t * d + c, m), vi)));
    }
    _mm256_maskstore_ps(dgain + c, m, _mm256_mul_ps(a, _mm256_maskload_ps(w + c, m)));
  }
}

}  // namespace

constexpr RmsKernels kRmsKernelsAvx2 = {sumsq_avx2, scale_avx2, absmax_avx2, quantize_avx2,
                                        dot_avx2,   dx_avx2,    dgain_avx2};

}  // namespace ternorm::norm
