// ternorm_bench_decode: multi-tenant decoding throughput. K sequences, each
// with its own adapter (f32 gains), advance by greedy decoding either in one
// decode_forward call per step for all K ("batched": the ternary weights are
// read once per step) or in K calls of one sequence each ("separate"), on the
// same state, interleaved rep by rep. Prints total tokens/s (median of the
// reps) and the paired ratio batched / separate for K = 1, 4, 16, 64, and
// with --out writes the same as JSON. Random weights: speed does not depend
// on their values.
// --clock cpu times by the process's CPU time instead of the wall clock: on a
// machine shared with other jobs the wall clock counts their time slices too
// (at --threads 1 CPU time is the single thread's work).
// --k runs only the listed batch sizes (e.g. --k 16 for a profile of one).
// --ops instead times what one n = 1 step is made of, op by op (each
// ternary GEMV kind over every layer's weights in forward order, the
// activation quantisations, the fused norm, the head GEMV, a whole step),
// and prints each op's time per token and the bytes/s of its weights against
// one thread's streaming read rate over as many bytes (the roofline), all
// interleaved rep by rep, medians.
// --tables f32,f16 runs the model as loaded from a tq2_0 GGUF with its token
// table in each listed type (the GGUF importer keeps F16/BF16 as stored):
// with --ops the head GEMV and the whole step of each, interleaved in one
// process; otherwise exactly one type. The model's resident memory (VmRSS)
// after load is printed either way.
//   ternorm_bench_decode [--config shipped|107m] [--threads N] [--steps S]
//                        [--reps R] [--prompt P] [--k 1,4,16,64] [--clock wall|cpu]
//                        [--out file.json] [--ops 1] [--tables f32,f16,bf16]
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../peak_kernels.h"
#include "cpu/aligned_buffer.h"
#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "io/gguf.h"
#include "model/decode.h"
#include "model/gguf_model.h"
#include "model/layers.h"
#include "model/model.h"
#include "model/sampler.h"
#include "ternary/ternary.h"

using namespace ternorm;
using namespace ternorm::model;

namespace {

struct Options {
  std::string config = "shipped";
  int threads = 1;
  int64_t steps = 32, reps = 5, prompt = 16;
  std::vector<int64_t> ks = {1, 4, 16, 64};
  std::string out;
  bool cpu_clock = false;
  bool ops = false;
  std::vector<gemm::ElemType> tables;  // empty: the model as built in memory
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--config")
      o.config = v;
    else if (a == "--threads")
      o.threads = std::stoi(v);
    else if (a == "--steps")
      o.steps = std::stoll(v);
    else if (a == "--reps")
      o.reps = std::stoll(v);
    else if (a == "--prompt")
      o.prompt = std::stoll(v);
    else if (a == "--k") {
      o.ks.clear();
      for (size_t at = 0; at < v.size();) {
        size_t used = 0;
        o.ks.push_back(std::stoll(v.substr(at), &used));
        at += used;
        if (at < v.size() && v[at] != ',')
          throw std::invalid_argument("--k wants a list like 1,4,16");
        if (at < v.size()) ++at;
        if (o.ks.back() < 1) throw std::invalid_argument("--k values must be >= 1");
      }
      if (o.ks.empty()) throw std::invalid_argument("--k wants at least one batch size");
    } else if (a == "--tables") {
      size_t at = 0;
      while (at <= v.size()) {
        const size_t comma = std::min(v.find(',', at), v.size());
        o.tables.push_back(gemm::elem_type_of(v.substr(at, comma - at).c_str()));
        at = comma + 1;
      }
    } else if (a == "--out")
      o.out = v;
    else if (a == "--ops")
      o.ops = v == "1";
    else if (a == "--clock") {
      if (v != "wall" && v != "cpu") throw std::invalid_argument("--clock must be wall or cpu");
      o.cpu_clock = v == "cpu";
    } else
      throw std::invalid_argument("unknown option " + a);
  }
  if (o.config != "shipped" && o.config != "107m")
    throw std::invalid_argument("--config must be shipped or 107m");
  if (o.threads < 1 || o.steps < 1 || o.reps < 1 || o.prompt < 1)
    throw std::invalid_argument("--threads, --steps, --reps and --prompt must be >= 1");
  return o;
}

ModelConfig config_of(const std::string& name) {
  ModelConfig c;  // the shipped model's shape (config.h defaults)
  if (name == "107m") c.d_model = 1024, c.n_layers = 8, c.n_heads = 16, c.d_ff = 2816;
  return c;
}

// Seconds on the chosen clock.
double now(bool cpu) {
  if (!cpu)
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

using ReadFn = uint64_t (*)(const uint8_t*, size_t);
ReadFn read_probe(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return bench::read_sum_ref;
#if defined(__x86_64__)
    case Isa::Avx2: return bench::read_sum_avx2;
    case Isa::Avx512: return bench::read_sum_avx512;
#endif
#if defined(__aarch64__)
    case Isa::Neon: return bench::read_sum_neon;
#endif
    default: break;
  }
  throw std::logic_error(std::string("no read probe for ") + isa_name(isa));
}

// m exported as a tq2_0 GGUF with its token table in `table`, loaded back.
std::unique_ptr<Model> through_gguf(const Model& m, gemm::ElemType table) {
  GgufExportOptions opt;
  opt.type = GgufWeightType::TQ2_0;
  opt.table_type = table;
  const std::vector<uint8_t> bytes = gguf_model_writer(m, opt).finish();
  return std::move(gguf_import(gguf::File::copy(bytes.data(), bytes.size())).model);
}

// The process's resident memory, MB (VmRSS of /proc/self/status; 0 if
// unreadable), after handing freed heap memory back (the load's temporary
// buffers would otherwise be counted, as much as the model's own bytes).
double vm_rss_mb() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

// --ops: the n = 1 step op by op (see the header comment); the head and the
// whole step once per model of `heads` (the same block weights).
void run_ops(const Options& o, const Model& m, const std::vector<const Model*>& heads,
             const Exec& ex) {
  const ModelConfig& c = m.config();
  const int64_t d = c.d_model, f = c.d_ff, V = c.vocab, L = c.n_layers;
  const int64_t pd = ternary::padded_cols(d), pf = ternary::padded_cols(f);
  std::vector<float> x(static_cast<size_t>(std::max(d, f))), y(static_cast<size_t>(2 * f + 2 * d)),
      logits(static_cast<size_t>(V));
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(int(i * 7919 % 255) - 127) / 64.0f;
  std::vector<int8_t> qd(static_cast<size_t>(pd)), qf(static_cast<size_t>(pf));
  float sd = 0, sf = 0;
  ternary::quantize_activations(x.data(), 1, d, qd.data(), &sd, ex);
  ternary::quantize_activations(x.data(), 1, f, qf.data(), &sf, ex);
  struct Op {
    std::string name;
    double bytes;  // weight bytes read per token
    std::function<void()> run;
    std::vector<double> us;
  };
  std::vector<Op> ops;
  int64_t ternary_bytes = 0;
  for (Linear lin : {Linear::Qkv, Linear::O, Linear::GateUp, Linear::Down}) {
    const ternary::PackedTernary w0 = m.packed(0, lin);
    const int64_t bytes = L * ternary::packed2_bytes(w0.rows, w0.cols);
    ternary_bytes += bytes;
    const char* names[] = {"gemv qkv", "gemv o", "gemv gate_up", "gemv down"};
    ops.push_back({std::string(names[int(lin)]) + " " + std::to_string(w0.rows) + "x" +
                       std::to_string(w0.cols),
                   double(bytes),
                   [&, lin] {
                     for (int64_t l = 0; l < L; ++l) {
                       const ternary::PackedTernary w = m.packed(l, lin);
                       const bool wide = w.cols == f;
                       ternary::gemm_i8(w, wide ? qf.data() : qd.data(), wide ? &sf : &sd, 1,
                                        y.data(), ex);
                     }
                   },
                   {}});
  }
  ops.push_back({"act quant (d, d_ff)",
                 0,
                 [&] {
                   for (int64_t l = 0; l < L; ++l) {
                     ternary::quantize_activations(x.data(), 1, d, qd.data(), &sd, ex);
                     ternary::quantize_activations(x.data(), 1, f, qf.data(), &sf, ex);
                   }
                 },
                 {}});
  ops.push_back({"norm + quant (2 per layer)",
                 0,
                 [&] {
                   for (int64_t k = 0; k < 2 * L; ++k)
                     rmsnorm_forward_as(Precision::Ternary, norm_weights(m, nullptr, k), x.data(),
                                        1, d, y.data(), qd.data(), &sd, ex);
                 },
                 {}});
  const double head_bytes = double(V * d) * sizeof(float);
  const size_t kFirstHead = ops.size();  // after the 4 GEMVs, the quantisation and the norms
  auto label = [&](const Model* h) {
    return heads.size() > 1 ? std::string(" ") + gemm::elem_type_name(h->table_type()) : "";
  };
  for (const Model* h : heads)
    ops.push_back({"head gemv " + std::to_string(V) + "x" + std::to_string(d) + label(h),
                   double(V * d * gemm::elem_bytes(h->table_type())),
                   [&, h] { head_forward(x.data(), h->head_table(), 1, d, V, logits.data(), ex); },
                   {}});
  // The roofline: one thread streaming as many bytes as a step's fp32 weights.
  const size_t all = size_t(ternary_bytes + int64_t(head_bytes)) / 64 * 64;
  AlignedBuffer<uint8_t> buf(all, Mapping::Huge);
  for (size_t i = 0; i < all; i += 4096) buf[i] = uint8_t(i);
  const ReadFn read = read_probe(ex.isa);
  uint64_t sink = 0;
  ops.push_back({"read probe (1 thread)", double(all), [&] { sink += read(buf.data(), all); }, {}});
  // A whole step: the prompt's first token, reset after each step.
  DecodeState st(c, 1, 1);
  const int32_t tok = 11;
  DecodeEntry e;
  e.slot = 0, e.tokens = &tok, e.n = 1;
  const size_t whole = ops.size();
  for (const Model* h : heads)
    ops.push_back({"whole step (position 0)" + label(h),
                   double(ternary_bytes) + double(V * d * gemm::elem_bytes(h->table_type())),
                   [&, h] {
                     st.reset(0);
                     decode_forward(*h, Precision::Ternary, st, &e, 1, logits.data(), ex);
                   },
                   {}});
  for (Op& op : ops) op.run();  // warm-up
  // Odd reps run the list backwards: an op's time depends on what ran just
  // before it (what it left in the caches), so each op gets both neighbours.
  for (int64_t rep = 0; rep < o.reps * 4; ++rep)
    for (size_t i = 0; i < ops.size(); ++i) {
      Op& op = ops[rep % 2 ? ops.size() - 1 - i : i];
      const double t0 = now(o.cpu_clock);
      op.run();
      op.us.push_back(1e6 * (now(o.cpu_clock) - t0));
    }
  std::printf("%s config, isa %s, %d thread(s), n = 1 step op by op, median of %lld, %s clock\n",
              o.config.c_str(), isa_name(ex.isa), o.threads, (long long)(o.reps * 4),
              o.cpu_clock ? "cpu" : "wall");
  std::printf("%-30s %12s %12s %10s\n", "op (per token)", "us", "weight MB", "GB/s");
  double parts = 0;
  for (size_t i = 0; i < ops.size(); ++i) {
    const double us = median(ops[i].us);
    if (i <= kFirstHead) parts += us;  // the first model's step, op by op
    std::printf("%-30s %12.1f %12.2f %10.1f\n", ops[i].name.c_str(), us, ops[i].bytes / 1e6,
                ops[i].bytes > 0 ? ops[i].bytes / us / 1e3 : 0.0);
  }
  std::printf(
      "%-30s %12.1f   (the first model's parts; the step's rest: attention, RoPE, "
      "residuals, dispatch)\n",
      "sum of the ops above", parts);
  if (heads.size() > 1) {  // paired per rep: the same rep's runs of the two models
    std::vector<double> head_ratio, step_ratio;
    for (size_t r = 0; r < ops[whole].us.size(); ++r) {
      head_ratio.push_back(ops[kFirstHead + 1].us[r] / ops[kFirstHead].us[r]);
      step_ratio.push_back(ops[whole + 1].us[r] / ops[whole].us[r]);
    }
    std::printf("paired ratio %s / %s: head %.3f, whole step %.3f (medians over reps)\n",
                gemm::elem_type_name(heads[1]->table_type()),
                gemm::elem_type_name(heads[0]->table_type()), median(head_ratio),
                median(step_ratio));
  }
  std::printf("(checksum %llu)\n", (unsigned long long)(sink & 1));
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const ModelConfig c = config_of(o.config);
    if (o.prompt + o.steps > c.context)
      throw std::invalid_argument("--prompt + --steps must be <= the context " +
                                  std::to_string(c.context));
    ThreadPool pool(o.threads);
    const Exec ex{default_isa(), &pool, o.threads};
    std::unique_ptr<Model> built = std::make_unique<Model>(c, 1);
    built->quantize(ex);
    std::vector<std::unique_ptr<Model>> loaded;
    for (gemm::ElemType t : o.tables) loaded.push_back(through_gguf(*built, t));
    if (!loaded.empty()) built.reset();
    const Model& m = loaded.empty() ? *built : *loaded[0];
    std::printf("VmRSS after load: %.1f MB (%zu model(s), token table %s)\n", vm_rss_mb(),
                loaded.empty() ? size_t(1) : loaded.size(),
                o.tables.empty() ? "f32 (built in memory)" : gemm::elem_type_name(m.table_type()));
    if (o.ops) {
      std::vector<const Model*> heads;
      for (const auto& h : loaded) heads.push_back(h.get());
      if (heads.empty()) heads.push_back(&m);
      run_ops(o, m, heads, ex);
      return 0;
    }
    if (loaded.size() > 1) throw std::invalid_argument("--tables lists one type without --ops");
    const std::vector<int64_t>& ks = o.ks;
    const int64_t kmax = *std::max_element(ks.begin(), ks.end()), V = c.vocab;
    // One adapter per slot: gains 1 +- small, all different.
    std::vector<float> gains(size_t(kmax * c.n_gains()));
    for (size_t i = 0; i < gains.size(); ++i) gains[i] = 1.0f + 0.01f * float(int(i % 13) - 6);
    std::vector<std::vector<norm::GainView>> views;
    for (int64_t s = 0; s < kmax; ++s)
      views.push_back(f32_gain_views(c, gains.data() + s * c.n_gains()));
    DecodeState st(c, kmax, std::max(kmax, o.prompt));
    std::vector<float> logits(size_t(kmax * V));
    std::vector<int32_t> prompt(static_cast<size_t>(o.prompt)), next(static_cast<size_t>(kmax));
    for (int64_t t = 0; t < o.prompt; ++t) prompt[size_t(t)] = int32_t((t * 37 + 11) % V);

    // Prompts (untimed), then `steps` greedy steps, batched or one call per sequence.
    auto run = [&](int64_t K, bool batched) {
      st.reset_all();
      for (int64_t s = 0; s < K; ++s) {
        DecodeEntry e;
        e.slot = s, e.tokens = prompt.data(), e.n = o.prompt, e.gains = views[size_t(s)].data();
        decode_forward(m, Precision::Ternary, st, &e, 1, logits.data(), ex);
        next[size_t(s)] = argmax_token(logits.data(), V);
      }
      std::vector<DecodeEntry> es(static_cast<size_t>(K));
      const double t0 = now(o.cpu_clock);
      for (int64_t step = 0; step < o.steps; ++step) {
        for (int64_t s = 0; s < K; ++s) {
          es[size_t(s)].slot = s, es[size_t(s)].tokens = &next[size_t(s)], es[size_t(s)].n = 1;
          es[size_t(s)].gains = views[size_t(s)].data();
        }
        if (batched) {
          decode_forward(m, Precision::Ternary, st, es.data(), K, logits.data(), ex);
          for (int64_t s = 0; s < K; ++s) next[size_t(s)] = argmax_token(logits.data() + s * V, V);
        } else {
          for (int64_t s = 0; s < K; ++s) {
            decode_forward(m, Precision::Ternary, st, &es[size_t(s)], 1, logits.data(), ex);
            next[size_t(s)] = argmax_token(logits.data(), V);
          }
        }
      }
      const double sec = now(o.cpu_clock) - t0;
      return double(K * o.steps) / sec;
    };

    std::string json =
        "{\"schema\":\"ternorm.bench.decode/1\",\"config\":\"" + o.config + "\",\"isa\":\"" +
        isa_name(ex.isa) + "\",\"threads\":" + std::to_string(o.threads) + ",\"clock\":\"" +
        (o.cpu_clock ? "cpu" : "wall") + "\"" + ",\"steps\":" + std::to_string(o.steps) +
        ",\"prompt\":" + std::to_string(o.prompt) + ",\"rows\":[";
    std::printf(
        "%s config, isa %s, %d thread(s), %lld steps after a %lld-token prompt, median of %lld, "
        "%s clock\n",
        o.config.c_str(), isa_name(ex.isa), o.threads, (long long)o.steps, (long long)o.prompt,
        (long long)o.reps, o.cpu_clock ? "cpu" : "wall");
    std::printf("%6s %16s %16s %10s %14s\n", "K", "batched tok/s", "separate tok/s", "ratio",
                "vs K=1 stream");
    double one_stream = 0;
    for (size_t ki = 0; ki < ks.size(); ++ki) {
      const int64_t K = ks[ki];
      std::vector<double> b, s, r;
      for (int64_t rep = 0; rep < o.reps; ++rep) {
        b.push_back(run(K, true));
        s.push_back(run(K, false));
        r.push_back(b.back() / s.back());
      }
      const double mb = median(b), msep = median(s), mr = median(r);
      if (K == 1) one_stream = msep;
      // (The last column needs K = 1 in the list.)
      std::printf("%6lld %16.1f %16.1f %10.2f %14.2f\n", (long long)K, mb, msep, mr,
                  one_stream > 0 ? mb / one_stream : 0.0);
      json += std::string(ki ? "," : "") + "{\"k\":" + std::to_string(K) +
              ",\"batched_tok_s\":" + std::to_string(mb) +
              ",\"separate_tok_s\":" + std::to_string(msep) + ",\"ratio\":" + std::to_string(mr) +
              "}";
      std::fflush(stdout);
    }
    json += "]}\n";
    if (!o.out.empty()) {
      const std::string tmp = o.out + ".tmp";
      {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        f << json;
        if (!f) throw std::runtime_error("cannot write " + tmp);
      }
      if (std::rename(tmp.c_str(), o.out.c_str()) != 0)
        throw std::runtime_error("cannot rename " + tmp + " to " + o.out);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ternorm_bench_decode: %s\n", e.what());
    return 2;
  }
}
