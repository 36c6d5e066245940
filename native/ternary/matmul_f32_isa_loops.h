// The ISA-free walk of the SIMD weight decoders (matmul_f32_kernels.h): the
// B micro-panels are filled 16 GEMM columns at a time, one weight row panel
// (decode_wt) or column block (decode_w) each. Included INSIDE each ISA
// file's anonymous namespace, after <cstring> and matmul_f32_kernels.h. No STL.
#pragma once

// Weight of column c of a block sits at bits 8 * (c % 4) + 2 * (c / 4) of its row's dword.
inline int col_shift(int64_t c) { return int(8 * (c % 4) + 2 * (c / 4)); }

// The dword of weight row r in column block `block`: its 16 codes.
inline uint32_t row_bits(const TernarySource& w, int64_t r, int64_t block) {
  uint32_t bits;
  std::memcpy(&bits,
              w.data + ((r / kRowPanel) * w.col_blocks + block) * kTileBytes + (r % kRowPanel) * 4,
              4);
  return bits;
}

// The Decoder contract's groups of 16 GEMM columns j0 + g: zero(panel) for
// the groups past nc (the panel's zero padding), fill(panel, g) for the
// others; panel points at the group's first column in its micro-panel.
template <typename Zero, typename Fill>
void for_each_group(int64_t nr, int64_t kc, int64_t nc, float* dst, Zero&& zero, Fill&& fill) {
  const int64_t width = (nc + nr - 1) / nr * nr;
  for (int64_t g = 0; g < width; g += 16) {
    float* panel = dst + (g / nr) * kc * nr + g % nr;
    if (g >= nc)
      zero(panel);
    else
      fill(panel, g);
  }
}

// decode_wt's walk over the k-range of the row panel holding row r0:
// tile_columns(d, tile, count) writes columns 0 .. count-1 of the 64-byte
// tile, column c (16 floats) at d + c * nr.
template <typename TileColumns>
void for_each_tile(const TernarySource& w, int64_t r0, int64_t nr, int64_t k0, int64_t kc,
                   float* panel, TileColumns&& tile_columns) {
  const uint8_t* tiles = w.data + (r0 / kRowPanel) * w.col_blocks * kTileBytes;
  for (int64_t kb = k0; kb < k0 + kc; kb += kColBlock) {
    const int64_t count = k0 + kc - kb < kColBlock ? k0 + kc - kb : kColBlock;
    tile_columns(panel + (kb - k0) * nr, tiles + (kb / kColBlock) * kTileBytes, count);
  }
}
