// fp32 GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, op = identity or
// transpose. Blocked and packed so one SIMD microkernel serves every layout.
// Used by training (X W^T, dY W, dY^T X) and as the benchmark baseline.
#pragma once
#include <cstdint>

#include "../cpu/isa.h"

namespace ternorm::gemm {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;  // op(A): m x k, op(B): k x n, C: m x n
  float alpha = 1.0f, beta = 0.0f;
  const float* a = nullptr;
  int64_t lda = 0;  // row stride of A as stored
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
};

// beta == 0 overwrites C (NaN in C is not propagated). C must not overlap A or B.
// Threads split the rows of C (the columns when m <= kDirectMaxM and B is
// transposed: the GEMV shape, read in place without packing). A row of C gets
// the same bits whatever the other rows are, as long as the call stays on the
// same side of kDirectMaxM (the two paths sum in different orders).
constexpr int64_t kDirectMaxM = 8;
void gemm_f32(const GemmArgs& args, const Exec& ex);

}  // namespace ternorm::gemm
