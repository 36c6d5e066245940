// Internal: the per-ISA kernels of decoding (decode.cpp), one set per path,
// picked by decode_kernels() (decode_kernels.cpp, the one dispatch point):
// one query row's attention over the key/value cache, and the output head on
// a few rows. They read the cache and the weights in place: no packing, no
// allocation.
//
// Numerics: each result element goes through exactly the float operations
// the same path's packed gemm_f32 gives it (gemm_kernels.h: one product
// chain per element in k order, k-blocks of the path's kc, the first block's
// sum stored, each later block's sum added onto it), so decoding keeps the
// bits of the full-window forward, whose products take that packed path.
// The scalar path (separate multiply and add, as the scalar microkernel) is
// the reference; the SIMD paths fuse multiply and add, as theirs do.
// POD-only header (ISA files include it).
#pragma once
#include <cstdint>

#include "../cpu/isa.h"
#include "../gemm/gemm_kernels.h"

namespace ternorm::model::detail {

// The key cache of one (slot, key/value head) holds positions in panels of
// kKeyPanel: panel b is hd x kKeyPanel floats, k-major, key b*kKeyPanel + i
// at panel[p * kKeyPanel + i] (as a packed B micro-panel of K^T), so one
// query's scores run kKeyPanel keys per vector pass, reading contiguously.
constexpr int64_t kKeyPanel = 16;
// The head kernel's rows (entries) per pass: one column of x^T.
constexpr int64_t kHeadLanes = 16;

struct DecodeKernels {
  // s[b * kKeyPanel + i] = scale * sum_{p < hd} q[p] * panel_b[p * kKeyPanel + i]
  // for the panels b < n_panels at kp (panel b at kp + b * hd * kKeyPanel).
  // Every lane is written; lanes past the cached keys hold what the cache holds.
  void (*scores)(const float* q, const float* kp, int64_t hd, int64_t n_panels, float scale,
                 float* s);
  // out[c] = sum_{j < n} w[j] * v[j * ldv + c] for c < hd, in k-blocks of kc keys.
  void (*weighted_sum)(const float* w, const float* v, int64_t ldv, int64_t n, int64_t hd,
                       int64_t kc, float* out);
  // c[e * ldc + j] = sum_{p < k} xt[p * kHeadLanes + e] * b[j * ldb + p] for
  // e < m (<= kHeadLanes; the other lanes of xt are read, their results
  // dropped) and j < n, in k-blocks of kc.
  void (*head_rows)(int64_t k, const float* xt, int64_t m, const float* b, int64_t ldb, int64_t n,
                    int64_t kc, float* c, int64_t ldc);
  // The packed fp32 GEMM of the same path: its kc is the k-block above.
  const gemm::GemmKernels* gemm;
};

// The kernels of a path, from decode_kernels.cpp's table (cpu/dispatch.h;
// throws std::invalid_argument on a path this build or CPU cannot run).
const DecodeKernels& decode_kernels(Isa isa);

// One per path, defined in its ISA file (the scalar one in decode_kernels_ref.cpp).
extern const DecodeKernels kDecodeKernelsScalar, kDecodeKernelsAvx2, kDecodeKernelsAvx512,
    kDecodeKernelsNeon;

}  // namespace ternorm::model::detail
