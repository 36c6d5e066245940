// CPU feature detection and the choice of ISA path. The feature table is the
// only global state of the core: it is computed once and never changes.
#pragma once
#include <string>
#include <vector>

#include "isa.h"

namespace ternorm {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false;
  bool neon = false;
};

const CpuFeatures& cpu_features();

// True when this binary contains the path AND this CPU (and OS) can run it.
bool isa_supported(Isa isa);
// Every supported path, scalar first.
std::vector<Isa> supported_isas();
// The best supported path.
Isa best_isa();
// The path kernels use by default: TERNORM_ISA (scalar|avx2|avx512|neon) when
// set, else best_isa(). Throws std::runtime_error when TERNORM_ISA names an
// unknown path or one this CPU cannot run.
Isa default_isa();

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512", "neon"; throws std::invalid_argument.
Isa parse_isa(const std::string& name);

}  // namespace ternorm
