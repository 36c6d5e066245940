// RoPE and causal multi-head / grouped-query attention. Each (sequence, head)
// is one unit of work writing its own columns (in backward: each (sequence,
// key/value head), which owns the dk and dv of its query heads), so threads
// never share an output. The matrix
// products run through gemm_f32 on the calling thread, in row blocks that stop
// at the diagonal (the causal half is skipped); a decoding row's through the
// decode kernels, which give it the same operations. The B operand of every
// block product (K, V, Q or dO of the unit) is packed once per unit and read
// by all its blocks (gemm_f32_packed: the bits of gemm_f32, without packing
// the same rows again for each block).
#include <algorithm>
#include <cmath>

#include "../cpu/thread_pool.h"
#include "../gemm/gemm.h"
#include "../gemm/packed_b.h"
#include "decode_kernels.h"
#include "layers.h"
#include "vec_math_kernels.h"

namespace ternorm::model {

// ---- RoPE --------------------------------------------------------------------------------

namespace {
// Rotates pairs (2i, 2i+1) of the q and k blocks of one row by sign * the
// angles of one position (c, s: its table rows).
void rope_row(const detail::VecKernels& k, float* row, int64_t d, int64_t kvd, int64_t hd,
              const float* c, const float* s, float sign) {
  k.rope(row, d, hd, c, s, sign);
  k.rope(row + d, kvd, hd, c, s, sign);
}

void rope_rotate(float* qkv, int64_t B, int64_t T, int64_t d, int64_t kvd, int64_t hd,
                 const float* cos, const float* sin, float sign, const Exec& ex) {
  const int64_t half = hd / 2, ld = d + 2 * kvd;
  const detail::VecKernels& k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, B * T, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r % T;
      rope_row(k, qkv + r * ld, d, kvd, hd, cos + t * half, sin + t * half, sign);
    }
  });
}
}  // namespace

void rope_forward(float* qkv, int64_t B, int64_t T, int64_t d, int64_t kvd, int64_t head_dim,
                  const float* cos, const float* sin, const Exec& ex) {
  rope_rotate(qkv, B, T, d, kvd, head_dim, cos, sin, 1.0f, ex);
}

void rope_forward_at(float* qkv, int64_t n, const int64_t* positions, int64_t d, int64_t kvd,
                     int64_t head_dim, const float* cos, const float* sin, const Exec& ex) {
  const int64_t half = head_dim / 2, ld = d + 2 * kvd;
  const detail::VecKernels& k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, n, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      rope_row(k, qkv + r * ld, d, kvd, head_dim, cos + positions[r] * half,
               sin + positions[r] * half, 1.0f);
  });
}

// The rotation is orthogonal: its gradient is the inverse rotation.
void rope_backward(float* dqkv, int64_t B, int64_t T, int64_t d, int64_t kvd, int64_t head_dim,
                   const float* cos, const float* sin, const Exec& ex) {
  rope_rotate(dqkv, B, T, d, kvd, head_dim, cos, sin, -1.0f, ex);
}

// ---- attention -------------------------------------------------------------------------------

namespace {
constexpr int64_t kBlock = 64;  // query rows per causal block

// op(B) (k x n) of the stored b (ldb, transposed when tb) into p, on the calling thread.
void pack(gemm::PackedB& p, bool tb, int64_t k, int64_t n, const float* b, int64_t ldb,
          const Exec& one) {
  gemm::GemmArgs g;
  g.trans_b = tb, g.k = k, g.n = n, g.b = b, g.ldb = ldb;
  p.pack(g, one);
}

// C (m x n, ldc) = alpha * op(A) op(B) + beta * C on the calling thread, op(B)
// rows k0 .. k0+k-1 and columns 0 .. n-1 of the packed b.
void mm(bool ta, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
        const gemm::PackedB& b, int64_t k0, float* c, int64_t ldc, const Exec& one,
        float beta = 0.0f) {
  gemm::GemmArgs g;
  g.trans_a = ta;
  g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta;
  g.a = a, g.lda = lda, g.c = c, g.ldc = ldc;
  gemm::gemm_f32_packed(g, b, k0, 0, one);
}

// The packed operands of one unit, kept per thread (a few T x head_dim panels).
struct UnitPanels {
  gemm::PackedB kt, v, vt, k, q, dout;
};
UnitPanels& unit_panels() {
  thread_local UnitPanels p;
  return p;
}

// Row i of the scores (width entries): softmax over keys 0 .. i, the masked
// part set to 0 (backward and the products with V read it).
void causal_softmax_row(const detail::VecKernels& k, float* p, int64_t i, int64_t width) {
  const float mx = k.max(p, i + 1);
  k.scale(p, float(1.0 / k.exp_sum(p, mx, p, i + 1)), i + 1);
  std::fill(p + i + 1, p + width, 0.0f);
}
}  // namespace

void attention_forward(const float* qkv, int64_t B, int64_t T, int64_t d, int64_t H, int64_t Hkv,
                       float* P, float* out, const int64_t* query_from, const Exec& ex) {
  const int64_t hd = d / H, kvd = Hkv * hd, ld = d + 2 * kvd, group = H / Hkv;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const Exec one{ex.isa, nullptr, 1};
  const detail::VecKernels k = detail::vec_kernels(ex.isa);
  parallel_ranges(ex, B * H, 1, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / H, h = u % H;
      const float* Q = qkv + b * T * ld + h * hd;
      const float* K = qkv + b * T * ld + d + h / group * hd;
      const float* V = K + kvd;
      float* Pu = P + u * T * T;
      float* O = out + b * T * d + h * hd;
      // The first row block with a wanted row: the blocks stay where they
      // are, so every computed row gets the same operations as without skipping.
      const int64_t from = query_from ? std::min(T, query_from[b]) / kBlock * kBlock : 0;
      UnitPanels& pn = unit_panels();
      // Scores of rows [i0, i1) against keys [0, i1).
      pack(pn.kt, true, hd, T, K, ld, one);
      for (int64_t i0 = from; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock);
        mm(false, i1 - i0, i1, hd, scale, Q + i0 * ld, ld, pn.kt, 0, Pu + i0 * T, T, one);
      }
      // Causal softmax.
      for (int64_t i = from; i < T; ++i) causal_softmax_row(k, Pu + i * T, i, T);
      pack(pn.v, false, T, hd, V, ld, one);
      for (int64_t i0 = from; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock);
        mm(false, i1 - i0, hd, i1, 1.0f, Pu + i0 * T, T, pn.v, 0, O + i0 * d, d, one);
      }
    }
  });
}

void attention_cached_forward(const float* q, int64_t ldq, int64_t n, int64_t p0, const float* kp,
                              const float* vc, int64_t ldv, int64_t hd, float* out, int64_t ldo,
                              float* scores, const Exec& one) {
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const detail::VecKernels& k = detail::vec_kernels(one.isa);
  const detail::DecodeKernels& dk = detail::decode_kernels(one.isa);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t keys = p0 + r + 1;
    dk.scores(q + r * ldq, kp, hd, (keys + detail::kKeyPanel - 1) / detail::kKeyPanel, scale,
              scores);
    causal_softmax_row(k, scores, keys - 1, keys);
    dk.weighted_sum(scores, vc, ldv, keys, hd, dk.gemm->kc, out + r * ldo);
  }
}

void attention_backward(const float* qkv, const float* P, const float* dout, int64_t B, int64_t T,
                        int64_t d, int64_t H, int64_t Hkv, float* dP, float* dqkv, const Exec& ex) {
  const int64_t hd = d / H, kvd = Hkv * hd, ld = d + 2 * kvd, group = H / Hkv;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const Exec one{ex.isa, nullptr, 1};
  parallel_ranges(ex, B * Hkv, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / Hkv, kv = w % Hkv;
      UnitPanels& pn = unit_panels();
      const float* K = qkv + b * T * ld + d + kv * hd;
      const float* V = K + kvd;
      pack(pn.vt, true, hd, T, V, ld, one);
      pack(pn.k, false, T, hd, K, ld, one);
      for (int64_t h = kv * group; h < (kv + 1) * group; ++h) {
        const int64_t u = b * H + h;
        // The first query head of the group writes dk and dv, the others add theirs.
        const float acc = h % group == 0 ? 0.0f : 1.0f;
        const float* Q = qkv + b * T * ld + h * hd;
        const float* Pu = P + u * T * T;
        const float* dO = dout + b * T * d + h * hd;
        float* dS = dP + u * T * T;
        float* dQ = dqkv + b * T * ld + h * hd;
        float* dK = dqkv + b * T * ld + d + kv * hd;
        float* dV = dK + kvd;
        // dP = dO V^T (causal blocks), dV = P^T dO (P is zero above the diagonal,
        // so key block [j0, j1) only needs query rows from j0 on).
        pack(pn.dout, false, T, hd, dO, d, one);
        for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
          const int64_t i1 = std::min(T, i0 + kBlock);
          mm(false, i1 - i0, i1, hd, 1.0f, dO + i0 * d, d, pn.vt, 0, dS + i0 * T, T, one);
        }
        for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
          const int64_t j1 = std::min(T, j0 + kBlock);
          mm(true, j1 - j0, hd, T - j0, 1.0f, Pu + j0 * T + j0, T, pn.dout, j0, dV + j0 * ld, ld,
             one, acc);
        }
        // Softmax backward in place: dS = P * (dP - sum_j P dP), zero above the diagonal.
        for (int64_t i = 0; i < T; ++i) {
          const float* p = Pu + i * T;
          float* g = dS + i * T;
          float dot = 0;
          for (int64_t j = 0; j <= i; ++j) dot += p[j] * g[j];
          for (int64_t j = 0; j <= i; ++j) g[j] = p[j] * (g[j] - dot);
          std::fill(g + i + 1, g + T, 0.0f);
        }
        // dQ = scale * dS K, dK = scale * dS^T Q.
        pack(pn.q, false, T, hd, Q, ld, one);
        for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
          const int64_t i1 = std::min(T, i0 + kBlock);
          mm(false, i1 - i0, hd, i1, scale, dS + i0 * T, T, pn.k, 0, dQ + i0 * ld, ld, one);
        }
        for (int64_t j0 = 0; j0 < T; j0 += kBlock) {
          const int64_t j1 = std::min(T, j0 + kBlock);
          mm(true, j1 - j0, hd, T - j0, scale, dS + j0 * T + j0, T, pn.q, j0, dK + j0 * ld, ld, one,
             acc);
        }
      }
    }
  });
}

}  // namespace ternorm::model
