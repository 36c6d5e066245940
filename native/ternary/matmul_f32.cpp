// The ternary fp32 products: argument checks, the one dispatch on ex.isa, and
// the hand-off to the fp32 GEMM's blocked driver. The decoders expand each
// (k-block x column-block) of W into fp32 B micro-panels once, and the GEMM
// microkernel sweeps every token against them, so the 2-bit decode costs
// O(rows * cols) per call while the FMAs do the O(n * rows * cols) work.
// Threads split the tokens (rows of the output) in the GEMM phase and the
// columns of each decoded block in the decode phase; every output element
// sees the same operations whatever the thread count.
//
// Weight codes are not validated per call (that would cost a pass over W):
// pack2 only writes codes 0, 1, 2, and unpack2 rejects a corrupt 3.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "../cpu/dispatch.h"
#include "../gemm/gemm_kernels.h"
#include "matmul_f32_kernels.h"
#include "ternary.h"

namespace ternorm::ternary {
namespace {

// The one dispatch point of the family (the GEMM driver picks the matching
// microkernel from the same ex.isa).
constexpr IsaTable<detail::MatmulF32Kernels> kMatmulF32Table = {
    "matmul_f32",
    {&detail::kMatmulF32KernelsScalar, TERNORM_X86_KERNELS(detail::kMatmulF32KernelsAvx2),
     TERNORM_X86_KERNELS(detail::kMatmulF32KernelsAvx512),
     TERNORM_ARM64_KERNELS(detail::kMatmulF32KernelsNeon)}};
TERNORM_CHECK_TABLE(kMatmulF32Table, "a compiled path without matmul_f32 kernels");

// in: n x in_width, out: n x out_width.
detail::TernarySource check_args(const char* fn, const PackedTernary& w, const float* in,
                                 const char* in_name, int64_t n, const float* out,
                                 const char* out_name) {
  if (w.data == nullptr || w.scales == nullptr || in == nullptr || out == nullptr)
    throw std::invalid_argument(std::string(fn) +
                                ": null pointer; expected packed weights, "
                                "weight scales, " +
                                in_name + " and " + out_name);
  if (w.rows <= 0 || w.cols <= 0 || n <= 0)
    throw std::invalid_argument(
        std::string(fn) + ": expected rows, cols and n > 0, got rows=" + std::to_string(w.rows) +
        ", cols=" + std::to_string(w.cols) + ", n=" + std::to_string(n));
  if (w.rows > (int64_t(1) << 31) || w.cols > (int64_t(1) << 31) ||
      n > std::numeric_limits<int64_t>::max() / std::max(padded_cols(w.cols), padded_rows(w.rows)))
    throw std::invalid_argument(std::string(fn) +
                                ": expected rows, cols <= 2^31 and n * rows, "
                                "n * cols to fit in int64, got rows=" +
                                std::to_string(w.rows) + ", cols=" + std::to_string(w.cols) +
                                ", n=" + std::to_string(n));
  for (int64_t r = 0; r < w.rows; ++r)
    if (!std::isfinite(w.scales[r]))
      throw std::invalid_argument(std::string(fn) + ": w.scales[" + std::to_string(r) +
                                  "] is not finite; expected finite scales");
  detail::TernarySource src;
  src.data = w.data;
  src.scales = w.scales;
  src.rows = w.rows;
  src.cols = w.cols;
  src.col_blocks = padded_cols(w.cols) / kColBlock;
  return src;
}

}  // namespace

void matmul_f32(const PackedTernary& w, const float* x, int64_t n, float* y, const Exec& ex) {
  const detail::TernarySource src = check_args("matmul_f32", w, x, "x", n, y, "y");
  const detail::MatmulF32Kernels& d = pick_kernels(kMatmulF32Table, ex.isa, "matmul_f32");
  gemm::BPacker bp;
  bp.pack = d.wt;
  bp.ctx = &src;
  // y (n x rows) = x (n x cols) * W^T (cols x rows).
  gemm::gemm_f32_blocked(false, x, w.cols, n, w.rows, w.cols, bp, 1.0f, 0.0f, y, w.rows, ex);
}

void matmul_f32_t(const PackedTernary& w, const float* dy, int64_t n, float* dx, const Exec& ex) {
  const detail::TernarySource src = check_args("matmul_f32_t", w, dy, "dy", n, dx, "dx");
  const detail::MatmulF32Kernels& d = pick_kernels(kMatmulF32Table, ex.isa, "matmul_f32_t");
  gemm::BPacker bp;
  bp.pack = d.w;
  bp.ctx = &src;
  // dx (n x cols) = dy (n x rows) * W (rows x cols).
  gemm::gemm_f32_blocked(false, dy, w.rows, n, w.cols, w.rows, bp, 1.0f, 0.0f, dx, w.cols, ex);
}

}  // namespace ternorm::ternary
