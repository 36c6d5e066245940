// The one dispatch idiom (cpu/dispatch.h): pick_kernels on hand-made tables
// (a supported path, a path the CPU lacks, a null entry, an out-of-range Isa,
// the completeness check), and every kernel family's entry point refusing a
// path this CPU or build cannot run with the same words.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/dispatch.h"
#include "gemm/gemm.h"
#include "harness.h"
#include "model/vec_math_kernels.h"
#include "norm/rmsnorm.h"
#include "ternary/ternary.h"

using namespace ternorm;
using ternorm::test::thrown_message;

namespace {

struct FakeKernels {
  int id;
};
constexpr FakeKernels kFake[kIsaCount] = {{0}, {1}, {2}, {3}};

constexpr IsaTable<FakeKernels> kCompiledOnly = {
    "fake",
    {&kFake[0], TERNORM_X86_KERNELS(kFake[1]), TERNORM_X86_KERNELS(kFake[2]),
     TERNORM_ARM64_KERNELS(kFake[3])}};
TERNORM_CHECK_TABLE(kCompiledOnly, "the macros give exactly the compiled paths");

// The message pick_kernels throws for `isa`.
std::string expected(const char* caller, const char* family, Isa isa) {
  std::string supported;
  for (Isa s : supported_isas())
    supported += (supported.empty() ? "" : ", ") + std::string(isa_name(s));
  return std::string(caller) + ": ISA path '" + isa_name(isa) +
         "' is not supported by this CPU or build (" + family +
         " kernels; supported here: " + supported + ")";
}

std::vector<Isa> unsupported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon})
    if (!isa_supported(isa)) out.push_back(isa);
  return out;
}

}  // namespace

TEST(dispatch_picks_the_path_or_names_it) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon}) {
    if (isa_supported(isa)) {
      CHECK(pick_kernels(kCompiledOnly, isa, "caller").id == static_cast<int>(isa));
    } else {
      const std::string msg = thrown_message<std::invalid_argument>(
          [&] { pick_kernels(kCompiledOnly, isa, "caller"); });
      CHECK_MSG(msg == expected("caller", "fake", isa), msg);
    }
  }
  // Isa values outside the enum (a bad cast) are refused, not indexed.
  for (int bad : {-1, kIsaCount, 99}) {
    const std::string msg = thrown_message<std::invalid_argument>(
        [&] { pick_kernels(kCompiledOnly, static_cast<Isa>(bad), "caller"); });
    CHECK_MSG(msg == expected("caller", "fake", static_cast<Isa>(bad)), msg);
  }
}

TEST(dispatch_never_calls_a_null_entry) {
  // A table that lacks a compiled path fails the completeness check that
  // sits beside every family's table, and pick_kernels refuses the path.
  IsaTable<FakeKernels> gap = kCompiledOnly;
  gap.path[static_cast<int>(Isa::Scalar)] = nullptr;
  CHECK(!gap.covers_compiled_paths());
  CHECK(thrown_message<std::invalid_argument>([&] { pick_kernels(gap, Isa::Scalar, "caller"); }) ==
        expected("caller", "fake", Isa::Scalar));
  // And one with kernels for a path the build does not compile fails it too.
  const IsaTable<FakeKernels> extra = {"fake", {&kFake[0], &kFake[1], &kFake[2], &kFake[3]}};
  CHECK(!extra.covers_compiled_paths());
}

TEST(dispatch_every_family_refuses_alike) {
  const std::vector<Isa> missing = unsupported_isas();
  CHECK(!missing.empty());  // x86-64 lacks NEON, AArch64 lacks AVX2 and AVX-512
  // Small valid inputs, so the only fault is the path.
  constexpr int64_t kRows = 16, kCols = 16;
  std::vector<int8_t> trits(size_t(kRows * kCols), 1);
  std::vector<uint8_t> packed(size_t(ternary::packed2_bytes(kRows, kCols)));
  ternary::pack2(trits.data(), kRows, kCols, packed.data());
  std::vector<float> w_scales(size_t(kRows), 0.5f), x(size_t(kRows * kCols), 1.0f),
      y(size_t(kRows * kCols)), x_scales(size_t(kRows), 1.0f), gains(size_t(kCols), 1.0f),
      w_base(size_t(kCols), 1.0f), dgain(static_cast<size_t>(kCols));
  std::vector<int8_t> q(size_t(kRows * ternary::padded_cols(kCols)));
  const ternary::PackedTernary w{packed.data(), w_scales.data(), kRows, kCols};
  norm::RmsNormArgs rn;
  rn.x = x.data();
  rn.n = 1;
  rn.d = kCols;
  rn.w_base = w_base.data();
  rn.gain = norm::GainView{norm::GainScheme::F32,        kCols,   gains.data(),
                           gains.size() * sizeof(float), nullptr, 0};
  gemm::GemmArgs g;
  g.m = g.n = g.k = 1;
  g.a = g.b = x.data();
  g.c = y.data();
  g.lda = g.ldb = g.ldc = 1;

  for (Isa isa : missing) {
    const Exec ex{isa, nullptr, 1};
    struct Case {
      const char *caller, *family;
      std::string msg;
    };
    const Case cases[] = {
        {"quantize_activations", "act_quant", thrown_message<std::invalid_argument>([&] {
           ternary::quantize_activations(x.data(), 1, kCols, q.data(), x_scales.data(), ex);
         })},
        {"gemm_i8", "gemm_i8", thrown_message<std::invalid_argument>([&] {
           ternary::gemm_i8(w, q.data(), x_scales.data(), 1, y.data(), ex);
         })},
        {"matmul_f32", "matmul_f32", thrown_message<std::invalid_argument>([&] {
           ternary::matmul_f32(w, x.data(), 1, y.data(), ex);
         })},
        {"matmul_f32_t", "matmul_f32", thrown_message<std::invalid_argument>([&] {
           ternary::matmul_f32_t(w, x.data(), 1, y.data(), ex);
         })},
        {"gemm_f32", "gemm", thrown_message<std::invalid_argument>([&] { gemm::gemm_f32(g, ex); })},
        {"rmsnorm_gain_f32", "rmsnorm",
         thrown_message<std::invalid_argument>([&] { norm::rmsnorm_gain_f32(rn, y.data(), ex); })},
        {"rmsnorm_gain_i8", "rmsnorm", thrown_message<std::invalid_argument>([&] {
           norm::rmsnorm_gain_i8(rn, q.data(), x_scales.data(), ex);
         })},
        {"rmsnorm_gain_backward", "rmsnorm", thrown_message<std::invalid_argument>([&] {
           norm::rmsnorm_gain_backward(rn, x.data() + kCols, y.data(), dgain.data(), ex);
         })},
        {"vec_math", "vec_math",
         thrown_message<std::invalid_argument>([&] { model::detail::vec_kernels(isa); })},
    };
    for (const Case& c : cases)
      CHECK_MSG(c.msg == expected(c.caller, c.family, isa), isa_name(isa) << ": " << c.msg);
  }
}
