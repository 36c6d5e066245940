// Instruction-set paths a kernel can be compiled for, and the execution
// context (path + threads) every coarse kernel call takes explicitly.
#pragma once
#include <cstdint>

namespace ternorm {

enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };

class ThreadPool;

// How one kernel call runs: which ISA path, on which pool, with how many
// threads (<= pool size; 1 or a null pool means the calling thread only).
struct Exec {
  Isa isa = Isa::Scalar;
  ThreadPool* pool = nullptr;
  int threads = 1;
};

}  // namespace ternorm
