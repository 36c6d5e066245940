// The int8 gradient through the ternary linears (TrainConfig::grad_quant
// "int8", layers.h LinearGradI8): bit-identical to a plain-loop integer
// reference on every ISA path and thread count; the transposed copies match
// the model's trits; the adapter gains' gradient stays close to the fp32
// one on a random tiny model and on the shipped model with a real batch
// (cosine and relative L2 error asserted, printed); training with it is
// deterministic; base training refuses it.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "harness.h"
#include "io/container.h"
#include "model/layers.h"
#include "model/model_file.h"
#include "model/train.h"
#include "model/transformer.h"
#include "tokenizer/byte_bpe.h"

using namespace ternorm;
using namespace ternorm::model;
using ternorm::test::one_thread;
using ternorm::test::Rng;
using ternorm::test::throws_with;

namespace {

struct Stats {
  double cosine, rel_l2;
};
Stats compare(const std::vector<float>& a, const std::vector<float>& ref) {
  double ab = 0, aa = 0, bb = 0, dd = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += double(a[i]) * ref[i], aa += double(a[i]) * a[i], bb += double(ref[i]) * ref[i];
    dd += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
  }
  return {ab / std::sqrt(aa * bb), std::sqrt(dd / bb)};
}

// The adapter gains' gradient of the mean loss, the ternary linears' dx in
// fp32 (gi8 null) or int8.
std::vector<float> gain_gradient(const Model& m, const std::vector<norm::GainView>& views,
                                 const std::vector<int32_t>& in, const std::vector<int32_t>& tg,
                                 int64_t B, int64_t T, Workspace& ws, GradI8* gi8, const Exec& ex) {
  transformer_forward(m, Precision::Ternary, views.data(), in.data(), tg.data(), B, T, ws, true,
                      ex);
  std::vector<float> g(size_t(m.config().n_gains()));
  transformer_backward(m, Precision::Ternary, views.data(), in.data(), tg.data(), B, T,
                       float(1.0 / double(B * T)), ws, nullptr, g.data(), ex, gi8);
  return g;
}

}  // namespace

// One linear against a plain-loop reference: fold the row scales, quantise
// per token (the scalar quantize_activations, itself tested bit-identical
// across paths), exact integer dot products, one float multiply. Shapes
// with partial panels and blocks; per-row scales (as fused matrices have).
TEST(grad_i8_linear_bit_identical_every_isa_and_thread_count) {
  ThreadPool pool(3);
  Rng rng(7);
  const int64_t shapes[][3] = {{48, 32, 5}, {37, 70, 19}, {1, 17, 3}, {96, 256, 40}};
  for (const auto& sh : shapes) {
    const int64_t rows = sh[0], cols = sh[1], n = sh[2];
    std::vector<int8_t> trits(size_t(rows * cols)), trits_t(trits.size());
    for (auto& t : trits) t = int8_t(int(rng.below(3)) - 1);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        trits_t[size_t(c * rows + r)] = trits[size_t(r * cols + c)];
    std::vector<float> scales(static_cast<size_t>(rows)), ones(static_cast<size_t>(cols), 1.0f),
        dy(static_cast<size_t>(n * rows));
    for (auto& s : scales) s = 0.01f + 0.05f * float(rng.uniform());
    for (auto& v : dy) v = 1e-3f * rng.normal();
    dy[dy.size() / 2] = 0.05f;  // an outlier, as gradients have (inside dy for every shape)
    std::vector<uint8_t> packed(size_t(ternary::packed2_bytes(rows, cols))),
        packed_t(size_t(ternary::packed2_bytes(cols, rows)));
    ternary::pack2(trits.data(), rows, cols, packed.data());
    ternary::pack2(trits_t.data(), cols, rows, packed_t.data());
    LinearWeights w;
    w.packed = {packed.data(), scales.data(), rows, cols};
    w.rows = rows, w.cols = cols;

    // The reference.
    std::vector<float> folded(static_cast<size_t>(n * rows)), qs(static_cast<size_t>(n)),
        want(static_cast<size_t>(n * cols));
    for (int64_t i = 0; i < n * rows; ++i)
      folded[size_t(i)] = dy[size_t(i)] * scales[size_t(i % rows)];
    const int64_t qstride = ternary::padded_cols(rows);
    std::vector<int8_t> q(size_t(n * qstride));
    ternary::quantize_activations(folded.data(), n, rows, q.data(), qs.data(),
                                  Exec{Isa::Scalar, nullptr, 1});
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < cols; ++c) {
        int32_t dot = 0;
        for (int64_t r = 0; r < rows; ++r)
          dot += int32_t(trits[size_t(r * cols + c)]) * q[size_t(t * qstride + r)];
        want[size_t(t * cols + c)] = (float(dot) * qs[size_t(t)]) * 1.0f;
      }

    std::vector<float> qsc(static_cast<size_t>(n));
    std::vector<int8_t> qscr(size_t(n * qstride));
    LinearGradI8 g;
    g.trits_t = {packed_t.data(), ones.data(), cols, rows};
    g.q = qscr.data(), g.q_scales = qsc.data();
    for (Isa isa : test::every_isa())
      for (int threads : {1, 2, 3}) {
        std::vector<float> dx(size_t(n * cols), -1.0f);
        linear_backward(Precision::Ternary, w, LinearInput{}, n, dy.data(), dx.data(), nullptr,
                        nullptr, Exec{isa, threads > 1 ? &pool : nullptr, threads}, &g);
        CHECK_MSG(std::memcmp(dx.data(), want.data(), dx.size() * 4) == 0,
                  isa_name(isa) << " x " << threads << " threads, " << rows << "x" << cols);
      }
    // And close to the fp32 transpose product: the int8 rounding of dy only.
    std::vector<float> dx32(size_t(n * cols));
    linear_backward(Precision::Ternary, w, LinearInput{}, n, dy.data(), dx32.data(), nullptr,
                    nullptr, one_thread());
    const Stats s = compare(want, dx32);
    CHECK_MSG(s.cosine > 0.999 && s.rel_l2 < 0.05,
              rows << "x" << cols << ": cosine " << s.cosine << ", rel " << s.rel_l2);
  }
  // The fp32 precision has no int8 path.
  LinearGradI8 g;
  LinearWeights w;
  CHECK(throws_with<std::invalid_argument>(
      [&] {
        linear_backward(Precision::F32, w, LinearInput{}, 1, nullptr, nullptr, nullptr, nullptr,
                        one_thread(), &g);
      },
      "needs a ternary precision"));
}

// GradI8's copies are the model's trits transposed, unit scales.
TEST(grad_i8_transposed_copies) {
  ModelConfig c;
  c.vocab = 40, c.d_model = 48, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.d_ff = 40,
  c.context = 16;
  Model m(c, 3);
  m.quantize(one_thread());
  GradI8 gi8(m, 32);
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int k = 0; k < kLinearsPerLayer; ++k) {
      const ternary::PackedTernary w = m.packed(l, Linear(k));
      const LinearGradI8 g = gi8.linear(l, Linear(k));
      CHECK(g.trits_t.rows == w.cols && g.trits_t.cols == w.rows);
      std::vector<int8_t> a(size_t(w.rows * w.cols)), b(a.size());
      ternary::unpack2(w.data, w.rows, w.cols, a.data());
      ternary::unpack2(g.trits_t.data, w.cols, w.rows, b.data());
      bool same = true;
      for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t cc = 0; cc < w.cols; ++cc)
          same = same && a[size_t(r * w.cols + cc)] == b[size_t(cc * w.rows + r)];
      CHECK_MSG(same, "layer " << l << " linear " << k);
      for (int64_t i = 0; i < w.cols; ++i) CHECK(g.trits_t.scales[i] == 1.0f);
    }
  std::printf("  transposed copies + scratch of 32 tokens: %lld bytes\n", (long long)gi8.bytes());
}

// The gains' gradient, int8 vs fp32, on a random tiny model (weights scaled
// up as in model_test) and on the shipped model with a batch of real text.
TEST(grad_i8_adapter_gain_gradient_close_to_f32) {
  {
    ModelConfig c;
    c.vocab = 64, c.d_model = 32, c.n_layers = 2, c.n_heads = 2, c.d_ff = 48, c.context = 32;
    Model m(c, 11);
    for (const TensorInfo& t : m.tensors())
      if (t.rows > 1)
        for (int64_t i = 0; i < t.rows * t.cols; ++i) m.params()[t.offset + i] *= 10.0f;
    m.quantize(one_thread());
    Rng rng(12);
    std::vector<float> gains(size_t(c.n_gains()));
    for (auto& v : gains) v = 1.0f + 0.2f * rng.normal();
    const std::vector<norm::GainView> views = f32_gain_views(c, gains.data());
    const int64_t B = 4, T = 32;
    std::vector<int32_t> in(size_t(B * T)), tg(in.size());
    for (auto& v : in) v = int32_t(rng.below(c.vocab));
    for (auto& v : tg) v = int32_t(rng.below(c.vocab));
    Workspace ws(c, B, T, true);
    GradI8 gi8(m, B * T);
    const auto g32 = gain_gradient(m, views, in, tg, B, T, ws, nullptr, one_thread());
    const auto g8 = gain_gradient(m, views, in, tg, B, T, ws, &gi8, one_thread());
    const Stats s = compare(g8, g32);
    CHECK_MSG(s.cosine > 0.999 && s.rel_l2 < 0.05,
              "tiny model: cosine " << s.cosine << ", rel " << s.rel_l2);
    std::printf(
        "  tiny random model: int8 vs fp32 gain gradient cosine %.6f, rel L2 %.4f "
        "(tol > 0.999, < 0.05)\n",
        s.cosine, s.rel_l2);
  }
  {
    // The shipped model, 8 x 128 tokens of this repository's README (real
    // English and code, as the users' text), the adapter's training shape.
    const io::Container file = io::read_file("models/base.tnm");
    LoadedModel lm = load_model(file);
    const Model& m = *lm.model;
    const tok::ByteBpe tok = tok::ByteBpe::deserialize(lm.tokenizer.data(), lm.tokenizer.size());
    std::FILE* f = std::fopen("README.md", "rb");
    CHECK_MSG(f != nullptr, "run from the repository root (README.md)");
    if (!f) return;
    std::vector<uint8_t> text(1 << 16);
    text.resize(std::fread(text.data(), 1, text.size(), f));
    std::fclose(f);
    const std::vector<int32_t> ids = tok.encode(text.data(), text.size());
    const int64_t B = 8, T = 128;
    CHECK(int64_t(ids.size()) > B * (T + 1));
    std::vector<int32_t> in(size_t(B * T)), tg(in.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        in[size_t(b * T + t)] = ids[size_t(b * (T + 1) + t)];
        tg[size_t(b * T + t)] = ids[size_t(b * (T + 1) + t + 1)];
      }
    const ModelConfig& c = m.config();
    std::vector<float> gains(size_t(c.n_gains()), 1.0f);
    const std::vector<norm::GainView> views = f32_gain_views(c, gains.data());
    Workspace ws(c, B, T, true);
    GradI8 gi8(m, B * T);
    ThreadPool pool(2);
    const Exec ex{default_isa(), &pool, 2};
    const auto g32 = gain_gradient(m, views, in, tg, B, T, ws, nullptr, ex);
    const auto g8 = gain_gradient(m, views, in, tg, B, T, ws, &gi8, ex);
    const Stats s = compare(g8, g32);
    CHECK_MSG(s.cosine > 0.999 && s.rel_l2 < 0.05,
              "shipped model: cosine " << s.cosine << ", rel " << s.rel_l2);
    std::printf(
        "  shipped model, 8 x 128 README tokens: int8 vs fp32 gain gradient cosine %.6f, "
        "rel L2 %.4f (tol > 0.999, < 0.05); int8 state %.2f MB\n",
        s.cosine, s.rel_l2, double(gi8.bytes()) / 1e6);
  }
}

// Training with int8 gradients: the same gains at 1, 2 and 3 threads on each
// ISA path; the base modes refuse the option.
TEST(grad_i8_training_deterministic_and_adapter_only) {
  ModelConfig c;
  c.vocab = 30, c.d_model = 32, c.n_layers = 2, c.n_heads = 2, c.d_ff = 40, c.context = 16;
  const int64_t B = 3, T = 16;
  Rng rng(5);
  std::vector<int32_t> rows(size_t(B * (T + 1)));
  for (auto& v : rows) v = int32_t(rng.below(c.vocab));
  // (The rest of the step runs float kernels whose ISA paths agree within
  // bounds only, so across paths the gains are compared per path.)
  ThreadPool pool(3);
  for (Isa isa : test::every_isa()) {
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      Model m(c, 6);
      m.quantize(one_thread());
      TrainConfig tc = adapter_train_defaults();
      tc.batch = B, tc.seq = T, tc.grad_quant = GradQuant::Int8;
      Trainer tr(m, tc);
      const Exec ex{isa, threads > 1 ? &pool : nullptr, threads};
      for (int s = 0; s < 3; ++s) tr.step(rows.data(), B, T, ex);
      std::vector<float> g(tr.gains(), tr.gains() + c.n_gains());
      if (first.empty()) {
        first = g;
        bool moved = false;
        for (float v : g) moved = moved || v != 1.0f;
        CHECK(moved);
      }
      CHECK_MSG(std::memcmp(g.data(), first.data(), g.size() * 4) == 0,
                isa_name(isa) << " x " << threads << " threads");
    }
  }
  Model m(c, 6);
  for (TrainMode mode : {TrainMode::TernaryBase, TrainMode::Fp32Base}) {
    TrainConfig tc;
    tc.mode = mode, tc.batch = B, tc.seq = T, tc.grad_quant = GradQuant::Int8;
    CHECK(throws_with<std::invalid_argument>([&] { Trainer tr(m, tc); }, "for the adapter mode"));
  }
  CHECK(grad_quant_of("int8") == GradQuant::Int8 && grad_quant_of("f32") == GradQuant::F32);
  CHECK(throws_with<std::invalid_argument>([&] { grad_quant_of("fp16"); }, "'f32', 'int8'"));
}
