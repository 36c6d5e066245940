// Adapter encodings: how a per-user norm-only adapter (one gain vector per
// RMSNorm weight, gains near 1.0) is stored, and what it costs in bytes.
//
// Two levels:
//  * A *scheme* (norm::GainScheme) is a storage format of one gain vector:
//    payload bytes + float params, decoded by the registered GainDecoder that
//    the fused RMSNorm kernel (and so model::evaluate) calls. Each family has
//    one file here with its encoder, decoder and exact size:
//      baseline.cpp    f32, f16, int8_per_tensor (the bet; decoders in norm/)
//      int8_group.cpp  int8 symmetric, one scale per block of B channels
//      int8_asym.cpp   int8 asymmetric (scale + integer zero point)
//      delta.cpp       int8 / int4 symmetric on g - 1
//      kmeans.cpp      1-D k-means codebook, 2, 4, 8, 16 or 256 centroids
//      sparse.cpp      only the largest |g - 1| kept, as (index, int8) pairs
//      rice.cpp        delta codes entropy-coded (Golomb-Rice), a real stream
//  * A *method* (Method) turns a whole adapter (n_tensors gain vectors) into
//    one encoding per tensor. Most methods apply one scheme to every tensor;
//    two search with a caller-supplied loss on the user's training text:
//      calibrated.cpp  int4_calibrated: int4 delta, clipping chosen by loss
//      mixed.cpp       mixed: int4 / int8 delta or f16 per tensor under a byte budget
//      alloc.cpp       alloc: 0..16 bits per tensor by measured sensitivity under a budget
//      (sparse_delta also takes a byte budget, and chooses without a loss)
//  record.cpp serialises encodings (one record per tensor, and an adapter
//  blob of records) with exact sizes; README.md states what the size counts.
//
// Every encoder is deterministic (no RNG, no thread-count dependence) and
// rejects bad input (null, d out of range, NaN/inf or |g| > 2^64 gains, bad
// options) with std::invalid_argument saying what was expected.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../model/limits.h"
#include "../norm/gain_codec.h"

namespace ternorm::codec {

// Gains per vector: the norm kernel's limit (it also keeps a block size exact
// as a float param and d inside the record's u32).
inline constexpr int64_t kMaxD = int64_t(1) << 24;
// The quantising encoders accept |g| <= 2^64. Gains are multiplicative factors
// near 1; the bound keeps every scale, q * scale and 1 + q * scale far from
// float overflow, so each scheme's error bound holds for all accepted input.
inline constexpr double kMaxGainMagnitude = 18446744073709551616.0;  // 2^64

// One encoded gain vector; owns its bytes. view() is valid while it lives
// (and is not modified).
struct EncodedGain {
  norm::GainScheme scheme = norm::GainScheme::F32;
  int64_t d = 0;
  std::vector<uint8_t> payload;
  std::vector<float> params;
  norm::GainView view() const;
};

// The name the registry gives a scheme ("int4_delta"); throws on an unknown one.
const char* scheme_name(norm::GainScheme scheme);

// An encoding's params by name, in record order (the layouts in GainScheme):
// scale; scale, zeroPoint; blockSize, scale (one per block); centroids. Raw
// schemes have none. Reports name parameters with these, never by index.
std::vector<std::pair<std::string, std::vector<float>>> named_params(const EncodedGain& e);

// ---- per-vector encoders, family by family ------------------------------------------
// Each returns an encoding that decode_gain accepts, with the error bound stated.
// Rounding is half away from zero (std::round, in double) everywhere.

// f32: exact. f16: round to nearest even (norm::f32_to_f16); throws when a
// gain would overflow binary16 (|g| >= 65520). |error| <= 2^-11 |g| for
// normal-range halves.
EncodedGain encode_f32(const float* g, int64_t d);
EncodedGain encode_f16(const float* g, int64_t d);
// The bet: scale = max|g| / 127 (rounded up to a float so 127 * scale >=
// max|g|), q = round(g / scale) in [-127, 127], g' = q * scale.
// |g - g'| <= scale / 2 (+ the float rounding of q * scale).
EncodedGain encode_int8_per_tensor(const float* g, int64_t d);
// Blocks of B channels (the last may be shorter; B > d means one block of d):
// per block the int8_per_tensor rule. |g - g'| <= scale_block / 2.
EncodedGain encode_int8_group(const float* g, int64_t d, int64_t block);
// lo = min g, hi = max g; scale = max((hi - lo) / 255, max|g| * 2^-22) rounded
// up to a float (the floor keeps |z| <= 2^22 when the range is tiny or zero);
// z = round(-lo / scale); q = clamp(round(g / scale) + z, 0, 255);
// g' = (q - z) * scale. |g - g'| <= scale / 2. All gains 0: scale = z = q = 0.
EncodedGain encode_int8_asym(const float* g, int64_t d);
// Delta from 1.0, bits 8, 4, 3 or 2: qmax = 2^(bits-1) - 1 (127, 7, 3, 1); m = max|g - 1| (in
// double); scale = clip * m / qmax rounded up to a float (clip in (0, 1]: clip < 1 clips the
// largest deltas); q = clamp(round((g - 1) / scale), -qmax, qmax); g' = 1 + q * scale. |g - g'| <=
// scale / 2 for every g with |g - 1| <= (qmax + 1/2) scale (all of them when clip = 1). Gains equal
// to 1 decode to exactly 1; all gains 1 gives scale 0.
EncodedGain encode_delta(int bits, const float* g, int64_t d, double clip = 1.0);
// The 1-bit delta: g' = 1 + s for g >= 1, 1 - s below. For fixed signs the
// squared error sum (|g_i - 1| - s)^2 is least at s = mean |g - 1|, and for
// any s >= 0 the sign of g - 1 is the best sign, so s = mean |g - 1| (in
// double, rounded to the nearest float) minimises the squared error jointly.
// |g - g'| <= max(s, max|g - 1| - s) (+ float rounding).
EncodedGain encode_sign1(const float* g, int64_t d);
// 0 bits: every gain decodes to exactly 1 (no params, no payload).
EncodedGain encode_unit(int64_t d);
// Sparse deltas: the gains at `keep` (strictly increasing indices < d) are
// coded as int8 deltas with scale = max kept |g - 1| / 127 rounded up to a
// float (|error| <= scale / 2 there); every other gain decodes to exactly 1
// (|error| = |g - 1|, at most the smallest kept |g - 1| when keep holds the
// largest ones, as the sparse_delta method chooses).
EncodedGain encode_sparse(const float* g, int64_t d, const std::vector<int64_t>& keep);
// Entropy-coded deltas: the codes q of encode_delta(bits, g, d) (bits 8, 4, 3
// or 2; the same decoded gains, bit for bit) written as a Golomb-Rice stream of
// zigzag(q) with the parameter r in 0..16 that makes the stream shortest (the
// smallest r on a tie). The payload is the stream's exact bytes.
EncodedGain encode_rice(int bits, const float* g, int64_t d);

// 1-D k-means with k = min(K, number of distinct gains) centroids, K = 2, 4,
// 8, 16 or 256 (1, 2, 3, 4 or 8-bit indices). Deterministic:
//  - init: centroid j = the ((2j + 1) m / (2k))-th smallest of the m distinct
//    values (quantiles; strictly increasing);
//  - Lloyd: assign each value to the nearest centroid (a value exactly between
//    two goes to the lower), move each centroid to the mean of its values
//    (summed in double in sorted order; an empty cluster keeps its centroid);
//    stop when no assignment changes or after max_iters iterations;
//  - store: centroids rounded to float, empty or duplicate ones dropped,
//    each gain coded as its nearest stored centroid (ties to the lower).
struct KMeansTrace {
  std::vector<double>
      distortion;  // sum of squared errors after each Lloyd iteration (double centroids)
  int iterations = 0;
  bool converged = false;  // stopped because no assignment changed
};
EncodedGain encode_kmeans(int K, const float* g, int64_t d, int max_iters = 100,
                          KMeansTrace* trace = nullptr);

// ---- methods: whole adapters ------------------------------------------------------------
enum class Method : int {
  RawF32 = 0,         // f32
  RawF16 = 1,         // f16
  Int8PerTensor = 2,  // the bet
  Int8Group = 3,
  Int8Asym = 4,
  Int8Delta = 5,
  Int4Delta = 6,
  KMeans16 = 7,
  KMeans256 = 8,
  Int4Calibrated = 9,  // needs a loss
  Mixed = 10,          // needs a loss and a byte budget
  // The low-rate methods (adapter format 2, compact headers):
  Int3Delta = 11,
  Int2Delta = 12,
  Sign1Delta = 13,
  KMeans2 = 14,
  KMeans4 = 15,
  KMeans8 = 16,
  SparseDelta = 17,    // needs a byte budget
  RiceInt4Delta = 18,  // int4_delta's gains, Golomb-Rice coded
  RiceInt3Delta = 19,  // int3_delta's gains, Golomb-Rice coded
  Alloc = 20,          // needs a loss and a byte budget
};
// "raw_fp32", "raw_fp16", "int8_per_tensor", "int8_group", "int8_asym",
// "int8_delta", "int4_delta", "kmeans16", "kmeans256", "int4_calibrated", "mixed",
// "int3_delta", "int2_delta", "sign1_delta", "kmeans2", "kmeans4", "kmeans8",
// "sparse_delta", "rice_int4_delta", "rice_int3_delta", "alloc".
const char* method_name(Method m);
// Throws std::invalid_argument listing the known names.
Method method_from_name(std::string_view name);
const std::vector<Method>& all_methods();
bool method_needs_loss(Method m);
// mixed, sparse_delta and alloc: EncodeOptions::byte_budget bounds adapter_bytes.
bool method_needs_budget(Method m);
// The adapter blob format a method's encodings are stored in: 1 for the
// methods of the first menu (their sizes are the committed results'), 2
// (compact record headers) for the low-rate methods, where 12 bytes of header
// per record would be a large share of a 100-byte adapter.
uint32_t adapter_format(Method m);
// Throws std::invalid_argument unless every tensor uses a scheme the method
// produces (raw_fp16 -> f16 only, int4_calibrated -> int4_delta, mixed ->
// int4_delta / int8_delta / f16, ...) and the blob format is the method's: a
// file that names one method and holds another's records is refused rather
// than mislabelled.
void check_method_schemes(Method m, const std::vector<EncodedGain>& tensors, uint32_t format);

// The loss of an adapter candidate: one view per tensor, in norm order. The
// model plugs in here: the caller evaluates the *training* text with these
// views (e.g. model::evaluate(...).mean_nll) and returns a finite number;
// lower is better. The views are valid only during the call.
using AdapterLoss = std::function<double(const std::vector<norm::GainView>&)>;

// The default clipping grid of int4_calibrated: 1.00, 0.95, ..., 0.30.
std::vector<double> default_clip_grid();

struct EncodeOptions {
  // Defaults and ranges: limits::codec (model/limits.h).
  int64_t group_size = int64_t(limits::codec::group_size.def);  // int8_group: B, 1 <= B <= kMaxD
  int kmeans_max_iters =
      int(limits::codec::kmeans_max_iters.def);  // kmeans: Lloyd iterations at most, >= 1
  // int4_calibrated: clip factors tried (each in (0, 1], distinct; empty =
  // default_clip_grid()) and per-tensor refinement passes (>= 0).
  std::vector<double> clip_grid;
  int calibration_passes = int(limits::codec::calibration_passes.def);
  // mixed, sparse_delta, alloc: the most serialised adapter bytes allowed
  // (adapter_bytes() in the method's format, the adapter header included).
  uint64_t byte_budget = 0;
};

// What a search did; every loss is the callback's value.
struct CalibrationReport {
  std::vector<double> grid;         // the clip factors tried
  std::vector<double> global_loss;  // stage 1: loss with grid[i] on every tensor
  std::vector<double> clip;         // the chosen factor per tensor
  double loss = 0;                  // loss of the returned encoding
  int64_t loss_evals = 0;
};
// The per-tensor choice under a byte budget (mixed, alloc).
struct MixedReport {
  // mixed's candidates per tensor, in order of size.
  static constexpr std::array<norm::GainScheme, 3> kCandidates = {
      norm::GainScheme::Int4Delta, norm::GainScheme::Int8Delta, norm::GainScheme::F16};
  // The method's candidates (kCandidates for mixed; alloc's widths 0, 1, 2, 3,
  // 4, 8, 16 bits: unit, sign1_delta, int2/3/4/8_delta, f16).
  std::vector<norm::GainScheme> candidates;
  double reference_loss = 0;  // all tensors f32
  // increase[t][c]: loss with tensor t alone encoded by candidate c (others
  // f32) minus reference_loss. Measured; can be negative.
  std::vector<std::vector<double>> increase;
  // [t][c]: record size of the encoding in the method's adapter format.
  std::vector<std::vector<uint64_t>> candidate_bytes;
  std::vector<int> choice;         // candidate index per tensor
  double predicted_increase = 0;   // sum of increase[t][choice[t]]
  double loss = 0;                 // measured loss of the returned encoding
  uint64_t budget = 0, bytes = 0;  // bytes = adapter_bytes of the result <= budget
  int64_t loss_evals = 0;
};

struct EncodedAdapter {
  Method method = Method::RawF32;
  std::vector<EncodedGain> tensors;  // one per norm, in norm order
  std::optional<CalibrationReport> calibration;
  std::optional<MixedReport> mixed;  // mixed and alloc
  uint32_t format = 1;               // adapter_format(method)
  // Views for model::evaluate / the norm kernel; valid while this lives.
  std::vector<norm::GainView> views() const;
};

// gains: n_tensors x d, row-major (model::Trainer::gains() layout). loss is
// required by int4_calibrated and mixed and ignored by the others.
EncodedAdapter encode_adapter(Method m, const float* gains, int64_t n_tensors, int64_t d,
                              const EncodeOptions& opts = {}, const AdapterLoss& loss = {});

// The two searches (also reached through encode_adapter); calibrated.cpp and
// mixed.cpp document the procedures.
EncodedAdapter encode_int4_calibrated(const float* gains, int64_t n_tensors, int64_t d,
                                      const AdapterLoss& loss, const std::vector<double>& grid,
                                      int passes);
EncodedAdapter encode_mixed(const float* gains, int64_t n_tensors, int64_t d,
                            const AdapterLoss& loss, uint64_t byte_budget);
// alloc.cpp: widths {0, 1, 2, 3, 4, 8, 16} bits per tensor by measured
// sensitivity, an exact knapsack under byte_budget (format 2 bytes).
EncodedAdapter encode_alloc(const float* gains, int64_t n_tensors, int64_t d,
                            const AdapterLoss& loss, uint64_t byte_budget);
// sparse.cpp: the k largest |g - 1| of the whole adapter kept (ties: lower
// tensor, then lower index first), k the largest that fits byte_budget
// (format 2 bytes); a tensor keeping none is stored as unit.
EncodedAdapter encode_sparse_adapter(const float* gains, int64_t n_tensors, int64_t d,
                                     uint64_t byte_budget);

// ---- records: the on-disk form, with exact sizes ----------------------------------------
// Record of one gain vector, little-endian, no padding:
//   u32 scheme id, u32 d, u32 n_params, f32 params[n_params], u8 payload[]
// The payload length is not stored: the scheme defines it from d and the
// params, and the parser checks it. Size = 12 + 4 n_params + payload bytes.
// Adapter blob, format 1: u32 version (1), u32 n_tensors, then the records
// back to back. Size = 8 + sum of record sizes.
// Format 2 (compact; the low-rate methods): u32 version (2), u32 n_tensors,
// u32 d (every tensor's), then per tensor u8 scheme id, u16 n_params, f32
// params[n_params], payload. Size = 12 + sum (3 + 4 n_params + payload).
// The container's own per-section overhead (native/io) comes on top and is
// reported separately.
inline constexpr uint64_t kRecordHeaderBytes = 12;
inline constexpr uint64_t kAdapterHeaderBytes = 8;
inline constexpr uint32_t kAdapterFormatVersion = 1;
inline constexpr uint64_t kCompactRecordHeaderBytes = 3;
inline constexpr uint64_t kCompactAdapterHeaderBytes = 12;
inline constexpr uint32_t kCompactAdapterFormatVersion = 2;

// The record's size in a format-1 blob (format 2: compact_record_bytes).
uint64_t record_bytes(const EncodedGain& e);
uint64_t compact_record_bytes(const EncodedGain& e);
uint64_t adapter_bytes(const std::vector<EncodedGain>& tensors, uint32_t format = 1);
// Validates e (as decode_gain does) and appends its record.
void append_record(const EncodedGain& e, std::vector<uint8_t>& out);
std::vector<uint8_t> serialize_adapter(const std::vector<EncodedGain>& tensors,
                                       uint32_t format = 1);

// Parses one record at the start of [data, data + size): the header, then the
// view is validated and decoded (so a bad index, padding nibble or non-finite
// gain is refused too). With consumed null the record must fill the buffer
// exactly; otherwise *consumed gets its length. Throws std::invalid_argument
// "gain record: ..." naming what is wrong and what was expected.
EncodedGain parse_record(const uint8_t* data, size_t size, size_t* consumed = nullptr);
// Parses an adapter blob of either format; it must be consumed exactly.
// expected_tensors / expected_d >= 0 are checked when given (-1: any);
// *format gets the blob's format when format is not null.
std::vector<EncodedGain> parse_adapter(const uint8_t* data, size_t size,
                                       int64_t expected_tensors = -1, int64_t expected_d = -1,
                                       uint32_t* format = nullptr);

}  // namespace ternorm::codec
