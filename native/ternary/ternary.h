// Ternary (BitNet b1.58) weights: absmean quantisation, the 2-bit compute
// layout, the 5-trits-per-byte storage layout, per-token int8 activations, and
// the matmul kernels that consume them. Shapes follow the linear layer
// convention: W is rows x cols (out_features x in_features), activations are
// n tokens x cols, outputs are n x rows, all row-major.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../cpu/isa.h"

namespace ternorm::ternary {

// ---- 2-bit compute layout -------------------------------------------------
// Rows are grouped in panels of kRowPanel, columns in blocks of kColBlock. A
// (panel, block) tile is 64 bytes; byte i of a tile holds, in bit pair j
// (bits 2j..2j+1), the weight of row panel*16 + i/4, column block*16 + 4j + i%4,
// stored as w + 1 in {0, 1, 2}. So (tile >> 2j) & 3 is a 64-byte vector of
// "16 rows x 4 consecutive columns", the operand order of a 4-way int8 dot
// product (VNNI vpdpbusd, maddubs, NEON sdot). Tiles are stored panel-major:
// tile(p, b) starts at byte (p * col_blocks + b) * 64. Padding rows and
// columns hold the code for 0.
constexpr int64_t kRowPanel = 16;
constexpr int64_t kColBlock = 16;
constexpr int64_t kTileBytes = 64;

constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
constexpr int64_t padded_rows(int64_t rows) { return round_up(rows, kRowPanel); }
constexpr int64_t padded_cols(int64_t cols) { return round_up(cols, kColBlock); }
constexpr int64_t packed2_bytes(int64_t rows, int64_t cols) {
  return padded_rows(rows) * padded_cols(cols) / 4;
}

// A packed ternary matrix as the kernels read it. scales has `rows` entries
// (per-tensor quantisation repeats one value): W[r][c] = trit * scales[r].
struct PackedTernary {
  const uint8_t* data = nullptr;  // packed2_bytes(rows, cols) bytes
  const float* scales = nullptr;  // rows
  int64_t rows = 0, cols = 0;
};

// absmean quantisation: scale = mean(|W|) over the tensor (or over each row
// when per_row), trit = clamp(round_half_even(W / scale), -1, 1); a zero
// tensor/row gets scale 0 and trits 0. Writes trits[rows*cols] and
// scales[rows] (every row, also per-tensor). The mean is summed in double, in
// index order, then rounded to float; W / scale is a float division. Throws
// std::invalid_argument on NaN/Inf in W (nothing written).
void absmean_quantize(const float* w, int64_t rows, int64_t cols, bool per_row, int8_t* trits,
                      float* scales);

// trits (rows x cols, values in {-1,0,1}) <-> 2-bit compute layout.
// pack2 throws std::invalid_argument on a value outside {-1,0,1} (nothing
// written); unpack2 throws on code 3 inside the matrix (corrupt data) and
// ignores the padding. The kernels themselves do not re-check codes.
void pack2(const int8_t* trits, int64_t rows, int64_t cols, uint8_t* packed);
void unpack2(const uint8_t* packed, int64_t rows, int64_t cols, int8_t* trits);

// ---- 5-trits-per-byte storage layout (1.6 bits per weight) ----------------
// Byte = sum_{i<5} (t_i + 1) * 3^i over 5 consecutive trits (row-major, no
// padding between rows); the last byte holds fewer trits and digit 0 in the
// unused positions, so it is < 3^(trits it holds). pack5 throws on a value
// outside {-1,0,1}.
constexpr int64_t packed5_bytes(int64_t count) { return (count + 4) / 5; }
void pack5(const int8_t* trits, int64_t count, uint8_t* out);
// Throws std::invalid_argument on a byte > 242 or on a nonzero digit in the
// unused positions of the last byte (corrupt data); nothing is written then.
void unpack5(const uint8_t* in, int64_t count, int8_t* trits);

// ---- per-token int8 activations --------------------------------------------
// For each row t of x (n x cols): absmax = max |x|, scale = absmax / 127,
// q = clamp(round_half_even(x * (127 / absmax)), -127, 127); an all-zero row
// gets scale 0 and q 0. Writes q with row stride padded_cols(cols), padding
// zeroed, and scales[n]. Bit-identical on every ISA path. When absmax < 2^-64
// (127 / absmax could overflow) the row is first scaled by 2^64, exactly:
// q = round((x * 2^64) * (127 / (absmax * 2^64))); see act_row_params in
// act_quant_kernels.h, which norm::rmsnorm_gain_i8 shares. Rounding follows
// the current FP rounding mode on every path (the default is half-even).
// Throws std::invalid_argument on NaN/Inf in x (q and scales are then
// unspecified) and on bad shapes or null pointers.
void quantize_activations(const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                          const Exec& ex);

// ---- per-block int8 activations (llama.cpp's q8_K, its TQ1_0/TQ2_0 path) ----
// Each token's row is cut into blocks of kActBlock values (the last one holds
// the rest when cols is not a multiple); every block is quantised like a
// token above (same absmax, same q, same 2^64 pre-scaling), but its scale is
// the reciprocal of the multiplier, scale = 1 / (127 / absmax), as q8_K's
// d = 1 / iscale (q8_K negates q and d when the block's largest-magnitude
// value is positive; q * d is the same). Writes q with row stride
// padded_cols(cols), padding zeroed, and scales[t * act_blocks(cols) + b].
// Bit-identical on every ISA path and thread count; throws like
// quantize_activations.
constexpr int64_t kActBlock = 256;
constexpr int64_t act_blocks(int64_t cols) { return (cols + kActBlock - 1) / kActBlock; }
void quantize_activations_block(const float* x, int64_t n, int64_t cols, int8_t* q, float* scales,
                                const Exec& ex);

// ---- matmul kernels -----------------------------------------------------------
// y[t][r] = (float(sum_c trit[r][c] * q[t][c]) * x_scales[t]) * scales[r]
// for t < n, r < rows; q has row stride padded_cols(cols) (as written by
// quantize_activations) with zero padding. n == 1 is the GEMV path.
// Bit-identical on every ISA path. Threads split the rows. The dot product is
// exact in int32 for any int8 q and cols <= 2^23. Throws
// std::invalid_argument on bad shapes, null pointers, cols > 2^23, NaN/Inf in
// w.scales or x_scales, or nonzero padding in q (nothing written).
void gemm_i8(const PackedTernary& w, const int8_t* q, const float* x_scales, int64_t n, float* y,
             const Exec& ex);

// The same product over per-block activations (quantize_activations_block):
// with dot_b the exact int32 dot product over block b's columns,
//   acc = 0.0f;  for b in order: acc += float(dot_b) * (x_scales[t * nb + b] * scales[r])
//   y[t][r] = acc      (nb = act_blocks(cols); the float order of ggml's
// scalar TQ2_0 x q8_K dot product). The integer parts run on gemm_i8's ISA
// paths, the float combination in this fixed order, so every ISA path and
// thread count gives the same bits. Throws like gemm_i8.
void gemm_i8_block(const PackedTernary& w, const int8_t* q, const float* x_scales, int64_t n,
                   float* y, const Exec& ex);

// y[t][r] = scales[r] * sum_c trit[r][c] * x[t][c]   (x: n x cols, y: n x rows)
void matmul_f32(const PackedTernary& w, const float* x, int64_t n, float* y, const Exec& ex);

// The transpose product used by backprop:
// dx[t][c] = sum_r trit[r][c] * scales[r] * dy[t][r]   (dy: n x rows, dx: n x cols)
void matmul_f32_t(const PackedTernary& w, const float* dy, int64_t n, float* dx, const Exec& ex);

}  // namespace ternorm::ternary
