// The ISA-free row loop of the SIMD activation quantisers: per row, the
// absmax bits (with NaN/Inf detection), the zero row, the row parameters of
// act_quant_kernels.h, then the quantisation. Included INSIDE each ISA file's
// anonymous namespace, after <cstring> and act_quant_kernels.h. No STL.
#pragma once

// The contract of ActQuantKernels::rows, with the path's two vector steps:
//   absmax_bits(xr) -> max over the row of (bits of x) & kAbsMask,
//   quantize(xr, qr, params) writes the row's qstride bytes of q.
template <typename AbsmaxBits, typename Quantize>
int64_t quantize_rows(const float* x, int64_t n, int64_t cols, int64_t qstride, int8_t* q,
                      float* scales, bool recip_scale, AbsmaxBits&& absmax_bits,
                      Quantize&& quantize) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xr = x + t * cols;
    int8_t* qr = q + t * qstride;
    const uint32_t max_bits = absmax_bits(xr);
    if (max_bits >= kNonFiniteBits) return t;
    if (max_bits == 0) {
      scales[t] = 0.0f;
      std::memset(qr, 0, size_t(qstride));
      continue;
    }
    float absmax;
    std::memcpy(&absmax, &max_bits, 4);
    const ActRowParams p = act_row_params(absmax);
    scales[t] = recip_scale ? act_recip_scale(p) : p.scale;
    quantize(xr, qr, p);
  }
  return -1;
}
