// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and final
// XOR 0xFFFFFFFF), the checksum of every part of a ternorm container. Chosen
// over CRC-32 (zlib) for its better error detection at the lengths we store,
// and because it is the checksum of iSCSI, ext4 and SCTP, so its test vectors
// are published (RFC 3720, appendix B.4). Portable software implementation,
// slicing-by-8 (8 table lookups per 8 input bytes).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ternorm::io {

// CRC-32C of data[0, n). crc32c(nullptr, 0) == 0.
uint32_t crc32c(const void* data, size_t n);

// Continues a checksum: crc32c_extend(crc32c(a), b) == crc32c(a followed by b),
// so large payloads can be checksummed as they stream.
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t n);

}  // namespace ternorm::io
