// The ISA-free halves of each fp32 GEMM path (gemm_kernels.h): how a tile
// height reaches the microkernel template and how the small-m problem is
// walked. Included INSIDE an ISA file's anonymous namespace, after
// cpu/counted_loops.h, the file's MR and its two templates:
//   tile<ROWS>(kc, a, b, c, ldc, n, alpha, beta)       ROWS x NR of C (n columns kept)
//   dot_block<MA, NB, T>(k, a, lda, b, ldb, c, ldc, alpha, beta)
//                                                      MA rows of A . NB rows of B
//                                                      (B of ElemType T)
// No #include, no STL.
#pragma once

// The MicroKernel of the path: m (1 .. MR; the driver passes no other) as a
// template argument, so a short edge tile does only the FMAs its rows need.
void ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t m,
             int64_t n, float alpha, float beta) {
  with_count<MR>(m,
                 [&](auto rows) { tile<decltype(rows)::value>(kc, a, b, c, ldc, n, alpha, beta); });
}

// The DotKernels of the path: 4 rows of B at a time (they stay in L1/L2 while
// every row of A passes), A rows in pairs; one walk for every type of B.
template <ElemType T>
void dot_of(int64_t k, const float* a, int64_t lda, int64_t m, const Elem<T>* b, int64_t ldb,
            int64_t n, float* c, int64_t ldc, float alpha, float beta) {
  by_steps<4>(0, n, [&](auto nb, int64_t j) {
    by_steps<2>(0, m, [&](auto ma, int64_t i) {
      dot_block<decltype(ma)::value, decltype(nb)::value, T>(k, a + i * lda, lda, b + j * ldb, ldb,
                                                             c + i * ldc + j, ldc, alpha, beta);
    });
  });
}
void dot(int64_t k, const float* a, int64_t lda, int64_t m, const float* b, int64_t ldb, int64_t n,
         float* c, int64_t ldc, float alpha, float beta) {
  dot_of<ElemType::F32>(k, a, lda, m, b, ldb, n, c, ldc, alpha, beta);
}
void dot_f16(int64_t k, const float* a, int64_t lda, int64_t m, const uint16_t* b, int64_t ldb,
             int64_t n, float* c, int64_t ldc, float alpha, float beta) {
  dot_of<ElemType::F16>(k, a, lda, m, b, ldb, n, c, ldc, alpha, beta);
}
void dot_bf16(int64_t k, const float* a, int64_t lda, int64_t m, const uint16_t* b, int64_t ldb,
              int64_t n, float* c, int64_t ldc, float alpha, float beta) {
  dot_of<ElemType::BF16>(k, a, lda, m, b, ldb, n, c, ldc, alpha, beta);
}
