// The decode side of the adapter codecs: the functions norm/gain_codec.cpp's
// registry points at, one group per scheme family (each defined in that
// family's file, next to its encoder). validate_gain runs the generic checks
// (d, non-null data, params non-null and finite) before params_ok, and
// params_ok before payload_bytes; decode runs on a validated view and throws
// std::invalid_argument for payload content the layout cannot rule out.
#pragma once
#include <cstddef>

#include "../norm/gain_codec.h"

namespace ternorm::codec {

// int8_group.cpp: params = {B, s_0 .. s_{nb-1}}, nb = ceil(d / B).
inline constexpr char kInt8GroupParamsExpected[] =
    "1 + ceil(d / B): the block size B (an integer, 1 <= B <= d), then one scale per block";
size_t int8_group_payload_bytes(const norm::GainView& g);
bool int8_group_params_ok(const norm::GainView& g);
void int8_group_decode(const norm::GainView& g, float* out);

// int8_asym.cpp: params = {scale, zero point}.
inline constexpr char kInt8AsymParamsExpected[] =
    "2: the scale, then the zero point (an integer, |z| <= 2^23)";
size_t int8_asym_payload_bytes(const norm::GainView& g);
bool int8_asym_params_ok(const norm::GainView& g);
void int8_asym_decode(const norm::GainView& g, float* out);

// delta.cpp: params = {scale}, int8 or int4 codes.
inline constexpr char kDeltaParamsExpected[] = "1 (the scale of g - 1)";
bool delta_params_ok(const norm::GainView& g);
size_t delta8_payload_bytes(const norm::GainView& g);
void delta8_decode(const norm::GainView& g, float* out);
size_t delta4_payload_bytes(const norm::GainView& g);
void delta4_decode(const norm::GainView& g, float* out);
size_t delta3_payload_bytes(const norm::GainView& g);
void delta3_decode(const norm::GainView& g, float* out);
size_t delta2_payload_bytes(const norm::GainView& g);
void delta2_decode(const norm::GainView& g, float* out);
// delta.cpp: the 1-bit delta, params = {scale >= 0}, one sign bit per gain.
inline constexpr char kSign1ParamsExpected[] = "1 (the scale of g - 1, >= 0)";
size_t sign1_payload_bytes(const norm::GainView& g);
bool sign1_params_ok(const norm::GainView& g);
void sign1_decode(const norm::GainView& g, float* out);
// delta.cpp: the 0-bit tensor, every gain 1.
size_t unit_payload_bytes(const norm::GainView& g);
bool unit_params_ok(const norm::GainView& g);
void unit_decode(const norm::GainView& g, float* out);

// kmeans.cpp: params = the k centroids, strictly increasing.
inline constexpr char kKMeans16ParamsExpected[] =
    "1..16 centroids, strictly increasing (k = the number of params)";
inline constexpr char kKMeans256ParamsExpected[] =
    "1..256 centroids, strictly increasing (k = the number of params)";
size_t kmeans16_payload_bytes(const norm::GainView& g);
bool kmeans16_params_ok(const norm::GainView& g);
void kmeans16_decode(const norm::GainView& g, float* out);
size_t kmeans256_payload_bytes(const norm::GainView& g);
bool kmeans256_params_ok(const norm::GainView& g);
void kmeans256_decode(const norm::GainView& g, float* out);
inline constexpr char kKMeans2ParamsExpected[] =
    "1..2 centroids, strictly increasing (k = the number of params)";
inline constexpr char kKMeans4ParamsExpected[] =
    "1..4 centroids, strictly increasing (k = the number of params)";
inline constexpr char kKMeans8ParamsExpected[] =
    "1..8 centroids, strictly increasing (k = the number of params)";
size_t kmeans2_payload_bytes(const norm::GainView& g);
bool kmeans2_params_ok(const norm::GainView& g);
void kmeans2_decode(const norm::GainView& g, float* out);
size_t kmeans4_payload_bytes(const norm::GainView& g);
bool kmeans4_params_ok(const norm::GainView& g);
void kmeans4_decode(const norm::GainView& g, float* out);
size_t kmeans8_payload_bytes(const norm::GainView& g);
bool kmeans8_params_ok(const norm::GainView& g);
void kmeans8_decode(const norm::GainView& g, float* out);

// sparse.cpp: params = {k, scale}; k (index, int8 code) entries.
inline constexpr char kSparseParamsExpected[] =
    "2: the number of kept gains k (an integer, 0 <= k <= d), then the scale (>= 0)";
size_t sparse_payload_bytes(const norm::GainView& g);
bool sparse_params_ok(const norm::GainView& g);
void sparse_decode(const norm::GainView& g, float* out);

// rice.cpp: params = {scale, rice parameter r, payload bytes}.
inline constexpr char kRiceParamsExpected[] =
    "3: the scale (>= 0), the Rice parameter (an integer, 0..16), the payload bytes (an integer, "
    "ceil(d / 8) .. 2^24)";
size_t rice_payload_bytes(const norm::GainView& g);
bool rice_params_ok(const norm::GainView& g);
void rice_decode(const norm::GainView& g, float* out);

}  // namespace ternorm::codec
