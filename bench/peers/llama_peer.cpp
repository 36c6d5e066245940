// llama_peer: llama.cpp (the prebuilt CPU libllama of npm package
// node-llama-cpp, see setup.sh) doing ternorm's work on a GGUF, for the
// cross-checks and bench:peers. CPU only; nothing is downloaded or built.
//
//   llama_peer tokenize <model.gguf> <text-file> [--no-bos] [--special]
//   llama_peer bench-tokenize <model.gguf> <text-file> [--no-bos] [--special] [--reps R]
//   llama_peer score <model.gguf> <tokens-file> --ctx N [--stride S] [--threads T]
//                    [--nll-out FILE] [KV/attention options]
//   llama_peer bench-score <model.gguf> <tokens-file> --ctx N [--stride S] [--threads T]
//                    [--reps R] [KV/attention options]
//   llama_peer decode <model.gguf> --prompt-tokens FILE --n N [--threads T] [KV/attention options]
//
// score follows ternorm's evaluation protocol (native/model/eval.h) position
// by position: W = min(ctx, n_tokens - 1) input tokens per window, window k
// starts at k * stride (the last one moved back to end at the text's end),
// each target scored once, by the first window that holds it. Every window
// is decoded from an empty KV cache in a context of W + 1 cells: one spare
// cell, because a context exactly the window's size mis-scores its last
// position in node-llama-cpp. Results go to stdout as one JSON line.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"
#include "peer_util.h"

namespace {

using peer::Error;
using peer::Json;

constexpr const char* kUsage =
    "usage:\n"
    "  llama_peer tokenize <model.gguf> <text-file> [--no-bos] [--special]\n"
    "  llama_peer bench-tokenize <model.gguf> <text-file> [--no-bos] [--special] [--reps R]\n"
    "  llama_peer score <model.gguf> <tokens-file> --ctx N [--stride S] [--threads T] "
    "[--nll-out FILE] [opts]\n"
    "  llama_peer bench-score <model.gguf> <tokens-file> --ctx N [--stride S] [--threads T] "
    "[--reps R] [opts]\n"
    "  llama_peer decode <model.gguf> --prompt-tokens FILE --n N [--threads T] [opts]\n"
    "opts: --kv f16|f32 (KV cache type, default f16 as llama.cpp), "
    "--flash-attn auto|on|off (default auto), --verbose (llama.cpp's log on stderr)\n";

// ---- llama.cpp's log: silent unless --verbose; its first error (the cause; later ones say
// what failed because of it) goes into our one-line error.

bool g_verbose = false;
std::string g_first_error;

void log_cb(ggml_log_level level, const char* text, void*) {
  if (g_verbose) std::fputs(text, stderr);
  if (level == GGML_LOG_LEVEL_ERROR) {
    std::string t = text;
    while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
    if (!t.empty() && g_first_error.empty()) g_first_error = t;
  }
}

std::string with_cause(const std::string& msg) {
  return g_first_error.empty() ? msg : msg + " (llama.cpp: " + g_first_error + ")";
}

// ---- options ---------------------------------------------------------------------------

struct Options {
  std::string cmd, model, input;
  bool no_bos = false, special = false;
  int64_t ctx = 0, stride = 0, threads = 1, reps = 1, n = 0;
  std::string nll_out, prompt_tokens;
  ggml_type kv = GGML_TYPE_F16;
  llama_flash_attn_type flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
};

[[noreturn]] void usage(const std::string& msg) {
  throw Error(msg + " (llama_peer --help lists the usage)");
}

Options parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--no-bos") {
      o.no_bos = true;
    } else if (a == "--special") {
      o.special = true;
    } else if (a == "--ctx") {
      o.ctx = peer::parse_int(next(), "--ctx", 1, 1 << 20);
    } else if (a == "--stride") {
      o.stride = peer::parse_int(next(), "--stride", 1, 1 << 20);
    } else if (a == "--threads") {
      o.threads = peer::parse_int(next(), "--threads", 1, 512);
    } else if (a == "--reps") {
      o.reps = peer::parse_int(next(), "--reps", 1, 1000);
    } else if (a == "--n") {
      o.n = peer::parse_int(next(), "--n", 1, 1 << 20);
    } else if (a == "--nll-out") {
      o.nll_out = next();
    } else if (a == "--prompt-tokens") {
      o.prompt_tokens = next();
    } else if (a == "--kv") {
      const std::string v = next();
      if (v == "f16")
        o.kv = GGML_TYPE_F16;
      else if (v == "f32")
        o.kv = GGML_TYPE_F32;
      else
        usage("--kv must be f16 or f32, got '" + v + "'");
    } else if (a == "--flash-attn") {
      const std::string v = next();
      if (v == "auto")
        o.flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
      else if (v == "on")
        o.flash_attn = LLAMA_FLASH_ATTN_TYPE_ENABLED;
      else if (v == "off")
        o.flash_attn = LLAMA_FLASH_ATTN_TYPE_DISABLED;
      else
        usage("--flash-attn must be auto, on or off, got '" + v + "'");
    } else if (a == "--verbose") {
      g_verbose = true;
    } else if (a.size() > 1 && a[0] == '-') {
      usage("unknown option '" + a + "'");
    } else {
      pos.push_back(a);
    }
  }
  if (pos.empty()) usage("missing subcommand");
  o.cmd = pos[0];
  const bool scoring = o.cmd == "score" || o.cmd == "bench-score";
  const size_t want = o.cmd == "decode" ? 2 : 3;
  const bool tokenizing = o.cmd == "tokenize" || o.cmd == "bench-tokenize";
  if (!tokenizing && !scoring && o.cmd != "decode") usage("unknown subcommand '" + o.cmd + "'");
  if (pos.size() != want)
    usage(o.cmd + ": expected " + std::to_string(want - 1) + " file argument(s)");
  o.model = pos[1];
  if (want == 3) o.input = pos[2];
  if (scoring && o.ctx == 0)
    usage(o.cmd + ": --ctx N is required (ternorm's context, the window size)");
  if (o.stride > 0 && o.stride > o.ctx) usage("--stride must be in [1, --ctx]");
  if (o.cmd == "decode" && (o.prompt_tokens.empty() || o.n == 0))
    usage("decode: --prompt-tokens FILE and --n N are required");
  return o;
}

// ---- model and context -----------------------------------------------------------------

struct Model {
  llama_model* model = nullptr;
  const llama_vocab* vocab = nullptr;
  double load_s = 0;
  Model(const std::string& path, bool vocab_only) {
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.vocab_only = vocab_only;
    peer::read_file_head(path, "model file");
    const double t0 = peer::now_s();
    model = llama_model_load_from_file(path.c_str(), mp);
    load_s = peer::now_s() - t0;
    if (!model) throw Error(with_cause("cannot load model '" + path + "'"));
    vocab = llama_model_get_vocab(model);
  }
  ~Model() { llama_model_free(model); }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  int32_t n_vocab() const { return llama_vocab_n_tokens(vocab); }
};

struct Context {
  llama_context* ctx = nullptr;
  Context(const Model& m, int64_t n_ctx, const Options& o) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = uint32_t(n_ctx);
    cp.n_batch = uint32_t(n_ctx);
    cp.n_ubatch = uint32_t(n_ctx);
    cp.n_seq_max = 1;
    cp.n_threads = int32_t(o.threads);
    cp.n_threads_batch = int32_t(o.threads);
    cp.type_k = o.kv;
    cp.type_v = o.kv;
    cp.flash_attn_type = o.flash_attn;
    cp.no_perf = true;
    ctx = llama_init_from_model(m.model, cp);
    if (!ctx)
      throw Error(
          with_cause("cannot create a llama.cpp context of " + std::to_string(n_ctx) + " tokens"));
  }
  ~Context() { llama_free(ctx); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

// One sequence's tokens at positions pos0.., outputs where want_out says.
struct Batch {
  llama_batch b;
  explicit Batch(int64_t cap) : b(llama_batch_init(int32_t(cap), 0, 1)) {}
  ~Batch() { llama_batch_free(b); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  void clear() { b.n_tokens = 0; }
  void add(int32_t token, int64_t pos, bool out) {
    const int32_t i = b.n_tokens++;
    b.token[i] = token;
    b.pos[i] = llama_pos(pos);
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = out ? 1 : 0;
  }
};

void decode(llama_context* ctx, const Batch& batch) {
  const int32_t rc = llama_decode(ctx, batch.b);
  if (rc != 0) throw Error(with_cause("llama_decode failed with code " + std::to_string(rc)));
}

void check_ids(const std::vector<int32_t>& tokens, int32_t n_vocab, const std::string& path) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] >= n_vocab)
      throw Error("tokens file '" + path + "': token id " + std::to_string(tokens[i]) +
                  " at position " + std::to_string(i) + " is out of the model's vocabulary [0, " +
                  std::to_string(n_vocab) + ")");
}

// -ln softmax(logits)[target], accumulated in double.
double nll_of(const float* logits, int32_t n_vocab, int32_t target) {
  float mx = logits[0];
  for (int32_t v = 1; v < n_vocab; ++v) mx = std::max(mx, logits[v]);
  double sum = 0;
  for (int32_t v = 0; v < n_vocab; ++v) sum += std::exp(double(logits[v]) - double(mx));
  return std::log(sum) + double(mx) - double(logits[target]);
}

void settings_json(Json& j, const Options& o, const Model& m) {
  j.kv("threads", o.threads);
  j.kv("kv_type", o.kv == GGML_TYPE_F32 ? "f32" : "f16");
  j.kv("flash_attn", o.flash_attn == LLAMA_FLASH_ATTN_TYPE_AUTO      ? "auto"
                     : o.flash_attn == LLAMA_FLASH_ATTN_TYPE_ENABLED ? "on"
                                                                     : "off");
  j.kv("load_s", m.load_s);
  char desc[256];
  llama_model_desc(m.model, desc, sizeof desc);
  j.kv("model_desc", desc);
  j.kv("n_vocab", int64_t(m.n_vocab()));
  j.kv("llama_cpp", "node-llama-cpp 3.21.1 prebuilt");
}

// ---- tokenize ---------------------------------------------------------------------------

std::vector<llama_token> tokenize(const Model& m, const std::string& text, const Options& o) {
  std::vector<llama_token> ids(text.size() + 16);
  int32_t n =
      llama_tokenize(m.vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()),
                     /*add_special=*/!o.no_bos, /*parse_special=*/o.special);
  if (n < 0) {
    ids.resize(size_t(-int64_t(n)));
    n = llama_tokenize(m.vocab, text.data(), int32_t(text.size()), ids.data(), int32_t(ids.size()),
                       !o.no_bos, o.special);
  }
  if (n < 0) throw Error(with_cause("llama_tokenize failed on '" + o.input + "'"));
  ids.resize(size_t(n));
  return ids;
}

int cmd_tokenize(const Options& o, bool bench) {
  const std::string text = peer::read_file(o.input, "text file");
  if (text.size() > size_t(INT32_MAX)) throw Error("text file '" + o.input + "' is too large");
  Model m(o.model, /*vocab_only=*/true);
  std::vector<llama_token> ids = tokenize(m, text, o);
  if (bench) {
    std::vector<double> secs;
    for (int64_t r = 0; r < o.reps; ++r) {
      const double t0 = peer::now_s();
      ids = tokenize(m, text, o);
      secs.push_back(peer::now_s() - t0);
    }
    const double med = peer::median(secs);
    Json j;
    j.begin_obj();
    j.kv("schema", "ternorm.peers.llama.bench-tokenize/1");
    j.kv("bytes", int64_t(text.size())).kv("n_tokens", int64_t(ids.size()));
    j.kv("tokenize_s", med).kv("mb_per_s", double(text.size()) / med * 1e-6);
    j.key("tokenize_s_reps").begin_arr();
    for (double v : secs) j.val(v);
    j.end_arr();
    j.kv("load_s", m.load_s).kv("n_vocab", int64_t(m.n_vocab()));
    j.end_obj();
    std::printf("%s\n", j.str().c_str());
    return 0;
  }
  const int32_t n = int32_t(ids.size());
  std::string line;
  for (int32_t i = 0; i < n; ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[size_t(i)]);
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
  return 0;
}

// ---- score / bench-score ------------------------------------------------------------------

struct Windows {
  int64_t W = 0, stride = 0;
  std::vector<int64_t> starts;
};

// ternorm's windowing (native/model/eval.cpp), the same starts for the same tokens.
Windows windows_of(int64_t n_tokens, int64_t ctx, int64_t stride_opt) {
  Windows w;
  w.W = std::min(ctx, n_tokens - 1);
  w.stride = stride_opt > 0 ? stride_opt : std::max<int64_t>(1, ctx / 2);
  for (int64_t s = 0;; s += w.stride) {
    w.starts.push_back(std::min(s, n_tokens - 1 - w.W));
    if (w.starts.back() + w.W >= n_tokens - 1) break;
  }
  return w;
}

// Scores every target once; returns the wall seconds of the decodes and NLLs.
double score_once(Context& c, const Model& m, const std::vector<int32_t>& tokens, const Windows& w,
                  std::vector<double>& nll) {
  const int32_t n_vocab = m.n_vocab();
  Batch batch(w.W);
  llama_memory_t mem = llama_get_memory(c.ctx);
  nll.assign(tokens.size() - 1, NAN);
  const double t0 = peer::now_s();
  int64_t scored_to = 0;  // targets tokens[1 .. scored_to] are done
  for (int64_t s : w.starts) {
    llama_memory_clear(mem, true);
    batch.clear();
    for (int64_t t = 0; t < w.W; ++t) batch.add(tokens[size_t(s + t)], t, s + 1 + t > scored_to);
    decode(c.ctx, batch);
    for (int64_t t = 0; t < w.W; ++t) {
      const int64_t target = s + 1 + t;
      if (target <= scored_to) continue;
      const float* logits = llama_get_logits_ith(c.ctx, int32_t(t));
      if (!logits) throw Error(with_cause("no logits for window position " + std::to_string(t)));
      nll[size_t(target - 1)] = nll_of(logits, n_vocab, tokens[size_t(target)]);
    }
    scored_to = s + w.W;
  }
  return peer::now_s() - t0;
}

int cmd_score(const Options& o, bool bench) {
  const std::vector<int32_t> tokens = peer::read_tokens(o.input);
  if (tokens.size() < 2)
    throw Error("tokens file '" + o.input + "': need at least 2 tokens, got " +
                std::to_string(tokens.size()));
  Model m(o.model, false);
  check_ids(tokens, m.n_vocab(), o.input);
  const Windows w = windows_of(int64_t(tokens.size()), o.ctx, o.stride);
  Context c(m, w.W + 1, o);

  std::vector<double> nll, score_s, pp_s;
  if (bench) score_once(c, m, tokens, w, nll);  // warm-up: page in the weights, spin up threads
  for (int64_t r = 0; r < (bench ? o.reps : 1); ++r)
    score_s.push_back(score_once(c, m, tokens, w, nll));
  if (bench) {
    // Prompt processing: the first window, one output (its last position), from an empty cache.
    Batch batch(w.W);
    for (int64_t r = 0; r <= o.reps; ++r) {
      llama_memory_clear(llama_get_memory(c.ctx), true);
      batch.clear();
      for (int64_t t = 0; t < w.W; ++t) batch.add(tokens[size_t(t)], t, t == w.W - 1);
      const double t0 = peer::now_s();
      decode(c.ctx, batch);
      if (r > 0) pp_s.push_back(peer::now_s() - t0);  // r == 0 is the warm-up
    }
  }
  double total = 0;
  for (double v : nll) total += v;
  const double n_scored = double(tokens.size() - 1);
  if (!o.nll_out.empty()) peer::write_file(o.nll_out, nll.data(), nll.size() * sizeof(double));

  Json j;
  j.begin_obj();
  j.kv("schema", bench ? "ternorm.peers.llama.bench-score/1" : "ternorm.peers.llama.score/1");
  j.kv("n_tokens", int64_t(tokens.size()));
  j.kv("n_scored", int64_t(nll.size()));
  j.kv("window", w.W).kv("stride", w.stride).kv("n_windows", int64_t(w.starts.size()));
  j.kv("n_ctx", int64_t(llama_n_ctx(c.ctx)));
  j.kv("total_nll", total)
      .kv("mean_nll", total / n_scored)
      .kv("perplexity", std::exp(total / n_scored));
  const double med = peer::median(score_s);
  j.kv("score_s", med).kv("score_tokens_per_s", n_scored / med);
  if (bench) {
    j.key("score_s_reps").begin_arr();
    for (double v : score_s) j.val(v);
    j.end_arr();
    const double pp = peer::median(pp_s);
    j.kv("pp_tokens", w.W).kv("pp_s", pp).kv("pp_tokens_per_s", double(w.W) / pp);
    j.key("pp_s_reps").begin_arr();
    for (double v : pp_s) j.val(v);
    j.end_arr();
  }
  if (!o.nll_out.empty()) j.kv("nll_out", o.nll_out);
  settings_json(j, o, m);
  j.end_obj();
  std::printf("%s\n", j.str().c_str());
  return 0;
}

// ---- decode ---------------------------------------------------------------------------------

int cmd_decode(const Options& o) {
  const std::vector<int32_t> prompt = peer::read_tokens(o.prompt_tokens);
  if (prompt.empty()) throw Error("prompt tokens file '" + o.prompt_tokens + "' holds no token");
  Model m(o.model, false);
  const int32_t n_vocab = m.n_vocab();
  check_ids(prompt, n_vocab, o.prompt_tokens);
  const int64_t n_prompt = int64_t(prompt.size());
  Context c(m, n_prompt + o.n + 1, o);

  auto argmax = [&](int32_t i) {
    const float* logits = llama_get_logits_ith(c.ctx, i);
    if (!logits) throw Error(with_cause("no logits for batch position " + std::to_string(i)));
    int32_t best = 0;
    for (int32_t v = 1; v < n_vocab; ++v)
      if (logits[v] > logits[best]) best = v;
    return best;
  };

  Batch batch(n_prompt);
  for (int64_t t = 0; t < n_prompt; ++t) batch.add(prompt[size_t(t)], t, t == n_prompt - 1);
  double t0 = peer::now_s();
  decode(c.ctx, batch);
  const double prompt_s = peer::now_s() - t0;
  std::vector<int32_t> out;
  std::vector<double> step_s;
  int32_t next = argmax(batch.b.n_tokens - 1);
  out.push_back(next);
  for (int64_t k = 1; k < o.n; ++k) {
    batch.clear();
    batch.add(next, n_prompt + k - 1, true);
    t0 = peer::now_s();
    decode(c.ctx, batch);
    next = argmax(0);
    step_s.push_back(peer::now_s() - t0);
    out.push_back(next);
  }
  double decode_s = 0;
  for (double v : step_s) decode_s += v;

  Json j;
  j.begin_obj();
  j.kv("schema", "ternorm.peers.llama.decode/1");
  j.kv("n_prompt", n_prompt).kv("n", o.n);
  j.key("tokens").begin_arr();
  for (int32_t t : out) j.val(int64_t(t));
  j.end_arr();
  j.kv("prompt_s", prompt_s).kv("prompt_tokens_per_s", double(n_prompt) / prompt_s);
  // The first generated token comes from the prompt's logits; the n - 1 others each cost one
  // decode.
  j.kv("decode_steps", int64_t(step_s.size()));
  j.kv("decode_s", decode_s);
  j.kv("decode_step_median_s", peer::median(step_s));
  j.kv("decode_tokens_per_s", step_s.empty() ? NAN : double(step_s.size()) / decode_s);
  settings_json(j, o, m);
  j.end_obj();
  std::printf("%s\n", j.str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    llama_log_set(log_cb, nullptr);
    peer::load_cpu_backend();
    llama_backend_init();
    int rc = 0;
    if (o.cmd == "tokenize" || o.cmd == "bench-tokenize")
      rc = cmd_tokenize(o, o.cmd == "bench-tokenize");
    else if (o.cmd == "decode")
      rc = cmd_decode(o);
    else
      rc = cmd_score(o, o.cmd == "bench-score");
    llama_backend_free();
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llama_peer: %s\n", e.what());
    return 1;
  }
}
