// The 5-trits-per-byte storage layout: base-3 digits, 3^5 = 243 <= 256, so
// 1.6 bits per weight (vs 2 for the compute layout). Files store this form.
#include <stdexcept>
#include <string>

#include "ternary.h"

namespace ternorm::ternary {
namespace {

void check_args(const char* fn, const void* a, const void* b, int64_t count) {
  if (a == nullptr || b == nullptr)
    throw std::invalid_argument(std::string(fn) +
                                ": null pointer; expected valid input and output buffers");
  if (count <= 0)
    throw std::invalid_argument(std::string(fn) + ": expected count > 0, got " +
                                std::to_string(count));
}

}  // namespace

void pack5(const int8_t* trits, int64_t count, uint8_t* out) {
  check_args("pack5", trits, out, count);
  for (int64_t i = 0; i < count; ++i)
    if (trits[i] < -1 || trits[i] > 1)
      throw std::invalid_argument("pack5: trit " + std::to_string(i) + " is " +
                                  std::to_string(trits[i]) + "; expected -1, 0 or 1");
  for (int64_t b = 0; b < packed5_bytes(count); ++b) {
    const int64_t base = b * 5;
    const int n = int(count - base < 5 ? count - base : 5);
    // Horner from the last digit: byte = sum_i (t_i + 1) * 3^i.
    unsigned v = 0;
    for (int i = n - 1; i >= 0; --i) v = v * 3 + unsigned(trits[base + i] + 1);
    out[b] = uint8_t(v);
  }
}

void unpack5(const uint8_t* in, int64_t count, int8_t* trits) {
  check_args("unpack5", in, trits, count);
  const int64_t bytes = packed5_bytes(count);
  const int tail = int(count - (bytes - 1) * 5);  // trits in the last byte, 1..5
  static constexpr unsigned kPow3[6] = {1, 3, 9, 27, 81, 243};
  for (int64_t b = 0; b < bytes; ++b) {
    const unsigned limit = b == bytes - 1 ? kPow3[tail] : 243;
    if (in[b] >= limit)
      throw std::invalid_argument(
          "unpack5: byte " + std::to_string(b) + " is " + std::to_string(in[b]) + "; expected < " +
          std::to_string(limit) +
          (limit == 243 ? " (5 base-3 digits)" : " (the last byte's unused digits must be 0)") +
          " (corrupt data)");
  }
  for (int64_t b = 0; b < bytes; ++b) {
    unsigned v = in[b];
    const int n = b == bytes - 1 ? tail : 5;
    for (int i = 0; i < n; ++i) {
      trits[b * 5 + i] = int8_t(int(v % 3) - 1);
      v /= 3;
    }
  }
}

}  // namespace ternorm::ternary
