// ggml_mul_mat: ggml's ternary matrix products (TQ2_0 / TQ1_0 weights times
// activations quantised to q8_K, int8 per 256-value block) through the
// prebuilt libggml of npm package node-llama-cpp, at bench:kernels' shapes,
// so bench:peers can put ternorm's gemm_i8 beside it. Two activation modes:
// f32 (ggml quantises them inside the call, as llama.cpp runs; timed with it)
// and q8_K (quantised beforehand, so only the integer product is timed, like
// bench:kernels' gemm_i8 beside its separate act_quant). Prints one JSON
// document of raw medians (like bench/kernels.cpp); progress on stderr.
//
// Each point is checked before it is timed: the product of the same ternary
// weights and the activations quantised the way q8_K does (absmax / 127 per
// 256 values), computed in double, must match ggml's output within kCheckTol
// of the output's largest magnitude (ggml accumulates block sums in float).
// --check runs only the checks (small shapes, both types, 1 and 2 threads).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "peer_util.h"

namespace {

using peer::Error;
using peer::Json;

constexpr const char* kSchema = "ternorm.peers.ggml.mul_mat.raw/1";
constexpr double kCheckTol = 1e-4;
constexpr int64_t kBlock = 256;  // QK_K: TQ1_0, TQ2_0 and q8_K blocks

// ggml's q8_K block (ggml/src/ggml-common.h; the type size is checked against ggml's at run time).
struct BlockQ8K {
  float d;
  int8_t qs[kBlock];
  int16_t bsums[kBlock / 16];
};

enum class Act { F32, Q8K };
const char* act_name(Act a) { return a == Act::F32 ? "f32" : "q8_K"; }
constexpr float kWeightScale = 0.03125f;  // exact in fp16, so the TQ block scale is exact

struct Shape {
  int64_t rows, cols;
};

struct Options {
  std::vector<Shape> shapes = {
      {256, 256}, {768, 256}, {256, 768}, {4096, 4096}};  // bench/kernels.cpp
  std::vector<int64_t> tokens = {1, 128, 512};
  std::vector<ggml_type> types = {GGML_TYPE_TQ2_0, GGML_TYPE_TQ1_0};
  std::vector<Act> acts = {Act::F32, Act::Q8K};
  std::vector<int> threads = {1, 2};
  double min_time = 0.2, max_time = 3.0, sample_time = 0.002, warmup_time = 0.03;
  int min_samples = 5;
  bool check_only = false;
  std::string out;
};

const char* kHelp =
    "ggml_mul_mat: ggml's TQ2_0 / TQ1_0 mul_mat (prebuilt libggml of node-llama-cpp), raw medians "
    "as JSON.\n"
    "  --shapes RxC,...   weight shapes, C a multiple of 256 (default "
    "256x256,768x256,256x768,4096x4096)\n"
    "  --tokens N,...     activation columns n (default 1,128,512; n = 1 is the GEMV)\n"
    "  --types T,...      tq2_0,tq1_0 (default both)\n"
    "  --act A,...        f32 (quantised to q8_K inside the call, timed) and/or q8_K (beforehand,\n"
    "                     only the integer product timed); default both\n"
    "  --threads T,...    thread counts (default 1,2)\n"
    "  --min-time S       seconds of samples per point at least (default 0.2)\n"
    "  --min-samples N    samples per point at least (default 5)\n"
    "  --max-time S       stop sampling when the next sample would pass S (default 3)\n"
    "  --quick            min-time 0.02, min-samples 3, max-time 0.1\n"
    "  --check            only check ggml's output against the double reference, no timing\n"
    "  --out FILE         write the JSON there instead of stdout\n";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = s.find(sep, i);
    const std::string part = s.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (!part.empty()) out.push_back(part);
    if (j == std::string::npos) break;
    i = j + 1;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--shapes") {
      o.shapes.clear();
      for (const std::string& s : split(next(), ',')) {
        const auto p = split(s, 'x');
        if (p.size() != 2) throw Error("expected a shape ROWSxCOLS, got '" + s + "'");
        const Shape sh{peer::parse_int(p[0], "rows", 1, 1 << 16),
                       peer::parse_int(p[1], "cols", 1, 1 << 16)};
        if (sh.cols % kBlock)
          throw Error("cols must be a multiple of 256 for TQ1_0/TQ2_0, got " + s);
        o.shapes.push_back(sh);
      }
    } else if (a == "--tokens") {
      o.tokens.clear();
      for (const std::string& s : split(next(), ','))
        o.tokens.push_back(peer::parse_int(s, "--tokens", 1, 1 << 14));
    } else if (a == "--types") {
      o.types.clear();
      for (const std::string& s : split(next(), ','))
        if (s == "tq2_0")
          o.types.push_back(GGML_TYPE_TQ2_0);
        else if (s == "tq1_0")
          o.types.push_back(GGML_TYPE_TQ1_0);
        else
          throw Error("--types: expected tq2_0 or tq1_0, got '" + s + "'");
    } else if (a == "--act") {
      o.acts.clear();
      for (const std::string& s : split(next(), ','))
        if (s == "f32")
          o.acts.push_back(Act::F32);
        else if (s == "q8_K")
          o.acts.push_back(Act::Q8K);
        else
          throw Error("--act: expected f32 or q8_K, got '" + s + "'");
    } else if (a == "--threads") {
      o.threads.clear();
      for (const std::string& s : split(next(), ','))
        o.threads.push_back(int(peer::parse_int(s, "--threads", 1, 512)));
    } else if (a == "--min-time") {
      o.min_time = peer::parse_seconds(next(), "--min-time");
    } else if (a == "--max-time") {
      o.max_time = peer::parse_seconds(next(), "--max-time");
    } else if (a == "--min-samples") {
      o.min_samples = int(peer::parse_int(next(), "--min-samples", 1, 100000));
    } else if (a == "--quick") {
      o.min_time = 0.02;
      o.min_samples = 3;
      o.max_time = 0.1;
      o.warmup_time = 0.005;
    } else if (a == "--check") {
      o.check_only = true;
    } else if (a == "--out") {
      o.out = next();
    } else {
      throw Error("unknown option '" + a + "' (ggml_mul_mat --help lists the options)");
    }
  }
  if (o.shapes.empty() || o.tokens.empty() || o.types.empty() || o.acts.empty() ||
      o.threads.empty())
    throw Error("--shapes, --tokens, --types, --act and --threads must not be empty");
  if (o.check_only) {
    o.shapes = {{256, 256}, {96, 768}};
    o.tokens = {1, 3, 130};
  }
  return o;
}

// ---- one point: ggml graph W (rows x cols, TQ) times X (n x cols, f32) -------------------

class MulMat {
 public:
  MulMat(ggml_backend_t backend, ggml_type type, Act act, const Shape& s, int64_t n,
         std::mt19937_64& rng)
      : type_(type), s_(s), n_(n) {
    ggml_init_params ip{ggml_tensor_overhead() * 4 + ggml_graph_overhead(), nullptr,
                        /*no_alloc=*/true};
    ctx_ = ggml_init(ip);
    if (!ctx_) throw Error("ggml_init failed");
    w_ = ggml_new_tensor_2d(ctx_, type, s.cols, s.rows);  // ggml ne = [cols, rows]
    x_ = ggml_new_tensor_2d(ctx_, act == Act::F32 ? GGML_TYPE_F32 : GGML_TYPE_Q8_K, s.cols, n);
    y_ = ggml_mul_mat(ctx_, w_, x_);  // ne = [rows, n]
    graph_ = ggml_new_graph(ctx_);
    ggml_build_forward_expand(graph_, y_);
    buf_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    if (!buf_)
      throw Error("cannot allocate the ggml tensors of a " + std::to_string(s.rows) + "x" +
                  std::to_string(s.cols) + " point");

    // Ternary weights {-1, 0, +1} * kWeightScale, each value with probability 1/3.
    w_f32_.resize(size_t(s.rows * s.cols));
    std::uniform_int_distribution<int> tern(-1, 1);
    for (float& v : w_f32_) v = float(tern(rng)) * kWeightScale;
    std::vector<uint8_t> wq(ggml_row_size(type, s.cols) * size_t(s.rows));
    const size_t written =
        ggml_quantize_chunk(type, w_f32_.data(), wq.data(), 0, s.rows, s.cols, nullptr);
    if (written != wq.size()) throw Error("ggml_quantize_chunk wrote an unexpected size");
    ggml_backend_tensor_set(w_, wq.data(), 0, wq.size());
    // What ggml will multiply: the weights as the TQ blocks hold them.
    ggml_get_type_traits(type)->to_float(wq.data(), w_f32_.data(), s.rows * s.cols);

    x_f32_.resize(size_t(n * s.cols));
    std::normal_distribution<float> gauss(0.f, 1.f);
    for (float& v : x_f32_) v = gauss(rng);
    if (act == Act::F32) {
      ggml_backend_tensor_set(x_, x_f32_.data(), 0, x_f32_.size() * sizeof(float));
    } else {
      if (ggml_row_size(GGML_TYPE_Q8_K, kBlock) != sizeof(BlockQ8K))
        throw Error("ggml's q8_K block is not the expected layout");
      std::vector<BlockQ8K> xq(size_t(n * s.cols / kBlock));
      for (size_t b = 0; b < xq.size(); ++b) xq[b] = q8k_block(&x_f32_[b * kBlock]);
      ggml_backend_tensor_set(x_, xq.data(), 0, xq.size() * sizeof(BlockQ8K));
    }
  }
  ~MulMat() {
    ggml_backend_buffer_free(buf_);
    ggml_free(ctx_);
  }
  MulMat(const MulMat&) = delete;
  MulMat& operator=(const MulMat&) = delete;

  void run(ggml_backend_t backend) {
    if (ggml_backend_graph_compute(backend, graph_) != GGML_STATUS_SUCCESS)
      throw Error("ggml graph compute failed");
  }

  // max |ggml - reference| / max |reference| over the first and last activation columns.
  double check(ggml_backend_t backend) {
    run(backend);
    std::vector<float> y(size_t(s_.rows * n_));
    ggml_backend_tensor_get(y_, y.data(), 0, y.size() * sizeof(float));
    double max_err = 0, max_ref = 0;
    for (int64_t j : {int64_t(0), n_ - 1}) {
      const std::vector<double> xq = q8k_roundtrip(&x_f32_[size_t(j * s_.cols)], s_.cols);
      for (int64_t r = 0; r < s_.rows; ++r) {
        const float* w = &w_f32_[size_t(r * s_.cols)];
        double ref = 0;
        for (int64_t k = 0; k < s_.cols; ++k) ref += double(w[k]) * xq[size_t(k)];
        max_err = std::max(max_err, std::fabs(double(y[size_t(j * s_.rows + r)]) - ref));
        max_ref = std::max(max_ref, std::fabs(ref));
      }
    }
    return max_ref > 0 ? max_err / max_ref : max_err;
  }

  size_t weight_bytes() const { return ggml_nbytes(w_); }

 private:
  // q8_K as ggml defines it: per 256 values, d = max / -127 of the value with the largest
  // magnitude, q = round(x / d) capped at 127, bsums the sums of 16 q's.
  static BlockQ8K q8k_block(const float* x) {
    BlockQ8K blk{};
    float amax = 0, mx = 0;
    for (int64_t j = 0; j < kBlock; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        mx = x[j];
      }
    if (amax == 0) return blk;
    const float iscale = -127.f / mx;
    for (int64_t j = 0; j < kBlock; ++j)
      blk.qs[j] = int8_t(std::min(127, int(std::nearbyint(iscale * x[j]))));
    for (int64_t g = 0; g < kBlock / 16; ++g) {
      int sum = 0;
      for (int64_t j = 0; j < 16; ++j) sum += blk.qs[g * 16 + j];
      blk.bsums[g] = int16_t(sum);
    }
    blk.d = 1 / iscale;
    return blk;
  }

  // The activations as q8_K holds them: q * d.
  static std::vector<double> q8k_roundtrip(const float* x, int64_t k) {
    std::vector<double> out(static_cast<size_t>(k));
    for (int64_t b = 0; b < k; b += kBlock) {
      const BlockQ8K blk = q8k_block(x + b);
      for (int64_t j = 0; j < kBlock; ++j) out[size_t(b + j)] = double(blk.qs[j]) * double(blk.d);
    }
    return out;
  }

  ggml_type type_;
  Shape s_;
  int64_t n_;
  ggml_context* ctx_ = nullptr;
  ggml_tensor *w_ = nullptr, *x_ = nullptr, *y_ = nullptr;
  ggml_cgraph* graph_ = nullptr;
  ggml_backend_buffer_t buf_ = nullptr;
  std::vector<float> w_f32_, x_f32_;
};

struct Timing {
  double median_s, min_s, max_s;
  int samples, calls_per_sample;
};

Timing time_it(MulMat& mm, ggml_backend_t backend, const Options& o) {
  double t0 = peer::now_s();
  int warm = 0;
  while (peer::now_s() - t0 < o.warmup_time || warm < 1) {
    mm.run(backend);
    ++warm;
  }
  const double per_call = (peer::now_s() - t0) / warm;
  const int calls = std::max(1, int(o.sample_time / std::max(per_call, 1e-9)));
  std::vector<double> samples;
  const double start = peer::now_s();
  for (;;) {
    const double s0 = peer::now_s();
    for (int c = 0; c < calls; ++c) mm.run(backend);
    const double dt = (peer::now_s() - s0) / calls;
    samples.push_back(dt);
    const double elapsed = peer::now_s() - start;
    const bool enough = int(samples.size()) >= o.min_samples && elapsed >= o.min_time;
    if (enough || elapsed + dt * calls > o.max_time) break;
  }
  return {peer::median(samples), *std::min_element(samples.begin(), samples.end()),
          *std::max_element(samples.begin(), samples.end()), int(samples.size()), calls};
}

int run(const Options& o) {
  ggml_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  ggml_backend_dev_t dev = peer::load_cpu_backend();
  ggml_backend_t backend = ggml_backend_dev_init(dev, nullptr);
  if (!backend) throw Error("cannot initialise ggml's CPU backend");
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
  if (!set_threads) throw Error("ggml's CPU backend has no ggml_backend_set_n_threads");

  std::mt19937_64 rng(20261202);
  Json j;
  j.begin_obj();
  j.kv("schema", kSchema);
  j.key("backend").begin_obj();
  j.kv("device", ggml_backend_dev_description(dev));
  j.kv("library_dir", peer::ggml_library_dir());
  j.key("features").begin_arr();
  for (const std::string& f : peer::cpu_backend_features(dev)) j.val(f);
  j.end_arr();
  j.end_obj();
  j.key("points").begin_arr();
  const double t_run = peer::now_s();
  bool all_ok = true;
  struct Point {
    ggml_type type;
    Act act;
    Shape s;
    int64_t n;
  };
  std::vector<Point> points;
  for (ggml_type type : o.types)
    for (Act act : o.acts)
      for (const Shape& s : o.shapes)
        for (int64_t n : o.tokens) points.push_back({type, act, s, n});
  for (const Point& p : points) {
    MulMat mm(backend, p.type, p.act, p.s, p.n, rng);
    for (int t : o.threads) {
      set_threads(backend, t);
      const double err = mm.check(backend);
      const bool ok = err <= kCheckTol;
      all_ok = all_ok && ok;
      std::fprintf(stderr, "ggml_mul_mat: %s act %s %lldx%lld n=%lld threads=%d check %.2e %s\n",
                   ggml_type_name(p.type), act_name(p.act), (long long)p.s.rows,
                   (long long)p.s.cols, (long long)p.n, t, err, ok ? "ok" : "FAILED");
      j.begin_obj();
      j.kv("kind", "ggml_mul_mat").kv("type", ggml_type_name(p.type)).kv("act", act_name(p.act));
      j.kv("rows", p.s.rows).kv("cols", p.s.cols).kv("n", p.n).kv("threads", t);
      j.kv("weight_bytes", int64_t(mm.weight_bytes()));
      j.key("check").begin_obj().kv("rel_diff", err).kv("tol", kCheckTol).kv("ok", ok).end_obj();
      if (!o.check_only && ok) {
        const Timing tm = time_it(mm, backend, o);
        j.kv("median_s", tm.median_s).kv("min_s", tm.min_s).kv("max_s", tm.max_s);
        j.kv("samples", int64_t(tm.samples)).kv("calls_per_sample", int64_t(tm.calls_per_sample));
        j.kv("gops", 2.0 * double(p.s.rows) * double(p.s.cols) * double(p.n) / tm.median_s * 1e-9);
      }
      j.end_obj();
    }
  }
  j.end_arr();
  j.kv("total_s", peer::now_s() - t_run);
  j.end_obj();
  ggml_backend_free(backend);

  const std::string doc = j.str() + "\n";
  if (o.out.empty())
    std::fwrite(doc.data(), 1, doc.size(), stdout);
  else
    peer::write_file(o.out, doc.data(), doc.size());
  if (!all_ok)
    throw Error("ggml's output differs from the reference beyond " + std::to_string(kCheckTol));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ggml_mul_mat: %s\n", e.what());
    return 1;
  }
}
