// Bindings of the model engine (native/model): a Model handle (create, load,
// save, quantize), a Trainer handle (one step per call, sync or async) and
// evaluate (async), and GGUF load / export. The files themselves are built and parsed by
// native/model/model_file.h and native/model/gguf_model.h; this file only converts arguments.
// Adapter files and encodings: adapter_binding.cpp. One call at a time per model (model_state.h).
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "addon.h"
#include "model_state.h"
#include "io/container.h"
#include "io/gguf.h"
#include "model/eval.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "model/model_file.h"
#include "model/train.h"

namespace ternorm::addon {
namespace {

using model::Model;

// ---- argument helpers ----------------------------------------------------------------
Napi::Object config_object(Napi::Env env, const model::ModelConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("vocab", double(c.vocab));
  o.Set("dModel", double(c.d_model));
  o.Set("nLayers", double(c.n_layers));
  o.Set("nHeads", double(c.n_heads));
  o.Set("dFf", double(c.d_ff));
  o.Set("context", double(c.context));
  o.Set("normEps", double(c.norm_eps));
  o.Set("ropeTheta", double(c.rope_theta));
  o.Set("nKvHeads", double(c.kv_heads()));
  o.Set("tiedHead", c.tied_head);
  return o;
}

// ---- Model ------------------------------------------------------------------------------
class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeModel",
        {InstanceMethod<&ModelHandle::Config>("config"), InstanceMethod<&ModelHandle::Info>("info"),
         InstanceMethod<&ModelHandle::Quantize>("quantize"),
         InstanceMethod<&ModelHandle::Save>("save"),
         InstanceMethod<&ModelHandle::Fingerprint>("fingerprint")});
  }
  explicit ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {}

  std::shared_ptr<ModelState> state(Napi::Env env) const {
    if (!state_)
      throw Napi::Error::New(env, "ternorm: an empty model handle (use modelCreate or modelLoad)");
    return state_;
  }
  void set_state(std::shared_ptr<ModelState> s) { state_ = std::move(s); }

 private:
  Napi::Value Config(const Napi::CallbackInfo& info) {
    return config_object(info.Env(), state(info.Env())->model->config());
  }

  // { nParams, nGains, nNorms, hasLatent }
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = state(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("nParams", double(s->model->n_params()));
    o.Set("nGains", double(s->model->config().n_gains()));
    o.Set("nNorms", double(s->model->config().n_norms()));
    o.Set("hasLatent", s->has_latent);
    o.Set("latentStored", s->latent_stored);
    return o;
  }

  // quantize(threads?): re-derive the ternary weights from the latent ones.
  Napi::Value Quantize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    try {
      auto s = state(env);
      const CallExec ce = exec_arg(info, 0);
      if (!s->has_latent)
        throw_range(env,
                    "quantize: this model was loaded from a model file without latent weights "
                    "(only a checkpoint has them); its ternary weights are final");
      auto lease = acquire(env, s);
      s->model->quantize(ce.exec);  // drops the model's fingerprint
      return env.Undefined();
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      throw make_error(env, classify_current_exception());
    }
  }

  // save(path | undefined, tokenizer: Uint8Array, meta: string, trainer?, state?: string)
  //   -> Uint8Array (no path) | undefined. With a trainer: a checkpoint.
  Napi::Value Save(const Napi::CallbackInfo& info);

  Napi::Value Fingerprint(const Napi::CallbackInfo& info) {
    auto s = state(info.Env());
    const auto& f = s->model->fingerprint();
    if (!f) return info.Env().Null();
    return Napi::String::New(info.Env(), io::to_hex(*f));
  }

  std::shared_ptr<ModelState> state_;
};

ModelHandle* unwrap_model(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[index];
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(instance(env).model_class.Value()))
    throw_type(env, "model must be a native model handle (from modelCreate or modelLoad)");
  return ModelHandle::Unwrap(v.As<Napi::Object>());
}

}  // namespace

std::shared_ptr<ModelState> model_arg(const Napi::CallbackInfo& info, size_t index) {
  return unwrap_model(info, index)->state(info.Env());
}

std::shared_ptr<BusyLease> acquire(Napi::Env env, const std::shared_ptr<ModelState>& s) {
  bool expected = false;
  if (!s->busy.compare_exchange_strong(expected, true))
    throw Napi::Error::New(
        env,
        "ternorm: the model is busy with an asynchronous train step or evaluation; "
        "await it before using the model again");
  return std::make_shared<BusyLease>(s);
}

io::Container container_arg(const Napi::CallbackInfo& info, size_t index,
                            const io::ParseOptions& opts) {
  const Napi::Value v = info[index];
  if (v.IsString()) return io::read_file(v.As<Napi::String>().Utf8Value(), opts);
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto a = v.As<Napi::Uint8Array>();
    if (a.ElementLength() > opts.limits.max_file_bytes)
      throw io::FormatError("file of " + std::to_string(a.ElementLength()) +
                            " bytes is over the limit of " +
                            std::to_string(opts.limits.max_file_bytes) + " bytes");
    return io::Container::copy(a.Data(), a.ElementLength(), opts);
  }
  throw_type(info.Env(), "source must be a file path (string) or a Uint8Array");
}

model::Precision precision_of(Napi::Env env, const std::string& p) {
  if (p == "ternary") return model::Precision::Ternary;
  if (p == "fp32") return model::Precision::F32;
  if (p == "ternary-fp32act") return model::Precision::TernaryF32Act;
  throw_range(env, "precision must be 'ternary', 'fp32' or 'ternary-fp32act', got '" + p + "'");
}

namespace {

Napi::Object new_model_object(Napi::Env env, std::shared_ptr<ModelState> s) {
  Napi::Object o = instance(env).model_class.New({});
  ModelHandle::Unwrap(o)->set_state(std::move(s));
  return o;
}

// ---- Trainer ------------------------------------------------------------------------------
class TrainerHandle : public Napi::ObjectWrap<TrainerHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "NativeTrainer",
                       {InstanceMethod<&TrainerHandle::Step>("step"),
                        InstanceMethod<&TrainerHandle::StepAsync>("stepAsync"),
                        InstanceMethod<&TrainerHandle::Gains>("gains"),
                        InstanceMethod<&TrainerHandle::SetGains>("setGains"),
                        InstanceMethod<&TrainerHandle::RestoreState>("restoreState"),
                        InstanceMethod<&TrainerHandle::StepsDone>("stepsDone")});
  }
  explicit TrainerHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerHandle>(info) {}

  void init(std::shared_ptr<ModelState> s, std::unique_ptr<model::Trainer> t,
            Napi::Object model_object) {
    model_ = std::move(s);
    trainer_ = std::move(t);
    model_ref_ = Napi::Persistent(model_object);
  }
  model::Trainer& trainer(Napi::Env env) const {
    if (!trainer_)
      throw Napi::Error::New(env, "ternorm: an empty trainer handle (use trainerCreate)");
    return *trainer_;
  }
  const std::shared_ptr<ModelState>& model_state() const { return model_; }

 private:
  // Prepares one step: checks the tokens and takes the model's lease.
  KernelCall prepare(const Napi::CallbackInfo& info, CallMode mode) {
    Napi::Env env = info.Env();
    model::Trainer& t = trainer(env);
    auto tokens = int32_arg(info, 0, "tokens");
    const int64_t batch = size_arg(info, 1, "batch");
    const int64_t seq = size_arg(info, 2, "seq");
    const CallExec ce = exec_arg(info, 3);
    const int64_t expected = checked_mul(env, batch, seq + 1, "batch * (seq + 1)");
    if (uint64_t(expected) != tokens.length)
      throw_range(env, "tokens must have batch * (seq + 1) = " + std::to_string(expected) +
                           " elements, got " + std::to_string(tokens.length));
    auto lease = acquire(env, model_);
    KernelCall call(mode);
    const int32_t* data = call.input(tokens.data, tokens.length);
    model::Trainer* tp = &t;
    const Exec ex = ce.exec;
    auto st = std::make_shared<model::StepStats>();
    call.run = [lease, tp, data, batch, seq, ex, st]() mutable {
      (void)lease;                           // held until the call is destroyed (see BusyLease)
      *st = tp->step(data, batch, seq, ex);  // a base step drops the model's fingerprint
    };
    call.finish = [st](Napi::Env e, Napi::Object) -> Napi::Value {
      Napi::Object o = Napi::Object::New(e);
      o.Set("step", double(st->step));
      o.Set("loss", st->loss);
      o.Set("gradNorm", st->grad_norm);
      o.Set("lr", double(st->lr));
      return o;
    };
    call.keep = {Value()};
    call.pool = ce.pool;
    return call;
  }

  // step(tokens: Int32Array, batch, seq, threads?) -> { step, loss, gradNorm, lr }
  Napi::Value Step(const Napi::CallbackInfo& info) {
    return run_sync(info.Env(), prepare(info, CallMode::Sync));
  }
  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    return run_async(info.Env(), prepare(info, CallMode::Async));
  }

  Napi::Value Gains(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    model::Trainer& t = trainer(env);
    if (t.config().mode != model::TrainMode::AdapterGains)
      throw_range(env, "gains: this trainer trains the base model, not an adapter");
    auto lease = acquire(env, model_);
    return copy_f32(env, t.gains(), size_t(model_->model->config().n_gains()));
  }

  Napi::Value SetGains(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    model::Trainer& t = trainer(env);
    auto g = array_arg<float>(info, 0, "gains");
    auto lease = acquire(env, model_);
    try {
      t.set_gains(g.data, int64_t(g.length));
    } catch (...) {
      throw make_error(env, classify_current_exception());
    }
    return env.Undefined();
  }

  // restoreState(adamM: Float32Array, adamV: Float32Array, step)
  Napi::Value RestoreState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    model::Trainer& t = trainer(env);
    auto m = array_arg<float>(info, 0, "adamM");
    auto v = array_arg<float>(info, 1, "adamV");
    const double step = number_arg(info, 2, "step");
    if (step < 0 || step != std::floor(step) || step > 9.0e15)
      throw_range(env, "step must be a non-negative integer, got " + num(step));
    if (m.length != v.length)
      throw_range(env, "adamM and adamV must have the same length, got " +
                           std::to_string(m.length) + " and " + std::to_string(v.length));
    auto lease = acquire(env, model_);
    try {
      t.restore_state(m.data, v.data, int64_t(m.length), int64_t(step));
    } catch (...) {
      throw make_error(env, classify_current_exception());
    }
    return env.Undefined();
  }

  Napi::Value StepsDone(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(trainer(info.Env()).steps_done()));
  }

  std::shared_ptr<ModelState> model_;
  std::unique_ptr<model::Trainer> trainer_;
  Napi::ObjectReference model_ref_;  // keeps the JS model object alive with the trainer
};

TrainerHandle* unwrap_trainer(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[index];
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(instance(env).trainer_class.Value()))
    throw_type(env, "trainer must be a native trainer handle (from trainerCreate)");
  return TrainerHandle::Unwrap(v.As<Napi::Object>());
}

Napi::Value ModelHandle::Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = state(env);
  const bool to_path = !info[0].IsUndefined();
  const std::string path = to_path ? string_arg(info, 0, "path") : std::string();
  auto tok = array_arg<uint8_t>(info, 1, "tokenizer");
  if (tok.length == 0) throw_range(env, "tokenizer must not be empty");
  const std::string meta = string_arg(info, 2, "meta");
  const std::vector<uint8_t> tokenizer(tok.data, tok.data + tok.length);
  std::optional<model::CheckpointView> ck;
  if (!info[3].IsUndefined()) {
    TrainerHandle* th = unwrap_trainer(info, 3);
    if (th->model_state() != s) throw_range(env, "save: the trainer belongs to another model");
    if (!s->has_latent)
      throw_range(env, "save: a checkpoint needs the latent weights (this model has none)");
    const model::Trainer& t = th->trainer(env);
    if (t.config().mode == model::TrainMode::AdapterGains)
      throw_range(env, "save: checkpoints are for base training, not an adapter trainer");
    ck.emplace();
    ck->adam_m = t.adam_m();
    ck->adam_v = t.adam_v();
    ck->n = t.state_size();
    ck->step = t.steps_done();
    ck->state = info[4].IsUndefined() ? std::string() : string_arg(info, 4, "state");
  }
  auto lease = acquire(env, s);
  try {
    const io::Writer w = model::model_writer(*s->model, tokenizer, meta, ck ? &*ck : nullptr);
    Napi::Value out = env.Undefined();
    if (to_path) {
      w.write_file(path);
    } else {
      const std::vector<uint8_t> bytes = w.finish();
      out = copy_bytes(env, bytes.data(), bytes.size());
    }
    s->model->set_fingerprint(model::model_fingerprint(*s->model, tokenizer));
    return out;
  } catch (...) {
    throw make_error(env, classify_current_exception());
  }
}

// ---- module functions ----------------------------------------------------------------------
model::ModelConfig config_arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  Napi::Object o = object_arg(info, index, "config");
  const char* w = "config";
  namespace L = limits::model;
  model::ModelConfig c;
  c.vocab = int64_t(limit_prop(env, o, L::vocab, w));
  c.d_model = int64_t(limit_prop(env, o, L::d_model, w));
  c.n_layers = int64_t(limit_prop(env, o, L::n_layers, w));
  c.n_heads = int64_t(limit_prop(env, o, L::n_heads, w));
  c.d_ff = int64_t(limit_prop(env, o, L::d_ff, w));
  c.context = int64_t(limit_prop(env, o, L::context, w));
  c.norm_eps = float(limit_prop(env, o, L::norm_eps, w));
  c.rope_theta = float(limit_prop(env, o, L::rope_theta, w));
  // Optional: absent means multi-head attention and the tied head.
  if (!o.Get("nKvHeads").IsUndefined())
    c.n_kv_heads = int64_t(limit_prop(env, o, L::n_kv_heads, w));
  const Napi::Value tied = o.Get("tiedHead");
  if (!tied.IsUndefined()) {
    if (!tied.IsBoolean()) throw_type(env, "config.tiedHead must be a boolean");
    c.tied_head = tied.As<Napi::Boolean>().Value();
  }
  model::validate(c);  // std::invalid_argument -> RangeError via guarded
  return c;
}

// modelCreate(config, seed) -> model handle
Napi::Value ModelCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const model::ModelConfig cfg = config_arg(info, 0);
  const double seed = number_arg(info, 1, "seed");
  if (seed < 0 || seed != std::floor(seed) || seed > 9007199254740991.0)
    throw_range(env, "seed must be an integer in 0..2^53-1, got " + num(seed));
  auto s = std::make_shared<ModelState>();
  s->model = std::make_unique<Model>(cfg, uint64_t(seed));
  s->has_latent = true;
  return new_model_object(env, std::move(s));
}

// ---- GGUF ----------------------------------------------------------------------------------
// A source is a GGUF file when it starts with the magic "GGUF", whatever its name.
bool is_gguf(const Napi::Value& v) {
  static const char kMagic[4] = {'G', 'G', 'U', 'F'};
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto a = v.As<Napi::Uint8Array>();
    return a.ElementLength() >= 4 && std::memcmp(a.Data(), kMagic, 4) == 0;
  }
  if (!v.IsString()) return false;
  std::ifstream in(v.As<Napi::String>().Utf8Value(), std::ios::binary);
  char head[4] = {};
  return in.read(head, 4) && std::memcmp(head, kMagic, 4) == 0;
}

// The GGUF branch of modelLoad: memory-mapped from a path, copied from bytes. The tokenizer is
// ternorm's own BPE bytes when the file carries them (kTernormTokenizerKey), else the
// tokenizer.ggml.* metadata (`vocab`). The fingerprint is model_fingerprint over the imported
// weights and that tokenizer: a lossless (f32) export of a .tnm re-imports with the .tnm's own.
Napi::Value load_gguf(const Napi::CallbackInfo& info, uint64_t max_bytes,
                      const model::GgufImportOptions& options) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[0];
  gguf::File file = [&] {
    if (v.IsString()) return gguf::File::open(v.As<Napi::String>().Utf8Value());
    auto a = v.As<Napi::Uint8Array>();
    if (a.ElementLength() > max_bytes)
      throw io::FormatError("file of " + std::to_string(a.ElementLength()) +
                            " bytes is over the limit of " + std::to_string(max_bytes) + " bytes");
    return gguf::File::copy(a.Data(), a.ElementLength());
  }();
  model::GgufImported im = model::gguf_import(file, options);
  auto s = std::make_shared<ModelState>();
  s->model = std::move(im.model);
  s->has_latent = false;  // the stored ternary weights are final (a re-quantize would change them)
  s->latent_stored = im.latent_stored;
  s->gguf_tokenizer = im.tokenizer;
  if (im.ternorm_tokenizer.empty() && !im.tokenizer)
    throw io::FormatError("gguf: the file has no tokenizer (neither tokenizer.ggml.model nor " +
                          std::string(model::kTernormTokenizerKey) + ")");
  Napi::Object out = Napi::Object::New(env);
  out.Set("model", new_model_object(env, s));
  out.Set("tokenizer", copy_bytes(env, im.ternorm_tokenizer.data(), im.ternorm_tokenizer.size()));
  out.Set("vocab", im.tokenizer
                       ? Napi::Value(vocab_object(env, model::vocab_data_of(*im.tokenizer)))
                       : env.Null());
  out.Set("meta", env.Null());
  out.Set("fingerprint", io::to_hex(*s->model->fingerprint()));
  out.Set("checkpoint", env.Null());
  Napi::Object g = Napi::Object::New(env);
  g.Set("version", double(file.version()));
  g.Set("name", im.name);
  g.Set("info", im.info);
  g.Set("postTrainingQuantised", im.post_training_quantised);
  g.Set("ternarise", model::gguf_ternarise_name(options.ternarise));
  out.Set("gguf", g);
  return out;
}

// modelExportGguf(model, path | undefined, type, gains: Float32Array | null, tokenizer: Uint8Array
// | null,
//   pre: string, vocab?: metadata, weights?: 'ternary' | 'latent', tableType?: 'f32' | 'f16' |
//   'bf16' (default: as the model stores its token tables)) -> Uint8Array (no path) |
//   undefined. The tokenizer written:
//   ternorm BPE bytes as themselves (kTernormTokenizerKey) and as their gpt2-style vocabulary with
//   pre-tokenizer `pre`; else a vocabulary given as metadata (VocabTokenizer's); else a
//   GGUF-loaded model's own.
Napi::Value ModelExportGguf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  const bool to_path = !info[1].IsUndefined();
  const std::string path = to_path ? string_arg(info, 1, "path") : std::string();
  model::GgufExportOptions o;
  o.type = model::gguf_weight_type_from_name(string_arg(info, 2, "type"));
  if (!info[7].IsUndefined()) {
    const std::string weights = string_arg(info, 7, "weights");
    if (weights != "ternary" && weights != "latent")
      throw_range(env, "weights must be 'ternary' or 'latent', got '" + weights + "'");
    o.latent = weights == "latent";
  }
  if (!info[8].IsUndefined()) {
    try {
      o.table_type = gemm::elem_type_of(string_arg(info, 8, "tableType").c_str());
    } catch (const std::invalid_argument& e) {
      throw_range(env, std::string("tableType: ") + e.what());
    }
  }
  if (o.latent && !s->latent_stored)
    throw_range(env,
                "export: this model has no latent weights (a model file holds only its ternary "
                "weights; a checkpoint, a created model or a float GGUF has them)");
  std::vector<float> gains;
  if (!info[3].IsNull() && !info[3].IsUndefined()) {
    auto g = array_arg<float>(info, 3, "gains");
    if (int64_t(g.length) != s->model->config().n_gains())
      throw_range(env, "gains must hold n_norms * d_model = " +
                           std::to_string(s->model->config().n_gains()) + " values, got " +
                           std::to_string(g.length));
    gains.assign(g.data, g.data + g.length);
    o.gains = gains.data();
  }
  model::GgufTokenizer vocab;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    auto t = array_arg<uint8_t>(info, 4, "tokenizer");
    o.ternorm_tokenizer.assign(t.data, t.data + t.length);
    const tok::ByteBpe bpe = tok::ByteBpe::deserialize(t.data, t.length);
    vocab = model::gguf_tokenizer_of(tok::byte_bpe_vocab(bpe, string_arg(info, 5, "pre")));
    vocab.add_bos = false;  // llama.cpp's gpt2 defaults would otherwise apply
    vocab.add_eos = false;
    o.tokenizer = &vocab;
  } else if (!info[6].IsNull() && !info[6].IsUndefined()) {
    tok::VocabData d = vocab_data_arg(info, 6);
    (void)tok::VocabTokenizer(d);  // its checks: lengths, ids, merges, model and pre supported
    vocab = model::gguf_tokenizer_of(d);
    o.tokenizer = &vocab;
  } else if (s->gguf_tokenizer) {
    o.tokenizer = &*s->gguf_tokenizer;
  } else {
    throw_range(env, "export: the model has no tokenizer to write");
  }
  auto lease = acquire(env, s);
  const gguf::Writer w = model::gguf_model_writer(*s->model, o);
  if (to_path) {
    w.write_file(path);
    return env.Undefined();
  }
  const std::vector<uint8_t> bytes = w.finish();
  return copy_bytes(env, bytes.data(), bytes.size());
}

// modelLoad(source: string | Uint8Array, maxBytes?, ternarise?: 'per-tensor' | 'per-row') ->
//   { model, tokenizer, meta: string | null, fingerprint, checkpoint: null | {adamM, adamV, step,
//   state} } A GGUF source (load_gguf) adds { vocab: metadata | null, gguf: { version, name, info,
//   postTrainingQuantised } }; maxBytes bounds its bytes in memory (a path is mapped, not read).
Napi::Value ModelLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  io::ParseOptions opts;
  opts.expected_kind = io::FileKind::Model;
  if (!info[1].IsUndefined()) opts.limits.max_file_bytes = uint64_t(size_arg(info, 1, "maxBytes"));
  model::GgufImportOptions gguf_options;
  if (!info[2].IsUndefined())
    gguf_options.ternarise = model::gguf_ternarise_from_name(string_arg(info, 2, "ternarise"));
  if (is_gguf(info[0])) return load_gguf(info, opts.limits.max_file_bytes, gguf_options);
  const io::Container file = container_arg(info, 0, opts);
  model::LoadedModel lm = model::load_model(file);
  auto s = std::make_shared<ModelState>();
  s->model = std::move(lm.model);
  s->has_latent = lm.has_latent;
  s->latent_stored = lm.has_latent;
  Napi::Object out = Napi::Object::New(env);
  out.Set("model", new_model_object(env, s));
  out.Set("tokenizer", copy_bytes(env, lm.tokenizer.data(), lm.tokenizer.size()));
  out.Set("meta", lm.meta.empty() ? env.Null() : Napi::Value(Napi::String::New(env, lm.meta)));
  out.Set("fingerprint", io::to_hex(lm.fingerprint));
  if (lm.checkpoint) {
    Napi::Object ck = Napi::Object::New(env);
    ck.Set("adamM", copy_f32(env, lm.checkpoint->adam_m.data(), lm.checkpoint->adam_m.size()));
    ck.Set("adamV", copy_f32(env, lm.checkpoint->adam_v.data(), lm.checkpoint->adam_v.size()));
    ck.Set("step", double(lm.checkpoint->step));
    ck.Set("state", lm.checkpoint->state);
    out.Set("checkpoint", ck);
  } else {
    out.Set("checkpoint", env.Null());
  }
  return out;
}

model::TrainMode mode_of(Napi::Env env, const std::string& m) {
  if (m == "ternary") return model::TrainMode::TernaryBase;
  if (m == "fp32") return model::TrainMode::Fp32Base;
  if (m == "adapter") return model::TrainMode::AdapterGains;
  throw_range(env, "trainer mode must be 'ternary', 'fp32' or 'adapter', got '" + m + "'");
}

// trainerCreate(model, { mode, batch, seq, lr, minLr, warmup, totalSteps, beta1, beta2, eps,
//   weightDecay, gradClip, actQuant?, gradQuant? }) -> trainer handle
Napi::Value TrainerCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelHandle* mh = unwrap_model(info, 0);
  auto s = mh->state(env);
  Napi::Object o = object_arg(info, 1, "trainConfig");
  const char* w = "trainConfig";
  const Napi::Value mv = o.Get("mode");
  if (!mv.IsString()) throw_type(env, "trainConfig.mode must be a string");
  model::TrainConfig c;
  c.mode = mode_of(env, mv.As<Napi::String>().Utf8Value());
  namespace L = limits::train;  // the ranges; the trainer checks the values against each other
  c.batch = int64_t(limit_prop(env, o, L::batch, w));
  c.seq = int64_t(limit_prop(env, o, L::seq, w));
  c.schedule.lr = float(limit_prop(env, o, L::lr, w));
  c.schedule.min_lr = float(limit_prop(env, o, L::min_lr, w));
  c.schedule.warmup = int64_t(limit_prop(env, o, L::warmup, w));
  c.schedule.total = int64_t(limit_prop(env, o, L::total_steps, w));
  c.adamw.beta1 = float(limit_prop(env, o, L::beta1, w));
  c.adamw.beta2 = float(limit_prop(env, o, L::beta2, w));
  c.adamw.eps = float(limit_prop(env, o, L::eps, w));
  c.adamw.weight_decay = float(limit_prop(env, o, L::weight_decay, w));
  c.grad_clip = float(limit_prop(env, o, L::grad_clip, w));
  const Napi::Value aq = o.Get("actQuant");
  if (!aq.IsUndefined()) {
    if (!aq.IsString()) throw_type(env, "trainConfig.actQuant must be a string");
    c.act_quant = model::act_quant_of(aq.As<Napi::String>().Utf8Value());
  }
  const Napi::Value gq = o.Get("gradQuant");
  c.grad_quant = model::default_grad_quant(c.mode);
  if (!gq.IsUndefined()) {
    if (!gq.IsString()) throw_type(env, "trainConfig.gradQuant must be a string");
    c.grad_quant = model::grad_quant_of(gq.As<Napi::String>().Utf8Value());
  }
  if (c.mode != model::TrainMode::AdapterGains && !s->has_latent)
    throw_range(env,
                "trainer: base training needs the latent weights, and this model was loaded from a "
                "model file without them; resume from a checkpoint instead");
  auto lease = acquire(env, s);
  auto trainer = std::make_unique<model::Trainer>(*s->model, c);
  Napi::Object obj = instance(env).trainer_class.New({});
  TrainerHandle::Unwrap(obj)->init(s, std::move(trainer), info[0].As<Napi::Object>());
  return obj;
}

// evaluateAsync(model, adapter: Float32Array | Uint8Array (encoded blob) | null, tokens:
// Int32Array,
//   nBytes, precision, stride (0 = default), batch, threads?, actQuant?) -> Promise<{ nll:
//   Float64Array, totalNll, meanNll, perplexity, bitsPerByte, nWindows, window, stride }>
// An encoded adapter is decoded by the fused RMSNorm kernel itself, as an edge runtime would.
Napi::Value EvaluateAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  const model::ModelConfig& cfg = s->model->config();
  AdapterArg adapter = adapter_arg(info, 1, cfg);
  auto tokens = int32_arg(info, 2, "tokens");
  if (tokens.length < 2)
    throw_range(env, "tokens must hold at least 2 tokens, got " + std::to_string(tokens.length));
  const double n_bytes = number_arg(info, 3, "nBytes");
  if (n_bytes < 1 || n_bytes != std::floor(n_bytes))
    throw_range(env, "nBytes must be a positive integer, got " + num(n_bytes));
  model::EvalOptions opts;
  opts.precision = precision_of(env, string_arg(info, 4, "precision"));
  const double stride = number_arg(info, 5, "stride");
  if (stride < 0 || stride != std::floor(stride) || stride > double(cfg.context))
    throw_range(env, "stride must be an integer in 0.." + std::to_string(cfg.context) +
                         " (0 = context / 2), got " + num(stride));
  opts.stride = int64_t(stride);
  opts.batch = size_arg(info, 6, "batch");
  const CallExec ce = exec_arg(info, 7);
  if (!info[8].IsUndefined())
    opts.precision =
        model::with_act_quant(opts.precision, model::act_quant_of(string_arg(info, 8, "actQuant")));
  if (opts.precision == model::Precision::F32 && !s->has_latent)
    throw_range(
        env,
        "evaluate: precision 'fp32' needs the latent weights, and this model was loaded from a "
        "model file without them");
  auto lease = acquire(env, s);
  KernelCall call(CallMode::Async);
  const int32_t* tok = call.input(tokens.data, tokens.length);
  const int64_t n_tok = int64_t(tokens.length);
  const Exec ex = ce.exec;
  auto r = std::make_shared<model::EvalResult>();
  call.run = [lease, s, adapter = std::move(adapter), tok, n_tok, n_bytes, opts, ex, r]() {
    (void)lease;  // held until the call is destroyed (see BusyLease)
    *r = model::evaluate(*s->model, adapter.views.empty() ? nullptr : adapter.views.data(),
                         int64_t(adapter.views.size()), tok, n_tok, int64_t(n_bytes), opts, ex);
  };
  call.finish = [r](Napi::Env e, Napi::Object) -> Napi::Value {
    auto nll = Napi::Float64Array::New(e, r->nll.size());
    std::memcpy(nll.Data(), r->nll.data(), r->nll.size() * sizeof(double));
    Napi::Object o = Napi::Object::New(e);
    o.Set("nll", nll);
    o.Set("totalNll", r->total_nll);
    o.Set("meanNll", r->mean_nll);
    o.Set("perplexity", r->perplexity);
    o.Set("bitsPerByte", r->bits_per_byte);
    o.Set("nWindows", double(r->n_windows));
    o.Set("window", double(r->window));
    o.Set("stride", double(r->stride));
    return o;
  };
  call.keep = {info[0].As<Napi::Object>()};
  call.pool = ce.pool;
  return run_async(env, std::move(call));
}

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  InstanceData& d = instance(env);
  d.model_class = Napi::Persistent(ModelHandle::define(env));
  d.trainer_class = Napi::Persistent(TrainerHandle::define(env));
  exports.Set("modelCreate", Napi::Function::New(env, guarded<ModelCreate>, "modelCreate"));
  exports.Set("modelLoad", Napi::Function::New(env, guarded<ModelLoad>, "modelLoad"));
  exports.Set("modelExportGguf",
              Napi::Function::New(env, guarded<ModelExportGguf>, "modelExportGguf"));
  exports.Set("trainerCreate", Napi::Function::New(env, guarded<TrainerCreate>, "trainerCreate"));
  exports.Set("evaluateAsync", Napi::Function::New(env, guarded<EvaluateAsync>, "evaluateAsync"));
}

}  // namespace ternorm::addon
