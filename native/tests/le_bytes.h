// Little-endian reads and writes into a byte vector, for tests that build or
// mutate files byte by byte (the container's layout is little-endian).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ternorm::test {

using Bytes = std::vector<uint8_t>;

inline uint32_t rd32(const Bytes& b, size_t at) {
  return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 |
         uint32_t(b[at + 3]) << 24;
}
inline uint64_t rd64(const Bytes& b, size_t at) {
  return uint64_t(rd32(b, at)) | uint64_t(rd32(b, at + 4)) << 32;
}
inline void wr32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (8 * i));
}
inline void wr64(Bytes& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = uint8_t(v >> (8 * i));
}

}  // namespace ternorm::test
