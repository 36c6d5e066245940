// Module entry: per-instance data, cpuInfo, and the shared argument, error and
// AsyncWorker helpers declared in addon.h.
#include "addon.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <iterator>
#include <new>
#include <stdexcept>

#include "cpu/features.h"

namespace ternorm::addon {

InstanceData& instance(Napi::Env env) {
  InstanceData* d = env.GetInstanceData<InstanceData>();
  if (d == nullptr) throw Napi::Error::New(env, "ternorm addon: instance data missing");
  return *d;
}

// ---- errors --------------------------------------------------------------------------
NativeError classify_current_exception() {
  try {
    throw;
  } catch (const std::invalid_argument& e) {
    return {ErrorKind::Range, e.what()};
  } catch (const std::out_of_range& e) {
    return {ErrorKind::Range, e.what()};
  } catch (const std::length_error& e) {
    return {ErrorKind::Range, e.what()};
  } catch (const std::bad_alloc&) {
    return {ErrorKind::Generic, "ternorm: out of memory"};
  } catch (const std::exception& e) {
    return {ErrorKind::Generic, e.what()};
  } catch (...) {
    return {ErrorKind::Generic, "ternorm: unknown native exception"};
  }
}

Napi::Error make_error(Napi::Env env, const NativeError& e) {
  switch (e.kind) {
    case ErrorKind::Range: return Napi::RangeError::New(env, e.message);
    case ErrorKind::Generic: break;
  }
  return Napi::Error::New(env, e.message);
}

void throw_range(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

void throw_type(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

// ---- argument readers --------------------------------------------------------------
const char* typed_array_name(napi_typedarray_type type) {
  switch (type) {
    case napi_float32_array: return "Float32Array";
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint16_array: return "Uint16Array";
    default: return "typed array";
  }
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

namespace {
constexpr int64_t kMaxSize = int64_t(1) << 31;

double finite_number(const Napi::CallbackInfo& info, size_t index, const char* name,
                     const char* expected) {
  const Napi::Value v = info[index];
  if (!v.IsNumber())
    throw_type(info.Env(), std::string(name) + " must be a number (" + expected + ")");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d))
    throw_range(info.Env(), std::string(name) + " must be " + expected + ", got " + num(d));
  return d;
}
}  // namespace

int64_t size_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const char* expected = "an integer in 1..2^31";
  const double d = finite_number(info, index, name, expected);
  if (d != std::floor(d) || d < 1 || d > double(kMaxSize))
    throw_range(info.Env(), std::string(name) + " must be " + expected + ", got " + num(d));
  return static_cast<int64_t>(d);
}

bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const Napi::Value v = info[index];
  if (!v.IsBoolean()) throw_type(info.Env(), std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

double number_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  return finite_number(info, index, name, "a finite number");
}

float float_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const double d = number_arg(info, index, name);
  if (!(std::fabs(d) <= double(std::numeric_limits<float>::max())))
    throw_range(info.Env(), std::string(name) + " must be within the float range (|" + name +
                                "| <= 3.4028235e38), got " + num(d));
  return float(d);
}

int64_t checked_mul(Napi::Env env, int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r))
    throw_range(env,
                std::string(what) + " overflows: " + std::to_string(a) + " * " + std::to_string(b));
  return r;
}

CallExec exec_arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  InstanceData& d = instance(env);
  if (!d.isa_ok) throw Napi::Error::New(env, d.isa_error);
  const int size = d.pool->size();
  int threads = size;
  const Napi::Value v = info[index];
  if (!v.IsUndefined()) {
    if (!v.IsNumber())
      throw_type(env, "threads must be a number (an integer in 1.." + std::to_string(size) + ")");
    const double t = v.As<Napi::Number>().DoubleValue();
    if (!(t >= 1 && t <= size && t == std::floor(t)))
      throw_range(env, "threads must be an integer in 1.." + std::to_string(size) +
                           " (the pool size), got " + num(t));
    threads = static_cast<int>(t);
  }
  CallExec ce;
  ce.pool = d.pool;
  ce.exec.isa = d.isa;
  ce.exec.pool = d.pool.get();
  ce.exec.threads = threads;
  return ce;
}

void check_finite_native(const float* v, size_t count, const char* name) {
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(v[i]))
      throw std::invalid_argument(std::string(name) + "[" + std::to_string(i) + "] is " +
                                  num(v[i]) + "; expected finite values");
}

void check_finite(Napi::Env env, const float* v, size_t count, const char* name) {
  try {
    check_finite_native(v, count, name);
  } catch (const std::invalid_argument& e) {
    throw_range(env, e.what());
  }
}

I32Arg int32_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const Napi::Value v = info[index];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw_type(info.Env(), std::string(name) + " must be an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return I32Arg{a, a.Data(), a.ElementLength()};
}

std::string string_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsString()) throw_type(info.Env(), std::string(name) + " must be a string");
  return info[index].As<Napi::String>().Utf8Value();
}

int64_t int_prop(Napi::Env env, Napi::Object o, const char* key, int64_t lo, int64_t hi,
                 const char* where) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_type(env, std::string(where) + "." + key + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == std::floor(d) && d >= double(lo) && d <= double(hi)))
    throw_range(env, std::string(where) + "." + key + " must be an integer in " +
                         std::to_string(lo) + ".." + std::to_string(hi) + ", got " + num(d));
  return int64_t(d);
}

double limit_prop(Napi::Env env, Napi::Object o, const limits::Limit& l, const char* where) {
  const Napi::Value v = o.Get(l.name);
  if (!v.IsNumber())
    throw_type(env, std::string(where) + "." + l.name + " must be a number (" + l.range() + ")");
  const double d = v.As<Napi::Number>().DoubleValue();
  try {
    limits::check(l, d, where);
  } catch (const std::invalid_argument& e) {
    throw_range(env, e.what());
  }
  return d;
}

Napi::Object object_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (!info[index].IsObject()) throw_type(info.Env(), std::string(name) + " must be an object");
  return info[index].As<Napi::Object>();
}

Napi::Uint8Array copy_bytes(Napi::Env env, const uint8_t* p, size_t n) {
  auto a = Napi::Uint8Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n);
  return a;
}

Napi::Float32Array copy_f32(Napi::Env env, const float* p, size_t n) {
  auto a = Napi::Float32Array::New(env, n);
  if (n) std::memcpy(a.Data(), p, n * sizeof(float));
  return a;
}

// ---- sync and async execution ----------------------------------------------------------
Napi::Value run_sync(Napi::Env env, KernelCall call) {
  try {
    call.run();
    if (call.finish) return call.finish(env, call.result);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, classify_current_exception());
  }
  return call.result;
}

namespace {

class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, KernelCall call)
      : Napi::AsyncWorker(env, "ternorm:kernel"),
        deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(call.run)),
        finish_(std::move(call.finish)),
        owned_(std::move(call.owned)),
        pool_(std::move(call.pool)) {
    if (!call.result.IsEmpty()) result_ = Napi::Persistent(call.result);
    for (Napi::Object& o : call.keep) refs_.push_back(Napi::Persistent(o));
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      run_();
    } catch (...) {
      failed_ = true;
      error_ = classify_current_exception();
    }
  }

  // Settling fails only when the environment is shutting down (a terminated
  // worker thread): then nobody can observe the promise, and a throw from here
  // would abort the process.
  void OnOK() override {
    try {
      if (failed_) {
        deferred_.Reject(make_error(Env(), error_).Value());
      } else if (finish_) {
        Napi::Value v;
        try {
          v = finish_(Env(), result_.IsEmpty() ? Napi::Object() : result_.Value());
        } catch (const Napi::Error& e) {
          deferred_.Reject(e.Value());
          return;
        } catch (...) {
          deferred_.Reject(make_error(Env(), classify_current_exception()).Value());
          return;
        }
        deferred_.Resolve(v);
      } else {
        deferred_.Resolve(result_.Value());
      }
    } catch (const Napi::Error&) {
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env, Napi::Object)> finish_;
  std::vector<std::shared_ptr<const void>> owned_;  // the input copies `run` reads
  std::shared_ptr<ThreadPool> pool_;
  Napi::ObjectReference result_;
  std::vector<Napi::ObjectReference> refs_;  // pins the native handles `run` uses
  bool failed_ = false;
  NativeError error_;
};

}  // namespace

Napi::Value run_async(Napi::Env env, KernelCall call) {
  auto* worker = new KernelWorker(env, std::move(call));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

// ---- cpuInfo and init ------------------------------------------------------------
namespace {

// { features, supportedIsas, defaultIsa (null when TERNORM_ISA is bad),
//   isaError (null or the reason), threads (pool size) }
Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const InstanceData& d = instance(env);
  const CpuFeatures& f = cpu_features();
  Napi::Object features = Napi::Object::New(env);
  features.Set("avx2", f.avx2);
  features.Set("fma", f.fma);
  features.Set("f16c", f.f16c);
  features.Set("avx512f", f.avx512f);
  features.Set("avx512bw", f.avx512bw);
  features.Set("avx512vl", f.avx512vl);
  features.Set("avx512dq", f.avx512dq);
  features.Set("avx512vnni", f.avx512vnni);
  features.Set("neon", f.neon);
  const std::vector<Isa> isas = supported_isas();
  Napi::Array supported = Napi::Array::New(env, isas.size());
  for (size_t i = 0; i < isas.size(); ++i) supported.Set(uint32_t(i), isa_name(isas[i]));
  Napi::Object out = Napi::Object::New(env);
  out.Set("features", features);
  out.Set("supportedIsas", supported);
  out.Set("defaultIsa",
          d.isa_ok ? Napi::Value(Napi::String::New(env, isa_name(d.isa))) : env.Null());
  out.Set("isaError", d.isa_ok ? env.Null() : Napi::Value(Napi::String::New(env, d.isa_error)));
  out.Set("threads", d.pool->size());
  return out;
}

// limits() -> { model, train, adapterTrain, eval, codec, adapter }: each { [name]: { min, max,
//   minOpen, maxOpen, integer, default (null: none), what } }, the core's ranges and defaults
//   (model/limits.h); and actQuant: { names, default }, the activation quantisation modes, and
//   gradQuant: { names, default (base training), adapterDefault }, the gradient precisions.
Napi::Value Limits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (const limits::Group& g : limits::groups) {
    Napi::Object group = Napi::Object::New(env);
    for (size_t i = 0; i < g.n; ++i) {
      const limits::Limit& l = *g.rows[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("min", l.min);
      o.Set("max", l.max);
      o.Set("minOpen", l.min_open);
      o.Set("maxOpen", l.max_open);
      o.Set("integer", l.integer);
      o.Set("default", std::isnan(l.def) ? env.Null() : Napi::Value(Napi::Number::New(env, l.def)));
      o.Set("what", l.what);
      group.Set(l.name, o);
    }
    out.Set(g.name, group);
  }
  // A named choice: { names, default }.
  auto choice = [&](const char* const* names, size_t n, int def) {
    Napi::Array a = Napi::Array::New(env);
    for (size_t i = 0; i < n; ++i) a.Set(uint32_t(i), names[i]);
    Napi::Object o = Napi::Object::New(env);
    o.Set("names", a);
    o.Set("default", names[def]);
    return o;
  };
  out.Set("actQuant", choice(limits::act_quant::names, std::size(limits::act_quant::names),
                             limits::act_quant::def));
  Napi::Object gq = choice(limits::grad_quant::names, std::size(limits::grad_quant::names),
                           limits::grad_quant::def);
  gq.Set("adapterDefault", limits::grad_quant::names[limits::grad_quant::adapter_def]);
  out.Set("gradQuant", gq);
  return out;
}

}  // namespace

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new InstanceData();
  data->pool = std::make_shared<ThreadPool>(hardware_threads());
  // A bad TERNORM_ISA must not make the addon unloadable (the error would read
  // like a build failure); it is reported by cpuInfo and by every kernel call.
  try {
    data->isa = default_isa();
    data->isa_ok = true;
  } catch (const std::exception& e) {
    std::string supported;
    for (Isa isa : supported_isas())
      supported += std::string(supported.empty() ? "" : ", ") + isa_name(isa);
    const char* forced = std::getenv("TERNORM_ISA");
    data->isa_error = std::string("ternorm: TERNORM_ISA=") + (forced ? forced : "") +
                      " cannot be used (" + e.what() +
                      "); this CPU and build support: " + supported +
                      ". Unset TERNORM_ISA to use the best path.";
  }
  env.SetInstanceData(data);

  exports.Set("cpuInfo", Napi::Function::New(env, guarded<CpuInfo>, "cpuInfo"));
  exports.Set("limits", Napi::Function::New(env, guarded<Limits>, "limits"));
  register_ternary(env, exports);
  register_gemm(env, exports);
  register_norm(env, exports);
  register_model(env, exports);
  register_adapter(env, exports);
  register_tokenizer(env, exports);
  register_decode(env, exports);
  return exports;
}

}  // namespace ternorm::addon

// NODE_API_MODULE needs a plain identifier.
static Napi::Object InitTernorm(Napi::Env env, Napi::Object exports) {
  return ternorm::addon::init(env, exports);
}
NODE_API_MODULE(ternorm, InitTernorm)
