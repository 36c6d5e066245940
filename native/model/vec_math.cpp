// The one dispatch point of the element-wise row kernels.
#include "../cpu/dispatch.h"
#include "vec_math_kernels.h"

namespace ternorm::model::detail {
namespace {

constexpr IsaTable<VecKernels> kVecTable = {
    "vec_math",
    {&kVecKernelsScalar, TERNORM_X86_KERNELS(kVecKernelsAvx2),
     TERNORM_X86_KERNELS(kVecKernelsAvx512), TERNORM_ARM64_KERNELS(kVecKernelsNeon)}};
TERNORM_CHECK_TABLE(kVecTable, "a compiled path without vec_math kernels");

}  // namespace

const VecKernels& vec_kernels(Isa isa) { return pick_kernels(kVecTable, isa, "vec_math"); }

}  // namespace ternorm::model::detail
