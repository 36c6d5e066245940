// The one dispatch point of the element-wise row kernels.
#include <stdexcept>
#include <string>

#include "../cpu/features.h"
#include "vec_math_kernels.h"

namespace ternorm::model::detail {

VecKernels vec_kernels(Isa isa) {
  if (!isa_supported(isa))
    throw std::invalid_argument(std::string("vec_math: ISA path '") + isa_name(isa) +
                                "' is not available in this build or on this CPU");
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx2: return vec_kernels_avx2();
    case Isa::Avx512: return vec_kernels_avx512();
#endif
    default: return vec_kernels_ref();
  }
}

}  // namespace ternorm::model::detail
