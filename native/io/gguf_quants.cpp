#include "gguf_quants.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "../norm/gain_codec.h"

namespace ternorm::gguf {

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
void wr16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}

void check_multiple(GgmlType t, int64_t n) {
  if (n < 0 || n % block_values(t) != 0)
    throw std::invalid_argument("gguf: " + type_name(t) + " needs a multiple of " +
                                std::to_string(block_values(t)) + " values, got " +
                                std::to_string(n));
}

void check_not_nan(const float* x, int64_t n, GgmlType t) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(x[i]))
      throw std::invalid_argument("gguf: cannot encode a NaN (index " + std::to_string(i) +
                                  ") as " + type_name(t));
}

void check_finite(const float* x, int64_t n, GgmlType t) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument("gguf: cannot encode a non-finite value (index " +
                                  std::to_string(i) + ") as " + type_name(t));
}

// x * id as ggml computes it, except where 1/d overflowed (d subnormal):
// there x / d. The callers clamp to the code range, which only matters for
// such subnormal scales (a rounded d may sit just below amax / 127).
float scaled(float x, float id, float d) { return std::isfinite(id) ? x * id : x / d; }

// Where value e (< 256) of a TQ1_0 block lives: its byte and its base-3
// digit, 0 = most significant (see the layout in gguf_quants.h).
struct Tq1Place {
  int byte, digit;
};
Tq1Place tq1_place(int e) {
  if (e < 160) return {e % 32, e / 32};
  if (e < 240) return {32 + (e - 160) % 16, (e - 160) / 16};
  return {48 + (e - 240) % 4, (e - 240) / 4};
}
constexpr int kPow3[6] = {1, 3, 9, 27, 81, 243};

// TQ2_0: value e of a block sits in byte 32*(e/128) + e%32, bit pair (e%128)/32.
int tq2_byte(int e) { return 32 * (e / 128) + e % 32; }
int tq2_shift(int e) { return 2 * ((e % 128) / 32); }

void encode_tq1_block(const int8_t* t, uint16_t d, uint8_t* out) {
  int v[52] = {};  // base-3 value of each of the 48 + 4 trit bytes
  for (int e = 0; e < kQK_K; ++e) {
    const Tq1Place p = tq1_place(e);
    v[p.byte] += (t[e] + 1) * kPow3[4 - p.digit];
  }
  for (int b = 0; b < 52; ++b) out[b] = uint8_t((v[b] * 256 + 242) / 243);  // ceil(v * 256 / 243)
  wr16(out + 52, d);
}

void decode_tq1_block(const uint8_t* in, int8_t* t) {
  for (int e = 0; e < kQK_K; ++e) {
    const Tq1Place p = tq1_place(e);
    const uint8_t q = uint8_t(in[p.byte] * kPow3[p.digit]);  // mod 256: the digit moves to the top
    t[e] = int8_t(((q * 3) >> 8) - 1);
  }
}

void encode_tq2_block(const int8_t* t, uint16_t d, uint8_t* out) {
  std::memset(out, 0, 64);
  for (int e = 0; e < kQK_K; ++e) out[tq2_byte(e)] |= uint8_t((t[e] + 1) << tq2_shift(e));
  wr16(out + 64, d);
}

// Returns the index of the first code 3, or -1.
int decode_tq2_block(const uint8_t* in, int8_t* t) {
  int bad = -1;
  for (int e = 0; e < kQK_K; ++e) {
    const int code = (in[tq2_byte(e)] >> tq2_shift(e)) & 3;
    if (code == 3 && bad < 0) bad = e;
    t[e] = int8_t(code - 1);
  }
  return bad;
}

}  // namespace

bool type_supported(uint32_t id) {
  switch (GgmlType(id)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::Q8_0:
    case GgmlType::BF16:
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0: return true;
  }
  return false;
}

std::string type_name(uint32_t id) {
  // ggml's names, ids 0..39 (4, 5 and 31..33, 36..38 are retired).
  static const char* const kNames[] = {
      "f32",     "f16",    "q4_0",    "q4_1",  nullptr,  nullptr, "q5_0",  "q5_1",
      "q8_0",    "q8_1",   "q2_K",    "q3_K",  "q4_K",   "q5_K",  "q6_K",  "q8_K",
      "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs",
      "i8",      "i16",    "i32",     "i64",   "f64",    "iq1_m", "bf16",  nullptr,
      nullptr,   nullptr,  "tq1_0",   "tq2_0", nullptr,  nullptr, nullptr, "mxfp4"};
  if (id < sizeof kNames / sizeof kNames[0] && kNames[id] != nullptr) return kNames[id];
  return "type " + std::to_string(id);
}

const char* supported_type_list() { return "f32, f16, bf16, q8_0, tq1_0, tq2_0"; }

int64_t block_values(GgmlType t) {
  switch (t) {
    case GgmlType::Q8_0: return kQK8_0;
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0: return kQK_K;
    default: return 1;
  }
}

size_t block_bytes(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 4;
    case GgmlType::F16:
    case GgmlType::BF16: return 2;
    case GgmlType::Q8_0: return kQ8Bytes;
    case GgmlType::TQ1_0: return kTq1Bytes;
    case GgmlType::TQ2_0: return kTq2Bytes;
  }
  throw std::invalid_argument("gguf: unsupported tensor type " + type_name(uint32_t(t)));
}

bool is_ternary(GgmlType t) { return t == GgmlType::TQ1_0 || t == GgmlType::TQ2_0; }

uint64_t bytes_for(GgmlType t, int64_t n) {
  check_multiple(t, n);
  const uint64_t blocks = uint64_t(n / block_values(t));
  if (blocks > UINT64_MAX / block_bytes(t))
    throw std::invalid_argument("gguf: tensor byte size overflows");
  return blocks * block_bytes(t);
}

// ---- scalar conversions ----------------------------------------------------------

uint16_t fp32_to_bf16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 64u);
  return uint16_t((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

float bf16_to_fp32(uint16_t h) { return bits_float(uint32_t(h) << 16); }

// ---- float codecs ------------------------------------------------------------------

void decode_to_float(GgmlType t, const uint8_t* in, int64_t n, float* out) {
  check_multiple(t, n);
  switch (t) {
    case GgmlType::F32: std::memcpy(out, in, size_t(n) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = norm::f16_to_f32(rd16(in + 2 * i));
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(rd16(in + 2 * i));
      return;
    case GgmlType::Q8_0:
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        const uint8_t* blk = in + b * int64_t(kQ8Bytes);
        const float d = norm::f16_to_f32(rd16(blk));
        for (int j = 0; j < kQK8_0; ++j) out[b * kQK8_0 + j] = float(int8_t(blk[2 + j])) * d;
      }
      return;
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0: {
      int8_t tr[kQK_K];
      const size_t bb = block_bytes(t);
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        const uint8_t* blk = in + b * int64_t(bb);
        float d;
        if (t == GgmlType::TQ1_0) {
          decode_tq1_block(blk, tr);
          d = norm::f16_to_f32(rd16(blk + 52));
        } else {
          decode_tq2_block(blk, tr);
          d = norm::f16_to_f32(rd16(blk + 64));
        }
        for (int j = 0; j < kQK_K; ++j) out[b * kQK_K + j] = float(tr[j]) * d;
      }
      return;
    }
  }
  throw std::invalid_argument("gguf: no decoder for " + type_name(t));
}

void encode_from_float(GgmlType t, const float* in, int64_t n, uint8_t* out) {
  check_multiple(t, n);
  check_not_nan(in, n, t);
  switch (t) {
    case GgmlType::F32: std::memcpy(out, in, size_t(n) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) wr16(out + 2 * i, norm::f32_to_f16(in[i]));
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) wr16(out + 2 * i, fp32_to_bf16(in[i]));
      return;
    case GgmlType::Q8_0:
      check_finite(in, n, t);
      for (int64_t b = 0; b < n / kQK8_0; ++b) {
        const float* x = in + b * kQK8_0;
        uint8_t* blk = out + b * int64_t(kQ8Bytes);
        float amax = 0;
        for (int j = 0; j < kQK8_0; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        wr16(blk, norm::f32_to_f16(d));
        for (int j = 0; j < kQK8_0; ++j)
          blk[2 + j] = uint8_t(
              int8_t(std::fmin(127.0f, std::fmax(-127.0f, std::roundf(scaled(x[j], id, d))))));
      }
      return;
    case GgmlType::TQ1_0:
    case GgmlType::TQ2_0: {
      check_finite(in, n, t);
      int8_t tr[kQK_K];
      for (int64_t b = 0; b < n / kQK_K; ++b) {
        const float* x = in + b * kQK_K;
        float amax = 0;
        for (int j = 0; j < kQK_K; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float id = amax != 0 ? 1.0f / amax : 0.0f;
        for (int j = 0; j < kQK_K; ++j)
          tr[j] = int8_t(std::fmin(1.0f, std::fmax(-1.0f, std::roundf(scaled(x[j], id, amax)))));
        const uint16_t d = norm::f32_to_f16(amax);
        if (t == GgmlType::TQ1_0)
          encode_tq1_block(tr, d, out + b * int64_t(kTq1Bytes));
        else
          encode_tq2_block(tr, d, out + b * int64_t(kTq2Bytes));
      }
      return;
    }
  }
  throw std::invalid_argument("gguf: no encoder for " + type_name(t));
}

// ---- ternary codecs -------------------------------------------------------------------

void encode_ternary(GgmlType t, const int8_t* trits, const uint16_t* block_d, int64_t n,
                    uint8_t* out) {
  if (!is_ternary(t))
    throw std::invalid_argument("gguf: " + type_name(t) + " is not a ternary type");
  check_multiple(t, n);
  for (int64_t i = 0; i < n; ++i)
    if (trits[i] < -1 || trits[i] > 1)
      throw std::invalid_argument("gguf: ternary value " + std::to_string(i) + " is " +
                                  std::to_string(int(trits[i])) + ", not -1, 0 or 1");
  const size_t bb = block_bytes(t);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    if (t == GgmlType::TQ1_0)
      encode_tq1_block(trits + b * kQK_K, block_d[b], out + b * int64_t(bb));
    else
      encode_tq2_block(trits + b * kQK_K, block_d[b], out + b * int64_t(bb));
  }
}

bool decode_ternary(GgmlType t, const uint8_t* in, int64_t n, int8_t* trits, uint16_t* block_d,
                    int64_t* bad_index) {
  if (!is_ternary(t))
    throw std::invalid_argument("gguf: " + type_name(t) + " is not a ternary type");
  check_multiple(t, n);
  const size_t bb = block_bytes(t);
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    const uint8_t* blk = in + b * int64_t(bb);
    if (t == GgmlType::TQ1_0) {
      decode_tq1_block(blk, trits + b * kQK_K);
      block_d[b] = rd16(blk + 52);
    } else {
      const int bad = decode_tq2_block(blk, trits + b * kQK_K);
      block_d[b] = rd16(blk + 64);
      if (bad >= 0) {
        if (bad_index != nullptr) *bad_index = b * kQK_K + bad;
        return false;
      }
    }
  }
  return true;
}

}  // namespace ternorm::gguf
