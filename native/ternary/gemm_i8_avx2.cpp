// AVX2 path of gemm_i8. Half a tile (32 bytes) of bit pair j is 8 rows x 4
// columns of unsigned weight codes; vpmaddubsw against the 4 broadcast
// activation bytes gives, per row, two int16 partial sums (columns 0+1, 2+3).
// These are accumulated in int16 over kChunk column blocks, then widened with
// vpmaddwd(ones), which also adds the row's two halves.
//
// No int16 overflow: codes are in {0, 1, 2} and q in [-128, 127], so one
// maddubs lane is c0 q0 + c1 q1 in [-512, 508] (far from maddubs' own
// saturation). A lane takes 4 of them per column block (bit pairs 0..3), so
// over kChunk = 8 blocks |sum| <= 8 * 4 * 512 = 16384 < 32767 (and still
// < 32767 with the invalid code 3 of corrupt data: 8 * 4 * 768 = 24576).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemm_i8_kernels.h"

namespace ternorm::ternary::detail {
namespace {

constexpr int64_t kChunk = 8;
// How far ahead the GEMV (one token) prefetches its weight stream, in bytes.
constexpr int64_t kPrefetch = 1024;

inline __m256i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int J, int T>
inline void step(__m256i lo, __m256i hi, const int8_t* qb, int64_t qstride, __m256i (&acc)[2][T]) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i u0 =
      J == 0 ? _mm256_and_si256(lo, m3) : _mm256_and_si256(_mm256_srli_epi16(lo, 2 * J), m3);
  const __m256i u1 =
      J == 0 ? _mm256_and_si256(hi, m3) : _mm256_and_si256(_mm256_srli_epi16(hi, 2 * J), m3);
  for (int t = 0; t < T; ++t) {
    const __m256i b = bcast4(qb + t * qstride + 4 * J);
    acc[0][t] = _mm256_add_epi16(acc[0][t], _mm256_maddubs_epi16(u0, b));
    acc[1][t] = _mm256_add_epi16(acc[1][t], _mm256_maddubs_epi16(u1, b));
  }
}

// y for one row panel and tokens [t0, t0 + T).
template <int T>
void micro(const GemmI8Args& a, int64_t pan, int64_t t0) {
  const int64_t qstride = a.col_blocks * kColBlock;
  const uint8_t* w = a.w + pan * a.col_blocks * kTileBytes;
  const int8_t* q = a.q + t0 * qstride;
  const __m256i ones = _mm256_set1_epi16(1);
  alignas(32) int32_t acc32[2][T][8] = {};
  // With several tokens, the next panel is fetched while this one computes (as
  // the AVX-512 path: a panel is too short a run for the hardware prefetcher
  // to ramp up on); with one, the stream is fetched kPrefetch ahead instead.
  const uint8_t* next = w + a.col_blocks * kTileBytes;
  const bool fetch = T > 1 && pan + 2 <= (a.rows + kRowPanel - 1) / kRowPanel;
  for (int64_t b0 = a.b_begin; b0 < a.b_end; b0 += kChunk) {
    const int64_t b1 = b0 + kChunk < a.b_end ? b0 + kChunk : a.b_end;
    __m256i acc[2][T];
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < T; ++t) acc[h][t] = _mm256_setzero_si256();
    for (int64_t b = b0; b < b1; ++b) {
      // A panel's tiles are contiguous and so are the panels: one stream,
      // prefetched ahead across the 4 KB pages the hardware stops at.
      if (T == 1)
        _mm_prefetch(reinterpret_cast<const char*>(w) + b * kTileBytes + kPrefetch, _MM_HINT_T0);
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * kTileBytes));
      const __m256i hi =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b * kTileBytes + 32));
      if (fetch) _mm_prefetch(reinterpret_cast<const char*>(next + b * kTileBytes), _MM_HINT_T0);
      const int8_t* qb = q + b * kColBlock;
      step<0>(lo, hi, qb, qstride, acc);
      step<1>(lo, hi, qb, qstride, acc);
      step<2>(lo, hi, qb, qstride, acc);
      step<3>(lo, hi, qb, qstride, acc);
    }
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < T; ++t) {
        __m256i* dst = reinterpret_cast<__m256i*>(acc32[h][t]);
        _mm256_store_si256(
            dst, _mm256_add_epi32(_mm256_load_si256(dst), _mm256_madd_epi16(acc[h][t], ones)));
      }
  }
  // Epilogue over 8 rows: (float(dot) * x_scale) * w_scale, masked at the row tail.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int h = 0; h < 2; ++h) {
    const int64_t row0 = pan * kRowPanel + 8 * h;
    const int64_t left = a.rows - row0;
    if (left <= 0) break;
    const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(left < 8 ? left : 8)), lane);
    const __m256 ws = _mm256_maskload_ps(a.w_scales + row0, k);
    for (int t = 0; t < T; ++t) {
      const __m256i acc = _mm256_load_si256(reinterpret_cast<const __m256i*>(acc32[h][t]));
      const __m256i dot = _mm256_sub_epi32(acc, _mm256_set1_epi32(a.q_sums[t0 + t]));
      const __m256 v = _mm256_mul_ps(
          _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(a.x_scales[t0 + t])), ws);
      _mm256_maskstore_ps(a.y + (t0 + t) * a.rows + row0, k, v);
    }
  }
}

#include "../cpu/counted_loops.h"
#include "gemm_i8_isa_loops.h"

}  // namespace

constexpr GemmI8Kernels kGemmI8KernelsAvx2 = {panels_by_token_blocks<4>};

}  // namespace ternorm::ternary::detail
