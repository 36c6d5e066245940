// fp32 GEMM: C = alpha * op(A) * op(B) + beta * C, row-major, op = identity or
// transpose. Blocked and packed so one SIMD microkernel serves every layout.
// Used by training (X W^T, dY W, dY^T X) and as the benchmark baseline.
#pragma once
#include <cstdint>

#include "../cpu/isa.h"

namespace ternorm::gemm {

// How B is stored: fp32, or a 16-bit float (IEEE binary16, bfloat16), the
// types a GGUF's token embedding / output head comes in. Both widen to fp32
// exactly, and the kernels widen in registers (the small-m path) or while
// packing (the blocked path), so a product on a 16-bit B gives the bits the
// same product gives on its widened fp32 copy, reading half the bytes.
enum class ElemType : int { F32 = 0, F16 = 1, BF16 = 2 };
const char* elem_type_name(ElemType t);  // "f32", "f16", "bf16"
// The ElemType named `name`; throws std::invalid_argument naming the choices.
ElemType elem_type_of(const char* name);
inline int64_t elem_bytes(ElemType t) { return t == ElemType::F32 ? 4 : 2; }

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;  // op(A): m x k, op(B): k x n, C: m x n
  float alpha = 1.0f, beta = 0.0f;
  const float* a = nullptr;
  int64_t lda = 0;           // row stride of A as stored
  const float* b = nullptr;  // b_type F32
  int64_t ldb = 0;
  ElemType b_type = ElemType::F32;
  const uint16_t* b16 = nullptr;  // b_type F16 or BF16 (b null)
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

// dst[i] = src[i] widened to fp32 (t F16 or BF16): exact, on every ISA path.
void widen(ElemType t, const uint16_t* src, int64_t n, float* dst, const Exec& ex);

}  // namespace ternorm::gemm
