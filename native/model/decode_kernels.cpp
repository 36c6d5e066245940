// The one dispatch point of the decoding kernels.
#include "../cpu/dispatch.h"
#include "decode_kernels.h"

namespace ternorm::model::detail {
namespace {

constexpr IsaTable<DecodeKernels> kDecodeTable = {
    "decode",
    {&kDecodeKernelsScalar, TERNORM_X86_KERNELS(kDecodeKernelsAvx2),
     TERNORM_X86_KERNELS(kDecodeKernelsAvx512), TERNORM_ARM64_KERNELS(kDecodeKernelsNeon)}};
TERNORM_CHECK_TABLE(kDecodeTable, "a compiled path without decode kernels");

}  // namespace

const DecodeKernels& decode_kernels(Isa isa) { return pick_kernels(kDecodeTable, isa, "decode"); }

}  // namespace ternorm::model::detail
