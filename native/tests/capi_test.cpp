// The C API (include/ternorm.h) from C++: bad inputs (null pointers, bad
// sizes, corrupt or truncated model files and adapter blobs, adapters of
// another base or model) give a status and a message, never a crash; and the
// good paths give what the core gives (evaluate bit for bit; greedy
// generation equal to argmax over a fresh whole-sequence decode at every step;
// the context limit; seeded sampling the same at any thread count).
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../include/ternorm.h"
#include "cpu/features.h"
#include "harness.h"
#include "io/container.h"
#include "model/decode.h"
#include "model/eval.h"
#include "model/model.h"
#include "model/model_file.h"
#include "model/sampler.h"
#include "tokenizer/byte_bpe.h"

using namespace ternorm;
using ternorm::test::mentions;

namespace {

// A small random model with the byte-level tokenizer (256 ids, no merges), as a file image.
struct Fixture {
  model::ModelConfig cfg;
  std::unique_ptr<model::Model> model;
  std::vector<uint8_t> tokenizer, file;
  Fixture(uint64_t seed = 7) {
    cfg.vocab = 256, cfg.d_model = 32, cfg.n_layers = 2, cfg.n_heads = 4, cfg.d_ff = 48;
    cfg.context = 40;
    model = std::make_unique<model::Model>(cfg, seed);
    tokenizer = tok::ByteBpe(std::vector<uint16_t>{}).serialize();
    file = model::model_writer(*model, tokenizer, "", nullptr).finish();
  }
};

ternorm_model* load(const std::vector<uint8_t>& bytes) {
  ternorm_model* m = nullptr;
  const ternorm_status s = ternorm_model_load_memory(bytes.data(), bytes.size(), &m);
  CHECK_MSG(s == TERNORM_OK && m, ternorm_last_error());
  return m;
}

const char kText[] = "the quick brown fox jumps over the lazy dog, twice over.";

}  // namespace

TEST(capi_null_pointers_and_bad_sizes) {
  Fixture f;
  ternorm_model* m = load(f.file);
  ternorm_model* mo = reinterpret_cast<ternorm_model*>(1);
  CHECK(ternorm_model_load_memory(nullptr, 10, &mo) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(mo == nullptr);
  CHECK(mentions(ternorm_last_error(), "ternorm_model_load_memory: data is NULL"));
  CHECK(ternorm_model_load_memory(f.file.data(), f.file.size(), nullptr) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_model_load_file(nullptr, &mo) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_model_get_info(nullptr, nullptr) == TERNORM_E_INVALID_ARGUMENT);
  ternorm_model_info info;
  CHECK(ternorm_model_get_info(m, &info) == TERNORM_OK);
  CHECK(info.vocab == 256 && info.context == 40 && info.n_norms == 5 && info.eos_id == -1);
  CHECK(info.source_bytes == int64_t(f.file.size()));
  CHECK(info.kv_bytes_per_token == 2 * 2 * 32 * 4);  // layers x (k, v) x kv_dim x f32
  CHECK(info.adapter_f32_bytes == 5 * 32 * 4);

  size_t n = 0;
  int32_t ids[4];
  char text[8];
  CHECK(ternorm_tokenize(nullptr, "a", 1, 0, ids, 4, &n) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_tokenize(m, nullptr, 3, 0, ids, 4, &n) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_tokenize(m, "a", 1, 0, nullptr, 4, &n) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_tokenize(m, "a", 1, 0, ids, 4, nullptr) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_tokenize(m, nullptr, 0, 0, nullptr, 0, &n) == TERNORM_OK && n == 0);
  CHECK(ternorm_tokenize(m, "hello", 5, 0, ids, 4, &n) == TERNORM_E_BUFFER_TOO_SMALL && n == 5);
  CHECK(mentions(ternorm_last_error(), "5 tokens, the buffer holds 4"));
  const int32_t bad[2] = {65, 256};
  CHECK(ternorm_detokenize(m, bad, 2, text, 8, &n) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "token 1 is 256, expected an id in [0, 256)"));
  const int32_t hi[2] = {104, 105};
  CHECK(ternorm_detokenize(m, hi, 2, text, 2, &n) == TERNORM_E_BUFFER_TOO_SMALL && n == 2);
  CHECK(ternorm_detokenize(m, hi, 2, text, 3, &n) == TERNORM_OK && std::string(text) == "hi");

  ternorm_eval_result r;
  CHECK(ternorm_evaluate(m, nullptr, kText, sizeof kText - 1, nullptr, nullptr, nullptr, 0) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_evaluate(m, nullptr, "a", 1, nullptr, &r, nullptr, 0) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "1 token(s); evaluation needs at least 2"));
  ternorm_eval_options eo = {41, 0, 1};
  CHECK(ternorm_evaluate(m, nullptr, kText, sizeof kText - 1, &eo, &r, nullptr, 0) ==
        TERNORM_E_INVALID_ARGUMENT);
  eo = {0, 0, -1};
  CHECK(ternorm_evaluate(m, nullptr, kText, sizeof kText - 1, &eo, &r, nullptr, 0) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "n_threads"));

  ternorm_generate_options go;
  ternorm_generate_options_default(&go);
  ternorm_generate_result gr;
  CHECK(ternorm_generate(m, nullptr, "ab", 2, &go, nullptr, nullptr, nullptr) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_generate(m, nullptr, "", 0, &go, nullptr, nullptr, &gr) ==
        TERNORM_E_INVALID_ARGUMENT);
  go.max_tokens = 0;
  CHECK(ternorm_generate(m, nullptr, "ab", 2, &go, nullptr, nullptr, &gr) ==
        TERNORM_E_INVALID_ARGUMENT);
  ternorm_generate_options_default(&go);
  go.temperature = -1;
  CHECK(ternorm_generate(m, nullptr, "ab", 2, &go, nullptr, nullptr, &gr) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "temperature"));
  const std::string long_prompt(41, 'x');
  ternorm_generate_options_default(&go);
  CHECK(ternorm_generate(m, nullptr, long_prompt.data(), long_prompt.size(), &go, nullptr, nullptr,
                         &gr) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "41 tokens; generation needs 1..40"));

  ternorm_adapter* a = reinterpret_cast<ternorm_adapter*>(1);
  CHECK(ternorm_adapter_from_gains(m, nullptr, 160, &a) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(a == nullptr);
  std::vector<float> g(160, 1.0f);
  CHECK(ternorm_adapter_from_gains(m, g.data(), 159, &a) == TERNORM_E_INVALID_ARGUMENT);
  g[3] = NAN;
  CHECK(ternorm_adapter_from_gains(m, g.data(), 160, &a) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(a == nullptr);
  CHECK(ternorm_adapter_load_file(m, nullptr, &a) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_adapter_load_memory(nullptr, g.data(), 4, &a) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_adapter_from_blob(m, nullptr, 0, &a) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_adapter_get_info(nullptr, nullptr) == TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_adapter_encode_blob(nullptr, "f16", nullptr, 0, &n) == TERNORM_E_INVALID_ARGUMENT);
  ternorm_model_free(nullptr);
  ternorm_adapter_free(nullptr);
  ternorm_model_free(m);
  CHECK(std::string(ternorm_status_name(TERNORM_E_FORMAT)) == "format");
  CHECK(std::string(ternorm_status_name(ternorm_status(99))) == "unknown");
  CHECK(ternorm_api_version() == TERNORM_API_VERSION);
}

TEST(capi_corrupt_model_files) {
  Fixture f;
  ternorm_model* m = nullptr;
  CHECK(ternorm_model_load_file("/nonexistent/x.tnm", &m) == TERNORM_E_IO);
  CHECK(mentions(ternorm_last_error(), "/nonexistent/x.tnm"));
  CHECK(ternorm_model_load_file("/", &m) == TERNORM_E_IO);
  // Every truncation, and a flipped bit every 997 bytes, is a format error.
  for (size_t n = 0; n < f.file.size(); n += (n < 256 ? 1 : 4093)) {
    const ternorm_status s = ternorm_model_load_memory(f.file.data(), n, &m);
    CHECK_MSG(s == TERNORM_E_FORMAT && m == nullptr, "truncated at " + std::to_string(n));
  }
  for (size_t i = 0; i < f.file.size(); i += 997) {
    std::vector<uint8_t> bad = f.file;
    bad[i] ^= 0x10;
    const ternorm_status s = ternorm_model_load_memory(bad.data(), bad.size(), &m);
    CHECK_MSG(s == TERNORM_E_FORMAT && m == nullptr, "bit flip at " + std::to_string(i));
    CHECK(std::strlen(ternorm_last_error()) > 0);
  }
  const uint8_t gguf_garbage[16] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
  CHECK(ternorm_model_load_memory(gguf_garbage, sizeof gguf_garbage, &m) == TERNORM_E_FORMAT);
  CHECK(mentions(ternorm_last_error(), "gguf"));
  // A tokenizer that does not match the vocabulary.
  Fixture g;
  const std::vector<uint16_t> merges = {97, 98};
  const std::vector<uint8_t> t257 = tok::ByteBpe(merges).serialize();
  const std::vector<uint8_t> bad_tok = model::model_writer(*g.model, t257, "", nullptr).finish();
  CHECK(ternorm_model_load_memory(bad_tok.data(), bad_tok.size(), &m) == TERNORM_E_FORMAT);
  CHECK(mentions(ternorm_last_error(), "257 tokens but the model's vocab is 256"));
}

TEST(capi_adapters_blobs_and_files) {
  Fixture f;
  ternorm_model* m = load(f.file);
  ternorm_model* m2 = load(f.file);
  const model::ModelConfig& c = f.cfg;
  std::vector<float> gains(size_t(c.n_gains()));
  for (size_t i = 0; i < gains.size(); ++i) gains[i] = 1.0f + 0.05f * float((i * 7) % 11) / 11;
  ternorm_adapter* af = nullptr;
  CHECK(ternorm_adapter_from_gains(m, gains.data(), gains.size(), &af) == TERNORM_OK);
  size_t size = 0;
  CHECK(ternorm_adapter_encode_blob(af, "int8_per_tensor", nullptr, 0, &size) ==
        TERNORM_E_BUFFER_TOO_SMALL);
  std::vector<uint8_t> blob(size);
  CHECK(ternorm_adapter_encode_blob(af, "int8_per_tensor", blob.data(), size, &size) == TERNORM_OK);
  CHECK(ternorm_adapter_encode_blob(af, "int4_calibrated", blob.data(), size, &size) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(ternorm_adapter_encode_blob(af, "nope", blob.data(), size, &size) ==
        TERNORM_E_INVALID_ARGUMENT);
  ternorm_adapter* ab = nullptr;
  CHECK(ternorm_adapter_from_blob(m, blob.data(), blob.size(), &ab) == TERNORM_OK);
  ternorm_adapter_info ai;
  CHECK(ternorm_adapter_get_info(ab, &ai) == TERNORM_OK);
  CHECK(std::string(ai.scheme) == "int8_per_tensor" && ai.n_gains == c.n_gains());
  CHECK(ai.encoded_bytes == int64_t(blob.size()));

  // Every truncation and many bit flips of the blob: a status, never a crash.
  ternorm_adapter* x = nullptr;
  for (size_t n = 0; n < blob.size(); ++n) {
    const ternorm_status s = ternorm_adapter_from_blob(m, blob.data(), n, &x);
    CHECK_MSG(s == TERNORM_E_FORMAT && !x, "blob truncated at " + std::to_string(n));
  }
  int refused = 0;
  for (size_t i = 0; i < blob.size(); ++i)
    for (int bit = 0; bit < 8; bit += 3) {
      std::vector<uint8_t> bad = blob;
      bad[i] ^= uint8_t(1 << bit);
      const ternorm_status s = ternorm_adapter_from_blob(m, bad.data(), bad.size(), &x);
      CHECK(s == TERNORM_OK || s == TERNORM_E_FORMAT || s == TERNORM_E_INVALID_ARGUMENT);
      if (s == TERNORM_OK) {
        ternorm_eval_result r;
        CHECK(ternorm_evaluate(m, x, kText, sizeof kText - 1, nullptr, &r, nullptr, 0) ==
              TERNORM_OK);
        ternorm_adapter_free(x);
      } else {
        ++refused;
        CHECK(x == nullptr && std::strlen(ternorm_last_error()) > 0);
      }
    }
  CHECK(refused > 0);

  // Adapter files: this base's loads, another base's and a model file are refused.
  const io::Fingerprint fp = model::model_fingerprint(*f.model, f.tokenizer);
  const std::vector<uint8_t> good =
      model::adapter_writer(c, gains.data(), int64_t(gains.size()), fp, "").finish();
  io::Fingerprint other = fp;
  other[0] ^= 1;
  const std::vector<uint8_t> foreign =
      model::adapter_writer(c, gains.data(), int64_t(gains.size()), other, "").finish();
  ternorm_adapter* afile = nullptr;
  CHECK(ternorm_adapter_load_memory(m, good.data(), good.size(), &afile) == TERNORM_OK);
  CHECK(ternorm_adapter_load_memory(m, foreign.data(), foreign.size(), &x) == TERNORM_E_FORMAT);
  CHECK(mentions(ternorm_last_error(), "base model"));
  CHECK(ternorm_adapter_load_memory(m, f.file.data(), f.file.size(), &x) == TERNORM_E_FORMAT);
  CHECK(mentions(ternorm_last_error(), "model file"));
  for (size_t n = 0; n < good.size(); n += 37)
    CHECK(ternorm_adapter_load_memory(m, good.data(), n, &x) == TERNORM_E_FORMAT && !x);
  CHECK(ternorm_adapter_load_file(m, "/nonexistent/a.adapter", &x) == TERNORM_E_IO);

  // The numbers are the core's, bit for bit; an adapter of another handle is refused.
  ternorm_eval_result r;
  std::vector<double> nll(200);
  ternorm_eval_options eo = {0, 0, 2};
  CHECK(ternorm_evaluate(m, afile, kText, sizeof kText - 1, &eo, &r, nll.data(), nll.size()) ==
        TERNORM_OK);
  std::vector<int32_t> ids(kText, kText + sizeof kText - 1);
  const std::vector<norm::GainView> views = model::f32_gain_views(c, gains.data());
  const model::EvalResult ref =
      model::evaluate(*f.model, views.data(), c.n_norms(), ids.data(), int64_t(ids.size()),
                      int64_t(ids.size() - 1), model::EvalOptions{}, Exec{default_isa()});
  CHECK(r.total_nll == ref.total_nll && r.perplexity == ref.perplexity);
  CHECK(r.n_scored == int64_t(ref.nll.size()) && r.n_bytes == int64_t(ids.size() - 1));
  CHECK(std::memcmp(nll.data(), ref.nll.data(), ref.nll.size() * sizeof(double)) == 0);
  CHECK(ternorm_evaluate(m2, afile, kText, sizeof kText - 1, &eo, &r, nullptr, 0) ==
        TERNORM_E_INVALID_ARGUMENT);
  CHECK(mentions(ternorm_last_error(), "another model handle"));
  ternorm_eval_result rb;
  CHECK(ternorm_evaluate(m, ab, kText, sizeof kText - 1, &eo, &rb, nullptr, 0) == TERNORM_OK);
  CHECK(std::abs(rb.mean_nll - ref.mean_nll) < 0.01 * ref.mean_nll && rb.mean_nll != ref.mean_nll);

  ternorm_adapter_free(afile);
  ternorm_adapter_free(ab);
  ternorm_adapter_free(af);
  ternorm_model_free(m2);
  ternorm_model_free(m);
}

namespace {
struct Tokens {
  std::vector<int32_t> ids;
  std::string text;
  int stop_after = 0;
};
int collect(int32_t t, const char* piece, size_t n, void* user) {
  Tokens* c = static_cast<Tokens*>(user);
  c->ids.push_back(t);
  c->text.append(piece, n);
  return c->stop_after > 0 && int(c->ids.size()) >= c->stop_after;
}
}  // namespace

TEST(capi_generate) {
  Fixture f;
  ternorm_model* m = load(f.file);
  ternorm_generate_options go;
  ternorm_generate_options_default(&go);
  go.temperature = 0, go.max_tokens = 12, go.n_threads = 1;
  Tokens got;
  ternorm_generate_result gr;
  CHECK(ternorm_generate(m, nullptr, "hello", 5, &go, collect, &got, &gr) == TERNORM_OK);
  CHECK(gr.n_prompt_tokens == 5 && gr.n_generated == 12 && got.ids.size() == 12);
  CHECK(gr.stop_reason == TERNORM_STOP_MAX_TOKENS);
  // Greedy reference: each token the argmax of a fresh decode of the whole sequence so far.
  std::vector<int32_t> seq = {'h', 'e', 'l', 'l', 'o'};
  std::string text;
  std::vector<float> logits(256);
  for (int k = 0; k < 12; ++k) {
    model::DecodeState st(f.cfg, 1, int64_t(seq.size()));
    model::DecodeEntry e;
    e.tokens = seq.data(), e.n = int64_t(seq.size());
    model::decode_forward(*f.model, model::Precision::Ternary, st, &e, 1, logits.data(),
                          Exec{default_isa()});
    seq.push_back(model::argmax_token(logits.data(), 256));
    text.push_back(char(seq.back()));
  }
  CHECK(std::vector<int32_t>(seq.begin() + 5, seq.end()) == got.ids);
  CHECK(got.text == text);

  // The context: a prompt of context - 2 tokens generates 3 (the last one is not fed back).
  const std::string p38(38, 'a');
  go.max_tokens = 100;
  Tokens c38;
  CHECK(ternorm_generate(m, nullptr, p38.data(), p38.size(), &go, collect, &c38, &gr) ==
        TERNORM_OK);
  CHECK(gr.stop_reason == TERNORM_STOP_CONTEXT && gr.n_generated == 3);
  const std::string p40(40, 'a');
  CHECK(ternorm_generate(m, nullptr, p40.data(), p40.size(), &go, nullptr, nullptr, &gr) ==
        TERNORM_OK);
  CHECK(gr.stop_reason == TERNORM_STOP_CONTEXT && gr.n_generated == 1);

  // Seeded sampling: the same tokens at 1 and 3 threads, and another seed differs somewhere.
  ternorm_generate_options_default(&go);
  go.temperature = 1.5f, go.top_k = 0, go.top_p = 1, go.min_p = 0, go.max_tokens = 20;
  go.seed = 3, go.n_threads = 1;
  Tokens s1, s3, other;
  CHECK(ternorm_generate(m, nullptr, "hello", 5, &go, collect, &s1, &gr) == TERNORM_OK);
  go.n_threads = 3;
  CHECK(ternorm_generate(m, nullptr, "hello", 5, &go, collect, &s3, &gr) == TERNORM_OK);
  CHECK(s1.ids == s3.ids && s1.ids.size() == 20);
  go.seed = 4;
  CHECK(ternorm_generate(m, nullptr, "hello", 5, &go, collect, &other, &gr) == TERNORM_OK);
  CHECK(other.ids != s1.ids);
  // The callback stops it.
  Tokens stop;
  stop.stop_after = 4;
  CHECK(ternorm_generate(m, nullptr, "hello", 5, &go, collect, &stop, &gr) == TERNORM_OK);
  CHECK(gr.stop_reason == TERNORM_STOP_CALLBACK && gr.n_generated == 4 && stop.ids.size() == 4);
  CHECK(std::vector<int32_t>(other.ids.begin(), other.ids.begin() + 4) == stop.ids);
  ternorm_model_free(m);
}

TEST(capi_last_error_is_per_thread) {
  ternorm_model* m = nullptr;
  CHECK(ternorm_model_load_file("/nonexistent/one", &m) == TERNORM_E_IO);
  std::thread([] {
    ternorm_model* m2 = nullptr;
    (void)ternorm_model_load_file("/nonexistent/two", &m2);
  }).join();
  CHECK(mentions(ternorm_last_error(), "/nonexistent/one"));
}
