// AVX-512 VNNI path of gemm_i8. A tile's bit pair j, ((tile >> 2j) & 3), is
// 16 rows x 4 columns of weight codes as 64 unsigned bytes; one vpdpbusd with
// the 4 activation bytes of those columns broadcast from memory adds them into
// 16 int32 lanes, one per row, so no horizontal reduction is ever needed.
// The GEMM microkernel keeps P row panels x T tokens of accumulators in
// registers (2 x 8 = 16 zmm at full size): per column block it unpacks P tiles
// (7 ops each), broadcasts 4 * T activation words (each shared by the P
// panels) and issues 4 * P * T vpdpbusd, so vpdpbusd dominates the port use.
// GEMV (n == 1) has no tokens to share the unpacking over; it has its own
// kernel (gemv4) below.
// GCC 12's AVX-512 headers trip a false -W(maybe-)uninitialized on their
// _mm512_undefined_* placeholders (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemm_i8_kernels.h"

namespace ternorm::ternary::detail {
namespace {

// acc += vpdpbusd(a, the 4 bytes at p broadcast), for gemv4. The inline asm
// keeps the accumulator in place and folds the broadcast into the instruction
// ({1to16}): with the intrinsic, GCC 12 shuffled gemv4's 16 accumulators
// through extra moves and stack spills (measured 59% of the vpdpbusd peak vs
// 93% with this form). The GEMM microkernel gains nothing from it (its
// broadcasts are shared by P panels) and keeps the intrinsic.
inline void dp_bcast(__m512i& acc, __m512i a, const int8_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0"
          : "+v"(acc)
          : "v"(a), "m"(*reinterpret_cast<const int32_t*>(p)));
}
inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int J, int P, int T>
inline void step(const __m512i (&tile)[P], const int8_t* qb, int64_t qstride,
                 __m512i (&acc)[P][T]) {
  const __m512i m3 = _mm512_set1_epi8(3);
  __m512i u[P];
  for (int p = 0; p < P; ++p)
    u[p] = J == 0 ? _mm512_and_si512(tile[p], m3)
                  : _mm512_and_si512(_mm512_srli_epi16(tile[p], 2 * J), m3);
  for (int t = 0; t < T; ++t) {
    const __m512i b = bcast4(qb + t * qstride + 4 * J);
    for (int p = 0; p < P; ++p) acc[p][t] = _mm512_dpbusd_epi32(acc[p][t], u[p], b);
  }
}

// y for panels [pan, pan + P) and tokens [t0, t0 + T).
template <int P, int T>
void micro(const GemmI8Args& a, int64_t pan, int64_t t0) {
  const int64_t qstride = a.col_blocks * kColBlock, pstride = a.col_blocks * kTileBytes;
  const uint8_t* w = a.w + pan * pstride;
  const int8_t* q = a.q + t0 * qstride;
  __m512i acc[P][T];
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_si512();
  // The next P panels, fetched while these compute: a panel's tiles are a
  // few KB (one 4 KB page at 1024 columns), too short a run for the hardware
  // prefetcher to ramp up before it ends, so without this every panel starts
  // with stalls on DRAM (measured ~30% of this kernel's time at n = 16).
  const uint8_t* next = w + P * pstride;
  const bool fetch = pan + 2 * P <= (a.rows + kRowPanel - 1) / kRowPanel;
  for (int64_t b = a.b_begin; b < a.b_end; ++b) {
    __m512i tile[P];
    for (int p = 0; p < P; ++p) tile[p] = _mm512_loadu_si512(w + p * pstride + b * kTileBytes);
    if (fetch)
      for (int p = 0; p < P; ++p)
        _mm_prefetch(reinterpret_cast<const char*>(next + p * pstride + b * kTileBytes),
                     _MM_HINT_T0);
    const int8_t* qb = q + b * kColBlock;
    step<0>(tile, qb, qstride, acc);
    step<1>(tile, qb, qstride, acc);
    step<2>(tile, qb, qstride, acc);
    step<3>(tile, qb, qstride, acc);
  }
  // Epilogue over 16 rows: (float(dot) * x_scale) * w_scale, masked at the row tail.
  for (int p = 0; p < P; ++p) {
    const int64_t row0 = (pan + p) * kRowPanel;
    const int64_t left = a.rows - row0;
    const __mmask16 k = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512 ws = _mm512_maskz_loadu_ps(k, a.w_scales + row0);
    for (int t = 0; t < T; ++t) {
      const __m512i dot = _mm512_sub_epi32(acc[p][t], _mm512_set1_epi32(a.q_sums[t0 + t]));
      const __m512 v = _mm512_mul_ps(
          _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(a.x_scales[t0 + t])), ws);
      _mm512_mask_storeu_ps(a.y + (t0 + t) * a.rows + row0, k, v);
    }
  }
}

// GEMV (n == 1) for panels [pan, pan + 4). With one token the unpacking
// above (shift + and per bit pair) would cost nearly as many vector ops as
// the vpdpbusd themselves. Instead bit pair j is only masked in place,
// tile & (3 << 2j), i.e. code * 4^j (<= 128, still a valid unsigned byte),
// and accumulated separately per j: acc[j] = 4^j * s_j, s_j the (w + 1)
// dot product over the columns of bit pair j. The arithmetic shifts
// acc[j] >> 2j recover s_j exactly (acc[j] is a multiple of 4^j). Every
// kGemvChunk blocks the four are folded into the running total before they
// can overflow: a lane of acc[3] moves by at most 4 columns * 128 * 128 =
// 65536 per block (code 2 of valid data; 98304 for the invalid code 3), so
// over 8192 blocks |acc[3]| <= 2^29 (8.1e8 with code 3) < 2^31.
constexpr int64_t kGemvChunk = 8192;
// The 4 panels are 4 streams read in lockstep, a panel (col_blocks tiles) 4 KB
// for d_model 1024: every panel starts a new stream the hardware prefetchers
// must first detect, and they do not follow a stream across a 4 KB page. So
// each stream is prefetched this far ahead of its reading; near a panel's
// end the prefetch moves on to the same panel of the next 4 (what the next
// gemv4 call reads), so a call starts with its first tiles in cache.
constexpr int64_t kGemvPrefetch = 1024;

void gemv4(const GemmI8Args& a, int64_t pan) {
  constexpr int P = 4;
  const int64_t pstride = a.col_blocks * kTileBytes;
  const uint8_t* w = a.w + pan * pstride;
  __m512i total[P];
  for (int p = 0; p < P; ++p) total[p] = _mm512_setzero_si512();
  const __m512i m0 = _mm512_set1_epi8(0x03), m1 = _mm512_set1_epi8(0x0c);
  const __m512i m2 = _mm512_set1_epi8(0x30), m3 = _mm512_set1_epi8(char(0xc0));
  for (int64_t b0 = a.b_begin; b0 < a.b_end; b0 += kGemvChunk) {
    const int64_t b1 = b0 + kGemvChunk < a.b_end ? b0 + kGemvChunk : a.b_end;
    __m512i acc[P][4];
    for (int p = 0; p < P; ++p)
      for (int j = 0; j < 4; ++j) acc[p][j] = _mm512_setzero_si512();
    for (int64_t b = b0; b < b1; ++b) {
      const int8_t* qb = a.q + b * kColBlock;
      const int64_t off = b * kTileBytes + kGemvPrefetch;
      const char* ahead =
          reinterpret_cast<const char*>(w) + (off < pstride ? off : off - pstride + P * pstride);
      for (int p = 0; p < P; ++p) _mm_prefetch(ahead + p * pstride, _MM_HINT_T0);
      for (int p = 0; p < P; ++p) {
        const __m512i t = _mm512_loadu_si512(w + p * pstride + b * kTileBytes);
        dp_bcast(acc[p][0], _mm512_and_si512(t, m0), qb);
        dp_bcast(acc[p][1], _mm512_and_si512(t, m1), qb + 4);
        dp_bcast(acc[p][2], _mm512_and_si512(t, m2), qb + 8);
        dp_bcast(acc[p][3], _mm512_and_si512(t, m3), qb + 12);
      }
    }
    for (int p = 0; p < P; ++p) {
      const __m512i s01 = _mm512_add_epi32(acc[p][0], _mm512_srai_epi32(acc[p][1], 2));
      const __m512i s23 =
          _mm512_add_epi32(_mm512_srai_epi32(acc[p][2], 4), _mm512_srai_epi32(acc[p][3], 6));
      total[p] = _mm512_add_epi32(total[p], _mm512_add_epi32(s01, s23));
    }
  }
  const __m512 xs = _mm512_set1_ps(a.x_scales[0]);
  const __m512i qsum = _mm512_set1_epi32(a.q_sums[0]);
  for (int p = 0; p < P; ++p) {
    const int64_t row0 = (pan + p) * kRowPanel;
    const int64_t left = a.rows - row0;
    const __mmask16 k = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
    const __m512 ws = _mm512_maskz_loadu_ps(k, a.w_scales + row0);
    const __m512i dot = _mm512_sub_epi32(total[p], qsum);
    _mm512_mask_storeu_ps(a.y + row0, k,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(dot), xs), ws));
  }
}

#include "../cpu/counted_loops.h"
#include "gemm_i8_isa_loops.h"

// Tokens [t0, t1) against panels [pan, pan + P), 8 tokens at a time.
template <int P>
void panels_tokens(const GemmI8Args& a, int64_t pan, int64_t t0, int64_t t1) {
  by_steps<8>(t0, t1,
              [&](auto t, int64_t t_first) { micro<P, decltype(t)::value>(a, pan, t_first); });
}

void panels_avx512(const GemmI8Args& a, int64_t p0, int64_t p1) {
  if (a.n == 1) {  // GEMV: weight-streaming, 4 panels share each broadcast
    int64_t p = p0;
    for (; p + 4 <= p1; p += 4) gemv4(a, p);
    for (; p < p1; ++p) panels_tokens<1>(a, p, 0, 1);
    return;
  }
  // Each panel pair is re-read once per token block, from L2 or L3.
  const int64_t per_block = tokens_per_block(a, 8);
  for (int64_t tb = 0; tb < a.n; tb += per_block) {
    const int64_t te = tb + per_block < a.n ? tb + per_block : a.n;
    int64_t p = p0;
    for (; p + 2 <= p1; p += 2) panels_tokens<2>(a, p, tb, te);
    for (; p < p1; ++p) panels_tokens<1>(a, p, tb, te);
  }
}

}  // namespace

constexpr GemmI8Kernels kGemmI8KernelsAvx512 = {panels_avx512};

}  // namespace ternorm::ternary::detail
