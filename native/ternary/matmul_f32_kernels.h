// Internals of the ternary fp32 products (matmul_f32, matmul_f32_t in
// ternary.h), called only from matmul_f32.cpp. Both products run on the fp32
// GEMM's blocked driver (gemm/gemm_kernels.h): the activations are op(A), and
// the per-ISA decoders below turn 2-bit weight tiles into the fp32 B
// micro-panels the GEMM microkernels read (trit * scale, exact in fp32), once
// per k-block and shared by all tokens. POD-only header (ISA files include it).
#pragma once
#include <cstdint>

#include "ternary.h"

namespace ternorm::ternary::detail {

// The packed weights as the decoders see them, already validated.
struct TernarySource {
  const uint8_t* data = nullptr;  // 2-bit compute layout
  const float* scales = nullptr;  // rows
  int64_t rows = 0, cols = 0;
  int64_t col_blocks = 0;  // padded_cols(cols) / 16
};

// A decoder has the signature of gemm::BPacker::pack (ctx = const
// TernarySource*): it writes the B micro-panels for k-steps k0 .. k0+kc-1 and
// GEMM columns j0 .. j0+nc-1, panel q (width nr) at dst + q * kc * nr,
// k-major, zero past nc. k0 is a multiple of 16, j0 of nr, nr of 16.
//
// MatmulF32Kernels::wt: op(B) = W^T, the operand of matmul_f32 (y = x W^T):
//   B[k][j] = trit[j][k] * scales[j]  (k over cols, j over rows).
// MatmulF32Kernels::w: op(B) = W, the operand of matmul_f32_t (dx = dy W):
//   B[k][j] = trit[k][j] * scales[k]  (k over rows, j over cols).
// Codes are read as w + 1; pack2 never writes code 3 (see matmul_f32.cpp).
using Decoder = void (*)(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0,
                         int64_t nc, float* dst);

// The decoders of a path: each ISA file defines one, matmul_f32.cpp's table
// picks it (cpu/dispatch.h).
struct MatmulF32Kernels {
  Decoder wt;  // W^T for matmul_f32
  Decoder w;   // W for matmul_f32_t
};
extern const MatmulF32Kernels kMatmulF32KernelsScalar, kMatmulF32KernelsAvx2,
    kMatmulF32KernelsAvx512, kMatmulF32KernelsNeon;

// The plain references the tests compare every path to:
//   y[t][r]  = scales[r] * sum_c trit[r][c] * x[t][c]          (sum in c order)
//   dx[t][c] = sum_r (trit[r][c] * scales[r]) * dy[t][r]        (sum in r order)
void matmul_f32_ref(const PackedTernary& w, const float* x, int64_t n, float* y);
void matmul_f32_t_ref(const PackedTernary& w, const float* dy, int64_t n, float* dx);

}  // namespace ternorm::ternary::detail
