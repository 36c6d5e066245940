// Shared pieces of the N-API glue: the per-instance data (thread pool and ISA
// path), argument readers that check types, integers and lengths before any
// pointer reaches the core, the mapping of core exceptions to JS errors, and
// the AsyncWorker that runs one kernel call off the JS thread.
//
// Error classes: a JS value of the wrong type -> TypeError (thrown here); a
// wrong size, length, range or value, including the core's
// std::invalid_argument -> RangeError; anything else (a bad TERNORM_ISA, out of
// memory) -> Error.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/isa.h"
#include "cpu/thread_pool.h"
#include "model/limits.h"
#include "tokenizer/vocab.h"

namespace ternorm::addon {

// One per addon instance (main thread and every worker_thread get their own).
// The pool is shared with the AsyncWorkers in flight, so it outlives a
// worker's Execute even if the instance is torn down meanwhile.
struct InstanceData {
  std::shared_ptr<ThreadPool> pool;
  bool isa_ok = false;
  Isa isa = Isa::Scalar;
  std::string isa_error;  // why default_isa() failed (TERNORM_ISA), when !isa_ok
  // Constructors of the model bindings' wrapped classes (model_binding.cpp).
  Napi::FunctionReference model_class, trainer_class;
  Napi::FunctionReference decoder_class;  // decode_binding.cpp
};

InstanceData& instance(Napi::Env env);

// ---- errors --------------------------------------------------------------------
enum class ErrorKind { Range, Generic };

struct NativeError {
  ErrorKind kind = ErrorKind::Generic;
  std::string message;
};

// Classifies the exception being handled (call inside a catch block).
NativeError classify_current_exception();
Napi::Error make_error(Napi::Env env, const NativeError& e);

[[noreturn]] void throw_range(Napi::Env env, const std::string& message);
[[noreturn]] void throw_type(Napi::Env env, const std::string& message);
// A number for messages ("%.9g": nan, inf, 1e+39).
std::string num(double v);

// Wraps a binding so that a core exception becomes the right JS error class
// instead of terminating the process.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(info.Env(), classify_current_exception());
  }
}

// ---- argument readers ------------------------------------------------------------
// A typed-array argument of element type T, checked for its exact JS type.
template <typename T>
struct ArrayArg {
  Napi::TypedArray object;
  T* data = nullptr;
  size_t length = 0;  // elements
};

template <typename T>
napi_typedarray_type typed_array_type();
template <>
inline napi_typedarray_type typed_array_type<float>() {
  return napi_float32_array;
}
template <>
inline napi_typedarray_type typed_array_type<int8_t>() {
  return napi_int8_array;
}
template <>
inline napi_typedarray_type typed_array_type<uint8_t>() {
  return napi_uint8_array;
}
template <>
inline napi_typedarray_type typed_array_type<uint16_t>() {
  return napi_uint16_array;
}
const char* typed_array_name(napi_typedarray_type type);
inline const char* typed_array_article(napi_typedarray_type type) {
  return type == napi_int8_array ? "an" : "a";
}

template <typename T>
ArrayArg<T> array_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  const Napi::Value v = info[index];
  const napi_typedarray_type want = typed_array_type<T>();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
    throw_type(info.Env(), std::string(name) + " must be " + typed_array_article(want) + " " +
                               typed_array_name(want));
  Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();
  return ArrayArg<T>{a, a.Data(), a.ElementLength()};
}

// Throws RangeError unless arr.length == expected.
template <typename T>
void expect_length(Napi::Env env, const ArrayArg<T>& arr, const char* name, int64_t expected,
                   const char* formula) {
  if (static_cast<uint64_t>(expected) != arr.length)
    throw_range(env, std::string(name) + " must have " + formula + " = " +
                         std::to_string(expected) + " elements, got " + std::to_string(arr.length));
}

// A positive integer size <= 2^31 (every core dimension fits that bound).
int64_t size_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
bool bool_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// A finite number.
double number_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// A finite number within the float range (it is used as a float).
float float_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// a * b (* c), or RangeError naming the product when it overflows int64.
int64_t checked_mul(Napi::Env env, int64_t a, int64_t b, const char* what);

// The execution context of one call: the instance's ISA path and pool, and the
// threads argument at `index` (undefined = the whole pool, else an integer in
// 1..pool size). Throws Error when TERNORM_ISA was invalid.
struct CallExec {
  Exec exec;
  std::shared_ptr<ThreadPool> pool;  // keeps exec.pool alive
};
CallExec exec_arg(const Napi::CallbackInfo& info, size_t index);

struct I32Arg {
  Napi::Int32Array object;
  const int32_t* data = nullptr;
  size_t length = 0;
};
I32Arg int32_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
std::string string_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
Napi::Object object_arg(const Napi::CallbackInfo& info, size_t index, const char* name);
// The property l.name of an options object, a number within the core's range l
// (TypeError when not a number, RangeError naming "<where>.<name>" and the
// range otherwise).
double limit_prop(Napi::Env env, Napi::Object o, const limits::Limit& l, const char* where);
// A property of an options object: an integer in lo..hi.
int64_t int_prop(Napi::Env env, Napi::Object o, const char* key, int64_t lo, int64_t hi,
                 const char* where);
// New JS arrays holding a copy of native data.
Napi::Uint8Array copy_bytes(Napi::Env env, const uint8_t* p, size_t n);
Napi::Float32Array copy_f32(Napi::Env env, const float* p, size_t n);

// Throws RangeError naming the first non-finite element of v[0..count).
void check_finite(Napi::Env env, const float* v, size_t count, const char* name);
// Same, for use off the JS thread: throws std::invalid_argument.
void check_finite_native(const float* v, size_t count, const char* name);

// ---- running a kernel synchronously or on the libuv pool ---------------------------
// A kernel call packaged for either path. `run` touches only native memory.
//
// Memory ownership of an async call (why: JS keeps running while `run` does,
// and a reference to a typed array does not keep its backing store alive —
// structuredClone/postMessage with a transfer list detaches and frees it):
//  - inputs: `input()` copies each typed-array argument into memory the call
//    owns, on the JS thread before the call is queued, so `run` never reads a
//    JS buffer. The copy is O(inputs) against the kernel's O(compute), and it
//    lets the caller reuse, mutate or transfer its arrays at once.
//  - outputs: `result` is a fresh array no JS code can reach until the promise
//    resolves with it, so it cannot be detached while `run` writes it. An
//    output the caller passed in (gemmF32Async's `c`) is computed in an owned
//    copy and copied back by `finish` on settling; if the caller detached it
//    meanwhile, the promise rejects and nothing is written.
//  - `keep` pins only native handles (model, trainer) whose C++ objects `run`
//    uses; never a typed array.
// A sync call runs to completion before any JS can run, so `input()` hands
// out the JS buffer's own pointer; a sync call given a detached array sees
// length 0 and fails its length check (RangeError).
//
// A call whose result is built only when it is done sets `finish`, which runs
// on the JS thread after `run` and receives `result` (possibly empty).
enum class CallMode { Sync, Async };

struct KernelCall {
  explicit KernelCall(CallMode m) : mode(m) {}
  CallMode mode;
  std::function<void()> run;
  Napi::Object result;
  std::function<Napi::Value(Napi::Env, Napi::Object result)> finish;
  std::vector<Napi::Object> keep;
  std::vector<std::shared_ptr<const void>> owned;  // the async copies `run` reads
  std::shared_ptr<ThreadPool> pool;  // keeps the Exec's pool alive while `run` may use it

  // The memory `run` may read for an input of `n` elements at `p`: `p` itself
  // for a sync call, a copy owned by the call for an async one.
  template <typename T>
  T* input(T* p, size_t n) {
    if (mode == CallMode::Sync) return p;
    auto copy = std::make_shared<std::vector<std::remove_const_t<T>>>(p, p + n);
    owned.push_back(copy);
    return copy->data();
  }
  template <typename T>
  T* input(const ArrayArg<T>& a) {
    return input(a.data, a.length);
  }
};

Napi::Value run_sync(Napi::Env env, KernelCall call);
Napi::Value run_async(Napi::Env env, KernelCall call);  // returns a Promise

// ---- tokenizer metadata (tokenizer_binding.cpp) ---------------------------------
// A plain metadata object { model, pre?, tokens, scores?: Float32Array, tokenTypes?: Int32Array,
// merges?, bos?, eos?, unk?, pad?, addBos?, addEos?, addSpacePrefix? } and back.
tok::VocabData vocab_data_arg(const Napi::CallbackInfo& info, size_t index);
Napi::Object vocab_object(Napi::Env env, const tok::VocabData& d);

// ---- registration ----------------------------------------------------------------
void register_ternary(Napi::Env env, Napi::Object exports);
void register_gemm(Napi::Env env, Napi::Object exports);
void register_norm(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_adapter(Napi::Env env, Napi::Object exports);
void register_tokenizer(Napi::Env env, Napi::Object exports);
void register_decode(Napi::Env env, Napi::Object exports);

}  // namespace ternorm::addon
