// Bindings of native/norm/rmsnorm.h: the fused RMSNorm-with-gain forward (fp32
// or int8 output) and its backward. A gain travels as (scheme, data, scale),
// the scheme by its registry name (norm/gain_codec.cpp, the codec's names):
//   "raw_fp32"        -> Float32Array[d]
//   "raw_fp16"        -> Uint16Array[d] (IEEE binary16 bit patterns)
//   "int8_per_tensor" -> Int8Array[d] and a finite scale (g = q * scale)
#include <string>

#include "addon.h"
#include "norm/rmsnorm.h"
#include "ternary/ternary.h"

namespace ternorm::addon {
namespace {

struct NormArgs {
  norm::RmsNormArgs args;
  float scale = 0;  // the int8 scheme's parameter, pointed to by args.gain.params
};

// (x, n, d, wBase, scheme, gainData, gainScale, eps) at info[0..7]. The result
// holds a pointer to its own `scale`, so it is filled in place.
void norm_args(const Napi::CallbackInfo& info, NormArgs& out) {
  Napi::Env env = info.Env();
  auto x = array_arg<float>(info, 0, "x");
  const int64_t n = size_arg(info, 1, "n");
  const int64_t d = size_arg(info, 2, "d");
  auto w_base = array_arg<float>(info, 3, "wBase");
  expect_length(env, x, "x", checked_mul(env, n, d, "n * d"), "n * d");
  expect_length(env, w_base, "wBase", d, "d");
  const Napi::Value sv = info[4];
  const auto name = [](norm::GainScheme s) {
    return std::string(norm::find_gain_decoder(s)->name);
  };
  const std::string f32 = name(norm::GainScheme::F32), f16 = name(norm::GainScheme::F16),
                    i8 = name(norm::GainScheme::Int8PerTensor);
  const std::string expected = "'" + f32 + "', '" + f16 + "' or '" + i8 + "'";
  if (!sv.IsString()) throw_type(env, "gain.scheme must be a string: " + expected);
  const std::string scheme = sv.As<Napi::String>().Utf8Value();
  norm::GainView& g = out.args.gain;
  g.d = d;
  if (scheme == f32) {
    auto data = array_arg<float>(info, 5, ("gain.data (scheme '" + f32 + "')").c_str());
    expect_length(env, data, "gain.data", d, "d");
    g.scheme = norm::GainScheme::F32;
    g.data = data.data;
    g.data_bytes = data.length * sizeof(float);
  } else if (scheme == f16) {
    auto data = array_arg<uint16_t>(info, 5, ("gain.data (scheme '" + f16 + "')").c_str());
    expect_length(env, data, "gain.data", d, "d");
    g.scheme = norm::GainScheme::F16;
    g.data = data.data;
    g.data_bytes = data.length * sizeof(uint16_t);
  } else if (scheme == i8) {
    auto data = array_arg<int8_t>(info, 5, ("gain.data (scheme '" + i8 + "')").c_str());
    expect_length(env, data, "gain.data", d, "d");
    out.scale = float_arg(info, 6, "gain.scale");
    g.scheme = norm::GainScheme::Int8PerTensor;
    g.data = data.data;
    g.data_bytes = data.length;
    g.params = &out.scale;
    g.n_params = 1;
  } else {
    throw_range(env, "gain.scheme must be " + expected + ", got '" + scheme + "'");
  }
  out.args.x = x.data;
  out.args.n = n;
  out.args.d = d;
  out.args.w_base = w_base.data;
  out.args.eps = float_arg(info, 7, "eps");
}

// rmsNormGain(x, n, d, wBase, scheme, gainData, gainScale, eps, threads?) -> y
Napi::Value RmsNormGain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NormArgs a;
  norm_args(info, a);
  const CallExec ce = exec_arg(info, 8);
  auto y = Napi::Float32Array::New(env, size_t(a.args.n * a.args.d));
  norm::rmsnorm_gain_f32(a.args, y.Data(), ce.exec);
  return y;
}

// rmsNormGainI8(x, n, d, wBase, scheme, gainData, gainScale, eps, threads?) -> { q, scales }
Napi::Value RmsNormGainI8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NormArgs a;
  norm_args(info, a);
  const CallExec ce = exec_arg(info, 8);
  const int64_t qlen =
      checked_mul(env, a.args.n, ternary::padded_cols(a.args.d), "n * padded_cols(d)");
  auto q = Napi::Int8Array::New(env, size_t(qlen));
  auto scales = Napi::Float32Array::New(env, size_t(a.args.n));
  norm::rmsnorm_gain_i8(a.args, q.Data(), scales.Data(), ce.exec);
  Napi::Object out = Napi::Object::New(env);
  out.Set("q", q);
  out.Set("scales", scales);
  return out;
}

// rmsNormGainBackward(x, n, d, wBase, scheme, gainData, gainScale, eps, dy, threads?)
//   -> { dx, dGain }
Napi::Value RmsNormGainBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  NormArgs a;
  norm_args(info, a);
  auto dy = array_arg<float>(info, 8, "dy");
  expect_length(env, dy, "dy", a.args.n * a.args.d, "n * d");
  const CallExec ce = exec_arg(info, 9);
  auto dx = Napi::Float32Array::New(env, size_t(a.args.n * a.args.d));
  auto dgain = Napi::Float32Array::New(env, size_t(a.args.d));
  norm::rmsnorm_gain_backward(a.args, dy.data, dx.Data(), dgain.Data(), ce.exec);
  Napi::Object out = Napi::Object::New(env);
  out.Set("dx", dx);
  out.Set("dGain", dgain);
  return out;
}

}  // namespace

void register_norm(Napi::Env env, Napi::Object exports) {
  exports.Set("rmsNormGain", Napi::Function::New(env, guarded<RmsNormGain>, "rmsNormGain"));
  exports.Set("rmsNormGainI8", Napi::Function::New(env, guarded<RmsNormGainI8>, "rmsNormGainI8"));
  exports.Set("rmsNormGainBackward",
              Napi::Function::New(env, guarded<RmsNormGainBackward>, "rmsNormGainBackward"));
}

}  // namespace ternorm::addon
