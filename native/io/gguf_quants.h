// The ggml tensor types ternorm reads and writes in GGUF files, and their
// block codecs: F32, F16, BF16, Q8_0 (to and from float) and the ternary
// TQ1_0 / TQ2_0 (to and from trits plus one fp16 scale per 256-weight block,
// and to float). Byte layouts are ggml's, so a file written here runs in
// llama.cpp and a llama.cpp file reads here. Scalar code: these run once at
// load or export, never in a hot loop.
//
// Block layouts (all little-endian; "d" is an IEEE binary16 scale):
//   Q8_0   32 values, 34 bytes: d, then int8 q[32];   value = q * d
//   TQ2_0 256 values, 66 bytes: q[64], then d. Byte 32*c + m (c < 2, m < 32)
//          holds, in bit pair n (bits 2n..2n+1), the trit of value
//          128*c + 32*n + m, stored as trit + 1 (code 3 is not a trit).
//   TQ1_0 256 values, 54 bytes: qs[48], qh[4], then d. Each byte holds 5
//          trits (4 in qh) as a base-3 number of the digits trit + 1, first
//          trit most significant, scaled to a byte: byte = ceil(v * 256 / 243),
//          so digit k is recovered as ((byte * 3^k) mod 256) * 3 >> 8.
//          qs[m], m < 32, holds values m + 32*k (k < 5), values 0..159;
//          qs[32 + m], m < 16, holds values 160 + m + 16*k, values 160..239;
//          qh[j], j < 4, holds values 240 + j + 4*k (k < 4) and a zero digit
//          in the fifth, least significant place.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ternorm::gguf {

// ggml's type ids (part of the GGUF format: never renumber). Only the types
// with a codec here are listed; type_name() knows the names of the others for
// error messages.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
};

inline constexpr int64_t kQK_K = 256;  // values per TQ1_0 / TQ2_0 block
inline constexpr int64_t kQK8_0 = 32;  // values per Q8_0 block
inline constexpr size_t kTq1Bytes = 54;
inline constexpr size_t kTq2Bytes = 66;
inline constexpr size_t kQ8Bytes = 34;

// True for the ids above.
bool type_supported(uint32_t id);
// "f32", "tq2_0", ... for any ggml type id ggml has defined, "type <id>" otherwise.
std::string type_name(uint32_t id);
inline std::string type_name(GgmlType t) { return type_name(uint32_t(t)); }
// "f32, f16, bf16, q8_0, tq1_0, tq2_0": for error messages.
const char* supported_type_list();
// Values per block (1 for the float types) and bytes per block.
int64_t block_values(GgmlType t);
size_t block_bytes(GgmlType t);
bool is_ternary(GgmlType t);  // TQ1_0, TQ2_0

// Bytes of n values of type t; n must be a multiple of block_values(t) and
// the result must fit: std::invalid_argument otherwise.
uint64_t bytes_for(GgmlType t, int64_t n);

// ---- scalar conversions ---------------------------------------------------------
// IEEE binary16 has one home: norm::f32_to_f16 / norm::f16_to_f32 (norm/gain_codec.h).
// bfloat16 as ggml converts it: round to nearest even (subnormals kept), NaN
// made quiet.
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);  // exact

// ---- float codecs ---------------------------------------------------------------
// n values of type t at `in` -> float. Every type here, including the ternary
// ones (trit * d). n a multiple of block_values(t). Any bytes decode (a TQ2_0
// code 3 gives 2 * d, as in ggml; decode_ternary refuses it instead).
void decode_to_float(GgmlType t, const uint8_t* in, int64_t n, float* out);
// float -> type t, as ggml's reference quantizers do: F16/BF16 as above;
// Q8_0 d = amax / 127 stored as fp16, q = roundf(x * (1 / d)) (ties away from
// zero; llama.cpp's quantize_row_q8_0_ref); TQ1_0/TQ2_0 d = amax of the block,
// trit = lroundf(x / d). NaN is refused (std::invalid_argument) for every
// type, +-inf for the block types; F32/F16/BF16 keep inf, subnormals and the
// sign of zero (F16 rounds what is beyond its range to inf).
void encode_from_float(GgmlType t, const float* in, int64_t n, uint8_t* out);

// ---- ternary codecs -------------------------------------------------------------
// n trits (in {-1,0,1}, n a multiple of 256) and one fp16 scale per block ->
// TQ1_0 or TQ2_0 blocks. std::invalid_argument on a value outside {-1,0,1}.
void encode_ternary(GgmlType t, const int8_t* trits, const uint16_t* block_d, int64_t n,
                    uint8_t* out);
// The inverse: trits and the fp16 scale of each block. Returns false (and
// sets *bad_index to the value's index) when a TQ2_0 code 3 appears; TQ1_0
// has no invalid byte.
bool decode_ternary(GgmlType t, const uint8_t* in, int64_t n, int8_t* trits, uint16_t* block_d,
                    int64_t* bad_index);

}  // namespace ternorm::gguf
