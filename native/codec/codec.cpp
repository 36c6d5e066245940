// The codec's front door: views of encodings, method names, the per-adapter
// dispatch, and the helpers every family shares (util.h).
#include "codec.h"

#include <algorithm>
#include <cstring>
#include <limits>
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

void check_bit_padding(const norm::GainView& g, uint64_t used) {
  const uint8_t* p = static_cast<const uint8_t*>(g.data);
  const uint64_t total = uint64_t(g.data_bytes) * 8;
  for (uint64_t b = used; b < total; ++b)
    if ((p[b / 8] >> (b % 8)) & 1u)
      throw std::invalid_argument(decoder_prefix(g.scheme) + "padding bit " + std::to_string(b) +
                                  " of the payload is 1, expected 0 after the last field (bit " +
                                  std::to_string(used) + ")");
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

double choose_under_budget(const std::vector<std::vector<double>>& increase,
                           const std::vector<std::vector<uint64_t>>& bytes, uint64_t cap,
                           std::vector<int>* choice) {
  const size_t T = increase.size();
  const size_t W = size_t(cap) + 1;
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> dp(W, inf), nd(W);
  std::vector<std::vector<int8_t>> from(T, std::vector<int8_t>(W, -1));
  dp[0] = 0;
  for (size_t t = 0; t < T; ++t) {
    std::fill(nd.begin(), nd.end(), inf);
    for (size_t c = 0; c < increase[t].size(); ++c) {
      const size_t w = size_t(bytes[t][c]);
      for (size_t b = 0; b + w < W; ++b) {
        if (dp[b] == inf) continue;
        const double v = dp[b] + increase[t][c];
        if (v < nd[b + w]) nd[b + w] = v, from[t][b + w] = int8_t(c);
      }
    }
    dp.swap(nd);
  }
  size_t end = W;
  for (size_t b = 0; b < W; ++b)
    if (dp[b] != inf && (end == W || dp[b] < dp[end])) end = b;
  if (end == W) throw std::logic_error("choose_under_budget: no combination fits the budget");
  const double best = dp[end];
  choice->assign(T, 0);
  for (size_t t = T; t-- > 0;) {
    const int c = from[t][end];
    (*choice)[t] = c;
    end -= size_t(bytes[t][size_t(c)]);
  }
  return best;
}

void choose_per_tensor(const std::string& what, const std::vector<EncodedGain>& ref,
                       const std::vector<std::vector<EncodedGain>>& cand,
                       const std::vector<std::string>& labels, const std::string& smallest,
                       const AdapterLoss& loss, MixedReport& rep, EncodedAdapter& out) {
  const size_t T = ref.size(), C = labels.size();
  const uint64_t header = adapter_bytes({}, out.format);
  rep.candidate_bytes.assign(T, std::vector<uint64_t>(C));
  uint64_t min_total = header, max_total = header;
  for (size_t t = 0; t < T; ++t) {
    for (size_t c = 0; c < C; ++c)
      rep.candidate_bytes[t][c] =
          out.format == 1 ? record_bytes(cand[t][c]) : compact_record_bytes(cand[t][c]);
    min_total += *std::min_element(rep.candidate_bytes[t].begin(), rep.candidate_bytes[t].end());
    max_total += *std::max_element(rep.candidate_bytes[t].begin(), rep.candidate_bytes[t].end());
  }
  if (rep.budget < min_total)
    throw std::invalid_argument(what + ": byte budget " + std::to_string(rep.budget) +
                                " is below the smallest " + smallest + ", " +
                                std::to_string(min_total) + " bytes");

  // 1. Sensitivities.
  std::vector<const EncodedGain*> enc(T);
  for (size_t t = 0; t < T; ++t) enc[t] = &ref[t];
  rep.reference_loss =
      eval_loss(loss, enc, what + " reference (every tensor f32)", &rep.loss_evals);
  rep.increase.assign(T, std::vector<double>(C));
  for (size_t t = 0; t < T; ++t) {
    for (size_t c = 0; c < C; ++c) {
      enc[t] = &cand[t][c];
      rep.increase[t][c] =
          eval_loss(loss, enc,
                    what + " sensitivity of tensor " + std::to_string(t) + " to " + labels[c],
                    &rep.loss_evals) -
          rep.reference_loss;
    }
    enc[t] = &ref[t];
  }

  // 2. Exact knapsack over the record bytes (the adapter header is fixed).
  rep.predicted_increase = choose_under_budget(
      rep.increase, rep.candidate_bytes, std::min(rep.budget, max_total) - header, &rep.choice);

  // 3. The chosen adapter, measured.
  out.tensors.clear();
  for (size_t t = 0; t < T; ++t) out.tensors.push_back(cand[t][size_t(rep.choice[t])]);
  for (size_t t = 0; t < T; ++t) enc[t] = &out.tensors[t];
  rep.loss = eval_loss(loss, enc, what + " chosen adapter", &rep.loss_evals);
  rep.bytes = adapter_bytes(out.tensors, out.format);
  out.mixed = std::move(rep);
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
    case GainScheme::Int4Delta:
    case GainScheme::Int3Delta:
    case GainScheme::Int2Delta:
    case GainScheme::Sign1Delta: return {{"scale", p}};
    case GainScheme::SparseDelta: return {{"kept", {p.at(0)}}, {"scale", {p.at(1)}}};
    case GainScheme::RiceDelta:
      return {{"scale", {p.at(0)}}, {"riceParameter", {p.at(1)}}, {"streamBytes", {p.at(2)}}};
    case GainScheme::Unit: return {};
    case GainScheme::Int8Asym: return {{"scale", {p.at(0)}}, {"zeroPoint", {p.at(1)}}};
    case GainScheme::Int8Group:
      return {{"blockSize", {p.at(0)}}, {"scale", std::vector<float>(p.begin() + 1, p.end())}};
    case GainScheme::KMeans2:
    case GainScheme::KMeans4:
    case GainScheme::KMeans8:
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
    {Method::Int3Delta, "int3_delta"},
    {Method::Int2Delta, "int2_delta"},
    {Method::Sign1Delta, "sign1_delta"},
    {Method::KMeans2, "kmeans2"},
    {Method::KMeans4, "kmeans4"},
    {Method::KMeans8, "kmeans8"},
    {Method::SparseDelta, "sparse_delta"},
    {Method::RiceInt4Delta, "rice_int4_delta"},
    {Method::RiceInt3Delta, "rice_int3_delta"},
    {Method::Alloc, "alloc"},
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

bool method_needs_loss(Method m) {
  return m == Method::Int4Calibrated || m == Method::Mixed || m == Method::Alloc;
}

bool method_needs_budget(Method m) {
  return m == Method::Mixed || m == Method::SparseDelta || m == Method::Alloc;
}

uint32_t adapter_format(Method m) {
  return int(m) >= int(Method::Int3Delta) ? kCompactAdapterFormatVersion : kAdapterFormatVersion;
}

void check_method_schemes(Method m, const std::vector<EncodedGain>& tensors, uint32_t format) {
  if (format != adapter_format(m))
    throw std::invalid_argument(std::string("method ") + method_name(m) +
                                ": an adapter blob of format " + std::to_string(format) +
                                ", expected format " + std::to_string(adapter_format(m)));
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
      case Method::Int3Delta: return s == S::Int3Delta;
      case Method::Int2Delta: return s == S::Int2Delta;
      case Method::Sign1Delta: return s == S::Sign1Delta;
      case Method::KMeans2: return s == S::KMeans2;
      case Method::KMeans4: return s == S::KMeans4;
      case Method::KMeans8: return s == S::KMeans8;
      case Method::SparseDelta: return s == S::SparseDelta || s == S::Unit;
      case Method::RiceInt4Delta:
      case Method::RiceInt3Delta: return s == S::RiceDelta;
      case Method::Alloc:
        return s == S::Unit || s == S::Sign1Delta || s == S::Int2Delta || s == S::Int3Delta ||
               s == S::Int4Delta || s == S::Int8Delta || s == S::F16;
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
  if (m == Method::Alloc) return encode_alloc(gains, n_tensors, d, loss, opts.byte_budget);
  if (m == Method::SparseDelta) return encode_sparse_adapter(gains, n_tensors, d, opts.byte_budget);

  EncodedAdapter out;
  out.method = m;
  out.format = adapter_format(m);
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
        case Method::Int3Delta: out.tensors.push_back(encode_delta(3, g, d)); break;
        case Method::Int2Delta: out.tensors.push_back(encode_delta(2, g, d)); break;
        case Method::Sign1Delta: out.tensors.push_back(encode_sign1(g, d)); break;
        case Method::KMeans2:
        case Method::KMeans4:
        case Method::KMeans8:
          out.tensors.push_back(encode_kmeans(m == Method::KMeans2   ? 2
                                              : m == Method::KMeans4 ? 4
                                                                     : 8,
                                              g, d, opts.kmeans_max_iters));
          break;
        case Method::RiceInt4Delta: out.tensors.push_back(encode_rice(4, g, d)); break;
        case Method::RiceInt3Delta: out.tensors.push_back(encode_rice(3, g, d)); break;
        case Method::Int4Calibrated:
        case Method::Mixed:
        case Method::SparseDelta:
        case Method::Alloc: break;  // handled above
      }
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(what + ": tensor " + std::to_string(t) + ": " + e.what());
    }
  }
  return out;
}

}  // namespace ternorm::codec
