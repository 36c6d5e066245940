// A B operand of gemm_f32 packed once and read by many products (attention's
// K and V of one (sequence, head), the tied head's table): the per-call packing
// of B is gone, the bits are the same. Not included by the ISA files (it owns
// memory); gemm.cpp implements it beside the driver it feeds.
#pragma once
#include <cstdint>

#include "../cpu/aligned_buffer.h"
#include "gemm.h"

namespace ternorm::gemm {

// op(B) in the micro-panels of one ISA path. A panel holds nr columns over
// all k steps, so any k-block of any call is a contiguous run of it, which
// the microkernel reads in place. Memory: k x n (n rounded up to the path's
// nr) floats. The source stays viewed: a call of at most kDirectMaxM rows on
// a transposed B runs gemm_f32's small-m path on it, as gemm_f32 would, so
// the source must outlive the packing unchanged.
class PackedB {
 public:
  // Packs op(B) (g.k x g.n, from g.b or g.b16, g.ldb, g.trans_b, g.b_type; the
  // rest of g is ignored) for the path ex.isa, reusing this object's buffer
  // when it is large enough; threads split the panels. Bad input throws
  // std::invalid_argument.
  void pack(const GemmArgs& g, const Exec& ex);
  int64_t k() const { return src_.k; }
  int64_t n() const { return src_.n; }
  size_t bytes() const { return panels_.size() * sizeof(float); }

 private:
  friend void gemm_f32_packed(const GemmArgs&, const PackedB&, int64_t, int64_t, const Exec&);
  AlignedBuffer<float> panels_;
  GemmArgs src_;  // b, b16, ldb, trans_b, b_type, k, n of the source
  Isa isa_ = Isa::Scalar;
  int64_t nr_ = 0;
};

// gemm_f32(g) with op(B) = rows k0 .. k0+g.k-1, columns j0 .. j0+g.n-1 of b's
// op(B) (g's B fields are ignored): the same bits as gemm_f32 on that block of
// the source, whatever the thread count. j0 is a multiple of kPackedColumnStep;
// b was packed for ex.isa. Bad input throws std::invalid_argument.
constexpr int64_t kPackedColumnStep = 64;  // every path's tile width divides it
void gemm_f32_packed(const GemmArgs& g, const PackedB& b, int64_t k0, int64_t j0, const Exec& ex);

}  // namespace ternorm::gemm
