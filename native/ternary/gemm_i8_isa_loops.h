// The ISA-free loops of the SIMD gemm_i8 paths: the walk over token blocks
// and row panels. Included INSIDE each ISA file's anonymous namespace, after
// cpu/counted_loops.h and, for panels_by_token_blocks, the file's
// micro<T>(a, pan, t0) template. No #include, no STL.
#pragma once

// Tokens per block so a block's q (about 256 KB) stays in L2 while the row
// panels stream past: a multiple of kt, at least kt.
inline int64_t tokens_per_block(const GemmI8Args& a, int64_t kt) {
  const int64_t block = (int64_t(256) << 10) / (a.col_blocks * kColBlock) / kt * kt;
  return block < kt ? kt : block;
}

// Panels [p0, p1) against every token, token block by token block, for a
// path whose microkernel micro<T>(a, pan, t0) covers one panel and T tokens:
// KT tokens at a time, the remainder in one call.
template <int KT>
void panels_by_token_blocks(const GemmI8Args& a, int64_t p0, int64_t p1) {
  const int64_t per_block = tokens_per_block(a, KT);
  for (int64_t tb = 0; tb < a.n; tb += per_block) {
    const int64_t te = tb + per_block < a.n ? tb + per_block : a.n;
    for (int64_t p = p0; p < p1; ++p)
      by_steps<KT>(tb, te, [&](auto t, int64_t t0) { micro<decltype(t)::value>(a, p, t0); });
  }
}
