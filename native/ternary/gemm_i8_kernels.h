// Internal: the per-ISA kernels of gemm_i8 (ternary.h), called only from
// gemm_i8.cpp. POD-only header (ISA files include it).
#pragma once
#include <cstdint>

#include "ternary.h"

namespace ternorm::ternary::detail {

// One gemm_i8 call as the kernels see it, already validated.
struct GemmI8Args {
  const uint8_t* w = nullptr;       // 2-bit compute layout, col_blocks tiles per panel
  const float* w_scales = nullptr;  // rows
  int64_t rows = 0, cols = 0;       // logical shape of W
  int64_t col_blocks = 0;           // padded_cols(cols) / 16 = q's row stride / 16
  // The column blocks the dot products run over, [b_begin, b_end): all of
  // them for gemm_i8, one activation block's for gemm_i8_block.
  int64_t b_begin = 0, b_end = 0;
  const int8_t* q = nullptr;        // n x (col_blocks * 16), zero padding
  const float* x_scales = nullptr;  // n
  const int32_t* q_sums = nullptr;  // n: sum of q[t][c] over the columns (SIMD paths only)
  int64_t n = 0;
  float* y = nullptr;  // n x rows
};

// The SIMD paths multiply the unsigned weight code w + 1 in {0, 1, 2} by the
// signed activations (the operand order of vpdpbusd / maddubs) and subtract
// the token's q_sums: sum (w + 1) q - sum q = sum w q, exactly.
//
// The kernels of a path: each ISA file defines one, gemm_i8.cpp's table picks
// it (cpu/dispatch.h).
struct GemmI8Kernels {
  // y[t][r] = (float(dot) * x_scales[t]) * w_scales[r] for every token and
  // the rows of row panels [p0, p1), dot over the columns of [b_begin, b_end).
  void (*panels)(const GemmI8Args& a, int64_t p0, int64_t p1);
};
extern const GemmI8Kernels kGemmI8KernelsScalar, kGemmI8KernelsAvx2, kGemmI8KernelsAvx512,
    kGemmI8KernelsNeon;

}  // namespace ternorm::ternary::detail
