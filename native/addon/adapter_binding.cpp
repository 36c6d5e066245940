// Bindings of adapters: the adapter file (raw f32 or encoded), the codec
// (native/codec: encode a trained adapter with a method, describe an
// encoding) and the adapter argument of evaluate. Encodings cross the boundary
// as their serialised blob (codec record format), so what JS holds is exactly
// what is written to disk and what the fused RMSNorm kernel decodes.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "codec/codec.h"
#include "model/adapter_encode.h"
#include "model/model_file.h"
#include "model_state.h"

namespace ternorm::addon {

AdapterArg adapter_arg(const Napi::CallbackInfo& info, size_t index,
                       const model::ModelConfig& cfg) {
  Napi::Env env = info.Env();
  AdapterArg a;
  const Napi::Value v = info[index];
  if (v.IsNull() || v.IsUndefined()) return a;
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
    auto g = array_arg<float>(info, index, "adapter gains");
    expect_length(env, g, "adapter gains", cfg.n_gains(), "n_norms * d_model");
    check_finite(env, g.data, g.length, "adapter gains");
    a.gains.assign(g.data, g.data + g.length);
    a.views = model::f32_gain_views(cfg, a.gains.data());
    return a;
  }
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto b = v.As<Napi::Uint8Array>();
    // parse_adapter validates every record (RangeError when bad) and copies it out of the JS
    // buffer.
    a.encoded = codec::parse_adapter(b.Data(), b.ElementLength(), cfg.n_norms(), cfg.d_model);
    for (const codec::EncodedGain& e : a.encoded) a.views.push_back(e.view());
    return a;
  }
  throw_type(
      env,
      "adapter must be a Float32Array of gains, a Uint8Array holding an encoded adapter, or null");
}

namespace {

Napi::Array number_array(Napi::Env env, const std::vector<double>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(uint32_t(i), v[i]);
  return a;
}

// { method, bytes, blob: Uint8Array, gains: Float32Array (decoded), tensors: [{ scheme, params:
// Float32Array
//   (record order), namedParams: { name: number[] } (codec::named_params), recordBytes }],
//   format: the adapter blob format (1, or 2 for the compact low-rate methods) }
Napi::Object encoding_object(Napi::Env env, const char* method,
                             const std::vector<codec::EncodedGain>& tensors, uint32_t format) {
  const std::vector<uint8_t> blob = codec::serialize_adapter(tensors, format);
  Napi::Object o = Napi::Object::New(env);
  o.Set("method", method ? Napi::Value(Napi::String::New(env, method)) : env.Null());
  o.Set("bytes", double(blob.size()));
  o.Set("blob", copy_bytes(env, blob.data(), blob.size()));
  int64_t n = 0;
  for (const codec::EncodedGain& e : tensors) n += e.d;
  auto gains = Napi::Float32Array::New(env, size_t(n));
  Napi::Array list = Napi::Array::New(env, tensors.size());
  int64_t at = 0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    const codec::EncodedGain& e = tensors[t];
    norm::decode_gain(e.view(), gains.Data() + at);
    at += e.d;
    Napi::Object r = Napi::Object::New(env);
    r.Set("scheme", codec::scheme_name(e.scheme));
    r.Set("params", copy_f32(env, e.params.data(), e.params.size()));
    Napi::Object named = Napi::Object::New(env);
    for (const auto& [name, values] : codec::named_params(e))
      named.Set(name, number_array(env, std::vector<double>(values.begin(), values.end())));
    r.Set("namedParams", named);
    r.Set("recordBytes",
          double(format == 1 ? codec::record_bytes(e) : codec::compact_record_bytes(e)));
    list.Set(uint32_t(t), r);
  }
  o.Set("gains", gains);
  o.Set("tensors", list);
  o.Set("format", double(format));
  return o;
}

// codecMethods() -> [{ name, needsLoss, needsBudget }] in the codec's order.
Napi::Value CodecMethods(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto& all = codec::all_methods();
  Napi::Array a = Napi::Array::New(env, all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", codec::method_name(all[i]));
    o.Set("needsLoss", codec::method_needs_loss(all[i]));
    o.Set("needsBudget", codec::method_needs_budget(all[i]));
    a.Set(uint32_t(i), o);
  }
  return a;
}

// adapterEncodeAsync(model, gains: Float32Array, method: string, options: { groupSize,
// kmeansMaxIters,
//   clipGrid: Float64Array (empty = default), calibrationPasses, byteBudget }, calibration: null |
//   { tokens: Int32Array, nBytes, stride, batch }, threads?) -> Promise<encoding & { calibration,
//   mixed }>
// The searching methods (int4_calibrated, mixed, alloc) score candidates by the mean NLL of the
// calibration tokens (the user's training text) with the candidate decoded inside the norm kernel
// (model::encode_adapter, native/model/adapter_encode.h).
Napi::Value AdapterEncodeAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  const model::ModelConfig& cfg = s->model->config();
  auto g = array_arg<float>(info, 1, "gains");
  expect_length(env, g, "gains", cfg.n_gains(), "n_norms * d_model");
  check_finite(env, g.data, g.length, "gains");
  const codec::Method method = codec::method_from_name(string_arg(info, 2, "method"));
  Napi::Object o = object_arg(info, 3, "options");
  const char* w = "options";
  codec::EncodeOptions opts;
  namespace L = limits::codec;
  opts.group_size = int64_t(limit_prop(env, o, L::group_size, w));
  opts.kmeans_max_iters = int(limit_prop(env, o, L::kmeans_max_iters, w));
  opts.calibration_passes = int(limit_prop(env, o, L::calibration_passes, w));
  opts.byte_budget = uint64_t(limit_prop(env, o, L::byte_budget, w));
  const Napi::Value grid = o.Get("clipGrid");
  if (!grid.IsTypedArray() || grid.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type(env, "options.clipGrid must be a Float64Array (empty for the default grid)");
  const auto grid_arr = grid.As<Napi::Float64Array>();
  opts.clip_grid.assign(grid_arr.Data(), grid_arr.Data() + grid_arr.ElementLength());

  std::shared_ptr<model::Calibration> cal;
  if (!info[4].IsNull() && !info[4].IsUndefined()) {
    Napi::Object c = object_arg(info, 4, "calibration");
    const Napi::Value tv = c.Get("tokens");
    if (!tv.IsTypedArray() || tv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_type(env, "calibration.tokens must be an Int32Array");
    auto t = tv.As<Napi::Int32Array>();
    if (t.ElementLength() < 2) throw_range(env, "calibration.tokens must hold at least 2 tokens");
    cal = std::make_shared<model::Calibration>();
    cal->tokens.assign(t.Data(),
                       t.Data() + t.ElementLength());  // a copy: the call runs off the JS thread
    cal->n_bytes = int_prop(env, c, "nBytes", 1, int64_t(1) << 40, "calibration");
    cal->eval.stride = int64_t(limit_prop(env, c, limits::eval::stride, "calibration"));
    cal->eval.batch = int64_t(limit_prop(env, c, limits::eval::batch, "calibration"));
    const Napi::Value aq = c.Get("actQuant");
    if (!aq.IsUndefined()) {
      if (!aq.IsString()) throw_type(env, "calibration.actQuant must be a string");
      cal->eval.precision = model::with_act_quant(
          cal->eval.precision, model::act_quant_of(aq.As<Napi::String>().Utf8Value()));
    }
  } else if (codec::method_needs_loss(method)) {
    throw_range(
        env,
        std::string("method ") + codec::method_name(method) +
            " chooses its encoding by the training-text loss: calibration tokens are required");
  }
  const CallExec ce = exec_arg(info, 5);
  auto lease = acquire(env, s);
  std::vector<float> gains(g.data, g.data + g.length);
  auto out = std::make_shared<codec::EncodedAdapter>();
  const Exec ex = ce.exec;
  KernelCall call(CallMode::Async);  // gains and tokens are copied above
  call.run = [lease, s, gains = std::move(gains), method, opts, cal, ex, out]() {
    (void)lease;
    *out = model::encode_adapter(*s->model, gains.data(), method, opts, cal.get(), ex,
                                 &s->calibration_losses);
  };
  call.finish = [out](Napi::Env e, Napi::Object) -> Napi::Value {
    Napi::Object o = encoding_object(e, codec::method_name(out->method), out->tensors, out->format);
    if (out->calibration) {
      const codec::CalibrationReport& r = *out->calibration;
      Napi::Object c = Napi::Object::New(e);
      c.Set("grid", number_array(e, r.grid));
      c.Set("globalLoss", number_array(e, r.global_loss));
      c.Set("clip", number_array(e, r.clip));
      c.Set("loss", r.loss);
      c.Set("lossEvals", double(r.loss_evals));
      o.Set("calibration", c);
    } else {
      o.Set("calibration", e.Null());
    }
    if (out->mixed) {
      const codec::MixedReport& r = *out->mixed;
      Napi::Object m = Napi::Object::New(e);
      Napi::Array cand = Napi::Array::New(e, r.candidates.size());
      for (size_t i = 0; i < r.candidates.size(); ++i)
        cand.Set(uint32_t(i), codec::scheme_name(r.candidates[i]));
      Napi::Array inc = Napi::Array::New(e, r.increase.size());
      Napi::Array cb = Napi::Array::New(e, r.candidate_bytes.size());
      for (size_t t = 0; t < r.increase.size(); ++t) {
        inc.Set(uint32_t(t),
                number_array(e, std::vector<double>(r.increase[t].begin(), r.increase[t].end())));
        cb.Set(uint32_t(t), number_array(e, std::vector<double>(r.candidate_bytes[t].begin(),
                                                                r.candidate_bytes[t].end())));
      }
      m.Set("candidates", cand);
      m.Set("referenceLoss", r.reference_loss);
      m.Set("increase", inc);
      m.Set("candidateBytes", cb);
      m.Set("choice", number_array(e, std::vector<double>(r.choice.begin(), r.choice.end())));
      m.Set("predictedIncrease", r.predicted_increase);
      m.Set("loss", r.loss);
      m.Set("budget", double(r.budget));
      m.Set("bytes", double(r.bytes));
      m.Set("lossEvals", double(r.loss_evals));
      o.Set("mixed", m);
    } else {
      o.Set("mixed", e.Null());
    }
    return o;
  };
  call.keep = {info[0].As<Napi::Object>()};
  call.pool = ce.pool;
  return run_async(env, std::move(call));
}

// adapterDescribe(model, blob: Uint8Array) -> encoding (method null): parses and decodes an encoded
// adapter of this model's shape.
Napi::Value AdapterDescribe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  const model::ModelConfig& cfg = s->model->config();
  auto b = array_arg<uint8_t>(info, 1, "blob");
  uint32_t format = 0;
  const auto tensors = codec::parse_adapter(b.data, b.length, cfg.n_norms(), cfg.d_model, &format);
  return encoding_object(env, nullptr, tensors, format);
}

void write_or_return(Napi::Env env, const io::Writer& w, const Napi::CallbackInfo& info,
                     size_t path_index, Napi::Value* out) {
  if (!info[path_index].IsUndefined()) {
    w.write_file(string_arg(info, path_index, "path"));
    *out = env.Undefined();
    return;
  }
  const std::vector<uint8_t> bytes = w.finish();
  *out = copy_bytes(env, bytes.data(), bytes.size());
}

const io::Fingerprint& base_fingerprint(Napi::Env env, const ModelState& s, const char* what) {
  if (!s.model->fingerprint())
    throw_range(env, std::string(what) +
                         ": the base model has no fingerprint yet (it changed since it was loaded "
                         "or saved); save the base model first so the adapter can record which "
                         "base it belongs to");
  return *s.model->fingerprint();
}

// adapterSave(model, gains: Float32Array, meta: string, path?) -> Uint8Array | undefined
Napi::Value AdapterSave(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  auto g = array_arg<float>(info, 1, "gains");
  const model::ModelConfig& cfg = s->model->config();
  expect_length(env, g, "gains", cfg.n_gains(), "n_norms * d_model");
  const std::string meta = string_arg(info, 2, "meta");
  const io::Writer w = model::adapter_writer(cfg, g.data, int64_t(g.length),
                                             base_fingerprint(env, *s, "adapterSave"), meta);
  Napi::Value out;
  write_or_return(env, w, info, 3, &out);
  return out;
}

// adapterSaveEncoded(model, method: string, blob: Uint8Array, meta: string, path?) -> Uint8Array |
// undefined
Napi::Value AdapterSaveEncoded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  const codec::Method method = codec::method_from_name(string_arg(info, 1, "method"));
  auto b = array_arg<uint8_t>(info, 2, "blob");
  const std::string meta = string_arg(info, 3, "meta");
  const model::ModelConfig& cfg = s->model->config();
  uint32_t format = 0;
  const auto tensors = codec::parse_adapter(b.data, b.length, cfg.n_norms(), cfg.d_model, &format);
  codec::check_method_schemes(method, tensors, format);
  const io::Writer w = model::encoded_adapter_writer(
      cfg, method, tensors, base_fingerprint(env, *s, "adapterSaveEncoded"), meta);
  Napi::Value out;
  write_or_return(env, w, info, 4, &out);
  return out;
}

// adapterLoad(model, source: string | Uint8Array) -> { gains: Float32Array, meta: string | null,
//   scheme: 'f32' | method, encoding: encoding | null }
Napi::Value AdapterLoad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = model_arg(info, 0);
  if (!s->model->fingerprint())
    throw_range(
        env,
        "adapterLoad: the base model has no fingerprint yet (it changed since it was loaded or "
        "saved), so no adapter can be matched to it");
  io::ParseOptions opts;  // either adapter kind: load_adapter checks it
  opts.limits = model::adapter_limits(s->model->config());
  const Napi::Value src = info[1];
  if (src.IsString()) model::refuse_model_as_adapter(src.As<Napi::String>().Utf8Value());
  if (src.IsTypedArray() && src.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    auto b = src.As<Napi::Uint8Array>();
    model::refuse_model_as_adapter(b.Data(), b.ElementLength(), "the adapter bytes");
  }
  const io::Container file = container_arg(info, 1, opts);
  const model::LoadedAdapter a =
      model::load_adapter(file, s->model->config(), *s->model->fingerprint());
  Napi::Object out = Napi::Object::New(env);
  out.Set("gains", copy_f32(env, a.gains.data(), a.gains.size()));
  out.Set("meta", a.meta.empty() ? env.Null() : Napi::Value(Napi::String::New(env, a.meta)));
  out.Set("scheme", a.scheme);
  out.Set("encoding", a.encoded.empty()
                          ? env.Null()
                          : Napi::Value(encoding_object(
                                env, a.scheme.c_str(), a.encoded,
                                codec::adapter_format(codec::method_from_name(a.scheme)))));
  return out;
}

}  // namespace

void register_adapter(Napi::Env env, Napi::Object exports) {
  exports.Set("codecMethods", Napi::Function::New(env, guarded<CodecMethods>, "codecMethods"));
  exports.Set("adapterEncodeAsync",
              Napi::Function::New(env, guarded<AdapterEncodeAsync>, "adapterEncodeAsync"));
  exports.Set("adapterDescribe",
              Napi::Function::New(env, guarded<AdapterDescribe>, "adapterDescribe"));
  exports.Set("adapterSave", Napi::Function::New(env, guarded<AdapterSave>, "adapterSave"));
  exports.Set("adapterSaveEncoded",
              Napi::Function::New(env, guarded<AdapterSaveEncoded>, "adapterSaveEncoded"));
  exports.Set("adapterLoad", Napi::Function::New(env, guarded<AdapterLoad>, "adapterLoad"));
}

}  // namespace ternorm::addon
