// Internals of the fp32 GEMM family: the per-ISA register-blocked
// microkernels, the plain scalar reference, and the blocked driver. The driver
// takes op(B) through a packer callback so the ternary fp32 products
// (ternary/matmul_f32.cpp) feed it decoded weight panels and reuse the same
// microkernels. Included by the ISA files: plain declarations only.
#pragma once
#include <cstdint>

#include "gemm.h"

namespace ternorm::gemm {

// ---- packed panels ------------------------------------------------------------
// An A micro-panel holds MR rows of op(A) over kc steps, k-major: a[k * MR + i].
// A B micro-panel holds NR columns of op(B) over kc steps, k-major:
// b[k * NR + j]. Rows/columns past the matrix edge are zero.

// ---- microkernels ---------------------------------------------------------------
// C[i][j] (i < m <= MR, j < n <= NR, row stride ldc) =
//   alpha * acc[i][j] + beta * C[i][j],   acc = sum_{k < kc} a[k*MR + i] * b[k*NR + j],
// with beta == 0 never reading C, and nothing outside the m x n tile touched.
// Every element goes through the same operations whether its tile is full or
// cut by the matrix edge, so a result never depends on where the tile
// boundaries (thread ranges) fall.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             int64_t m, int64_t n, float alpha, float beta);

// Tile shapes. Every NR is a multiple of 16 (the ternary decoders write whole
// 16-column weight blocks into a panel).
constexpr int kMrScalar = 4, kNrScalar = 16;
constexpr int kMrAvx2 = 6, kNrAvx2 = 16;       // 12 ymm accumulators
constexpr int kMrAvx512 = 14, kNrAvx512 = 32;  // 28 zmm accumulators
constexpr int kMrNeon = 6, kNrNeon = 16;       // 24 q accumulators

// ---- the small-m path -----------------------------------------------------------
// With at most kDirectMaxM rows of C and a transposed B (y = x W^T with W
// row-major, the GEMV shape), each element of B feeds so few FMAs that packing
// it would cost more than the product: dot kernels read A and B in place,
//   C[i][j] = alpha * dot(a row i, b row j) + beta * C[i][j]   (beta == 0: C not read)
// for i < m <= kDirectMaxM, j < n, a row i at a + i*lda, b row j at b + j*ldb,
// both of length k. Each element's dot runs in a fixed order that depends on
// k only, so the result never depends on how rows and columns are grouped.
// (A row-major B stays on the packed path: reading it in place along
// NR-wide column strips measured no faster, the strided rows defeat the
// prefetchers.) kDirectMaxM is in gemm.h.
using DotKernel = void (*)(int64_t k, const float* a, int64_t lda, int64_t m, const float* b,
                           int64_t ldb, int64_t n, float* c, int64_t ldc, float alpha, float beta);
// The same with a 16-bit B (ElemType F16 or BF16), widened in registers: the
// products and sums of the fp32 DotKernel on the widened B, in its order.
using DotKernel16 = void (*)(int64_t k, const float* a, int64_t lda, int64_t m, const uint16_t* b,
                             int64_t ldb, int64_t n, float* c, int64_t ldc, float alpha,
                             float beta);
// dst[i] = src[i] widened to fp32, exactly (the blocked path's packers and
// the embedding lookup of a 16-bit table).
using WidenKernel = void (*)(const uint16_t* src, int64_t n, float* dst);

// The storage of one element of B for an ElemType.
template <ElemType T>
struct ElemOf {
  using type = uint16_t;
};
template <>
struct ElemOf<ElemType::F32> {
  using type = float;
};
template <ElemType T>
using Elem = typename ElemOf<T>::type;

// Every k-block starts at a multiple of this (a whole number of 16-column
// ternary blocks).
constexpr int64_t kKcAlign = 16;

// ---- the kernels of a path ------------------------------------------------------
// Each ISA file defines one, picked from gemm.cpp's table (cpu/dispatch.h).
// Cache blocking per path, tuned on Zen 4 (32 KB L1d, 1 MB L2, 32 MB L3):
// the mc x kc A block stays in L2 (AVX-512: 336 x 512 x 4 B = 672 KB), the
// kc x NR B micro-panel it is swept against comes from L1/L2, the kc x nc B
// block sits in L3. The microkernels do so many FMAs per byte (AVX-512: 28
// per 184 B of panels) that L2 bandwidth is not a limit, so a long kc, which
// halves the C-tile traffic per FMA, wins on the AVX-512 path.
struct GemmKernels {
  MicroKernel kernel;
  DotKernel dot;  // the small-m path with a transposed B
  DotKernel16 dot_f16, dot_bf16;
  WidenKernel widen_f16, widen_bf16;
  int64_t mr, nr;      // the microkernel's tile (kMr*, kNr* above)
  int64_t mc, kc, nc;  // mc a multiple of mr, nc of nr, kc of kKcAlign
};
extern const GemmKernels kGemmKernelsScalar, kGemmKernelsAvx2, kGemmKernelsAvx512, kGemmKernelsNeon;
// Checked beside each definition.
constexpr bool blocking_fits(const GemmKernels& k) {
  return k.mc % k.mr == 0 && k.nc % k.nr == 0 && k.kc % kKcAlign == 0 && k.nr % 16 == 0;
}

// ---- the blocked driver -----------------------------------------------------------
// Writes the B micro-panels for rows k0 .. k0+kc-1 and columns j0 .. j0+nc-1 of
// op(B): panel p (columns j0 + p*nr ...) starts at dst + p * kc * nr. j0 is a
// multiple of nr, k0 of kKcAlign; columns >= nc are zeroed. Called
// concurrently on disjoint column ranges.
struct BPacker {
  void (*pack)(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
               float* dst) = nullptr;
  const void* ctx = nullptr;
};

// C (m x n, stride ldc) = alpha * op(A) * op(B) + beta * C, op(A) m x k read
// from a (stride lda, transposed when trans_a), op(B) k x n from the packer.
// Arguments are validated by the callers. Threads split the rows of C.
void gemm_f32_blocked(bool trans_a, const float* a, int64_t lda, int64_t m, int64_t n, int64_t k,
                      const BPacker& b, float alpha, float beta, float* c, int64_t ldc,
                      const Exec& ex);

// ---- the reference ----------------------------------------------------------------
// The plain triple loop (fp32 products summed in k order, then
// alpha * sum + beta * c; beta == 0 ignores C) every path is tested against.
// A 16-bit B is widened by the scalar conversions (norm::f16_to_f32,
// gguf::bf16_to_fp32), as widen_scalar does.
void gemm_f32_ref(const GemmArgs& args);
void widen_scalar(ElemType t, const uint16_t* src, int64_t n, float* dst);

}  // namespace ternorm::gemm
