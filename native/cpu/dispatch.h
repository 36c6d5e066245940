// The one dispatch idiom of the core, after ggml's type traits: each kernel
// family declares a struct of kernel pointers (its *_kernels.h), every ISA
// file defines one const instance of it, and the family's driver holds an
// IsaTable of them indexed by Isa. pick_kernels() is the only place a path is
// checked and chosen. Generic code only (ISA files never include this).
#pragma once
#include "features.h"
#include "isa.h"

namespace ternorm {

template <typename Kernels>
struct IsaTable {
  const char* family;              // names the kernels in errors ("gemm_i8")
  const Kernels* path[kIsaCount];  // by Isa; null exactly where the build lacks the path

  // Every path this build compiles has kernels, and no other path does: a
  // family that has no kernels of its own for a path must say in its table
  // what runs instead (checked by TERNORM_CHECK_TABLE beside each table).
  constexpr bool covers_compiled_paths() const {
    for (int i = 0; i < kIsaCount; ++i)
      if ((path[i] != nullptr) != isa_compiled(Isa(i))) return false;
    return true;
  }
};

// Checks a family's table at compile time (beside each table). GCC's -fsanitize=null, part of
// the sanitizer build's UBSan, does not fold "address of an extern object != null" into a
// constant, so that build (TERNORM_SANITIZE_BUILD, set by CMakeLists.txt) skips the check;
// every other build, the Arm64 one included, enforces it.
#ifdef TERNORM_SANITIZE_BUILD
#define TERNORM_CHECK_TABLE(table, message) static_assert(true, message)
#else
#define TERNORM_CHECK_TABLE(table, message) static_assert((table).covers_compiled_paths(), message)
#endif

// Table entries of paths only one architecture compiles: the kernels there,
// null elsewhere (where their symbols do not exist).
#ifdef TERNORM_ARCH_X86
#define TERNORM_X86_KERNELS(k) (&(k))
#else
#define TERNORM_X86_KERNELS(k) nullptr
#endif
#ifdef TERNORM_ARCH_ARM64
#define TERNORM_ARM64_KERNELS(k) (&(k))
#else
#define TERNORM_ARM64_KERNELS(k) nullptr
#endif

// Throws std::invalid_argument "<caller>: ISA path '<isa>' is not supported by
// this CPU or build (<family> kernels; supported here: scalar, ...)".
[[noreturn]] void throw_unsupported_isa(const char* caller, const char* family, Isa isa);

// The kernels of path `isa`, which this CPU and build must be able to run;
// `caller` (the public entry point) leads the error message.
template <typename Kernels>
const Kernels& pick_kernels(const IsaTable<Kernels>& table, Isa isa, const char* caller) {
  const int i = static_cast<int>(isa);
  if (i < 0 || i >= kIsaCount || table.path[i] == nullptr || !isa_supported(isa))
    throw_unsupported_isa(caller, table.family, isa);
  return *table.path[i];
}

}  // namespace ternorm
