// trits <-> the 2-bit compute layout (see ternary.h for the tile format).
#include <cstring>
#include <stdexcept>
#include <string>

#include "ternary.h"

namespace ternorm::ternary {
namespace {

void check_shape(const char* fn, const void* a, const void* b, int64_t rows, int64_t cols) {
  if (a == nullptr || b == nullptr)
    throw std::invalid_argument(std::string(fn) +
                                ": null pointer; expected valid input and output buffers");
  if (rows <= 0 || cols <= 0)
    throw std::invalid_argument(std::string(fn) + ": expected rows > 0 and cols > 0, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
  // Keep padded_rows * padded_cols well inside int64 (and size_t).
  if (rows > (int64_t(1) << 31) || cols > (int64_t(1) << 31))
    throw std::invalid_argument(std::string(fn) + ": expected rows and cols <= 2^31, got " +
                                std::to_string(rows) + " x " + std::to_string(cols));
}

// Byte offset and bit shift of (r, c) inside the packed matrix.
inline int64_t byte_of(int64_t r, int64_t c, int64_t col_blocks) {
  const int64_t tile = (r / kRowPanel) * col_blocks + c / kColBlock;
  return tile * kTileBytes + (r % kRowPanel) * 4 + (c % 4);
}
inline int shift_of(int64_t c) { return int((c % kColBlock) / 4) * 2; }

}  // namespace

void pack2(const int8_t* trits, int64_t rows, int64_t cols, uint8_t* packed) {
  check_shape("pack2", trits, packed, rows, cols);
  // Validate everything before writing, so a bad input leaves `packed` untouched.
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (trits[i] < -1 || trits[i] > 1)
      throw std::invalid_argument("pack2: trit at row " + std::to_string(i / cols) + ", col " +
                                  std::to_string(i % cols) + " is " + std::to_string(trits[i]) +
                                  "; expected -1, 0 or 1");
  }
  const int64_t col_blocks = padded_cols(cols) / kColBlock;
  // 0x55 = code 1 (trit 0) in all four bit pairs: the padding value.
  std::memset(packed, 0x55, size_t(packed2_bytes(rows, cols)));
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* row = trits + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      uint8_t& byte = packed[byte_of(r, c, col_blocks)];
      const int s = shift_of(c);
      byte = uint8_t((byte & ~(3u << s)) | (uint32_t(row[c] + 1) << s));
    }
  }
}

void unpack2(const uint8_t* packed, int64_t rows, int64_t cols, int8_t* trits) {
  check_shape("unpack2", packed, trits, rows, cols);
  const int64_t col_blocks = padded_cols(cols) / kColBlock;
  // Validate first: code 3 is not a trit (corrupt data).
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (((packed[byte_of(r, c, col_blocks)] >> shift_of(c)) & 3) == 3)
        throw std::invalid_argument("unpack2: code 3 at row " + std::to_string(r) + ", col " +
                                    std::to_string(c) + "; expected codes 0, 1, 2 (corrupt data)");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      trits[r * cols + c] = int8_t(((packed[byte_of(r, c, col_blocks)] >> shift_of(c)) & 3) - 1);
}

}  // namespace ternorm::ternary
