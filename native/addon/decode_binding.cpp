// Binding of generation (native/model/decode.h, sampler.h): a Decoder handle
// holding one DecodeState of `sequences` slots over a model, each slot with
// its own adapter (raw gains or an encoded blob, decoded by the fused norm
// kernel) and its own seeded sampler. One async call per step: the entries'
// tokens go through decode_forward together, then each entry that asks for it
// gets its next token drawn from its row of logits, all off the JS thread.
// Cancelling is the caller's: it stops calling step (a step is bounded by
// `rows` new tokens). Glue only: the checks are the core's (and addon.h's).
//
// A decoder uses its model like any async call (model_state.h): the model is
// busy during a step, so steps of decoders sharing a model must not overlap;
// lib/model/generate.ts queues them.
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "addon.h"
#include "model/decode.h"
#include "model/limits.h"
#include "model/sampler.h"
#include "model_state.h"

namespace ternorm::addon {
namespace {

struct Slot {
  AdapterArg adapter;  // its views: what the slot's rows are normalised with
  std::optional<model::Sampler> sampler;
};

// What the decoder's step reads and writes; shared with the worker so a
// handle collected mid-step cannot free it.
struct DecoderCore {
  std::shared_ptr<ModelState> model;
  model::Precision precision = model::Precision::Ternary;
  std::unique_ptr<model::DecodeState> state;
  std::vector<Slot> slots;
  std::vector<float> logits;  // sequences x vocab, reused by every step
  std::vector<model::DecodeEntry> entries;
  std::atomic<bool> stepping{false};
};

class DecoderHandle : public Napi::ObjectWrap<DecoderHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeDecoder",
        {InstanceMethod<&DecoderHandle::method<&DecoderHandle::Start>>("start"),
         InstanceMethod<&DecoderHandle::method<&DecoderHandle::StepAsync>>("stepAsync"),
         InstanceMethod<&DecoderHandle::method<&DecoderHandle::Position>>("position"),
         InstanceMethod<&DecoderHandle::method<&DecoderHandle::Reset>>("reset"),
         InstanceMethod<&DecoderHandle::method<&DecoderHandle::CacheBytesPerToken>>(
             "cacheBytesPerToken")});
  }
  explicit DecoderHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DecoderHandle>(info) {}

  void init(std::shared_ptr<DecoderCore> c, Napi::Object model_object) {
    core_ = std::move(c);
    model_ref_ = Napi::Persistent(model_object);
  }

 private:
  // A method whose core exceptions become JS errors (as guarded does for functions).
  template <Napi::Value (DecoderHandle::*F)(const Napi::CallbackInfo&)>
  Napi::Value method(const Napi::CallbackInfo& info) {
    try {
      return (this->*F)(info);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      throw make_error(info.Env(), classify_current_exception());
    }
  }

  DecoderCore& core(Napi::Env env) const {
    if (!core_) throw Napi::Error::New(env, "ternorm: an empty decoder handle (use decoderCreate)");
    if (core_->stepping.load())
      throw Napi::Error::New(env, "ternorm: the decoder is busy with a step; await it first");
    return *core_;
  }

  int64_t slot_arg(const Napi::CallbackInfo& info, size_t index) {
    const DecoderCore& c = core(info.Env());
    const double d = number_arg(info, index, "slot");
    if (!(d >= 0 && d < double(c.state->slots()) && d == std::floor(d)))
      throw_range(info.Env(), "slot must be an integer in 0.." +
                                  std::to_string(c.state->slots() - 1) + ", got " + num(d));
    return int64_t(d);
  }

  // start(slot, adapter: Float32Array | Uint8Array | null, sampling: { temperature, topK, topP,
  //   minP, seed }): empties the slot and gives it an adapter and a fresh sampler.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    DecoderCore& c = core(env);
    const int64_t slot = slot_arg(info, 0);
    AdapterArg adapter = adapter_arg(info, 1, c.model->model->config());
    Napi::Object o = object_arg(info, 2, "sampling");
    namespace L = limits::generate;
    model::SamplerOptions so;
    so.temperature = float(limit_prop(env, o, L::temperature, "sampling"));
    so.top_k = int64_t(limit_prop(env, o, L::top_k, "sampling"));
    so.top_p = float(limit_prop(env, o, L::top_p, "sampling"));
    so.min_p = float(limit_prop(env, o, L::min_p, "sampling"));
    const int64_t seed = int_prop(env, o, "seed", 0, (int64_t(1) << 53) - 1, "sampling");
    Slot& s = c.slots[size_t(slot)];
    s.sampler.emplace(so, uint64_t(seed));
    s.adapter = std::move(adapter);
    c.state->reset(slot);
    return env.Undefined();
  }

  // stepAsync(slots: Int32Array, counts: Int32Array, tokens: Int32Array, sample: Uint8Array,
  //   wantLogits: boolean, threads?) -> Promise<{ next: Int32Array, logits: Float32Array | null }>
  // Entry e appends tokens[sum(counts[<e]) ..][0, counts[e]) to slot slots[e]; next[e] is the
  // token drawn from its last row's logits when sample[e] != 0, else -1; logits (entries x
  // vocab) when asked for. Core errors (bad ids, a full context, a slot twice) reject the
  // promise and change nothing.
  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::shared_ptr<DecoderCore> c = core_;
    core(env);
    const I32Arg slots = int32_arg(info, 0, "slots");
    const I32Arg counts = int32_arg(info, 1, "counts");
    const I32Arg tokens = int32_arg(info, 2, "tokens");
    const ArrayArg<uint8_t> sample = array_arg<uint8_t>(info, 3, "sample");
    const bool want_logits = bool_arg(info, 4, "wantLogits");
    const CallExec ce = exec_arg(info, 5);
    const size_t E = slots.length;
    if (E == 0 || counts.length != E || sample.length != E)
      throw_range(env,
                  "slots, counts and sample must have one element per entry (at least one), got " +
                      std::to_string(E) + ", " + std::to_string(counts.length) + " and " +
                      std::to_string(sample.length));
    if (E > size_t(c->state->slots()))
      throw_range(env, std::to_string(E) + " entries, the decoder holds " +
                           std::to_string(c->state->slots()) + " sequences");
    int64_t total = 0;
    for (size_t e = 0; e < E; ++e) {
      if (counts.data[e] < 1)
        throw_range(env, "counts[" + std::to_string(e) + "] must be >= 1, got " +
                             std::to_string(counts.data[e]));
      total += counts.data[e];
      const int32_t s = slots.data[e];
      if (s >= 0 && s < c->state->slots() && sample.data[e] && !c->slots[size_t(s)].sampler)
        throw_range(env, "slot " + std::to_string(s) + " was never started (call start first)");
    }
    if (uint64_t(total) != tokens.length)
      throw_range(env, "tokens must hold sum(counts) = " + std::to_string(total) + " ids, got " +
                           std::to_string(tokens.length));
    auto lease = acquire(env, c->model);
    c->stepping.store(true);
    KernelCall call(CallMode::Async);
    const int32_t* sl = call.input(slots.data, E);
    const int32_t* ct = call.input(counts.data, E);
    const int32_t* tk = call.input(tokens.data, tokens.length);
    const uint8_t* sm = call.input(sample.data, E);
    auto next = std::make_shared<std::vector<int32_t>>(E, -1);
    const Exec ex = ce.exec;
    // Ends the decoder's step when the call is destroyed, as BusyLease does for the model.
    auto stepping = std::shared_ptr<void>(nullptr, [c](void*) { c->stepping.store(false); });
    call.run = [lease, stepping, c, sl, ct, tk, sm, E, next, ex]() {
      (void)lease;
      (void)stepping;
      const int64_t V = c->model->model->config().vocab;
      c->entries.resize(E);
      for (size_t e = 0, at = 0; e < E; at += size_t(ct[e]), ++e) {
        model::DecodeEntry& en = c->entries[e];
        en.slot = sl[e];
        en.tokens = tk + at;
        en.n = ct[e];
        // A bad slot is the core's to refuse; only a valid one has an adapter.
        en.gains = nullptr;
        if (sl[e] >= 0 && sl[e] < c->state->slots()) {
          const std::vector<norm::GainView>& views = c->slots[size_t(sl[e])].adapter.views;
          if (!views.empty()) en.gains = views.data();
        }
      }
      model::decode_forward(*c->model->model, c->precision, *c->state, c->entries.data(),
                            int64_t(E), c->logits.data(), ex);
      for (size_t e = 0; e < E; ++e)
        if (sm[e])
          (*next)[e] = c->slots[size_t(sl[e])].sampler->sample(c->logits.data() + e * V, V);
    };
    call.finish = [c, next, want_logits, E](Napi::Env e, Napi::Object) -> Napi::Value {
      Napi::Object o = Napi::Object::New(e);
      auto n = Napi::Int32Array::New(e, E);
      std::memcpy(n.Data(), next->data(), E * sizeof(int32_t));
      o.Set("next", n);
      const size_t V = size_t(c->model->model->config().vocab);
      o.Set("logits", want_logits ? Napi::Value(copy_f32(e, c->logits.data(), E * V)) : e.Null());
      return o;
    };
    call.keep = {Value()};
    call.pool = ce.pool;
    return run_async(env, std::move(call));
  }

  Napi::Value Position(const Napi::CallbackInfo& info) {
    const int64_t slot = slot_arg(info, 0);
    return Napi::Number::New(info.Env(), double(core(info.Env()).state->position(slot)));
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    const int64_t slot = slot_arg(info, 0);
    core(info.Env()).state->reset(slot);
    return info.Env().Undefined();
  }

  Napi::Value CacheBytesPerToken(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(core(info.Env()).state->cache_bytes_per_token()));
  }

  std::shared_ptr<DecoderCore> core_;
  Napi::ObjectReference model_ref_;  // keeps the JS model object alive with the decoder
};

// decoderCreate(model, sequences, rows, precision) -> decoder handle
Napi::Value DecoderCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  namespace L = limits::generate;
  const int64_t sequences = size_arg(info, 1, "sequences");
  const int64_t rows = size_arg(info, 2, "rows");
  limits::check(L::sequences, double(sequences), "decoder");
  limits::check(L::rows, double(rows), "decoder");
  auto c = std::make_shared<DecoderCore>();
  c->model = s;
  c->precision = precision_of(env, string_arg(info, 3, "precision"));
  if (c->precision == model::Precision::F32 && !s->has_latent)
    throw_range(env,
                "generate: precision 'fp32' needs the latent weights, and this model was loaded "
                "from a model file without them");
  const model::ModelConfig& cfg = s->model->config();
  c->state = std::make_unique<model::DecodeState>(cfg, sequences, rows);
  c->slots.resize(size_t(sequences));
  c->logits.resize(size_t(checked_mul(env, sequences, cfg.vocab, "sequences * vocab")));
  Napi::Object obj = instance(env).decoder_class.New({});
  DecoderHandle::Unwrap(obj)->init(std::move(c), info[0].As<Napi::Object>());
  return obj;
}

}  // namespace

void register_decode(Napi::Env env, Napi::Object exports) {
  instance(env).decoder_class = Napi::Persistent(DecoderHandle::define(env));
  exports.Set("decoderCreate", Napi::Function::New(env, guarded<DecoderCreate>, "decoderCreate"));
}

}  // namespace ternorm::addon
