// Instruction-set paths a kernel can be compiled for, and the execution
// context (path + threads) every coarse kernel call takes explicitly.
#pragma once
#include <cstdint>

namespace ternorm {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
constexpr int kIsaCount = 4;

// The architecture this translation unit is compiled for, which decides the
// paths the build contains: scalar everywhere, AVX2 and AVX-512 on x86-64,
// NEON on AArch64.
#if defined(__x86_64__) || defined(_M_X64)
#define TERNORM_ARCH_X86 1
#elif defined(__aarch64__)
#define TERNORM_ARCH_ARM64 1
#endif

constexpr bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
    case Isa::Avx2:
    case Isa::Avx512:
#ifdef TERNORM_ARCH_X86
      return true;
#else
      return false;
#endif
    case Isa::Neon:
#ifdef TERNORM_ARCH_ARM64
      return true;
#else
      return false;
#endif
  }
  return false;
}

class ThreadPool;

// How one kernel call runs: which ISA path, on which pool, with how many
// threads (<= pool size; 1 or a null pool means the calling thread only).
struct Exec {
  Isa isa = Isa::Scalar;
  ThreadPool* pool = nullptr;
  int threads = 1;
};

}  // namespace ternorm
