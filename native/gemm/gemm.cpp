// fp32 GEMM in the BLIS/GotoBLAS shape: op(B) is packed a kc x nc block at a
// time (shared by the threads), op(A) an mc x kc block at a time (per thread),
// and a register-blocked microkernel computes MR x NR tiles of C from the
// packed micro-panels. Packing absorbs the transposes, so one microkernel
// serves all four layouts. The blocked driver is also the engine of the
// ternary fp32 products, which pass their own B packer (decoded weights).
// A GEMV-shaped call (a few rows of C, transposed B) skips packing and runs
// dot kernels on the operands in place. A 16-bit B is widened to fp32 while
// packed, or in the dot kernels' registers. A B packed once (PackedB,
// packed_b.h) is read in place by the same driver, skipping its B packing.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/dispatch.h"
#include "../cpu/features.h"
#include "../cpu/thread_pool.h"
#include "gemm_kernels.h"
#include "packed_b.h"

namespace ternorm::gemm {
namespace {

// The one dispatch point of the family.
constexpr IsaTable<GemmKernels> kGemmTable = {
    "gemm",
    {&kGemmKernelsScalar, TERNORM_X86_KERNELS(kGemmKernelsAvx2),
     TERNORM_X86_KERNELS(kGemmKernelsAvx512), TERNORM_ARM64_KERNELS(kGemmKernelsNeon)}};
TERNORM_CHECK_TABLE(kGemmTable, "a compiled path without GEMM kernels");

int max_threads(const Exec& ex) {
  if (ex.pool == nullptr) return 1;
  return std::max(1, std::min(ex.threads, ex.pool->size()));
}

// The packing scratch of the calling thread, grown to the largest call so far and kept: a
// training step makes ~20 blocked calls of a few MB of scratch each, and zeroing a fresh one per
// call was ~3 % of an adapter's training samples (memset, perf). The packers write every value
// the kernels read, so reuse changes no bits. Per thread (thread_local), as callers on different
// threads run calls concurrently.
struct PackScratch {
  AlignedBuffer<float> b, a;
};
PackScratch& pack_scratch(size_t b_floats, size_t a_floats) {
  thread_local PackScratch s;
  if (s.b.size() < b_floats) s.b = AlignedBuffer<float>(b_floats);
  if (s.a.size() < a_floats) s.a = AlignedBuffer<float>(a_floats);
  return s;
}

// Packing. A block of op(A) (mc x kc) or op(B) (kc x nc) becomes micro-panels
// of width W (MR rows of op(A), or NR columns of op(B)): panel q holds
// elements x = q*W .. q*W+W-1 of the block's width, k-major, at
// dst + q * kc * W, zero past the width. Two source shapes cover all four
// layouts: the width runs along the stored rows (contiguous), or across them.

// k-step p of the panels from the stored row s (width values).
template <int W>
inline void deal_row(const float* s, int64_t width, int64_t kc, int64_t p, float* dst) {
  const int64_t full = width / W, rem = width % W;
  for (int64_t q = 0; q < full; ++q) {
    float* d = dst + q * kc * W + p * W;
    for (int x = 0; x < W; ++x) d[x] = s[q * W + x];
  }
  if (rem != 0) {
    float* d = dst + full * kc * W + p * W;
    for (int64_t x = 0; x < rem; ++x) d[x] = s[full * W + x];
    for (int64_t x = rem; x < W; ++x) d[x] = 0.0f;
  }
}

// Element (p, x) at src[p * ld + x]: one stored row per k-step, read
// contiguously and dealt out to the panels.
template <int W>
void pack_width_contiguous(const float* src, int64_t ld, int64_t width, int64_t kc, float* dst) {
  for (int64_t p = 0; p < kc; ++p) deal_row<W>(src + p * ld, width, kc, p, dst);
}

// Element (p, x) at src[x * ld + p]: a transpose, done in strips of 8 k-steps
// so the W source rows and the destination strip stay in L1.
template <int W>
void pack_width_strided(const float* src, int64_t ld, int64_t width, int64_t kc, float* dst) {
  constexpr int64_t kStrip = 8;
  for (int64_t x0 = 0; x0 < width; x0 += W) {
    const int64_t count = std::min<int64_t>(W, width - x0);
    float* d = dst + (x0 / W) * kc * W;
    for (int64_t p0 = 0; p0 < kc; p0 += kStrip) {
      const int64_t pn = std::min(kStrip, kc - p0);
      for (int64_t x = 0; x < count; ++x) {
        const float* s = src + (x0 + x) * ld + p0;
        for (int64_t p = 0; p < pn; ++p) d[(p0 + p) * W + x] = s[p];
      }
      for (int64_t x = count; x < W; ++x)
        for (int64_t p = 0; p < pn; ++p) d[(p0 + p) * W + x] = 0.0f;
    }
  }
}

// A micro-panels for rows i0 .. i0+mc-1, k-steps k0 .. k0+kc-1 of op(A).
template <int MR>
void pack_a(bool trans, const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
            float* dst) {
  if (trans)
    pack_width_contiguous<MR>(a + k0 * lda + i0, lda, mc, kc, dst);
  else
    pack_width_strided<MR>(a + i0 * lda + k0, lda, mc, kc, dst);
}

using PackA = void (*)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);

PackA pack_a_for(int64_t mr) {
  switch (mr) {
    case kMrScalar: return pack_a<kMrScalar>;
    case kMrAvx2: return pack_a<kMrAvx2>;  // == kMrNeon
    case kMrAvx512: return pack_a<kMrAvx512>;
    default: break;
  }
  throw std::logic_error("gemm: no A packer for this tile height");
}
static_assert(kMrNeon == kMrAvx2, "pack_a_for shares the 6-row packer");

// op(B) from a dense row-major matrix, fp32 (b) or 16-bit (b16, widened by
// the path's widen kernel).
struct DenseB {
  const float* b;
  const uint16_t* b16;
  WidenKernel widen;  // null for fp32
  int64_t ldb;
  bool trans;
};

// The stored rows of a 16-bit B, widened into a per-thread row buffer first,
// then packed as fp32 rows are: the same panels as from the widened matrix.
template <int NR>
void pack_dense_b16_nr(const DenseB& s, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                       float* dst) {
  thread_local std::vector<float> rows;
  if (s.trans) {  // stored row x = column x of op(B): NR rows of kc values per panel
    rows.resize(size_t(NR * kc));
    for (int64_t x0 = 0; x0 < nc; x0 += NR) {
      const int64_t count = std::min<int64_t>(NR, nc - x0);
      for (int64_t x = 0; x < count; ++x)
        s.widen(s.b16 + (j0 + x0 + x) * s.ldb + k0, kc, rows.data() + x * kc);
      pack_width_strided<NR>(rows.data(), kc, count, kc, dst + (x0 / NR) * kc * NR);
    }
  } else {  // stored row p = k-step p
    rows.resize(size_t(nc));
    for (int64_t p = 0; p < kc; ++p) {
      s.widen(s.b16 + (k0 + p) * s.ldb + j0, nc, rows.data());
      deal_row<NR>(rows.data(), nc, kc, p, dst);
    }
  }
}

template <int NR>
void pack_dense_b_nr(const DenseB& s, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  if (s.widen)
    pack_dense_b16_nr<NR>(s, k0, kc, j0, nc, dst);
  else if (s.trans)
    pack_width_strided<NR>(s.b + j0 * s.ldb + k0, s.ldb, nc, kc, dst);
  else
    pack_width_contiguous<NR>(s.b + k0 * s.ldb + j0, s.ldb, nc, kc, dst);
}

void pack_dense_b(const void* ctx, int64_t nr, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                  float* dst) {
  const DenseB& s = *static_cast<const DenseB*>(ctx);
  switch (nr) {
    case 16: return pack_dense_b_nr<16>(s, k0, kc, j0, nc, dst);
    case 32: return pack_dense_b_nr<32>(s, k0, kc, j0, nc, dst);
    default: break;
  }
  throw std::logic_error("gemm: no B packer for this tile width");
}
static_assert(kNrScalar == 16 && kNrAvx2 == 16 && kNrNeon == 16 && kNrAvx512 == 32,
              "pack_dense_b covers every tile width");

// rows x width matrix with row stride ld: ld must cover the width, and the
// last element's offset must fit in int64.
void check_matrix(const char* name, const void* p, int64_t rows, int64_t width, int64_t ld,
                  const char* shape) {
  if (p == nullptr) throw std::invalid_argument(std::string("gemm_f32: ") + name + " is null");
  if (ld < width)
    throw std::invalid_argument(std::string("gemm_f32: ld") + name + " = " + std::to_string(ld) +
                                " is smaller than the row width of " + name + " as stored (" +
                                shape + ": " + std::to_string(width) + ")");
  if (ld > (INT64_MAX - width) / rows)
    throw std::invalid_argument(std::string("gemm_f32: ") + name +
                                " is too large to address (rows * ld overflows)");
}

// The small-m path (gemm_kernels.h), for a transposed B. Threads split the
// columns of C here, as there are too few rows to share; every element still
// sees the same operations whatever the split.
void gemm_f32_dot(const GemmArgs& g, const GemmKernels& pl, const Exec& ex) {
  const int64_t m = g.m, k = g.k;
  // The dot kernels want the rows of op(A) contiguous.
  const float* a = g.a;
  int64_t lda = g.lda;
  AlignedBuffer<float> rows;
  if (g.trans_a) {
    rows = AlignedBuffer<float>(size_t(m * k));
    for (int64_t p = 0; p < k; ++p)
      for (int64_t i = 0; i < m; ++i) rows[size_t(i * k + p)] = g.a[p * g.lda + i];
    a = rows.data();
    lda = k;
  }
  parallel_ranges(ex, g.n, 16, [&](int64_t j0, int64_t j1) {
    if (g.b_type == ElemType::F32)
      pl.dot(k, a, lda, m, g.b + j0 * g.ldb, g.ldb, j1 - j0, g.c + j0, g.ldc, g.alpha, g.beta);
    else
      (g.b_type == ElemType::F16 ? pl.dot_f16 : pl.dot_bf16)(
          k, a, lda, m, g.b16 + j0 * g.ldb, g.ldb, j1 - j0, g.c + j0, g.ldc, g.alpha, g.beta);
  });
}

WidenKernel widen_kernel(const GemmKernels& pl, ElemType t) {
  switch (t) {
    case ElemType::F16: return pl.widen_f16;
    case ElemType::BF16: return pl.widen_bf16;
    case ElemType::F32: break;
  }
  throw std::invalid_argument(std::string("gemm: no widening from ") + elem_type_name(t));
}

}  // namespace

const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::F32: return "f32";
    case ElemType::F16: return "f16";
    case ElemType::BF16: return "bf16";
  }
  return "?";
}

ElemType elem_type_of(const char* name) {
  for (ElemType t : {ElemType::F32, ElemType::F16, ElemType::BF16})
    if (std::string(name) == elem_type_name(t)) return t;
  throw std::invalid_argument(std::string("unknown table type '") + name +
                              "' (expected f32, f16 or bf16)");
}

void widen(ElemType t, const uint16_t* src, int64_t n, float* dst, const Exec& ex) {
  widen_kernel(pick_kernels(kGemmTable, ex.isa, "widen"), t)(src, n, dst);
}

namespace {

// Where the driver's B micro-panels come from: packed per (jc, pc) block into
// the scratch by a packer, or read in place from a PackedB (panels of
// panel_stride floats; `panels` at the call's first k step and column).
struct BSource {
  const BPacker* packer = nullptr;
  const float* panels = nullptr;
  int64_t panel_stride = 0;
};

void blocked(const GemmKernels& pl, bool trans_a, const float* a, int64_t lda, int64_t m, int64_t n,
             int64_t k, const BSource& bs, float alpha, float beta, float* c, int64_t ldc,
             const Exec& ex) {
  const PackA pack_a_fn = pack_a_for(pl.mr);
  const int64_t kc_max = std::min(pl.kc, k);
  const int64_t nc_max = std::min(pl.nc, (n + pl.nr - 1) / pl.nr * pl.nr);
  const int64_t mc_max = std::min(pl.mc, (m + pl.mr - 1) / pl.mr * pl.mr);
  const int slots = max_threads(ex);
  // Scratch for the whole call: one shared B block (unless B comes packed),
  // one A block per thread.
  PackScratch& scratch = pack_scratch(bs.packer ? size_t(kc_max * nc_max) : 0,
                                      size_t(slots) * size_t(mc_max * kc_max));
  AlignedBuffer<float>& bbuf = scratch.b;
  AlignedBuffer<float>& abuf = scratch.a;

  for (int64_t jc = 0; jc < n; jc += pl.nc) {
    const int64_t nc = std::min(pl.nc, n - jc);
    for (int64_t pc = 0; pc < k; pc += pl.kc) {
      const int64_t kc = std::min(pl.kc, k - pc);
      // Later k-blocks accumulate onto what the first one wrote.
      const float beta_blk = pc == 0 ? beta : 1.0f;
      const float* bpanel;
      int64_t stride;  // floats from one B micro-panel to the next
      if (bs.packer) {
        float* dst = bbuf.data();
        parallel_ranges(ex, nc, pl.nr, [&](int64_t j0, int64_t j1) {
          bs.packer->pack(bs.packer->ctx, pl.nr, pc, kc, jc + j0, j1 - j0, dst + j0 * kc);
        });
        bpanel = dst;
        stride = kc * pl.nr;
      } else {
        bpanel = bs.panels + jc / pl.nr * bs.panel_stride + pc * pl.nr;
        stride = bs.panel_stride;
      }
      parallel_split(ex, m, pl.mr, [&](int slot, int64_t i0, int64_t i1) {
        float* apanel = abuf.data() + size_t(slot) * size_t(mc_max * kc_max);
        for (int64_t ic = i0; ic < i1; ic += pl.mc) {
          const int64_t mc = std::min(pl.mc, i1 - ic);
          pack_a_fn(trans_a, a, lda, ic, mc, pc, kc, apanel);
          for (int64_t jr = 0; jr < nc; jr += pl.nr) {
            const int64_t nn = std::min(pl.nr, nc - jr);
            const float* bp_j = bpanel + jr / pl.nr * stride;
            float* c_j = c + ic * ldc + jc + jr;
            for (int64_t ir = 0; ir < mc; ir += pl.mr)
              pl.kernel(kc, apanel + ir * kc, bp_j, c_j + ir * ldc, ldc, std::min(pl.mr, mc - ir),
                        nn, alpha, beta_blk);
          }
        }
      });
    }
  }
}

void check_sizes(const char* fn, const GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0 || g.k <= 0)
    throw std::invalid_argument(std::string(fn) +
                                ": m, n and k must be positive (got m=" + std::to_string(g.m) +
                                ", n=" + std::to_string(g.n) + ", k=" + std::to_string(g.k) + ")");
}

// As stored: A is m x k (k x m when transposed), C is m x n.
void check_a(const GemmArgs& g) {
  check_matrix("a", g.a, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda,
               g.trans_a ? "k x m, trans_a" : "m x k");
}
void check_c(const GemmArgs& g) { check_matrix("c", g.c, g.m, g.n, g.ldc, "m x n"); }

// B is k x n (n x k when transposed), fp32 in b or 16-bit in b16.
void check_b(const GemmArgs& g) {
  const bool b16 = g.b_type != ElemType::F32;
  if (b16 && g.b != nullptr)
    throw std::invalid_argument("gemm_f32: a 16-bit B is read from b16, b must be null");
  check_matrix(b16 ? "b16" : "b", b16 ? static_cast<const void*>(g.b16) : g.b,
               g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb,
               g.trans_b ? "n x k, trans_b" : "k x n");
}

DenseB dense_b(const GemmArgs& g, const GemmKernels& pl) {
  const bool b16 = g.b_type != ElemType::F32;
  return DenseB{g.b, g.b16, b16 ? widen_kernel(pl, g.b_type) : nullptr, g.ldb, g.trans_b};
}

}  // namespace

void gemm_f32_blocked(bool trans_a, const float* a, int64_t lda, int64_t m, int64_t n, int64_t k,
                      const BPacker& bp, float alpha, float beta, float* c, int64_t ldc,
                      const Exec& ex) {
  BSource bs;
  bs.packer = &bp;
  blocked(pick_kernels(kGemmTable, ex.isa, "gemm_f32"), trans_a, a, lda, m, n, k, bs, alpha, beta,
          c, ldc, ex);
}

void PackedB::pack(const GemmArgs& g, const Exec& ex) {
  if (g.n <= 0 || g.k <= 0)
    throw std::invalid_argument("PackedB: n and k must be positive (got n=" + std::to_string(g.n) +
                                ", k=" + std::to_string(g.k) + ")");
  check_b(g);
  const GemmKernels& pl = pick_kernels(kGemmTable, ex.isa, "gemm_f32");
  const int64_t nr = pl.nr, panels = (g.n + nr - 1) / nr;
  const size_t floats = size_t(panels * nr) * size_t(g.k);
  if (panels_.size() < floats) panels_ = AlignedBuffer<float>(floats);
  src_ = GemmArgs{};
  src_.trans_b = g.trans_b, src_.k = g.k, src_.n = g.n;
  src_.b = g.b, src_.b16 = g.b16, src_.ldb = g.ldb, src_.b_type = g.b_type;
  isa_ = ex.isa;
  nr_ = nr;
  // One k-block spanning all of k: panel p at p * k * nr, as the driver reads it.
  const DenseB src = dense_b(g, pl);
  float* dst = panels_.data();
  parallel_ranges(ex, g.n, nr, [&](int64_t j0, int64_t j1) {
    pack_dense_b(&src, nr, 0, g.k, j0, j1 - j0, dst + j0 * g.k);
  });
}

void gemm_f32_packed(const GemmArgs& g, const PackedB& b, int64_t k0, int64_t j0, const Exec& ex) {
  check_sizes("gemm_f32_packed", g);
  check_a(g);
  check_c(g);
  if (b.nr_ == 0) throw std::invalid_argument("gemm_f32_packed: B was never packed");
  if (b.isa_ != ex.isa)
    throw std::invalid_argument(std::string("gemm_f32_packed: B was packed for the ") +
                                isa_name(b.isa_) + " path, the call runs " + isa_name(ex.isa));
  if (j0 < 0 || j0 % kPackedColumnStep != 0 || k0 < 0 || k0 > b.k() - g.k || j0 > b.n() - g.n)
    throw std::invalid_argument(
        "gemm_f32_packed: rows " + std::to_string(k0) + "+" + std::to_string(g.k) + ", columns " +
        std::to_string(j0) + "+" + std::to_string(g.n) + " are not a block of the packed " +
        std::to_string(b.k()) + " x " + std::to_string(b.n()) +
        " B (columns start at multiples of " + std::to_string(kPackedColumnStep) + ")");
  const GemmKernels& pl = pick_kernels(kGemmTable, ex.isa, "gemm_f32");
  if (g.m <= kDirectMaxM && b.src_.trans_b) {  // gemm_f32's small-m path, on the source
    GemmArgs h = g;
    const int64_t at = j0 * b.src_.ldb + k0;
    h.trans_b = true;
    h.b_type = b.src_.b_type;
    h.b = b.src_.b ? b.src_.b + at : nullptr;
    h.b16 = b.src_.b16 ? b.src_.b16 + at : nullptr;
    h.ldb = b.src_.ldb;
    return gemm_f32_dot(h, pl, ex);
  }
  BSource bs;
  bs.panel_stride = b.k() * pl.nr;
  bs.panels = b.panels_.data() + j0 / pl.nr * bs.panel_stride + k0 * pl.nr;
  blocked(pl, g.trans_a, g.a, g.lda, g.m, g.n, g.k, bs, g.alpha, g.beta, g.c, g.ldc, ex);
}

void gemm_f32(const GemmArgs& g, const Exec& ex) {
  check_sizes("gemm_f32", g);
  check_a(g);
  check_b(g);
  check_c(g);
  const GemmKernels& pl = pick_kernels(kGemmTable, ex.isa, "gemm_f32");
  if (g.m <= kDirectMaxM && g.trans_b) return gemm_f32_dot(g, pl, ex);
  const DenseB src = dense_b(g, pl);
  BSource bs;
  BPacker bp;
  bp.pack = pack_dense_b;
  bp.ctx = &src;
  bs.packer = &bp;
  blocked(pl, g.trans_a, g.a, g.lda, g.m, g.n, g.k, bs, g.alpha, g.beta, g.c, g.ldc, ex);
}

}  // namespace ternorm::gemm
