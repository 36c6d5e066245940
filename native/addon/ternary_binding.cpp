// Bindings of native/ternary/ternary.h: absmean quantisation, the two packings,
// per-token int8 activations and the three ternary matmuls (sync and async).
// Weights travel as (packed: Uint8Array, scales: Float32Array, rows, cols) in
// the 2-bit compute layout; every length is checked here before the core sees
// a pointer.
#include <string>

#include "addon.h"
#include "ternary/ternary.h"

namespace ternorm::addon {
namespace {

using ternary::PackedTernary;

// (packed, scales, rows, cols) at info[first..first+3].
struct WeightsArg {
  PackedTernary w;
  ArrayArg<uint8_t> packed;
  ArrayArg<float> scales;
};

WeightsArg weights_arg(const Napi::CallbackInfo& info, size_t first) {
  Napi::Env env = info.Env();
  auto packed = array_arg<uint8_t>(info, first, "packed");
  auto scales = array_arg<float>(info, first + 1, "scales");
  const int64_t rows = size_arg(info, first + 2, "rows");
  const int64_t cols = size_arg(info, first + 3, "cols");
  expect_length(env, packed, "packed", ternary::packed2_bytes(rows, cols),
                "padded_rows(rows) * padded_cols(cols) / 4");
  expect_length(env, scales, "scales", rows, "rows");
  WeightsArg a;
  a.w.data = packed.data;
  a.w.scales = scales.data;
  a.w.rows = rows;
  a.w.cols = cols;
  a.packed = packed;
  a.scales = scales;
  return a;
}

// absmeanQuantize(w: Float32Array, rows, cols, perRow) -> { trits, scales }
Napi::Value AbsmeanQuantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto w = array_arg<float>(info, 0, "w");
  const int64_t rows = size_arg(info, 1, "rows");
  const int64_t cols = size_arg(info, 2, "cols");
  const bool per_row = bool_arg(info, 3, "perRow");
  const int64_t count = checked_mul(env, rows, cols, "rows * cols");
  expect_length(env, w, "w", count, "rows * cols");
  auto trits = Napi::Int8Array::New(env, size_t(count));
  auto scales = Napi::Float32Array::New(env, size_t(rows));
  ternary::absmean_quantize(w.data, rows, cols, per_row, trits.Data(), scales.Data());
  Napi::Object out = Napi::Object::New(env);
  out.Set("trits", trits);
  out.Set("scales", scales);
  return out;
}

// pack2(trits: Int8Array, rows, cols) -> Uint8Array (2-bit compute layout)
Napi::Value Pack2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto trits = array_arg<int8_t>(info, 0, "trits");
  const int64_t rows = size_arg(info, 1, "rows");
  const int64_t cols = size_arg(info, 2, "cols");
  expect_length(env, trits, "trits", checked_mul(env, rows, cols, "rows * cols"), "rows * cols");
  auto packed = Napi::Uint8Array::New(env, size_t(ternary::packed2_bytes(rows, cols)));
  ternary::pack2(trits.data, rows, cols, packed.Data());
  return packed;
}

// unpack2(packed: Uint8Array, rows, cols) -> Int8Array
Napi::Value Unpack2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto packed = array_arg<uint8_t>(info, 0, "packed");
  const int64_t rows = size_arg(info, 1, "rows");
  const int64_t cols = size_arg(info, 2, "cols");
  const int64_t count = checked_mul(env, rows, cols, "rows * cols");
  expect_length(env, packed, "packed", ternary::packed2_bytes(rows, cols),
                "padded_rows(rows) * padded_cols(cols) / 4");
  auto trits = Napi::Int8Array::New(env, size_t(count));
  ternary::unpack2(packed.data, rows, cols, trits.Data());
  return trits;
}

// pack5(trits: Int8Array) -> Uint8Array (5 trits per byte)
Napi::Value Pack5(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto trits = array_arg<int8_t>(info, 0, "trits");
  if (trits.length == 0) throw_range(env, "trits must not be empty");
  const int64_t count = int64_t(trits.length);
  auto out = Napi::Uint8Array::New(env, size_t(ternary::packed5_bytes(count)));
  ternary::pack5(trits.data, count, out.Data());
  return out;
}

// unpack5(bytes: Uint8Array, count) -> Int8Array
Napi::Value Unpack5(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto bytes = array_arg<uint8_t>(info, 0, "bytes");
  const Napi::Value cv = info[1];
  if (!cv.IsNumber()) throw_type(env, "count must be a number");
  const double cd = cv.As<Napi::Number>().DoubleValue();
  // count may exceed 2^31 (rows * cols); bound it by what the bytes can hold.
  if (!(cd >= 1 && cd <= 5.0 * double(bytes.length) && cd == double(int64_t(cd))))
    throw_range(env, "count must be an integer in 1.." + std::to_string(5 * bytes.length) +
                         " (5 trits per byte of " + std::to_string(bytes.length) + " bytes)");
  const int64_t count = int64_t(cd);
  expect_length(env, bytes, "bytes", ternary::packed5_bytes(count), "ceil(count / 5)");
  auto trits = Napi::Int8Array::New(env, size_t(count));
  ternary::unpack5(bytes.data, count, trits.Data());
  return trits;
}

// quantizeActivations / quantizeActivationsBlock(x: Float32Array, n, cols, threads?)
//   -> { q, scales } (scales: n, or n * act_blocks(cols) per block)
template <bool Block>
Napi::Value QuantizeActivations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = array_arg<float>(info, 0, "x");
  const int64_t n = size_arg(info, 1, "n");
  const int64_t cols = size_arg(info, 2, "cols");
  expect_length(env, x, "x", checked_mul(env, n, cols, "n * cols"), "n * cols");
  const CallExec ce = exec_arg(info, 3);
  const int64_t qlen = checked_mul(env, n, ternary::padded_cols(cols), "n * padded_cols(cols)");
  auto q = Napi::Int8Array::New(env, size_t(qlen));
  auto scales = Napi::Float32Array::New(env, size_t(Block ? n * ternary::act_blocks(cols) : n));
  if (Block)
    ternary::quantize_activations_block(x.data, n, cols, q.Data(), scales.Data(), ce.exec);
  else
    ternary::quantize_activations(x.data, n, cols, q.Data(), scales.Data(), ce.exec);
  Napi::Object out = Napi::Object::New(env);
  out.Set("q", q);
  out.Set("scales", scales);
  return out;
}

// gemmI8 / gemmI8Block(packed, scales, rows, cols, q: Int8Array, xScales: Float32Array, n,
//   threads?) (xScales: n, or n * act_blocks(cols) per block)
template <bool Block>
KernelCall gemm_i8_call(const Napi::CallbackInfo& info, CallMode mode) {
  Napi::Env env = info.Env();
  WeightsArg w = weights_arg(info, 0);
  auto q = array_arg<int8_t>(info, 4, "q");
  auto xs = array_arg<float>(info, 5, "xScales");
  const int64_t n = size_arg(info, 6, "n");
  expect_length(env, q, "q", checked_mul(env, n, ternary::padded_cols(w.w.cols), "n * paddedCols"),
                "n * paddedCols");
  if (Block)
    expect_length(env, xs, "xScales",
                  checked_mul(env, n, ternary::act_blocks(w.w.cols), "n * blocks"),
                  "n * ceil(cols / 256)");
  else
    expect_length(env, xs, "xScales", n, "n");
  const CallExec ce = exec_arg(info, 7);
  auto y = Napi::Float32Array::New(env, size_t(checked_mul(env, n, w.w.rows, "n * rows")));
  KernelCall call(mode);
  w.w.data = call.input(w.packed);
  w.w.scales = call.input(w.scales);
  call.run = [w = w.w, q = call.input(q), xs = call.input(xs), n, y = y.Data(), ex = ce.exec] {
    if (Block)
      ternary::gemm_i8_block(w, q, xs, n, y, ex);
    else
      ternary::gemm_i8(w, q, xs, n, y, ex);
  };
  call.result = y;
  call.pool = ce.pool;
  return call;
}

// matmulF32 / matmulF32T(packed, scales, rows, cols, in: Float32Array, n, threads?)
template <bool Transposed>
KernelCall matmul_call(const Napi::CallbackInfo& info, CallMode mode) {
  Napi::Env env = info.Env();
  WeightsArg w = weights_arg(info, 0);
  const char* in_name = Transposed ? "dy" : "x";
  auto in = array_arg<float>(info, 4, in_name);
  const int64_t n = size_arg(info, 5, "n");
  const int64_t in_width = Transposed ? w.w.rows : w.w.cols;
  const int64_t out_width = Transposed ? w.w.cols : w.w.rows;
  const size_t in_count = size_t(checked_mul(env, n, in_width, "n * width"));
  expect_length(env, in, in_name, int64_t(in_count), Transposed ? "n * rows" : "n * cols");
  const CallExec ce = exec_arg(info, 6);
  auto out = Napi::Float32Array::New(env, size_t(checked_mul(env, n, out_width, "n * width")));
  KernelCall call(mode);
  w.w.data = call.input(w.packed);
  w.w.scales = call.input(w.scales);
  call.run = [w = w.w, in = call.input(in), in_count, in_name, n, out = out.Data(), ex = ce.exec] {
    check_finite_native(in, in_count, in_name);
    if (Transposed)
      ternary::matmul_f32_t(w, in, n, out, ex);
    else
      ternary::matmul_f32(w, in, n, out, ex);
  };
  call.result = out;
  call.pool = ce.pool;
  return call;
}

Napi::Value GemmI8(const Napi::CallbackInfo& info) {
  return run_sync(info.Env(), gemm_i8_call<false>(info, CallMode::Sync));
}
Napi::Value GemmI8Async(const Napi::CallbackInfo& info) {
  return run_async(info.Env(), gemm_i8_call<false>(info, CallMode::Async));
}
Napi::Value GemmI8Block(const Napi::CallbackInfo& info) {
  return run_sync(info.Env(), gemm_i8_call<true>(info, CallMode::Sync));
}
Napi::Value MatmulF32(const Napi::CallbackInfo& info) {
  return run_sync(info.Env(), matmul_call<false>(info, CallMode::Sync));
}
Napi::Value MatmulF32Async(const Napi::CallbackInfo& info) {
  return run_async(info.Env(), matmul_call<false>(info, CallMode::Async));
}
Napi::Value MatmulF32T(const Napi::CallbackInfo& info) {
  return run_sync(info.Env(), matmul_call<true>(info, CallMode::Sync));
}
Napi::Value MatmulF32TAsync(const Napi::CallbackInfo& info) {
  return run_async(info.Env(), matmul_call<true>(info, CallMode::Async));
}

}  // namespace

void register_ternary(Napi::Env env, Napi::Object exports) {
  // The layout constants, so JS sizes buffers from the core's own numbers.
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("rowPanel", double(ternary::kRowPanel));
  layout.Set("colBlock", double(ternary::kColBlock));
  exports.Set("ternaryLayout", layout);
  exports.Set("absmeanQuantize",
              Napi::Function::New(env, guarded<AbsmeanQuantize>, "absmeanQuantize"));
  exports.Set("pack2", Napi::Function::New(env, guarded<Pack2>, "pack2"));
  exports.Set("unpack2", Napi::Function::New(env, guarded<Unpack2>, "unpack2"));
  exports.Set("pack5", Napi::Function::New(env, guarded<Pack5>, "pack5"));
  exports.Set("unpack5", Napi::Function::New(env, guarded<Unpack5>, "unpack5"));
  exports.Set("quantizeActivations",
              Napi::Function::New(env, guarded<QuantizeActivations<false>>, "quantizeActivations"));
  exports.Set(
      "quantizeActivationsBlock",
      Napi::Function::New(env, guarded<QuantizeActivations<true>>, "quantizeActivationsBlock"));
  exports.Set("gemmI8Block", Napi::Function::New(env, guarded<GemmI8Block>, "gemmI8Block"));
  exports.Set("gemmI8", Napi::Function::New(env, guarded<GemmI8>, "gemmI8"));
  exports.Set("gemmI8Async", Napi::Function::New(env, guarded<GemmI8Async>, "gemmI8Async"));
  exports.Set("matmulF32", Napi::Function::New(env, guarded<MatmulF32>, "matmulF32"));
  exports.Set("matmulF32Async",
              Napi::Function::New(env, guarded<MatmulF32Async>, "matmulF32Async"));
  exports.Set("matmulF32T", Napi::Function::New(env, guarded<MatmulF32T>, "matmulF32T"));
  exports.Set("matmulF32TAsync",
              Napi::Function::New(env, guarded<MatmulF32TAsync>, "matmulF32TAsync"));
}

}  // namespace ternorm::addon
