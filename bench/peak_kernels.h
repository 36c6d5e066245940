// Machine-limit probes of the kernel benchmark: how many int8 multiply-
// accumulates per second one thread can issue on a path, and how fast one
// thread can stream bytes in. The kernels are judged against these numbers,
// measured in the same run. Included by the per-ISA probe files: plain
// declarations only (see DEVELOPERS.md, "Rules for ISA-specific C++ files").
#pragma once
#include <cstddef>
#include <cstdint>

namespace ternorm::bench {

// Register-only int8 multiply-accumulate loop: `iters` iterations, each doing
// one step of the path's int8 dot-product sequence on each of several
// independent accumulators (enough to cover the latency), on constant operands (an empty asm
// statement per iteration keeps the compiler from hoisting, merging or deleting the work). Returns
// the number of int8 multiply-accumulates performed; writes a checksum of the accumulators to *sink
// so the result is observable.
//   ref:    the baseline ISA the scalar path is compiled for: SSE2 pmaddwd
//           + paddd on x86-64 (int8 widened to int16)      8 MACs per step,
//           imul + add elsewhere                            1 MAC per step
//   avx2:   vpmaddubsw + vpmaddwd(ones) + vpaddd, ymm       32 MACs per step
//   avx512: vpdpbusd zmm (VNNI)                             64 MACs per step
//   neon:   smull + smlal2 + sadalp, q registers            16 MACs per step
uint64_t peak_i8_ref(int64_t iters, int64_t* sink);
uint64_t peak_i8_avx2(int64_t iters, int64_t* sink);
uint64_t peak_i8_avx512(int64_t iters, int64_t* sink);
uint64_t peak_i8_neon(int64_t iters, int64_t* sink);

// Streaming read: returns the wrapping sum of the 64-bit words of
// p[0, bytes). p is 64-byte aligned and bytes a multiple of 64.
uint64_t read_sum_ref(const uint8_t* p, size_t bytes);
uint64_t read_sum_avx2(const uint8_t* p, size_t bytes);
uint64_t read_sum_avx512(const uint8_t* p, size_t bytes);
uint64_t read_sum_neon(const uint8_t* p, size_t bytes);

}  // namespace ternorm::bench
