// ternorm_bench_kernels: measures the ternary int8 kernels (gemm_i8, n == 1
// being the GEMV), the fp32 GEMM baseline on the same shapes, the ternary x
// fp32 products of training (matmul_f32 and its transpose), activation
// quantisation, the fused RMSNorm (fp32 and int8 out, f32/f16/int8 gains),
// the element-wise kernels (softmax, SwiGLU forward and backward), and this
// machine's own limits (int8 multiply-accumulate peak per ISA path, read
// bandwidth from DRAM and from cache), all in one run, and prints one JSON
// document of raw medians. bench/kernels.ts turns it into
// ratios, percentages, target verdicts, a table and bench/results/kernels.json.
// Progress goes to stderr. No Node dependency.
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "cpu/aligned_buffer.h"
#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "gemm/gemm.h"
#include "model/layers.h"
#include "norm/gain_codec.h"
#include "norm/rmsnorm.h"
#include "peak_kernels.h"
#include "ternary/ternary.h"

namespace {

using ternorm::AlignedBuffer;
using ternorm::Exec;
using ternorm::Isa;
using ternorm::ThreadPool;
namespace tern = ternorm::ternary;
namespace tb = ternorm::bench;

constexpr const char* kSchema = "ternorm.bench.kernels.raw/1";
constexpr int64_t kMiB = int64_t(1) << 20;

// ---- options -----------------------------------------------------------------------

struct Shape {
  int64_t rows, cols;
};

// The kernel families a run can select (--kernels), in run order.
const char* const kFamilies[] = {"gemm", "matmul_f32", "act_quant", "rmsnorm", "elementwise"};

struct Options {
  std::vector<Shape> shapes = {{256, 256}, {768, 256}, {256, 768}, {4096, 4096}};
  std::vector<int64_t> tokens = {1, 128, 512};
  std::vector<Isa> isas;     // default: every supported path
  std::vector<int> threads;  // default: 1 and 2 (as the machine allows)
  double min_time = 0.2;     // per measurement, seconds of samples at least ...
  int min_samples = 5;       // ... and this many samples at least ...
  double max_time = 3.0;     // ... unless one more sample would pass this
  int max_samples = 500;
  double sample_time = 0.002;  // batch short calls so one sample lasts this long
  double warmup_time = 0.03;   // warm-up calls before sampling
  double long_call = 0.5;      // a warm-up call this long is counted as a sample
  double budget = 420.0;       // whole run; later points are skipped (and say so)
  int64_t dram_bytes = 512 * kMiB;
  int64_t cold_min_bytes = kMiB;  // n == 1 shapes with packed weights this big get a cold run
  bool quick = false;
  std::set<std::string> kernels = {std::begin(kFamilies), std::end(kFamilies)};
  std::string out;  // empty: stdout

  bool has(const char* family) const { return kernels.count(family) != 0; }
};

[[noreturn]] void usage_error(const std::string& msg) {
  throw std::invalid_argument(msg + " (run with --help for the options)");
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

int64_t parse_int(const std::string& s, const char* what) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v <= 0)
    usage_error(std::string("expected a positive integer for ") + what + ", got '" + s + "'");
  return v;
}

double parse_seconds(const std::string& s, const char* what) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
    usage_error(std::string("expected a positive number of seconds for ") + what + ", got '" + s +
                "'");
  return v;
}

const char* kHelp =
    "ternorm_bench_kernels: ternary int8 kernels vs the fp32 GEMM vs this machine's limits.\n"
    "Prints one JSON document (raw medians) on stdout; bench/kernels.ts makes the report.\n"
    "  --shapes RxC,...     weight shapes (default 256x256,768x256,256x768,4096x4096)\n"
    "  --tokens N,...       token counts n (default 1,128,512; n = 1 is the GEMV)\n"
    "  --isa NAME,...       paths: scalar,avx2,avx512,neon (default: every supported one)\n"
    "  --threads T,...      thread counts (default 1,2, capped at the hardware threads)\n"
    "  --min-time S         seconds of samples per measurement at least (default 0.2)\n"
    "  --min-samples N      samples per measurement at least (default 5)\n"
    "  --max-time S         stop sampling a measurement when the next sample would pass S\n"
    "                       (default 3; long calls get fewer samples, flagged reduced)\n"
    "  --budget S           whole-run budget; points after it are skipped, flagged (default 420)\n"
    "  --dram-mb N          size of the DRAM read probe buffer (default 512)\n"
    "  --kernels NAME,...   families to measure (default all): gemm (gemm_i8, gemm_f32,\n"
    "                       cold GEMV), matmul_f32 (and matmul_f32_t), act_quant, rmsnorm\n"
    "                       (f32 and int8 out; f32, f16, int8 gains), elementwise (softmax,\n"
    "                       swiglu, swiglu_backward)\n"
    "  --quick              smoke run: min-time 0.02, min-samples 3, max-time 0.1\n"
    "  --out FILE           write the JSON to FILE instead of stdout\n";

Options parse_options(int argc, char** argv) {
  Options o;
  bool min_time_set = false, min_samples_set = false, max_time_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage_error("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--shapes") {
      o.shapes.clear();
      for (const std::string& s : split(next(), ',')) {
        const auto parts = split(s, 'x');
        if (parts.size() != 2) usage_error("expected a shape ROWSxCOLS, got '" + s + "'");
        o.shapes.push_back({parse_int(parts[0], "rows"), parse_int(parts[1], "cols")});
      }
    } else if (a == "--tokens") {
      o.tokens.clear();
      for (const std::string& s : split(next(), ',')) o.tokens.push_back(parse_int(s, "--tokens"));
    } else if (a == "--isa") {
      o.isas.clear();
      for (const std::string& s : split(next(), ',')) {
        const Isa isa = ternorm::parse_isa(s);
        if (!ternorm::isa_supported(isa))
          usage_error("ISA path '" + s + "' is not supported by this CPU or build");
        o.isas.push_back(isa);
      }
    } else if (a == "--threads") {
      o.threads.clear();
      for (const std::string& s : split(next(), ',')) {
        const int64_t t = parse_int(s, "--threads");
        if (t > ternorm::hardware_threads())
          usage_error("--threads " + s + " is more than the " +
                      std::to_string(ternorm::hardware_threads()) + " hardware threads");
        o.threads.push_back(int(t));
      }
    } else if (a == "--min-time") {
      o.min_time = parse_seconds(next(), "--min-time");
      min_time_set = true;
    } else if (a == "--min-samples") {
      o.min_samples = int(parse_int(next(), "--min-samples"));
      min_samples_set = true;
    } else if (a == "--max-time") {
      o.max_time = parse_seconds(next(), "--max-time");
      max_time_set = true;
    } else if (a == "--budget") {
      o.budget = parse_seconds(next(), "--budget");
    } else if (a == "--dram-mb") {
      o.dram_bytes = parse_int(next(), "--dram-mb") * kMiB;
    } else if (a == "--kernels") {
      o.kernels.clear();
      for (const std::string& k : split(next(), ',')) {
        if (std::find_if(std::begin(kFamilies), std::end(kFamilies),
                         [&](const char* f) { return k == f; }) == std::end(kFamilies))
          usage_error("unknown kernel family '" + k +
                      "': expected gemm, matmul_f32, act_quant, rmsnorm or elementwise");
        o.kernels.insert(k);
      }
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--out") {
      o.out = next();
    } else {
      usage_error("unknown option '" + a + "'");
    }
  }
  if (o.quick) {
    if (!min_time_set) o.min_time = 0.02;
    if (!min_samples_set) o.min_samples = 3;
    if (!max_time_set) o.max_time = 0.1;
    o.warmup_time = 0.005;
  }
  if (o.isas.empty()) o.isas = ternorm::supported_isas();
  if (o.threads.empty()) {
    o.threads.push_back(1);
    if (ternorm::hardware_threads() >= 2) o.threads.push_back(2);
  }
  std::sort(o.threads.begin(), o.threads.end());
  o.threads.erase(std::unique(o.threads.begin(), o.threads.end()), o.threads.end());
  if (o.shapes.empty() || o.tokens.empty()) usage_error("--shapes and --tokens must not be empty");
  if (o.kernels.empty()) usage_error("--kernels must not be empty");
  return o;
}

// ---- JSON output -----------------------------------------------------------------------

class Json {
 public:
  Json& obj() { return open('{'); }
  Json& arr() { return open('['); }
  Json& end() {
    const char c = stack_.back() == '{' ? '}' : ']';
    stack_.pop_back();
    first_.pop_back();
    s_ += c;
    return *this;
  }
  Json& key(const char* k) {
    comma();
    str(k);
    s_ += ':';
    after_key_ = true;
    return *this;
  }
  Json& v(const std::string& x) {
    comma();
    str(x);
    return *this;
  }
  Json& v(const char* x) { return v(std::string(x)); }
  Json& v(bool x) {
    comma();
    s_ += x ? "true" : "false";
    return *this;
  }
  Json& v(int64_t x) {
    comma();
    s_ += std::to_string(x);
    return *this;
  }
  Json& v(int x) { return v(int64_t(x)); }
  Json& v(uint64_t x) {
    comma();
    s_ += std::to_string(x);
    return *this;
  }
  Json& v(double x) {
    comma();
    if (!std::isfinite(x)) {
      s_ += "null";
    } else {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.9g", x);
      s_ += buf;
    }
    return *this;
  }
  Json& null() {
    comma();
    s_ += "null";
    return *this;
  }
  template <typename T>
  Json& kv(const char* k, const T& x) {
    return key(k).v(x);
  }
  const std::string& text() const { return s_; }

 private:
  Json& open(char c) {
    comma();
    s_ += c;
    stack_.push_back(c);
    first_.push_back(true);
    return *this;
  }
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) s_ += ',';
      first_.back() = false;
    }
  }
  void str(const std::string& x) {
    s_ += '"';
    for (const char ch : x) {
      const unsigned char c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        s_ += '\\';
        s_ += ch;
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        s_ += buf;
      } else {
        s_ += ch;
      }
    }
    s_ += '"';
  }

  std::string s_;
  std::vector<char> stack_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

// ---- machine facts ----------------------------------------------------------------------

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

// "32768K" -> bytes; 0 when unreadable.
int64_t parse_cache_size(const std::string& s) {
  if (s.empty()) return 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (v <= 0) return 0;
  switch (*end) {
    case 'K': return v * 1024;
    case 'M': return v * kMiB;
    case 'G': return v * 1024 * kMiB;
    case '\0': return v;
    default: return 0;
  }
}

struct CacheLevel {
  int level;
  std::string type;
  int64_t bytes;
  std::string shared_cpus;
};

std::vector<CacheLevel> read_caches() {
  std::vector<CacheLevel> out;
  for (int i = 0; i < 16; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level");
    if (level.empty()) break;
    out.push_back({std::atoi(level.c_str()), read_line(dir + "type"),
                   parse_cache_size(read_line(dir + "size")), read_line(dir + "shared_cpu_list")});
  }
  return out;
}

struct Llc {
  int64_t bytes;
  std::string source;
};

// The last-level cache: the highest data/unified level sysfs reports, else a
// 64 MiB assumption (large enough for the cold runs to leave any common LLC).
Llc last_level_cache(const std::vector<CacheLevel>& caches) {
  const CacheLevel* best = nullptr;
  for (const CacheLevel& c : caches)
    if (c.type != "Instruction" && c.bytes > 0 && (best == nullptr || c.level > best->level))
      best = &c;
  if (best == nullptr) return {64 * kMiB, "fallback: sysfs cache sizes unreadable, assumed 64 MiB"};
  return {best->bytes, "sysfs cpu0 cache level " + std::to_string(best->level)};
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string part;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.pop_back();
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(v.begin());
    if (k == "model name" || k == "Model") return v;
    if (k == "CPU part" && part.empty()) part = "CPU part " + v;
  }
  return part.empty() ? "unknown" : part;
}

// ---- deterministic inputs ------------------------------------------------------------------

// SplitMix64 and Box-Muller written out, so the inputs are the same with every
// standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float normal() {
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t s_;
};

uint64_t seed_for(const char* what, int64_t a, int64_t b) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the name, then the sizes
  for (const char* p = what; *p; ++p) h = (h ^ uint64_t(uint8_t(*p))) * 0x100000001b3ull;
  h = (h ^ uint64_t(a)) * 0x100000001b3ull;
  h = (h ^ uint64_t(b)) * 0x100000001b3ull;
  return h;
}

// ---- timing --------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Timing {
  double median_s = 0, min_s = 0, max_s = 0;  // per call
  int samples = 0;
  int64_t calls_per_sample = 0;
  bool warmup_counted = false;  // the one warm-up call was long enough to be a sample
  bool reduced = false;         // fewer than min_samples: the time cap came first
  double wall_s = 0;            // warm-up included
};

// Warm-up, then samples until min_samples and min_time are both reached (or
// the next sample would pass max_time, or max_samples); the median of the
// per-call sample times. Short calls are batched so each sample lasts
// sample_time; a first call longer than long_call is itself a sample (such a
// call is not sensitive to cache or predictor warm-up).
Timing measure(const std::function<void()>& call, const Options& o) {
  Timing t;
  const Clock::time_point t0 = Clock::now();
  call();
  const double first = seconds_since(t0);
  std::vector<double> samples;
  if (first >= o.long_call) {
    samples.push_back(first);
    t.calls_per_sample = 1;
    t.warmup_counted = true;
  } else {
    int64_t calls = 1;
    double elapsed = first;
    while (elapsed < o.warmup_time) {
      call();
      ++calls;
      elapsed = seconds_since(t0);
    }
    const double per_call = std::max(elapsed / double(calls), 1e-9);
    t.calls_per_sample = std::max<int64_t>(1, int64_t(std::ceil(o.sample_time / per_call)));
  }
  const Clock::time_point start = Clock::now();
  const double counted = t.warmup_counted ? first : 0.0;
  double last = t.warmup_counted ? first : 0.0;
  for (;;) {
    const double elapsed = seconds_since(start) + counted;
    const int n = int(samples.size());
    if (n >= o.max_samples) break;
    if (n >= o.min_samples && elapsed >= o.min_time) break;
    if (n >= 1 && elapsed + last > o.max_time) break;
    const Clock::time_point s0 = Clock::now();
    for (int64_t i = 0; i < t.calls_per_sample; ++i) call();
    last = seconds_since(s0);
    samples.push_back(last / double(t.calls_per_sample));
  }
  std::sort(samples.begin(), samples.end());
  const size_t n = samples.size();
  t.samples = int(n);
  t.median_s = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  t.min_s = samples.front();
  t.max_s = samples.back();
  t.reduced = t.samples < o.min_samples;
  t.wall_s = seconds_since(t0);
  return t;
}

void put_timing(Json& j, const Timing& t) {
  j.kv("median_s", t.median_s).kv("min_s", t.min_s).kv("max_s", t.max_s);
  j.kv("samples", t.samples).kv("calls_per_sample", t.calls_per_sample);
  j.kv("warmup_counted", t.warmup_counted).kv("reduced_samples", t.reduced);
  j.kv("wall_s", t.wall_s);
}

// ---- the run ------------------------------------------------------------------------------

class Bench {
 public:
  explicit Bench(const Options& o) : o_(o), start_(Clock::now()) {
    for (int t : o.threads) pools_[t] = std::make_unique<ThreadPool>(t);
    caches_ = read_caches();
    llc_ = last_level_cache(caches_);
  }

  void run() {
    count_steps();
    j_.obj();
    j_.kv("schema", kSchema);
    put_machine();
    put_build();
    put_config();
    // The limits are measured at the start and again at the end: a probe that
    // ran while something else loaded the machine reads low, and a low limit
    // would flatter every percentage. The report uses the higher of the two.
    j_.key("limits").obj();
    run_peaks("start");
    run_reads("start");
    j_.end();
    j_.key("points").arr();
    for (const Shape& s : o_.shapes) run_shape(s);
    j_.end();
    j_.key("limits_end").obj();
    run_peaks("end");
    run_reads("end");
    j_.end();
    j_.kv("total_s", seconds_since(start_));
    j_.end();
  }

  const std::string& json() const { return j_.text(); }

 private:
  Exec exec(Isa isa, int threads) { return Exec{isa, pools_.at(threads).get(), threads}; }

  bool cold_shape(const Shape& s) const {
    return tern::packed2_bytes(s.rows, s.cols) >= o_.cold_min_bytes;
  }

  void count_steps() {
    const int64_t nt = int64_t(o_.threads.size());
    total_steps_ = 2 * int64_t(ternorm::supported_isas().size()) * nt;  // peaks, twice
    total_steps_ += 2 * int64_t(read_sizes().size() + 1) * nt;          // reads, twice
    std::set<std::pair<int64_t, int64_t>> widths;
    for (const Shape& s : o_.shapes)
      for (int64_t n : o_.tokens) {
        const int64_t per = int64_t(point_ids(s, n, widths.insert({s.cols, n}).second).size());
        total_steps_ += per * int64_t(o_.isas.size()) * nt;
      }
  }

  // One measured point: its kind, and for the RMSNorm kinds the gain encoding.
  struct PointId {
    PointId(const char* k, const char* g = nullptr) : kind(k), gain(g) {}
    const char* kind;
    const char* gain;
  };

  static constexpr std::pair<const char*, ternorm::norm::GainScheme> kGains[] = {
      {"f32", ternorm::norm::GainScheme::F32},
      {"f16", ternorm::norm::GainScheme::F16},
      {"int8", ternorm::norm::GainScheme::Int8PerTensor}};

  // What one path measures for shape s at n tokens, in run order: the kernels
  // of the weight shape, then (on the first shape with these cols, the
  // `first_of_width`) those that depend on (cols, n) only, then the cold GEMV.
  std::vector<PointId> point_ids(const Shape& s, int64_t n, bool first_of_width) const {
    std::vector<PointId> ids;
    if (o_.has("gemm")) ids.insert(ids.end(), {"gemm_i8", "gemm_f32"});
    if (o_.has("matmul_f32")) ids.insert(ids.end(), {"matmul_f32", "matmul_f32_t"});
    if (first_of_width) {
      if (o_.has("act_quant")) ids.push_back("act_quant");
      if (o_.has("rmsnorm"))
        for (const auto& g : kGains)
          ids.insert(ids.end(), {{"rmsnorm_f32", g.first}, {"rmsnorm_i8", g.first}});
      if (o_.has("elementwise")) ids.insert(ids.end(), {"softmax", "swiglu", "swiglu_backward"});
    }
    if (o_.has("gemm") && n == 1 && cold_shape(s))
      ids.insert(ids.end(), {"read_cold", "gemv_i8_cold", "gemv_f32_cold"});
    return ids;
  }

  void progress(const std::string& what, const Timing* t, const std::string& note = "") {
    ++step_;
    char buf[64];
    std::snprintf(buf, sizeof buf, "[%4lld/%lld %6.1fs] ", (long long)step_,
                  (long long)total_steps_, seconds_since(start_));
    std::string line = buf + what;
    if (t != nullptr) {
      std::snprintf(buf, sizeof buf, ": %.4g ms, %d sample%s", t->median_s * 1e3, t->samples,
                    t->samples == 1 ? "" : "s");
      line += buf;
    }
    if (!note.empty()) line += " (" + note + ")";
    std::fprintf(stderr, "%s\n", line.c_str());
  }

  // The budget check before each measurement: past it, the point is skipped
  // and reported as such.
  bool over_budget() const { return seconds_since(start_) > o_.budget; }
  std::string budget_reason() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, "the run's time budget of %.3g s (--budget) was used up",
                  o_.budget);
    return buf;
  }

  void put_machine() {
    const ternorm::CpuFeatures& f = ternorm::cpu_features();
    j_.key("machine").obj();
    j_.kv("cpu_model", cpu_model());
    utsname u{};
    if (uname(&u) == 0)
      j_.kv("os", std::string(u.sysname) + " " + u.release).kv("arch", std::string(u.machine));
    j_.kv("hardware_threads", ternorm::hardware_threads());
    j_.key("features").arr();
    const std::pair<const char*, bool> feats[] = {
        {"avx2", f.avx2},         {"fma", f.fma},
        {"f16c", f.f16c},         {"avx512f", f.avx512f},
        {"avx512bw", f.avx512bw}, {"avx512vl", f.avx512vl},
        {"avx512dq", f.avx512dq}, {"avx512vnni", f.avx512vnni},
        {"neon", f.neon}};
    for (const auto& [name, on] : feats)
      if (on) j_.v(name);
    j_.end();
    j_.key("supported_isas").arr();
    for (Isa isa : ternorm::supported_isas()) j_.v(ternorm::isa_name(isa));
    j_.end();
    j_.kv("best_isa", ternorm::isa_name(ternorm::best_isa()));
    j_.key("caches").arr();
    for (const CacheLevel& c : caches_)
      j_.obj()
          .kv("level", c.level)
          .kv("type", c.type)
          .kv("bytes", c.bytes)
          .kv("shared_cpu_list", c.shared_cpus)
          .end();
    j_.end();
    j_.kv("llc_bytes", llc_.bytes).kv("llc_source", llc_.source);
    j_.end();
  }

  void put_build() {
    j_.key("build").obj();
#if defined(__clang__)
    j_.kv("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
    j_.kv("compiler", std::string("gcc ") + __VERSION__);
#else
    j_.kv("compiler", "unknown");
#endif
#ifdef __OPTIMIZE__
    j_.kv("optimized", true);
#else
    j_.kv("optimized", false);
#endif
#ifdef NDEBUG
    j_.kv("ndebug", true);
#else
    j_.kv("ndebug", false);
#endif
    bool sanitized = false;
#if defined(__SANITIZE_ADDRESS__)
    sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    sanitized = true;
#endif
#endif
    j_.kv("sanitized", sanitized);
    j_.kv("cplusplus", int64_t(__cplusplus));
    j_.end();
  }

  void put_config() {
    j_.key("config").obj();
    j_.kv("quick", o_.quick).kv("min_time_s", o_.min_time).kv("min_samples", o_.min_samples);
    j_.kv("max_time_s", o_.max_time).kv("max_samples", o_.max_samples);
    j_.kv("sample_time_s", o_.sample_time).kv("warmup_time_s", o_.warmup_time);
    j_.kv("long_call_s", o_.long_call).kv("budget_s", o_.budget);
    j_.kv("dram_probe_bytes", o_.dram_bytes).kv("cold_min_bytes", o_.cold_min_bytes);
    j_.key("shapes").arr();
    for (const Shape& s : o_.shapes) j_.arr().v(s.rows).v(s.cols).end();
    j_.end();
    j_.key("tokens").arr();
    for (int64_t n : o_.tokens) j_.v(n);
    j_.end();
    j_.key("isas").arr();
    for (Isa isa : o_.isas) j_.v(ternorm::isa_name(isa));
    j_.end();
    j_.key("threads").arr();
    for (int t : o_.threads) j_.v(t);
    j_.end();
    j_.key("kernels").arr();
    for (const char* f : kFamilies)
      if (o_.has(f)) j_.v(f);
    j_.end();
    j_.kv("weights",
          "N(0,1) fp32, absmean-quantised per tensor to ternary; the fp32 baseline "
          "multiplies by the dequantised ternary weights (trit * scale)");
    j_.kv("activations", "N(0,1) fp32; int8 per token (quantize_activations)");
    j_.kv("width_kernels",
          "act_quant, rmsnorm_*, softmax, swiglu* depend on (cols, n) only and are "
          "measured once per pair: n rows of width cols (SwiGLU: f = cols)");
    j_.kv("rmsnorm",
          "x as the activations, w_base 1 + 0.1 N(0,1), gains 1 + 0.05 N(0,1) encoded "
          "as f32, f16 or int8 per tensor (decoded inside every call)");
    j_.kv("softmax",
          "cross_entropy_forward: row softmax of 4 x the activations in place (later "
          "calls re-normalise the previous output; exp_approx costs the same for any input)");
    j_.kv("seeds", "FNV-1a of (role, rows or cols, cols or n) into SplitMix64");
    j_.end();
  }

  // ---- limits ----

  struct PeakProbe {
    uint64_t (*fn)(int64_t, int64_t*);
    const char* instruction;
  };
  // The probes' one dispatch point.
  static PeakProbe peak_probe(Isa isa) {
    switch (isa) {
#if defined(__x86_64__)
      case Isa::Scalar: return {tb::peak_i8_ref, "baseline SSE2 pmaddwd + paddd xmm (6 chains)"};
#elif defined(__aarch64__)
      // The scalar path is compiled for baseline AArch64, whose vector unit is NEON.
      case Isa::Scalar:
        return {tb::peak_i8_neon, "baseline NEON smull + smlal2 + sadalp q (8 chains)"};
#else
      case Isa::Scalar: return {tb::peak_i8_ref, "imul r32 + add (5 chains)"};
#endif
#if defined(__x86_64__)
      case Isa::Avx2: return {tb::peak_i8_avx2, "vpmaddubsw + vpmaddwd + vpaddd ymm (6 chains)"};
      case Isa::Avx512: return {tb::peak_i8_avx512, "vpdpbusd zmm (12 chains)"};
#endif
#if defined(__aarch64__)
      case Isa::Neon: return {tb::peak_i8_neon, "smull + smlal2 + sadalp q (8 chains)"};
#endif
      default: break;
    }
    throw std::logic_error(std::string("no peak probe for ") + ternorm::isa_name(isa));
  }
  using ReadFn = uint64_t (*)(const uint8_t*, size_t);
  static ReadFn read_probe(Isa isa) {
    switch (isa) {
      case Isa::Scalar: return tb::read_sum_ref;
#if defined(__x86_64__)
      case Isa::Avx2: return tb::read_sum_avx2;
      case Isa::Avx512: return tb::read_sum_avx512;
#endif
#if defined(__aarch64__)
      case Isa::Neon: return tb::read_sum_neon;
#endif
      default: break;
    }
    throw std::logic_error(std::string("no read probe for ") + ternorm::isa_name(isa));
  }

  void run_peaks(const char* pass) {
    constexpr int64_t kIters = int64_t(1) << 16;
    j_.key("peak_i8").arr();
    for (Isa isa : ternorm::supported_isas()) {
      const PeakProbe p = peak_probe(isa);
      for (int threads : o_.threads) {
        std::vector<int64_t> sinks(size_t(threads) * 8);  // a cache line apart
        uint64_t macs = 0;
        ThreadPool* pool = pools_.at(threads).get();
        auto call = [&] {
          std::vector<uint64_t> done(static_cast<size_t>(threads));
          pool->run(threads,
                    [&](int t, int) { done[size_t(t)] = p.fn(kIters, &sinks[size_t(t) * 8]); });
          macs = 0;
          for (uint64_t d : done) macs += d;
        };
        const Timing t = measure(call, o_);
        j_.obj().kv("pass", pass).kv("isa", ternorm::isa_name(isa)).kv("threads", threads);
        j_.kv("instruction", p.instruction).kv("macs_per_call", macs);
        put_timing(j_, t);
        j_.end();
        progress(std::string("peak int8 ") + ternorm::isa_name(isa) + " t" +
                     std::to_string(threads) + " (" + pass + ")",
                 &t);
      }
    }
    j_.end();
  }

  // Working-set sizes of the cache-resident read probes: each shape's packed
  // 2-bit weights (the hot GEMV's working set) and 4 MiB (the 4096 x 4096
  // packed weights) for context.
  std::vector<int64_t> read_sizes() const {
    std::set<int64_t> sizes = {4 * kMiB};
    for (const Shape& s : o_.shapes)
      sizes.insert(tern::round_up(tern::packed2_bytes(s.rows, s.cols), 64));
    return {sizes.begin(), sizes.end()};
  }

  void run_reads(const char* pass) {
    const Isa isa = ternorm::best_isa();
    const ReadFn fn = read_probe(isa);
    const int64_t dram = tern::round_up(o_.dram_bytes, 16 * kMiB);
    AlignedBuffer<uint8_t> buf(static_cast<size_t>(dram));  // zero-filled: every page touched
    for (int64_t i = 0; i < dram; i += 4096) buf[size_t(i)] = uint8_t(i >> 12);
    j_.key("read").arr();
    std::vector<std::pair<const char*, int64_t>> probes;
    for (int64_t b : read_sizes()) probes.push_back({"cache", b});
    probes.push_back({"dram", dram});
    for (const auto& [label, bytes] : probes) {
      const bool is_dram = std::string(label) == "dram";
      // DRAM: each call reads the next 16 MiB slice of the buffer, so a sample
      // is as short as a kernel call's and its median, like theirs, is not
      // taken over time slices lost to other processes. Cache: each call
      // repeats its pass inside the parallel region so the number is the
      // hardware's, not the thread pool's wake-up latency.
      const int64_t span = is_dram ? std::min<int64_t>(16 * kMiB, bytes) : bytes;
      const int64_t slices = bytes / span;
      const int64_t reps = is_dram ? 1 : std::max<int64_t>(1, 64 * kMiB / bytes);
      for (int threads : o_.threads) {
        ThreadPool* pool = pools_.at(threads).get();
        std::vector<uint64_t> sinks(size_t(threads) * 8);
        int64_t next = 0;
        auto call = [&] {
          const uint8_t* base = buf.data() + next * span;
          next = (next + 1) % slices;
          pool->run(threads, [&](int t, int nt) {
            const int64_t lines = span / 64;
            const int64_t b0 = lines * t / nt * 64, b1 = lines * (t + 1) / nt * 64;
            uint64_t s = 0;
            for (int64_t r = 0; r < reps; ++r) s += fn(base + b0, size_t(b1 - b0));
            sinks[size_t(t) * 8] += s;
          });
        };
        const Timing t = measure(call, o_);
        j_.obj().kv("pass", pass).kv("label", label).kv("bytes", bytes).kv("threads", threads);
        j_.kv("isa", ternorm::isa_name(isa)).kv("bytes_per_call", span * reps);
        put_timing(j_, t);
        j_.end();
        progress(std::string("read ") + label + " " + std::to_string(bytes / 1024) + " KiB t" +
                     std::to_string(threads) + " (" + pass + ")",
                 &t);
      }
    }
    j_.end();
  }

  // ---- kernels ----

  struct Weights {
    int64_t rows, cols;
    AlignedBuffer<uint8_t> packed;
    AlignedBuffer<float> scales;
    AlignedBuffer<float> dequant;  // rows x cols fp32: trit * scale
    tern::PackedTernary view() const { return {packed.data(), scales.data(), rows, cols}; }
  };

  static Weights make_weights(const Shape& s) {
    Weights w{s.rows, s.cols, AlignedBuffer<uint8_t>(size_t(tern::packed2_bytes(s.rows, s.cols))),
              AlignedBuffer<float>(size_t(s.rows)), AlignedBuffer<float>(size_t(s.rows * s.cols))};
    Rng rng(seed_for("weights", s.rows, s.cols));
    for (int64_t i = 0; i < s.rows * s.cols; ++i) w.dequant[size_t(i)] = rng.normal();
    AlignedBuffer<int8_t> trits(size_t(s.rows * s.cols));
    tern::absmean_quantize(w.dequant.data(), s.rows, s.cols, false, trits.data(), w.scales.data());
    tern::pack2(trits.data(), s.rows, s.cols, w.packed.data());
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t c = 0; c < s.cols; ++c)
        w.dequant[size_t(r * s.cols + c)] =
            float(trits[size_t(r * s.cols + c)]) * w.scales[size_t(r)];
    return w;
  }

  struct Acts {
    int64_t n, cols;
    AlignedBuffer<float> x;   // n x cols
    AlignedBuffer<int8_t> q;  // n x padded_cols(cols)
    AlignedBuffer<float> xs;  // n
  };

  static Acts make_acts(int64_t cols, int64_t n) {
    Acts a{n, cols, AlignedBuffer<float>(size_t(n * cols)),
           AlignedBuffer<int8_t>(size_t(n * tern::padded_cols(cols))),
           AlignedBuffer<float>(size_t(n))};
    Rng rng(seed_for("activations", cols, n));
    for (int64_t i = 0; i < n * cols; ++i) a.x[size_t(i)] = rng.normal();
    tern::quantize_activations(a.x.data(), n, cols, a.q.data(), a.xs.data(), Exec{});
    return a;
  }

  static double rel_diff(const float* a, const float* ref, int64_t count) {
    double max_diff = 0, max_ref = 0;
    for (int64_t i = 0; i < count; ++i) {
      max_diff = std::max(max_diff, double(std::fabs(a[i] - ref[i])));
      max_ref = std::max(max_ref, double(std::fabs(ref[i])));
    }
    if (!std::isfinite(max_diff)) return INFINITY;
    return max_ref > 0 ? max_diff / max_ref : max_diff;
  }

  void point_head(const PointId& id, const Shape& s, int64_t n, Isa isa, int threads) {
    j_.obj().kv("kind", id.kind).kv("rows", s.rows).kv("cols", s.cols).kv("n", n);
    if (id.gain != nullptr) j_.kv("gain", id.gain);
    j_.kv("isa", ternorm::isa_name(isa)).kv("threads", threads);
  }

  std::string label(const PointId& id, const Shape& s, int64_t n, Isa isa, int threads) const {
    return std::string(id.kind) + (id.gain ? std::string("[") + id.gain + "]" : "") + " " +
           std::to_string(s.rows) + "x" + std::to_string(s.cols) + " n=" + std::to_string(n) + " " +
           ternorm::isa_name(isa) + " t" + std::to_string(threads);
  }

  // Runs one measurement as a JSON point; `body` measures and writes the
  // point's fields. Over budget or on an exception the point says why.
  void point(const PointId& id, const Shape& s, int64_t n, Isa isa, int threads,
             const std::function<Timing()>& body,
             const std::function<void(const Timing&)>& extra = nullptr) {
    point_head(id, s, n, isa, threads);
    const std::string what = label(id, s, n, isa, threads);
    if (over_budget()) {
      j_.kv("status", "skipped").kv("reason", budget_reason());
      j_.end();
      progress(what, nullptr, "skipped: over budget");
      return;
    }
    try {
      const Timing t = body();
      j_.kv("status", "ok");
      put_timing(j_, t);
      if (extra) extra(t);
      j_.end();
      progress(what, &t, t.reduced ? "reduced samples: time cap" : "");
    } catch (const std::exception& e) {
      j_.kv("status", "error").kv("reason", e.what());
      j_.end();
      progress(what, nullptr, std::string("error: ") + e.what());
    }
  }

  void run_shape(const Shape& s) {
    if (over_budget()) {
      // Still one record per point, so nothing is skipped silently.
      for (int64_t n : o_.tokens) skip_all(s, n);
      return;
    }
    std::fprintf(stderr, "-- shape %lldx%lld: preparing weights\n", (long long)s.rows,
                 (long long)s.cols);
    const Weights w = make_weights(s);
    for (int64_t n : o_.tokens) run_tokens(s, w, n);
  }

  void skip_all(const Shape& s, int64_t n) {
    for (Isa isa : o_.isas)
      for (int threads : o_.threads)
        for (const PointId& id :
             point_ids(s, n, width_done_.insert({s.cols, n, isa, threads}).second)) {
          point_head(id, s, n, isa, threads);
          j_.kv("status", "skipped").kv("reason", budget_reason()).end();
          progress(label(id, s, n, isa, threads), nullptr, "skipped: over budget");
        }
  }

  // The output of the first configuration measured for one kind: every later
  // path and thread count must reproduce it.
  struct Reference {
    std::vector<unsigned char> bytes;
    std::string of;
  };

  void check_same(Reference& ref, const std::string& cfg, const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    if (ref.of.empty()) {
      ref.bytes.assign(p, p + bytes);
      ref.of = cfg;
    }
    const bool same = ref.bytes.size() == bytes && std::memcmp(ref.bytes.data(), p, bytes) == 0;
    j_.key("check").obj().kv("kind", "bit-identical to the first path measured");
    j_.kv("against", ref.of).kv("ok", same).end();
  }

  // Float results whose summation order differs between paths.
  void check_close(Reference& ref, const std::string& cfg, const float* data, int64_t count) {
    if (ref.of.empty()) {
      const auto* p = reinterpret_cast<const unsigned char*>(data);
      ref.bytes.assign(p, p + count * int64_t(sizeof(float)));
      ref.of = cfg;
    }
    const double d = rel_diff(data, reinterpret_cast<const float*>(ref.bytes.data()), count);
    j_.key("check").obj().kv("kind", "max |y - ref| / max |ref| against the first path");
    j_.kv("against", ref.of).kv("rel_diff", d).kv("tol", 1e-4).kv("ok", d <= 1e-4).end();
  }

  // Inputs and outputs of the kernels that depend on the width (cols) and n only.
  struct WidthData {
    int64_t n, cols, padded;
    AlignedBuffer<float> w_base, y, yscales, logits, probe, gu, ds, s, dgu;
    AlignedBuffer<int8_t> q;
    std::vector<int32_t> targets;
    std::vector<double> nll;
    // Per gain encoding (kGains order): payload and params.
    std::vector<unsigned char> payload[3];
    std::vector<float> params[3];

    ternorm::norm::RmsNormArgs rms_args(const float* x, int gain) const {
      ternorm::norm::RmsNormArgs r;
      r.x = x;
      r.n = n;
      r.d = cols;
      r.w_base = w_base.data();
      r.gain = ternorm::norm::GainView{kGains[gain].second,
                                       cols,
                                       payload[gain].data(),
                                       payload[gain].size(),
                                       params[gain].empty() ? nullptr : params[gain].data(),
                                       params[gain].size()};
      return r;
    }
  };

  static std::unique_ptr<WidthData> make_width_data(const Acts& a) {
    const int64_t n = a.n, cols = a.cols, padded = tern::padded_cols(cols);
    const size_t nc = size_t(n * cols);
    auto wd = std::unique_ptr<WidthData>(new WidthData{n,
                                                       cols,
                                                       padded,
                                                       AlignedBuffer<float>(size_t(cols)),
                                                       AlignedBuffer<float>(nc),
                                                       AlignedBuffer<float>(size_t(n)),
                                                       AlignedBuffer<float>(nc),
                                                       AlignedBuffer<float>(nc),
                                                       AlignedBuffer<float>(2 * nc),
                                                       AlignedBuffer<float>(nc),
                                                       AlignedBuffer<float>(nc),
                                                       AlignedBuffer<float>(2 * nc),
                                                       AlignedBuffer<int8_t>(size_t(n * padded)),
                                                       std::vector<int32_t>(size_t(n), 0),
                                                       std::vector<double>(size_t(n)),
                                                       {},
                                                       {}});
    Rng rng(seed_for("width", cols, n));
    std::vector<float> gains(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) {
      wd->w_base[size_t(c)] = 1.0f + 0.1f * rng.normal();
      gains[size_t(c)] = 1.0f + 0.05f * rng.normal();
    }
    for (size_t i = 0; i < nc; ++i) wd->logits[i] = 4.0f * a.x[i];
    for (size_t i = 0; i < 2 * nc; ++i) wd->gu[i] = 2.0f * rng.normal();
    for (size_t i = 0; i < nc; ++i) wd->ds[i] = rng.normal();
    // The gain encodings of the fused RMSNorm (norm/gain_codec.h layouts).
    wd->payload[0].resize(size_t(cols) * 4);
    std::memcpy(wd->payload[0].data(), gains.data(), size_t(cols) * 4);
    wd->payload[1].resize(size_t(cols) * 2);
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t h = ternorm::norm::f32_to_f16(gains[size_t(c)]);
      std::memcpy(wd->payload[1].data() + 2 * c, &h, 2);
    }
    float amax = 0.0f;
    for (float g : gains) amax = std::max(amax, std::fabs(g));
    const float scale = amax / 127.0f;
    wd->params[2] = {scale};
    wd->payload[2].resize(size_t(cols));
    for (int64_t c = 0; c < cols; ++c) {
      const float r = std::nearbyint(gains[size_t(c)] / scale);
      wd->payload[2][size_t(c)] =
          static_cast<unsigned char>(int8_t(std::max(-127.0f, std::min(127.0f, r))));
    }
    return wd;
  }

  void run_tokens(const Shape& s, const Weights& w, int64_t n) {
    if (over_budget()) return skip_all(s, n);
    const Acts a = make_acts(s.cols, n);
    const size_t ysize = size_t(n * s.rows);
    AlignedBuffer<float> y8(ysize), y32(ysize);
    // Outputs of the first configuration measured (scalar, one thread, when
    // included): every other path must match it.
    std::vector<float> ref8, ref32;
    std::string ref8_of, ref32_of;
    const int64_t padded = tern::padded_cols(s.cols);
    AlignedBuffer<int8_t> q2(size_t(n * padded));
    AlignedBuffer<float> xs2(static_cast<size_t>(n));
    // matmul_f32_t's upstream gradient (n x rows) and output (n x cols).
    AlignedBuffer<float> dy(o_.has("matmul_f32") ? ysize : 0),
        dx(o_.has("matmul_f32") ? size_t(n * s.cols) : 0);
    {
      Rng rng(seed_for("gradients", s.rows, n));
      for (size_t i = 0; i < dy.size(); ++i) dy[i] = rng.normal();
    }
    std::map<std::string, Reference> refs;  // by kind and gain
    std::unique_ptr<WidthData> wd;          // made when a width kernel first runs

    for (Isa isa : o_.isas)
      for (int threads : o_.threads) {
        const Exec ex = exec(isa, threads);
        const std::string cfg =
            std::string(ternorm::isa_name(isa)) + "/t" + std::to_string(threads);
        const tern::PackedTernary wv = w.view();

        if (o_.has("gemm")) {
          point(
              "gemm_i8", s, n, isa, threads,
              [&] {
                std::fill(y8.data(), y8.data() + ysize, NAN);
                return measure(
                    [&] { tern::gemm_i8(wv, a.q.data(), a.xs.data(), n, y8.data(), ex); }, o_);
              },
              [&](const Timing&) {
                j_.kv("weight_bytes", tern::packed2_bytes(s.rows, s.cols));
                if (ref8.empty()) {
                  ref8.assign(y8.data(), y8.data() + ysize);
                  ref8_of = cfg;
                }
                const bool same = std::memcmp(ref8.data(), y8.data(), ysize * sizeof(float)) == 0;
                j_.key("check").obj().kv("kind", "bit-identical to the first path measured");
                j_.kv("against", ref8_of).kv("ok", same).end();
              });

          point(
              "gemm_f32", s, n, isa, threads,
              [&] {
                std::fill(y32.data(), y32.data() + ysize, NAN);
                ternorm::gemm::GemmArgs g;
                g.trans_b = true;
                g.m = n;
                g.n = s.rows;
                g.k = s.cols;
                g.a = a.x.data();
                g.lda = s.cols;
                g.b = w.dequant.data();
                g.ldb = s.cols;
                g.c = y32.data();
                g.ldc = s.rows;
                return measure([&] { ternorm::gemm::gemm_f32(g, ex); }, o_);
              },
              [&](const Timing&) {
                j_.kv("weight_bytes", s.rows * s.cols * int64_t(sizeof(float)));
                if (ref32.empty()) {
                  ref32.assign(y32.data(), y32.data() + ysize);
                  ref32_of = cfg;
                }
                // Summation order differs between paths: a relative tolerance.
                const double d = rel_diff(y32.data(), ref32.data(), int64_t(ysize));
                j_.key("check").obj().kv("kind",
                                         "max |y - ref| / max |ref| against the first path");
                j_.kv("against", ref32_of).kv("rel_diff", d).kv("tol", 1e-4).kv("ok", d <= 1e-4);
                j_.end();
                // The ternary kernel computes the same product up to int8
                // activation rounding: a loose plausibility check.
                if (!ref8.empty()) {
                  const double e = rel_diff(ref8.data(), y32.data(), int64_t(ysize));
                  j_.key("check_i8_vs_f32")
                      .obj()
                      .kv("rel_diff", e)
                      .kv("tol", 0.05)
                      .kv("ok", e <= 0.05)
                      .end();
                }
              });
        }

        if (o_.has("matmul_f32")) {
          // The training products: y = x W^T and dx = dy W on the packed
          // ternary weights (decoded into the fp32 GEMM's panels).
          point(
              "matmul_f32", s, n, isa, threads,
              [&] {
                std::fill(y32.data(), y32.data() + ysize, NAN);
                return measure([&] { tern::matmul_f32(wv, a.x.data(), n, y32.data(), ex); }, o_);
              },
              [&](const Timing&) {
                j_.kv("weight_bytes", tern::packed2_bytes(s.rows, s.cols));
                check_close(refs["matmul_f32"], cfg, y32.data(), int64_t(ysize));
              });
          point(
              "matmul_f32_t", s, n, isa, threads,
              [&] {
                std::fill(dx.data(), dx.data() + dx.size(), NAN);
                return measure([&] { tern::matmul_f32_t(wv, dy.data(), n, dx.data(), ex); }, o_);
              },
              [&](const Timing&) {
                j_.kv("weight_bytes", tern::packed2_bytes(s.rows, s.cols));
                check_close(refs["matmul_f32_t"], cfg, dx.data(), int64_t(dx.size()));
              });
        }

        if (width_done_.insert({s.cols, n, isa, threads}).second) {
          if (o_.has("act_quant"))
            point(
                "act_quant", s, n, isa, threads,
                [&] {
                  return measure(
                      [&] {
                        tern::quantize_activations(a.x.data(), n, s.cols, q2.data(), xs2.data(),
                                                   ex);
                      },
                      o_);
                },
                [&](const Timing&) {
                  const bool same =
                      std::memcmp(q2.data(), a.q.data(), size_t(n * padded)) == 0 &&
                      std::memcmp(xs2.data(), a.xs.data(), size_t(n) * sizeof(float)) == 0;
                  j_.kv("bytes_in", n * s.cols * int64_t(sizeof(float)));
                  j_.key("check").obj().kv("kind", "bit-identical to the scalar path");
                  j_.kv("against", "scalar/t1").kv("ok", same).end();
                });
          if ((o_.has("rmsnorm") || o_.has("elementwise")) && !wd) wd = make_width_data(a);
          if (o_.has("rmsnorm")) run_rmsnorm(s, n, isa, threads, cfg, a, *wd, refs);
          if (o_.has("elementwise")) run_elementwise(s, n, isa, threads, cfg, *wd, refs);
        }

        if (o_.has("gemm") && n == 1 && cold_shape(s)) run_cold(s, w, a, isa, threads, ref8);
      }
  }

  void run_rmsnorm(const Shape& s, int64_t n, Isa isa, int threads, const std::string& cfg,
                   const Acts& a, WidthData& wd, std::map<std::string, Reference>& refs) {
    const Exec ex = exec(isa, threads);
    const int64_t bytes_in = n * s.cols * int64_t(sizeof(float));
    for (int g = 0; g < 3; ++g) {
      const ternorm::norm::RmsNormArgs args = wd.rms_args(a.x.data(), g);
      const char* gain = kGains[g].first;
      point(
          {"rmsnorm_f32", gain}, s, n, isa, threads,
          [&] {
            std::fill(wd.y.data(), wd.y.data() + wd.y.size(), NAN);
            return measure([&] { ternorm::norm::rmsnorm_gain_f32(args, wd.y.data(), ex); }, o_);
          },
          [&](const Timing&) {
            j_.kv("bytes_in", bytes_in);
            check_same(refs[std::string("rmsnorm_f32/") + gain], cfg, wd.y.data(),
                       wd.y.size() * sizeof(float));
          });
      point(
          {"rmsnorm_i8", gain}, s, n, isa, threads,
          [&] {
            std::memset(wd.q.data(), 0x55, wd.q.size());
            return measure(
                [&] { ternorm::norm::rmsnorm_gain_i8(args, wd.q.data(), wd.yscales.data(), ex); },
                o_);
          },
          [&](const Timing&) {
            j_.kv("bytes_in", bytes_in);
            std::vector<unsigned char> out(wd.q.size() + wd.yscales.size() * sizeof(float));
            std::memcpy(out.data(), wd.q.data(), wd.q.size());
            std::memcpy(out.data() + wd.q.size(), wd.yscales.data(),
                        wd.yscales.size() * sizeof(float));
            check_same(refs[std::string("rmsnorm_i8/") + gain], cfg, out.data(), out.size());
          });
    }
  }

  void run_elementwise(const Shape& s, int64_t n, Isa isa, int threads, const std::string& cfg,
                       WidthData& wd, std::map<std::string, Reference>& refs) {
    const Exec ex = exec(isa, threads);
    const int64_t cols = s.cols, count = n * cols;
    point(
        "softmax", s, n, isa, threads,
        [&] {
          // Checked on a fresh copy: the timed calls work in place.
          std::memcpy(wd.probe.data(), wd.logits.data(), size_t(count) * sizeof(float));
          ternorm::model::cross_entropy_forward(wd.probe.data(), wd.targets.data(), n, cols,
                                                wd.nll.data(), ex);
          AlignedBuffer<float> work(static_cast<size_t>(count));
          std::memcpy(work.data(), wd.logits.data(), size_t(count) * sizeof(float));
          return measure(
              [&] {
                ternorm::model::cross_entropy_forward(work.data(), wd.targets.data(), n, cols,
                                                      wd.nll.data(), ex);
              },
              o_);
        },
        [&](const Timing&) {
          j_.kv("bytes_in", count * int64_t(sizeof(float)));
          check_same(refs["softmax"], cfg, wd.probe.data(), size_t(count) * sizeof(float));
        });
    point(
        "swiglu", s, n, isa, threads,
        [&] {
          std::fill(wd.s.data(), wd.s.data() + count, NAN);
          return measure(
              [&] { ternorm::model::swiglu_forward(wd.gu.data(), n, cols, wd.s.data(), ex); }, o_);
        },
        [&](const Timing&) {
          j_.kv("bytes_in", 2 * count * int64_t(sizeof(float)));
          check_same(refs["swiglu"], cfg, wd.s.data(), size_t(count) * sizeof(float));
        });
    point(
        "swiglu_backward", s, n, isa, threads,
        [&] {
          std::fill(wd.dgu.data(), wd.dgu.data() + 2 * count, NAN);
          return measure(
              [&] {
                ternorm::model::swiglu_backward(wd.gu.data(), wd.ds.data(), n, cols, wd.dgu.data(),
                                                ex);
              },
              o_);
        },
        [&](const Timing&) {
          j_.kv("bytes_in", 3 * count * int64_t(sizeof(float)));
          check_same(refs["swiglu_backward"], cfg, wd.dgu.data(),
                     size_t(2 * count) * sizeof(float));
        });
  }

  // Cold-cache GEMV: each call reads the next of `copies` identical weight
  // matrices, together at least four times the LLC (so even a cache that is
  // not strictly LRU keeps little of them), so the weights come from DRAM as
  // they do in a model whose layers do not fit the cache. Right before it, a
  // streaming read of the same copies on the same threads gives the bound
  // this GEMV is judged against, measured under the same conditions.
  static int64_t cold_copies(int64_t bytes, int64_t llc) {
    return std::max<int64_t>(2, (4 * llc + bytes - 1) / bytes);
  }

  void run_cold(const Shape& s, const Weights& w, const Acts& a, Isa isa, int threads,
                const std::vector<float>& ref8) {
    const Exec ex = exec(isa, threads);
    AlignedBuffer<float> y(static_cast<size_t>(s.rows));
    {
      const int64_t packed = tern::packed2_bytes(s.rows, s.cols);
      const int64_t bytes = tern::round_up(packed, 64);
      const int64_t copies = cold_copies(bytes, llc_.bytes);
      std::unique_ptr<AlignedBuffer<uint8_t>> store;
      auto cold_fields = [&] {
        j_.kv("copies", copies).kv("rotation_bytes", copies * bytes).kv("llc_bytes", llc_.bytes);
      };
      point(
          "read_cold", s, 1, isa, threads,
          [&] {
            store = std::make_unique<AlignedBuffer<uint8_t>>(size_t(copies * bytes));
            for (int64_t c = 0; c < copies; ++c)
              std::memcpy(store->data() + c * bytes, w.packed.data(), size_t(packed));
            const ReadFn fn = read_probe(ternorm::best_isa());
            ThreadPool* pool = pools_.at(threads).get();
            std::vector<uint64_t> sinks(size_t(threads) * 8);
            int64_t next = 0;
            // One copy per call, in the GEMV's order and split over threads
            // as the GEMV splits its rows.
            return measure(
                [&] {
                  const uint8_t* copy = store->data() + next * bytes;
                  next = (next + 1) % copies;
                  pool->run(threads, [&](int t, int nt) {
                    const int64_t lines = bytes / 64;
                    const int64_t b0 = lines * t / nt * 64, b1 = lines * (t + 1) / nt * 64;
                    sinks[size_t(t) * 8] += fn(copy + b0, size_t(b1 - b0));
                  });
                },
                o_);
          },
          [&](const Timing&) {
            j_.kv("probe_isa", ternorm::isa_name(ternorm::best_isa()));
            j_.kv("bytes_per_call", bytes);
            cold_fields();
          });
      point(
          "gemv_i8_cold", s, 1, isa, threads,
          [&] {
            if (!store) throw std::runtime_error("the weight copies could not be prepared");
            int64_t next = 0;
            return measure(
                [&] {
                  const tern::PackedTernary v{store->data() + next * bytes, w.scales.data(), s.rows,
                                              s.cols};
                  next = (next + 1) % copies;
                  tern::gemm_i8(v, a.q.data(), a.xs.data(), 1, y.data(), ex);
                },
                o_);
          },
          [&](const Timing&) {
            j_.kv("weight_bytes", packed);
            cold_fields();
            const bool same = !ref8.empty() && std::memcmp(ref8.data(), y.data(),
                                                           size_t(s.rows) * sizeof(float)) == 0;
            j_.key("check").obj().kv("kind", "bit-identical to the hot GEMV of the first path");
            j_.kv("ok", same).end();
          });
    }
    {
      const int64_t count = s.rows * s.cols;
      const int64_t bytes = tern::round_up(count * int64_t(sizeof(float)), 64);
      const int64_t copies = cold_copies(bytes, llc_.bytes);
      const int64_t stride = bytes / int64_t(sizeof(float));
      std::unique_ptr<AlignedBuffer<float>> store;
      point(
          "gemv_f32_cold", s, 1, isa, threads,
          [&] {
            store = std::make_unique<AlignedBuffer<float>>(size_t(copies * stride));
            for (int64_t c = 0; c < copies; ++c)
              std::memcpy(store->data() + c * stride, w.dequant.data(),
                          size_t(count) * sizeof(float));
            int64_t next = 0;
            ternorm::gemm::GemmArgs g;
            g.trans_b = true;
            g.m = 1;
            g.n = s.rows;
            g.k = s.cols;
            g.a = a.x.data();
            g.lda = s.cols;
            g.ldb = s.cols;
            g.c = y.data();
            g.ldc = s.rows;
            return measure(
                [&] {
                  g.b = store->data() + next * stride;
                  next = (next + 1) % copies;
                  ternorm::gemm::gemm_f32(g, ex);
                },
                o_);
          },
          [&](const Timing&) {
            j_.kv("weight_bytes", count * int64_t(sizeof(float)));
            j_.kv("copies", copies)
                .kv("rotation_bytes", copies * bytes)
                .kv("llc_bytes", llc_.bytes);
          });
    }
  }

  const Options& o_;
  const Clock::time_point start_;
  std::map<int, std::unique_ptr<ThreadPool>> pools_;
  std::vector<CacheLevel> caches_;
  Llc llc_;
  Json j_;
  std::set<std::tuple<int64_t, int64_t, Isa, int>> width_done_;  // (cols, n, path, threads)
  int64_t step_ = 0, total_steps_ = 0;
};

// Atomic: temp file + rename, so a reader never sees half a document.
void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("write failed: " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot rename " + tmp + " to " + path);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_options(argc, argv);
    Bench b(o);
    b.run();
    if (o.out.empty()) {
      std::fwrite(b.json().data(), 1, b.json().size(), stdout);
      std::fputc('\n', stdout);
      std::fflush(stdout);
    } else {
      write_file(o.out, b.json() + "\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ternorm_bench_kernels: %s\n", e.what());
    return 2;
  }
}
