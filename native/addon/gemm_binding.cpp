// Binding of native/gemm/gemm.h: C = alpha * op(A) * op(B) + beta * C on dense,
// row-major, unstrided Float32Arrays (sync and async).
#include <cstdint>
#include <cstring>
#include <string>

#include "addon.h"
#include "gemm/gemm.h"

namespace ternorm::addon {
namespace {

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

// gemmF32(a, b, m, n, k, transA, transB, alpha, beta, c?, threads?) -> C
// With c (m x n) the result is written into c and c is returned; without c a
// new array is returned and beta must be 0.
KernelCall gemm_call(const Napi::CallbackInfo& info, CallMode mode) {
  Napi::Env env = info.Env();
  auto a = array_arg<float>(info, 0, "a");
  auto b = array_arg<float>(info, 1, "b");
  gemm::GemmArgs g;
  g.m = size_arg(info, 2, "m");
  g.n = size_arg(info, 3, "n");
  g.k = size_arg(info, 4, "k");
  g.trans_a = bool_arg(info, 5, "transA");
  g.trans_b = bool_arg(info, 6, "transB");
  g.alpha = float_arg(info, 7, "alpha");
  g.beta = float_arg(info, 8, "beta");
  const float beta = g.beta;
  const int64_t a_count = checked_mul(env, g.m, g.k, "m * k");
  const int64_t b_count = checked_mul(env, g.k, g.n, "k * n");
  const int64_t c_count = checked_mul(env, g.m, g.n, "m * n");
  expect_length(env, a, "a", a_count, "m * k");
  expect_length(env, b, "b", b_count, "k * n");

  KernelCall call(mode);
  Napi::Float32Array c_arr;
  float* c_data = nullptr;
  const Napi::Value cv = info[9];
  const bool c_given = !(cv.IsUndefined() || cv.IsNull());
  if (!c_given) {
    if (beta != 0)
      throw_range(env, "beta = " + num(beta) + " needs c to accumulate into; pass c, or beta = 0");
    c_arr = Napi::Float32Array::New(env, size_t(c_count));
    c_data = c_arr.Data();
  } else {
    auto c = array_arg<float>(info, 9, "c");
    expect_length(env, c, "c", c_count, "m * n");
    if (overlaps(c.data, c.length * 4, a.data, a.length * 4) ||
        overlaps(c.data, c.length * 4, b.data, b.length * 4))
      throw_range(env, "c must not share memory with a or b (it is written while they are read)");
    c_arr = c.object.As<Napi::Float32Array>();
    // Async: c is JS memory the caller can still detach, so the call works in
    // a copy and writes it back on settling (see KernelCall in addon.h).
    c_data = call.input(c);
  }
  const CallExec ce = exec_arg(info, 10);

  g.a = call.input(a);
  g.lda = g.trans_a ? g.m : g.k;
  g.b = call.input(b);
  g.ldb = g.trans_b ? g.k : g.n;
  g.c = c_data;
  g.ldc = g.n;
  call.run = [g, a_count, b_count, c_count, ex = ce.exec] {
    check_finite_native(g.a, size_t(a_count), "a");
    check_finite_native(g.b, size_t(b_count), "b");
    if (g.beta != 0.0f) check_finite_native(g.c, size_t(c_count), "c");
    gemm::gemm_f32(g, ex);
  };
  call.result = c_arr;
  if (c_given && mode == CallMode::Async) {
    call.finish = [c_data, c_count](Napi::Env e, Napi::Object result) -> Napi::Value {
      Napi::Float32Array c = result.As<Napi::Float32Array>();
      if (c.ElementLength() != size_t(c_count))
        throw Napi::Error::New(e,
                               "gemmF32Async: c was detached (transferred) while the call ran; "
                               "the result was dropped");
      std::memcpy(c.Data(), c_data, size_t(c_count) * sizeof(float));
      return c;
    };
  }
  call.pool = ce.pool;
  return call;
}

Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  return run_sync(info.Env(), gemm_call(info, CallMode::Sync));
}
Napi::Value GemmF32Async(const Napi::CallbackInfo& info) {
  return run_async(info.Env(), gemm_call(info, CallMode::Async));
}

}  // namespace

void register_gemm(Napi::Env env, Napi::Object exports) {
  exports.Set("gemmF32", Napi::Function::New(env, guarded<GemmF32>, "gemmF32"));
  exports.Set("gemmF32Async", Napi::Function::New(env, guarded<GemmF32Async>, "gemmF32Async"));
}

}  // namespace ternorm::addon
