// Scalar reference of gemm_i8: decode each weight row from the 2-bit layout
// and take the plain dot product with q over the columns of [b_begin, b_end),
// ignoring the padding.
#include <vector>

#include "gemm_i8_kernels.h"
#include "ternary.h"

namespace ternorm::ternary::detail {
namespace {

void panels_ref(const GemmI8Args& a, int64_t p0, int64_t p1) {
  const int64_t qstride = a.col_blocks * kColBlock;
  std::vector<int8_t> trit(static_cast<size_t>(a.cols));
  const int64_t r1 = p1 * kRowPanel < a.rows ? p1 * kRowPanel : a.rows;
  const int64_t c0 = a.b_begin * kColBlock;
  const int64_t c1 = a.b_end * kColBlock < a.cols ? a.b_end * kColBlock : a.cols;
  for (int64_t r = p0 * kRowPanel; r < r1; ++r) {
    // Row r lives in bytes 4 * (r % 16) + c % 4 of its panel's tiles, column c
    // of a block in bit pair (c % 16) / 4.
    const uint8_t* panel = a.w + (r / kRowPanel) * a.col_blocks * kTileBytes;
    for (int64_t c = c0; c < c1; ++c) {
      const uint8_t byte = panel[(c / kColBlock) * kTileBytes + (r % kRowPanel) * 4 + c % 4];
      trit[size_t(c)] = int8_t(((byte >> (2 * ((c % kColBlock) / 4))) & 3) - 1);
    }
    for (int64_t t = 0; t < a.n; ++t) {
      const int8_t* qt = a.q + t * qstride;
      int32_t dot = 0;
      for (int64_t c = c0; c < c1; ++c) dot += int32_t(trit[size_t(c)]) * int32_t(qt[c]);
      a.y[t * a.rows + r] = (float(dot) * a.x_scales[t]) * a.w_scales[r];
    }
  }
}

}  // namespace

constexpr GemmI8Kernels kGemmI8KernelsScalar = {panels_ref};

}  // namespace ternorm::ternary::detail
