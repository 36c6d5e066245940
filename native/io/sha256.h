// SHA-256 (FIPS 180-4), used for model fingerprints: an adapter records the
// fingerprint of the base model it was trained on, and loading it on another
// base is refused. A cryptographic hash (rather than a 64-bit one) so that two
// different bases never share a fingerprint by accident, whatever the fleet
// size. Portable software implementation; checked against the FIPS 180-4
// example vectors in the tests.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ternorm::io {

using Sha256Digest = std::array<uint8_t, 32>;

// Incremental hashing: update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  // Pads, returns the digest. The object must not be updated afterwards
  // (throws std::logic_error if it is).
  Sha256Digest finish();

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

Sha256Digest sha256(const void* data, size_t n);

// Lower-case hex of the digest (64 characters).
std::string to_hex(const Sha256Digest& d);

}  // namespace ternorm::io
