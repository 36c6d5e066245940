// The codec's front door: views of encodings, method names, the per-adapter
// dispatch, and the helpers every family shares (util.h).
#include "codec.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "util.h"

namespace ternorm::codec {

namespace detail {

void check_gains(const char* what, const float* g, int64_t d, bool bounded) {
  const std::string pre = std::string(what) + ": ";
  if (g == nullptr) throw std::invalid_argument(pre + "gains pointer is null, expected d floats");
  if (d <= 0 || d > kMaxD)
    throw std::invalid_argument(pre + "d = " + std::to_string(d) +
                                ", expected 0 < d <= " + std::to_string(kMaxD));
  for (int64_t i = 0; i < d; ++i) {
    if (!std::isfinite(g[i]))
      throw std::invalid_argument(pre + "gain[" + std::to_string(i) +
                                  "] = " + std::to_string(g[i]) + ", expected a finite gain");
    if (bounded && !(std::fabs(double(g[i])) <= kMaxGainMagnitude))
      throw std::invalid_argument(pre + "gain[" + std::to_string(i) +
                                  "] = " + std::to_string(g[i]) +
                                  ", expected |g| <= 2^64 (gains are factors near 1)");
  }
}

void check_nibble_padding(const norm::GainView& g) {
  if ((g.d & 1) && get_nibble(static_cast<const uint8_t*>(g.data), g.d) != 0)
    throw std::invalid_argument(
        decoder_prefix(g.scheme) + "the padding nibble after gain[" + std::to_string(g.d - 1) +
        "] is " + std::to_string(get_nibble(static_cast<const uint8_t*>(g.data), g.d)) +
        ", expected 0 (odd d)");
}

double eval_loss(const AdapterLoss& loss, const std::vector<const EncodedGain*>& enc,
                 const std::string& candidate, int64_t* evals) {
  std::vector<norm::GainView> views;
  views.reserve(enc.size());
  for (const EncodedGain* e : enc) views.push_back(e->view());
  const double v = loss(views);
  ++*evals;
  if (!std::isfinite(v))
    throw std::invalid_argument("the loss callback returned " + std::to_string(v) + " for " +
                                candidate + ", expected a finite loss");
  return v;
}

bool same_encoding(const EncodedGain& a, const EncodedGain& b) {
  return a.scheme == b.scheme && a.d == b.d && a.payload == b.payload &&
         a.params.size() == b.params.size() &&
         (a.params.empty() ||
          std::memcmp(a.params.data(), b.params.data(), a.params.size() * sizeof(float)) == 0);
}

std::string decoder_prefix(norm::GainScheme scheme) {
  return std::string("gain (") + scheme_name(scheme) + "): ";
}

}  // namespace detail

norm::GainView EncodedGain::view() const {
  return norm::GainView{
      scheme,       d, payload.data(), payload.size(), params.empty() ? nullptr : params.data(),
      params.size()};
}

const char* scheme_name(norm::GainScheme scheme) {
  const norm::GainDecoder* dec = norm::find_gain_decoder(scheme);
  if (dec == nullptr)
    throw std::invalid_argument("codec: unknown gain scheme " + std::to_string(uint32_t(scheme)));
  return dec->name;
}

std::vector<std::pair<std::string, std::vector<float>>> named_params(const EncodedGain& e) {
  const std::vector<float>& p = e.params;
  using norm::GainScheme;
  switch (e.scheme) {
    case GainScheme::F32:
    case GainScheme::F16: return {};
    case GainScheme::Int8PerTensor:
    case GainScheme::Int8Delta:
    case GainScheme::Int4Delta: return {{"scale", p}};
    case GainScheme::Int8Asym: return {{"scale", {p.at(0)}}, {"zeroPoint", {p.at(1)}}};
    case GainScheme::Int8Group:
      return {{"blockSize", {p.at(0)}}, {"scale", std::vector<float>(p.begin() + 1, p.end())}};
    case GainScheme::KMeans16:
    case GainScheme::KMeans256: return {{"centroids", p}};
  }
  throw std::invalid_argument("codec: unknown gain scheme " + std::to_string(uint32_t(e.scheme)));
}

// ---- methods -------------------------------------------------------------------------

namespace {

struct MethodRow {
  Method method;
  const char* name;
};
const MethodRow kMethods[] = {
    {Method::RawF32, "raw_fp32"},
    {Method::RawF16, "raw_fp16"},
    {Method::Int8PerTensor, "int8_per_tensor"},
    {Method::Int8Group, "int8_group"},
    {Method::Int8Asym, "int8_asym"},
    {Method::Int8Delta, "int8_delta"},
    {Method::Int4Delta, "int4_delta"},
    {Method::KMeans16, "kmeans16"},
    {Method::KMeans256, "kmeans256"},
    {Method::Int4Calibrated, "int4_calibrated"},
    {Method::Mixed, "mixed"},
};

}  // namespace

const char* method_name(Method m) {
  for (const MethodRow& r : kMethods)
    if (r.method == m) return r.name;
  throw std::invalid_argument("codec: unknown method " + std::to_string(int(m)));
}

Method method_from_name(std::string_view name) {
  std::string known;
  for (const MethodRow& r : kMethods) {
    if (name == r.name) return r.method;
    known += known.empty() ? "" : ", ";
    known += r.name;
  }
  throw std::invalid_argument("codec: unknown method '" + std::string(name) +
                              "', expected one of " + known);
}

const std::vector<Method>& all_methods() {
  static const std::vector<Method> all = [] {
    std::vector<Method> v;
    for (const MethodRow& r : kMethods) v.push_back(r.method);
    return v;
  }();
  return all;
}

bool method_needs_loss(Method m) { return m == Method::Int4Calibrated || m == Method::Mixed; }

void check_method_schemes(Method m, const std::vector<EncodedGain>& tensors) {
  using S = norm::GainScheme;
  auto allowed = [m](S s) {
    switch (m) {
      case Method::RawF32: return s == S::F32;
      case Method::RawF16: return s == S::F16;
      case Method::Int8PerTensor: return s == S::Int8PerTensor;
      case Method::Int8Group: return s == S::Int8Group;
      case Method::Int8Asym: return s == S::Int8Asym;
      case Method::Int8Delta: return s == S::Int8Delta;
      case Method::Int4Delta:
      case Method::Int4Calibrated: return s == S::Int4Delta;
      case Method::KMeans16: return s == S::KMeans16;
      case Method::KMeans256: return s == S::KMeans256;
      case Method::Mixed: return s == S::Int4Delta || s == S::Int8Delta || s == S::F16;
    }
    return false;
  };
  for (size_t t = 0; t < tensors.size(); ++t)
    if (!allowed(tensors[t].scheme))
      throw std::invalid_argument(std::string("method ") + method_name(m) + ": tensor " +
                                  std::to_string(t) + " is encoded as " +
                                  scheme_name(tensors[t].scheme) +
                                  ", which this method never produces");
}

std::vector<norm::GainView> EncodedAdapter::views() const {
  std::vector<norm::GainView> v;
  v.reserve(tensors.size());
  for (const EncodedGain& e : tensors) v.push_back(e.view());
  return v;
}

EncodedAdapter encode_adapter(Method m, const float* gains, int64_t n_tensors, int64_t d,
                              const EncodeOptions& opts, const AdapterLoss& loss) {
  const std::string what = std::string("encode_adapter (") + method_name(m) + ")";
  if (gains == nullptr) throw std::invalid_argument(what + ": gains pointer is null");
  if (n_tensors <= 0 || n_tensors > 65536)
    throw std::invalid_argument(what + ": n_tensors = " + std::to_string(n_tensors) +
                                ", expected 1..65536");
  if (d <= 0 || d > kMaxD)
    throw std::invalid_argument(what + ": d = " + std::to_string(d) +
                                ", expected 0 < d <= " + std::to_string(kMaxD));
  namespace L = limits::codec;
  limits::check(L::group_size, double(opts.group_size), "encode options");
  limits::check(L::kmeans_max_iters, double(opts.kmeans_max_iters), "encode options");
  limits::check(L::calibration_passes, double(opts.calibration_passes), "encode options");
  limits::check(L::byte_budget, double(opts.byte_budget), "encode options");
  for (double c : opts.clip_grid) limits::check(L::clip, c, "encode options.clipGrid");
  if (method_needs_loss(m) && !loss)
    throw std::invalid_argument(what +
                                ": needs a loss callback (the training-text loss of a "
                                "candidate adapter), got none");
  if (m == Method::Int4Calibrated)
    return encode_int4_calibrated(gains, n_tensors, d, loss,
                                  opts.clip_grid.empty() ? default_clip_grid() : opts.clip_grid,
                                  opts.calibration_passes);
  if (m == Method::Mixed) return encode_mixed(gains, n_tensors, d, loss, opts.byte_budget);

  EncodedAdapter out;
  out.method = m;
  out.tensors.reserve(size_t(n_tensors));
  for (int64_t t = 0; t < n_tensors; ++t) {
    const float* g = gains + t * d;
    try {
      switch (m) {
        case Method::RawF32: out.tensors.push_back(encode_f32(g, d)); break;
        case Method::RawF16: out.tensors.push_back(encode_f16(g, d)); break;
        case Method::Int8PerTensor: out.tensors.push_back(encode_int8_per_tensor(g, d)); break;
        case Method::Int8Group:
          out.tensors.push_back(encode_int8_group(g, d, opts.group_size));
          break;
        case Method::Int8Asym: out.tensors.push_back(encode_int8_asym(g, d)); break;
        case Method::Int8Delta: out.tensors.push_back(encode_delta(8, g, d)); break;
        case Method::Int4Delta: out.tensors.push_back(encode_delta(4, g, d)); break;
        case Method::KMeans16:
          out.tensors.push_back(encode_kmeans(16, g, d, opts.kmeans_max_iters));
          break;
        case Method::KMeans256:
          out.tensors.push_back(encode_kmeans(256, g, d, opts.kmeans_max_iters));
          break;
        case Method::Int4Calibrated:
        case Method::Mixed: break;  // handled above
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
  }
  return out;
}

}  // namespace ternorm::codec
