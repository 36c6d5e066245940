// ternorm_peer: ternorm's side of bench:peers, the counterpart of llama_peer's
// bench commands, on the same GGUF and the same token files. One JSON line on
// stdout per call; errors are one line on stderr ("ternorm_peer: ...") and exit 1.
//
//   ternorm_peer bench-score <model.gguf> <tokens-file> [--stride S] [--threads T] [--reps R]
//   ternorm_peer decode <model.gguf> --prompt-tokens FILE --n N [--threads T]
//   ternorm_peer batched <model.gguf> --prompt-tokens FILE --steps S --k K,... [--threads T]
//                [--reps R]
//
// bench-score: evaluate() (the bet's workload: every window position's logits
// and NLL) over the tokens, after one untimed run, R times (score_s median),
// windows as llama_peer (the model's context, default stride context / 2);
// and prompt processing: the first window's W tokens through decode_forward
// into an empty cache (one logits row), R times after a warm-up.
// decode: the prompt in one call, then N - 1 greedy one-token steps (argmax,
// the first token from the prompt's logits), each step timed.
// batched: K sequences (each with its own adapter, gains 1 +- small) advance
// `steps` greedy tokens either in one decode_forward call per step for all K
// ("batched") or in K one-sequence calls ("separate"), after the prompt; every
// run starts from the same prompt, so both modes decode the same positions.
// Each rep runs one stream (K = 1), batched and separate back to back, after
// one untimed warm-up of all three; total tokens/s medians, the paired ratio
// batched / separate and the paired vs_one_stream = batched / one stream (a
// one-stream run next to each batched run, so load drifts cancel).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "cpu/thread_pool.h"
#include "io/gguf.h"
#include "model/decode.h"
#include "model/eval.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "model/sampler.h"

using namespace ternorm;
using namespace ternorm::model;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int64_t parse_int(const std::string& s, const std::string& what, int64_t lo, int64_t hi) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    throw std::invalid_argument(what + " must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got '" + s + "'");
  return v;
}

std::vector<int32_t> read_tokens(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument("cannot read the token file " + path);
  std::vector<int32_t> out;
  std::string w;
  while (f >> w) out.push_back(int32_t(parse_int(w, "a token id in " + path, 0, INT32_MAX)));
  return out;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[40];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string arr(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + num(v[i]);
  return s + "]";
}

struct Options {
  std::string cmd, model, tokens, prompt;
  int64_t stride = 0, threads = 1, reps = 3, n = 0, steps = 0;
  std::vector<int64_t> ks;
};

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      pos.push_back(a);
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + a);
    const std::string v = argv[++i];
    if (a == "--stride")
      o.stride = parse_int(v, a, 1, 1 << 20);
    else if (a == "--threads")
      o.threads = parse_int(v, a, 1, 1024);
    else if (a == "--reps")
      o.reps = parse_int(v, a, 1, 1000);
    else if (a == "--n")
      o.n = parse_int(v, a, 1, 1 << 20);
    else if (a == "--steps")
      o.steps = parse_int(v, a, 1, 1 << 20);
    else if (a == "--prompt-tokens")
      o.prompt = v;
    else if (a == "--k") {
      std::stringstream ss(v);
      std::string k;
      while (std::getline(ss, k, ',')) o.ks.push_back(parse_int(k, "--k", 1, 4096));
    } else
      throw std::invalid_argument("unknown option " + a);
  }
  if (pos.empty())
    throw std::invalid_argument("usage: ternorm_peer bench-score|decode|batched ...");
  o.cmd = pos[0];
  if (o.cmd != "bench-score" && o.cmd != "decode" && o.cmd != "batched")
    throw std::invalid_argument("unknown command '" + o.cmd + "' (bench-score, decode, batched)");
  const size_t want = o.cmd == "bench-score" ? 3 : 2;
  if (pos.size() != want)
    throw std::invalid_argument(o.cmd + ": expected " +
                                (want == 3 ? "<model.gguf> <tokens-file>" : "<model.gguf>"));
  o.model = pos[1];
  if (want == 3) o.tokens = pos[2];
  if (o.cmd != "bench-score" && o.prompt.empty())
    throw std::invalid_argument(o.cmd + ": --prompt-tokens FILE is required");
  if (o.cmd == "decode" && o.n < 1) throw std::invalid_argument("decode: --n N is required");
  if (o.cmd == "batched" && (o.steps < 1 || o.ks.empty()))
    throw std::invalid_argument("batched: --steps S and --k K,... are required");
  return o;
}

// Prompt processing: W tokens into an empty cache, one logits row out.
double prompt_s(const Model& m, DecodeState& st, const std::vector<int32_t>& prompt,
                std::vector<float>& logits, const Exec& ex) {
  st.reset_all();
  DecodeEntry e;
  e.slot = 0, e.tokens = prompt.data(), e.n = int64_t(prompt.size());
  const double t0 = now_s();
  decode_forward(m, Precision::Ternary, st, &e, 1, logits.data(), ex);
  return now_s() - t0;
}

std::string bench_score(const Options& o, const Model& m, const Exec& ex) {
  const ModelConfig& c = m.config();
  const std::vector<int32_t> tokens = read_tokens(o.tokens);
  EvalOptions eo;
  eo.precision = Precision::Ternary;
  eo.stride = o.stride;
  const int64_t n_bytes = 1;  // bits per byte is not reported
  EvalResult r = evaluate(m, nullptr, 0, tokens.data(), int64_t(tokens.size()), n_bytes, eo, ex);
  std::vector<double> score;
  for (int64_t rep = 0; rep < o.reps; ++rep) {
    const double t0 = now_s();
    const EvalResult again =
        evaluate(m, nullptr, 0, tokens.data(), int64_t(tokens.size()), n_bytes, eo, ex);
    score.push_back(now_s() - t0);
    if (again.total_nll != r.total_nll)
      throw std::runtime_error("evaluate gave another total NLL on a repeat");
  }
  const std::vector<int32_t> window(tokens.begin(), tokens.begin() + r.window);
  DecodeState st(c, 1, r.window);
  std::vector<float> logits(size_t(c.vocab));
  std::vector<double> pp;
  for (int64_t rep = 0; rep <= o.reps; ++rep) {
    const double s = prompt_s(m, st, window, logits, ex);
    if (rep > 0) pp.push_back(s);  // rep 0 is the warm-up
  }
  const double sm = median(score), pm = median(pp);
  const int64_t scored = int64_t(tokens.size()) - 1;
  return "\"n_tokens\":" + std::to_string(tokens.size()) +
         ",\"n_windows\":" + std::to_string(r.n_windows) +
         ",\"window\":" + std::to_string(r.window) + ",\"stride\":" + std::to_string(r.stride) +
         ",\"mean_nll\":" + num(r.mean_nll) + ",\"ppl\":" + num(r.perplexity) +
         ",\"score_s\":" + num(sm) + ",\"score_tokens_per_s\":" + num(double(scored) / sm) +
         ",\"score_s_reps\":" + arr(score) + ",\"pp_tokens\":" + std::to_string(r.window) +
         ",\"pp_s\":" + num(pm) + ",\"pp_tokens_per_s\":" + num(double(r.window) / pm) +
         ",\"pp_s_reps\":" + arr(pp);
}

std::string decode(const Options& o, const Model& m, const Exec& ex) {
  const ModelConfig& c = m.config();
  const std::vector<int32_t> prompt = read_tokens(o.prompt);
  if (prompt.empty()) throw std::invalid_argument("decode: the prompt is empty");
  if (int64_t(prompt.size()) + o.n > c.context)
    throw std::invalid_argument("decode: prompt + n exceeds the context " +
                                std::to_string(c.context));
  DecodeState st(c, 1, int64_t(prompt.size()));
  std::vector<float> logits(size_t(c.vocab));
  const double ps = prompt_s(m, st, prompt, logits, ex);
  int32_t next = argmax_token(logits.data(), c.vocab);
  std::vector<double> step;
  std::string ids = std::to_string(next);
  for (int64_t k = 1; k < o.n; ++k) {
    DecodeEntry e;
    e.slot = 0, e.tokens = &next, e.n = 1;
    const double t0 = now_s();
    decode_forward(m, Precision::Ternary, st, &e, 1, logits.data(), ex);
    step.push_back(now_s() - t0);
    next = argmax_token(logits.data(), c.vocab);
    ids += "," + std::to_string(next);
  }
  double total = 0;
  for (double v : step) total += v;
  return "\"n_prompt\":" + std::to_string(prompt.size()) + ",\"n\":" + std::to_string(o.n) +
         ",\"prompt_s\":" + num(ps) +
         ",\"prompt_tokens_per_s\":" + num(double(prompt.size()) / ps) +
         ",\"decode_steps\":" + std::to_string(step.size()) + ",\"decode_s\":" + num(total) +
         ",\"decode_step_median_s\":" + num(median(step)) +
         ",\"decode_tokens_per_s\":" + num(step.empty() ? NAN : double(step.size()) / total) +
         ",\"tokens\":[" + ids + "]";
}

std::string batched(const Options& o, const Model& m, const Exec& ex) {
  const ModelConfig& c = m.config();
  const std::vector<int32_t> prompt = read_tokens(o.prompt);
  if (prompt.empty()) throw std::invalid_argument("batched: the prompt is empty");
  if (int64_t(prompt.size()) + o.steps > c.context)
    throw std::invalid_argument("batched: prompt + steps exceeds the context " +
                                std::to_string(c.context));
  const int64_t kmax = *std::max_element(o.ks.begin(), o.ks.end()), V = c.vocab;
  std::vector<float> gains(size_t(kmax * c.n_gains()));
  for (size_t i = 0; i < gains.size(); ++i) gains[i] = 1.0f + 0.01f * float(int(i % 13) - 6);
  std::vector<std::vector<norm::GainView>> views;
  for (int64_t s = 0; s < kmax; ++s)
    views.push_back(f32_gain_views(c, gains.data() + s * c.n_gains()));
  DecodeState st(c, kmax, std::max<int64_t>(kmax, int64_t(prompt.size())));
  std::vector<float> logits(size_t(kmax * V));
  std::vector<int32_t> next(static_cast<size_t>(kmax));
  auto run = [&](int64_t K, bool together) {
    st.reset_all();
    for (int64_t s = 0; s < K; ++s) {  // prompts, untimed
      DecodeEntry e;
      e.slot = s, e.tokens = prompt.data(), e.n = int64_t(prompt.size());
      e.gains = views[size_t(s)].data();
      decode_forward(m, Precision::Ternary, st, &e, 1, logits.data(), ex);
      next[size_t(s)] = argmax_token(logits.data(), V);
    }
    std::vector<DecodeEntry> es(static_cast<size_t>(K));
    const double t0 = now_s();
    for (int64_t step = 0; step < o.steps; ++step) {
      for (int64_t s = 0; s < K; ++s) {
        es[size_t(s)].slot = s, es[size_t(s)].tokens = &next[size_t(s)], es[size_t(s)].n = 1;
        es[size_t(s)].gains = views[size_t(s)].data();
      }
      if (together) {
        decode_forward(m, Precision::Ternary, st, es.data(), K, logits.data(), ex);
        for (int64_t s = 0; s < K; ++s) next[size_t(s)] = argmax_token(logits.data() + s * V, V);
      } else {
        for (int64_t s = 0; s < K; ++s) {
          decode_forward(m, Precision::Ternary, st, &es[size_t(s)], 1, logits.data(), ex);
          next[size_t(s)] = argmax_token(logits.data(), V);
        }
      }
    }
    return double(K * o.steps) / (now_s() - t0);
  };
  std::string rows;
  for (size_t i = 0; i < o.ks.size(); ++i) {
    const int64_t K = o.ks[i];
    run(1, false), run(K, true), run(K, false);  // warm-up: caches, pages, branch history
    std::vector<double> one, b, s, r, v;
    for (int64_t rep = 0; rep < o.reps; ++rep) {
      one.push_back(run(1, false));
      b.push_back(run(K, true));
      s.push_back(run(K, false));
      r.push_back(b.back() / s.back());
      v.push_back(b.back() / one.back());
    }
    rows += std::string(i ? "," : "") + "{\"k\":" + std::to_string(K) +
            ",\"batched_tokens_per_s\":" + num(median(b)) +
            ",\"separate_tokens_per_s\":" + num(median(s)) + ",\"ratio\":" + num(median(r)) +
            ",\"one_stream_tokens_per_s\":" + num(median(one)) +
            ",\"vs_one_stream\":" + num(median(v)) + ",\"batched_reps\":" + arr(b) +
            ",\"separate_reps\":" + arr(s) + ",\"one_stream_reps\":" + arr(one) + "}";
  }
  return "\"n_prompt\":" + std::to_string(prompt.size()) + ",\"steps\":" + std::to_string(o.steps) +
         ",\"reps\":" + std::to_string(o.reps) + ",\"rows\":[" + rows + "]";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    ThreadPool pool(int(o.threads));
    const Exec ex{default_isa(), &pool, int(o.threads)};
    const double t0 = now_s();
    const gguf::File file = gguf::File::open(o.model);
    GgufImported imp = gguf_import(file);
    const double load_s = now_s() - t0;
    const Model& m = *imp.model;
    std::string body;
    if (o.cmd == "bench-score")
      body = bench_score(o, m, ex);
    else if (o.cmd == "decode")
      body = decode(o, m, ex);
    else
      body = batched(o, m, ex);
    std::printf(
        "{\"schema\":\"ternorm.peers.ternorm.%s/1\",\"isa\":\"%s\",\"threads\":%lld,"
        "\"load_s\":%s,\"n_params\":%lld,\"context\":%lld,%s}\n",
        o.cmd.c_str(), isa_name(ex.isa), (long long)o.threads, num(load_s).c_str(),
        (long long)m.n_params(), (long long)m.config().context, body.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ternorm_peer: %s\n", e.what());
    return 1;
  }
}
