// The C API (include/ternorm.h) over the core: argument checks, the handles,
// and the one place where C++ exceptions become a status and a message. The
// work itself is the core's: model_file / gguf_model load, tokenizer encode and
// decode, model::evaluate, decode_forward + Sampler.
#include "../../include/ternorm.h"

#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../codec/codec.h"
#include "../cpu/features.h"
#include "../cpu/thread_pool.h"
#include "../io/container.h"
#include "../io/gguf.h"
#include "../model/decode.h"
#include "../model/eval.h"
#include "../model/gguf_model.h"
#include "../model/limits.h"
#include "../model/model.h"
#include "../model/model_file.h"
#include "../model/sampler.h"
#include "../tokenizer/byte_bpe.h"
#include "../tokenizer/vocab.h"
#include "footprint.h"

using namespace ternorm;

struct ternorm_model {
  std::unique_ptr<model::Model> model;
  // One of the two tokenizers: the project's byte BPE or a GGUF vocabulary.
  std::optional<tok::ByteBpe> bpe;
  std::optional<tok::VocabTokenizer> vocab;
  io::Fingerprint fingerprint{};  // what an adapter file must name as its base
  int64_t source_bytes = 0;
  capi::Footprint footprint;
  Isa isa = Isa::Scalar;
  // Grown on demand to the largest thread count asked for; a model serves one
  // call at a time (ternorm.h), so this needs no lock.
  mutable std::unique_ptr<ThreadPool> pool;
};

struct ternorm_adapter {
  const ternorm_model* owner = nullptr;
  std::string scheme;
  std::vector<float> gains;                 // n_gains, decoded when encoded
  std::vector<codec::EncodedGain> encoded;  // encoded ones, decoded by the norm kernel
  std::vector<norm::GainView> views;        // n_norms views into one of the two
  int64_t encoded_bytes = 0;
};

namespace {

thread_local std::string g_last_error;

ternorm_status fail(ternorm_status s, const char* fn, const std::string& what) {
  g_last_error = std::string(fn) + ": " + what;
  return s;
}

// A bad argument found by this layer (not by the core).
struct ArgError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Runs body, turning every exception into a status. runtime_error outside
// the format errors comes from the file system in the loaders (io_errors) and
// is a defect anywhere else.
template <typename F>
ternorm_status guarded(const char* fn, bool io_errors, F&& body) {
  try {
    body();
    return TERNORM_OK;
  } catch (const io::FormatError& e) {
    return fail(TERNORM_E_FORMAT, fn, e.what());
  } catch (const std::invalid_argument& e) {
    return fail(TERNORM_E_INVALID_ARGUMENT, fn, e.what());
  } catch (const std::out_of_range& e) {
    return fail(TERNORM_E_INVALID_ARGUMENT, fn, e.what());
  } catch (const std::bad_alloc&) {
    return fail(TERNORM_E_OUT_OF_MEMORY, fn, "out of memory");
  } catch (const std::length_error& e) {
    return fail(TERNORM_E_OUT_OF_MEMORY, fn, std::string("a size too large: ") + e.what());
  } catch (const std::runtime_error& e) {
    return fail(io_errors ? TERNORM_E_IO : TERNORM_E_INTERNAL, fn, e.what());
  } catch (const std::exception& e) {
    return fail(TERNORM_E_INTERNAL, fn, e.what());
  } catch (...) {
    return fail(TERNORM_E_INTERNAL, fn, "an unknown exception");
  }
}

void need(const void* p, const char* name) {
  if (!p) throw ArgError(std::string(name) + " is NULL");
}

// A (data, size) input: NULL data only with size 0.
void need_bytes(const void* data, size_t size, const char* name) {
  if (!data && size) throw ArgError(std::string(name) + " is NULL but its size is not 0");
}

bool is_gguf(const void* data, size_t size) {
  return size >= 4 && std::memcmp(data, "GGUF", 4) == 0;
}

bool file_is_gguf(const char* path) {
  std::ifstream in(path, std::ios::binary);
  char head[4] = {};
  return in.read(head, 4) && is_gguf(head, 4);
}

std::unique_ptr<ternorm_model> from_container(const io::Container& file) {
  model::LoadedModel lm = model::load_model(file);
  auto m = std::make_unique<ternorm_model>();
  m->bpe.emplace(tok::ByteBpe::deserialize(lm.tokenizer.data(), lm.tokenizer.size()));
  m->model = std::move(lm.model);
  m->fingerprint = lm.fingerprint;
  m->source_bytes = int64_t(file.file_bytes());
  return m;
}

// The tokenizer as the TypeScript loader picks it: ternorm's own bytes when the
// file carries them, else the tokenizer.ggml.* vocabulary.
std::unique_ptr<ternorm_model> from_gguf(const gguf::File& file) {
  model::GgufImported im = model::gguf_import(file);
  auto m = std::make_unique<ternorm_model>();
  if (!im.ternorm_tokenizer.empty())
    m->bpe.emplace(
        tok::ByteBpe::deserialize(im.ternorm_tokenizer.data(), im.ternorm_tokenizer.size()));
  else if (im.tokenizer)
    m->vocab.emplace(model::vocab_data_of(*im.tokenizer));
  else
    throw io::FormatError("gguf: the file has no tokenizer (neither tokenizer.ggml.model nor " +
                          std::string(model::kTernormTokenizerKey) + ")");
  if (!im.model->fingerprint()) throw std::logic_error("gguf_import left no fingerprint");
  m->fingerprint = *im.model->fingerprint();
  m->model = std::move(im.model);
  m->source_bytes = int64_t(file.file_bytes());
  return m;
}

// The checks every loader ends with, then the handle goes out.
void finish_model(std::unique_ptr<ternorm_model> m, ternorm_model** out) {
  const int64_t n_tok = m->bpe ? m->bpe->vocab_size() : m->vocab->n_tokens();
  if (n_tok != m->model->config().vocab)
    throw io::FormatError("the tokenizer has " + std::to_string(n_tok) +
                          " tokens but the model's vocab is " +
                          std::to_string(m->model->config().vocab));
  try {
    m->isa = default_isa();
  } catch (const std::runtime_error& e) {  // TERNORM_ISA names a path this CPU cannot run
    throw ArgError(e.what());
  }
  m->footprint = capi::footprint(*m->model);
  *out = m.release();
}

Exec exec_for(const ternorm_model& m, int32_t n_threads) {
  if (n_threads < 0 || n_threads > TERNORM_MAX_THREADS)
    throw ArgError("n_threads must be 0 (every hardware thread) or 1.." +
                   std::to_string(TERNORM_MAX_THREADS) + ", got " + std::to_string(n_threads));
  int n = n_threads;
  if (n == 0) n = std::max(1, int(std::thread::hardware_concurrency()));
  if (!m.pool || m.pool->size() < n) {
    m.pool.reset();  // its workers end before the new pool's start
    m.pool = std::make_unique<ThreadPool>(n);
  }
  return Exec{m.isa, m.pool.get(), n};
}

std::vector<int32_t> encode(const ternorm_model& m, const char* text, size_t n, bool add_special) {
  if (m.bpe) return m.bpe->encode(reinterpret_cast<const uint8_t*>(text), n);
  return m.vocab->encode(std::string(text ? text : "", n), add_special, false);
}

std::string decode(const ternorm_model& m, const int32_t* ids, size_t n) {
  const int64_t vocab = m.model->config().vocab;
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw ArgError("token " + std::to_string(i) + " is " + std::to_string(ids[i]) +
                     ", expected an id in [0, " + std::to_string(vocab) + ")");
  if (m.bpe) {
    const std::vector<uint8_t> b = m.bpe->decode(ids, n);
    return std::string(b.begin(), b.end());
  }
  return m.vocab->decode(ids, n, false);
}

const norm::GainView* adapter_views(const ternorm_model& m, const ternorm_adapter* a) {
  if (!a) return nullptr;
  if (a->owner != &m)
    throw ArgError("the adapter was loaded for another model handle; load it for this one");
  return a->views.data();
}

// Views, bytes and the core's adapter checks, then the handle goes out.
void finish_adapter(const ternorm_model& m, std::unique_ptr<ternorm_adapter> a,
                    ternorm_adapter** out) {
  const model::ModelConfig& cfg = m.model->config();
  a->owner = &m;
  if (a->encoded.empty()) {
    a->views = model::f32_gain_views(cfg, a->gains.data());
    a->encoded_bytes = int64_t(a->gains.size() * sizeof(float));
  } else {
    for (const codec::EncodedGain& e : a->encoded) a->views.push_back(e.view());
    a->encoded_bytes = int64_t(codec::adapter_bytes(a->encoded));
  }
  model::validate_adapter(cfg, a->views.data(), int64_t(a->views.size()));
  if (a->gains.empty()) {  // for ternorm_adapter_encode_blob
    a->gains.resize(size_t(cfg.n_gains()));
    for (size_t i = 0; i < a->views.size(); ++i)
      norm::decode_gain(a->views[i], a->gains.data() + i * size_t(cfg.d_model));
  }
  *out = a.release();
}

void adapter_from_file(const ternorm_model& m, const io::Container& file, ternorm_adapter** out) {
  model::LoadedAdapter la = model::load_adapter(file, m.model->config(), m.fingerprint);
  auto a = std::make_unique<ternorm_adapter>();
  a->scheme = la.scheme;
  a->gains = std::move(la.gains);
  a->encoded = std::move(la.encoded);
  finish_adapter(m, std::move(a), out);
}

}  // namespace

extern "C" {

int ternorm_api_version(void) { return TERNORM_API_VERSION; }

const char* ternorm_last_error(void) { return g_last_error.c_str(); }

const char* ternorm_status_name(ternorm_status status) {
  switch (status) {
    case TERNORM_OK: return "ok";
    case TERNORM_E_INVALID_ARGUMENT: return "invalid argument";
    case TERNORM_E_FORMAT: return "format";
    case TERNORM_E_IO: return "io";
    case TERNORM_E_BUFFER_TOO_SMALL: return "buffer too small";
    case TERNORM_E_OUT_OF_MEMORY: return "out of memory";
    case TERNORM_E_INTERNAL: return "internal";
  }
  return "unknown";
}

ternorm_status ternorm_model_load_file(const char* path, ternorm_model** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_model_load_file", true, [&] {
    need(out, "out");
    need(path, "path");
    if (file_is_gguf(path)) return finish_model(from_gguf(gguf::File::open(path)), out);
    io::ParseOptions po;
    po.expected_kind = io::FileKind::Model;
    finish_model(from_container(io::read_file(path, po)), out);
  });
}

ternorm_status ternorm_model_load_memory(const void* data, size_t size, ternorm_model** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_model_load_memory", false, [&] {
    need(out, "out");
    need(data, "data");
    if (is_gguf(data, size)) return finish_model(from_gguf(gguf::File::copy(data, size)), out);
    io::ParseOptions po;
    po.expected_kind = io::FileKind::Model;
    if (size > po.limits.max_file_bytes)
      throw io::FormatError("a buffer of " + std::to_string(size) +
                            " bytes is over the model file limit of " +
                            std::to_string(po.limits.max_file_bytes) + " bytes");
    finish_model(from_container(io::Container::copy(data, size, po)), out);
  });
}

void ternorm_model_free(ternorm_model* model) { delete model; }

ternorm_status ternorm_model_get_info(const ternorm_model* model, ternorm_model_info* out) {
  return guarded("ternorm_model_get_info", false, [&] {
    need(model, "model");
    need(out, "out");
    const model::ModelConfig& c = model->model->config();
    ternorm_model_info i{};
    i.vocab = c.vocab, i.d_model = c.d_model, i.n_layers = c.n_layers, i.n_heads = c.n_heads;
    i.n_kv_heads = c.kv_heads(), i.d_ff = c.d_ff, i.context = c.context;
    i.n_norms = c.n_norms();
    i.bos_id = model->vocab ? model->vocab->data().bos : -1;
    i.eos_id = model->vocab ? model->vocab->data().eos : -1;
    i.source_bytes = model->source_bytes;
    i.weight_bytes = model->footprint.weight_bytes;
    i.kv_bytes_per_token = model->footprint.kv_bytes_per_token;
    i.adapter_f32_bytes = model->footprint.adapter_f32_bytes;
    *out = i;
  });
}

ternorm_status ternorm_adapter_load_file(const ternorm_model* model, const char* path,
                                         ternorm_adapter** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_adapter_load_file", true, [&] {
    need(out, "out");
    need(model, "model");
    need(path, "path");
    model::refuse_model_as_adapter(path);
    io::ParseOptions po;
    po.limits = model::adapter_limits(model->model->config());
    adapter_from_file(*model, io::read_file(path, po), out);
  });
}

ternorm_status ternorm_adapter_load_memory(const ternorm_model* model, const void* data,
                                           size_t size, ternorm_adapter** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_adapter_load_memory", false, [&] {
    need(out, "out");
    need(model, "model");
    need(data, "data");
    model::refuse_model_as_adapter(static_cast<const uint8_t*>(data), size, "the buffer");
    io::ParseOptions po;
    po.limits = model::adapter_limits(model->model->config());
    if (size > po.limits.max_file_bytes)
      throw io::FormatError("a buffer of " + std::to_string(size) +
                            " bytes is over this model's adapter file limit of " +
                            std::to_string(po.limits.max_file_bytes) + " bytes");
    adapter_from_file(*model, io::Container::copy(data, size, po), out);
  });
}

ternorm_status ternorm_adapter_from_blob(const ternorm_model* model, const void* data, size_t size,
                                         ternorm_adapter** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_adapter_from_blob", false, [&] {
    need(out, "out");
    need(model, "model");
    need(data, "data");
    const model::ModelConfig& cfg = model->model->config();
    auto a = std::make_unique<ternorm_adapter>();
    try {
      a->encoded =
          codec::parse_adapter(static_cast<const uint8_t*>(data), size, cfg.n_norms(), cfg.d_model);
    } catch (const std::invalid_argument& e) {  // the blob's content, not an argument
      throw io::FormatError(e.what());
    }
    // The blob names a scheme per record, not a method: one name when they agree.
    a->scheme = codec::scheme_name(a->encoded.front().scheme);
    for (const codec::EncodedGain& e : a->encoded)
      if (e.scheme != a->encoded.front().scheme) a->scheme = "mixed schemes";
    finish_adapter(*model, std::move(a), out);
  });
}

ternorm_status ternorm_adapter_from_gains(const ternorm_model* model, const float* gains,
                                          size_t n_gains, ternorm_adapter** out) {
  if (out) *out = nullptr;
  return guarded("ternorm_adapter_from_gains", false, [&] {
    need(out, "out");
    need(model, "model");
    need(gains, "gains");
    const model::ModelConfig& cfg = model->model->config();
    if (n_gains != uint64_t(cfg.n_gains()))
      throw ArgError("n_gains must be n_norms * d_model = " + std::to_string(cfg.n_gains()) +
                     ", got " + std::to_string(n_gains));
    auto a = std::make_unique<ternorm_adapter>();
    a->scheme = "f32";
    a->gains.assign(gains, gains + n_gains);
    finish_adapter(*model, std::move(a), out);
  });
}

void ternorm_adapter_free(ternorm_adapter* adapter) { delete adapter; }

ternorm_status ternorm_adapter_get_info(const ternorm_adapter* adapter, ternorm_adapter_info* out) {
  return guarded("ternorm_adapter_get_info", false, [&] {
    need(adapter, "adapter");
    need(out, "out");
    out->scheme = adapter->scheme.c_str();
    out->n_gains = adapter->owner->model->config().n_gains();
    out->encoded_bytes = adapter->encoded_bytes;
  });
}

ternorm_status ternorm_adapter_encode_blob(const ternorm_adapter* adapter, const char* method,
                                           void* blob, size_t capacity, size_t* blob_size) {
  ternorm_status s = TERNORM_OK;
  const ternorm_status g = guarded("ternorm_adapter_encode_blob", false, [&] {
    need(adapter, "adapter");
    need(method, "method");
    need(blob_size, "blob_size");
    need_bytes(blob, capacity, "blob");
    const codec::Method m = codec::method_from_name(method);
    if (codec::method_needs_loss(m))
      throw ArgError(std::string("method ") + method +
                     " chooses by the loss on the user's text; encode it with `ternorm` (the "
                     "CLI) and load the encoded adapter file");
    const model::ModelConfig& cfg = adapter->owner->model->config();
    const codec::EncodedAdapter ea =
        codec::encode_adapter(m, adapter->gains.data(), cfg.n_norms(), cfg.d_model);
    const std::vector<uint8_t> bytes = codec::serialize_adapter(ea.tensors);
    *blob_size = bytes.size();
    if (capacity < bytes.size()) {
      s = fail(TERNORM_E_BUFFER_TOO_SMALL, "ternorm_adapter_encode_blob",
               "the blob has " + std::to_string(bytes.size()) + " bytes, the buffer holds " +
                   std::to_string(capacity));
      return;
    }
    std::memcpy(blob, bytes.data(), bytes.size());
  });
  return g != TERNORM_OK ? g : s;
}

ternorm_status ternorm_tokenize(const ternorm_model* model, const char* text, size_t text_len,
                                int add_special, int32_t* tokens, size_t capacity,
                                size_t* n_tokens) {
  ternorm_status s = TERNORM_OK;
  const ternorm_status g = guarded("ternorm_tokenize", false, [&] {
    need(model, "model");
    need(n_tokens, "n_tokens");
    need_bytes(text, text_len, "text");
    need_bytes(tokens, capacity, "tokens");
    const std::vector<int32_t> ids = encode(*model, text, text_len, add_special != 0);
    *n_tokens = ids.size();
    if (capacity < ids.size()) {
      s = fail(TERNORM_E_BUFFER_TOO_SMALL, "ternorm_tokenize",
               "the text encodes to " + std::to_string(ids.size()) + " tokens, the buffer holds " +
                   std::to_string(capacity));
      return;
    }
    if (!ids.empty()) std::memcpy(tokens, ids.data(), ids.size() * sizeof(int32_t));
  });
  return g != TERNORM_OK ? g : s;
}

ternorm_status ternorm_detokenize(const ternorm_model* model, const int32_t* tokens, size_t n,
                                  char* text, size_t capacity, size_t* text_len) {
  ternorm_status s = TERNORM_OK;
  const ternorm_status g = guarded("ternorm_detokenize", false, [&] {
    need(model, "model");
    need(text_len, "text_len");
    need_bytes(tokens, n, "tokens");
    need_bytes(text, capacity, "text");
    const std::string bytes = decode(*model, tokens, n);
    *text_len = bytes.size();
    if (capacity < bytes.size() + 1) {
      s = fail(TERNORM_E_BUFFER_TOO_SMALL, "ternorm_detokenize",
               "the tokens decode to " + std::to_string(bytes.size()) +
                   " bytes and a NUL, the buffer holds " + std::to_string(capacity));
      return;
    }
    std::memcpy(text, bytes.data(), bytes.size());
    text[bytes.size()] = '\0';
  });
  return g != TERNORM_OK ? g : s;
}

ternorm_status ternorm_evaluate(const ternorm_model* model, const ternorm_adapter* adapter,
                                const char* text, size_t text_len, const ternorm_eval_options* opts,
                                ternorm_eval_result* out, double* nll, size_t nll_capacity) {
  return guarded("ternorm_evaluate", false, [&] {
    need(model, "model");
    need(out, "out");
    need_bytes(text, text_len, "text");
    need_bytes(nll, nll_capacity, "nll");
    const model::ModelConfig& cfg = model->model->config();
    const norm::GainView* views = adapter_views(*model, adapter);
    model::EvalOptions eo;
    eo.precision = model::Precision::Ternary;
    int32_t threads = 0;
    if (opts) {
      if (opts->stride < 0 || opts->stride > cfg.context)
        throw ArgError("stride must be 0 (context / 2) or 1.." + std::to_string(cfg.context) +
                       ", got " + std::to_string(opts->stride));
      eo.stride = opts->stride;
      if (opts->batch != 0) eo.batch = opts->batch;
      threads = opts->n_threads;
    }
    const Exec ex = exec_for(*model, threads);
    const std::vector<int32_t> tokens = encode(*model, text, text_len, false);
    if (tokens.size() < 2)
      throw ArgError("the text encodes to " + std::to_string(tokens.size()) +
                     " token(s); evaluation needs at least 2");
    const int64_t n_bytes = int64_t(decode(*model, tokens.data() + 1, tokens.size() - 1).size());
    const model::EvalResult r =
        model::evaluate(*model->model, views, views ? cfg.n_norms() : 0, tokens.data(),
                        int64_t(tokens.size()), n_bytes, eo, ex);
    ternorm_eval_result o{};
    o.n_tokens = int64_t(tokens.size());
    o.n_scored = int64_t(r.nll.size());
    o.n_bytes = n_bytes;
    o.total_nll = r.total_nll, o.mean_nll = r.mean_nll, o.perplexity = r.perplexity;
    o.bits_per_byte = r.bits_per_byte;
    o.n_windows = r.n_windows, o.window = r.window, o.stride = r.stride;
    if (nll) std::memcpy(nll, r.nll.data(), std::min(nll_capacity, r.nll.size()) * sizeof(double));
    *out = o;
  });
}

void ternorm_generate_options_default(ternorm_generate_options* opts) {
  if (!opts) return;
  *opts = ternorm_generate_options{};
  opts->temperature = 0.8f;
  opts->top_k = 40;
  opts->top_p = 0.95f;
  opts->min_p = 0.05f;
  opts->seed = 0;
  opts->max_tokens = 128;
  opts->stop_at_eos = 1;
  opts->add_special = 1;
  opts->n_threads = 0;
}

ternorm_status ternorm_generate(const ternorm_model* model, const ternorm_adapter* adapter,
                                const char* prompt, size_t prompt_len,
                                const ternorm_generate_options* opts,
                                ternorm_token_callback callback, void* user_data,
                                ternorm_generate_result* out) {
  return guarded("ternorm_generate", false, [&] {
    need(model, "model");
    need(out, "out");
    need_bytes(prompt, prompt_len, "prompt");
    ternorm_generate_options o;
    ternorm_generate_options_default(&o);
    if (opts) o = *opts;
    if (o.max_tokens < 1)
      throw ArgError("max_tokens must be >= 1, got " + std::to_string(o.max_tokens));
    const model::ModelConfig& cfg = model->model->config();
    const norm::GainView* views = adapter_views(*model, adapter);
    model::SamplerOptions so;
    so.temperature = o.temperature, so.top_k = o.top_k, so.top_p = o.top_p, so.min_p = o.min_p;
    model::Sampler sampler(so, o.seed);  // checks the options
    const Exec ex = exec_for(*model, o.n_threads);

    std::vector<int32_t> seq = encode(*model, prompt, prompt_len, o.add_special != 0);
    const int64_t n_prompt = int64_t(seq.size());
    if (n_prompt < 1 || n_prompt > cfg.context)
      throw ArgError("the prompt encodes to " + std::to_string(n_prompt) +
                     " tokens; generation needs 1.." + std::to_string(cfg.context) +
                     " (the context)");
    model::DecodeState st(cfg, 1, n_prompt);
    std::vector<float> logits(size_t(cfg.vocab));
    model::DecodeEntry e;
    e.slot = 0, e.tokens = seq.data(), e.n = n_prompt, e.gains = views;
    model::decode_forward(*model->model, model::Precision::Ternary, st, &e, 1, logits.data(), ex);

    const int32_t eos = model->vocab ? model->vocab->data().eos : -1;
    // A GGUF vocabulary's pieces are the growth of the decoded text (a SentencePiece
    // first piece loses its prefixed space only at the very start); the byte BPE's
    // are the tokens' bytes.
    size_t text_so_far = model->vocab ? decode(*model, seq.data(), seq.size()).size() : 0;
    ternorm_generate_result r{};
    r.n_prompt_tokens = n_prompt;
    for (;;) {
      const int32_t t = sampler.sample(logits.data(), cfg.vocab);
      if (o.stop_at_eos && t == eos) {
        r.stop_reason = TERNORM_STOP_EOS;
        break;
      }
      seq.push_back(t);
      ++r.n_generated;
      if (callback) {
        std::string piece;
        if (model->bpe) {
          size_t len = 0;
          const uint8_t* b = model->bpe->token_bytes(t, &len);
          piece.assign(reinterpret_cast<const char*>(b), len);
        } else {
          const std::string text = decode(*model, seq.data(), seq.size());
          piece = text.substr(std::min(text_so_far, text.size()));
          text_so_far = text.size();
        }
        if (callback(t, piece.data(), piece.size(), user_data) != 0) {
          r.stop_reason = TERNORM_STOP_CALLBACK;
          break;
        }
      }
      if (r.n_generated >= o.max_tokens) {
        r.stop_reason = TERNORM_STOP_MAX_TOKENS;
        break;
      }
      if (st.position(0) >= cfg.context) {  // t has no position left to be read at
        r.stop_reason = TERNORM_STOP_CONTEXT;
        break;
      }
      e.tokens = &seq.back(), e.n = 1;
      model::decode_forward(*model->model, model::Precision::Ternary, st, &e, 1, logits.data(), ex);
    }
    *out = r;
  });
}

}  // extern "C"
