// The scalar side of the ternary fp32 products: the plain references every
// path is tested against, and the portable decoders of the scalar path.
#include "matmul_f32_kernels.h"

namespace ternorm::ternary::detail {
namespace {

// Trit of (r, c), read straight from the tile layout of ternary.h.
inline int trit_at(const uint8_t* data, int64_t col_blocks, int64_t r, int64_t c) {
  const uint8_t byte = data[((r / kRowPanel) * col_blocks + c / kColBlock) * kTileBytes +
                            (r % kRowPanel) * 4 + c % 4];
  return int((byte >> (2 * ((c % kColBlock) / 4))) & 3) - 1;
}

}  // namespace

void matmul_f32_ref(const PackedTernary& w, const float* x, int64_t n, float* y) {
  const int64_t col_blocks = padded_cols(w.cols) / kColBlock;
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * w.cols;
    for (int64_t r = 0; r < w.rows; ++r) {
      float sum = 0.0f;
      for (int64_t c = 0; c < w.cols; ++c) sum += float(trit_at(w.data, col_blocks, r, c)) * xt[c];
      y[t * w.rows + r] = w.scales[r] * sum;
    }
  }
}

void matmul_f32_t_ref(const PackedTernary& w, const float* dy, int64_t n, float* dx) {
  const int64_t col_blocks = padded_cols(w.cols) / kColBlock;
  for (int64_t t = 0; t < n; ++t) {
    const float* dyt = dy + t * w.rows;
    for (int64_t c = 0; c < w.cols; ++c) {
      float sum = 0.0f;
      for (int64_t r = 0; r < w.rows; ++r)
        sum += (float(trit_at(w.data, col_blocks, r, c)) * w.scales[r]) * dyt[r];
      dx[t * w.cols + c] = sum;
    }
  }
}

namespace {

void decode_wt_ref(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const int64_t width = (nc + nr - 1) / nr * nr;
  for (int64_t jj = 0; jj < width; ++jj) {
    float* d = dst + (jj / nr) * kc * nr + jj % nr;
    if (jj >= nc) {
      for (int64_t kk = 0; kk < kc; ++kk) d[kk * nr] = 0.0f;
      continue;
    }
    const int64_t r = j0 + jj;
    const float s = w.scales[r];
    for (int64_t kk = 0; kk < kc; ++kk)
      d[kk * nr] = float(trit_at(w.data, w.col_blocks, r, k0 + kk)) * s;
  }
}

void decode_w_ref(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                  float* dst) {
  const TernarySource& w = *static_cast<const TernarySource*>(ctx);
  const int64_t width = (nc + nr - 1) / nr * nr;
  for (int64_t kk = 0; kk < kc; ++kk) {
    const int64_t r = k0 + kk;
    const float s = w.scales[r];
    for (int64_t jj = 0; jj < width; ++jj)
      dst[(jj / nr) * kc * nr + kk * nr + jj % nr] =
          jj < nc ? float(trit_at(w.data, w.col_blocks, r, j0 + jj)) * s : 0.0f;
  }
}

}  // namespace

constexpr MatmulF32Kernels kMatmulF32KernelsScalar = {decode_wt_ref, decode_w_ref};

}  // namespace ternorm::ternary::detail
