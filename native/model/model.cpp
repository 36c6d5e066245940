#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu/thread_pool.h"
#include "limits.h"
#include "rng.h"

namespace ternorm::model {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::F32: return "fp32";
    case Precision::Ternary: return "ternary";
    case Precision::TernaryF32Act: return "ternary-fp32act";
    case Precision::TernaryBlockAct: return "ternary-block256";
  }
  return "?";
}

const char* act_quant_name(ActQuant a) {
  const int i = int(a);
  return i >= 0 && i < int(std::size(limits::act_quant::names)) ? limits::act_quant::names[i] : "?";
}

ActQuant act_quant_of(const std::string& name) {
  std::string all;
  for (size_t i = 0; i < std::size(limits::act_quant::names); ++i) {
    if (name == limits::act_quant::names[i]) return ActQuant(int(i));
    all += std::string(i ? ", " : "") + "'" + limits::act_quant::names[i] + "'";
  }
  throw std::invalid_argument("actQuant must be one of " + all + ", got '" + name + "'");
}

Precision with_act_quant(Precision p, ActQuant a) {
  if (a == ActQuant::Token) return p;
  if (a == ActQuant::Block256 && p == Precision::Ternary) return Precision::TernaryBlockAct;
  throw std::invalid_argument(std::string("actQuant '") + act_quant_name(a) +
                              "' applies to precision 'ternary' only, got '" + precision_name(p) +
                              "'");
}

const char* matrix_name(Matrix m) {
  static const char* names[kMatricesPerLayer] = {"wq", "wk", "wv", "wo", "w1", "w3", "w2"};
  const int i = int(m);
  if (i < 0 || i >= kMatricesPerLayer)
    throw std::invalid_argument("unknown matrix id " + std::to_string(i));
  return names[i];
}

namespace {

// The linear group each matrix lives in.
Linear linear_of(Matrix m) {
  switch (m) {
    case Matrix::Wq:
    case Matrix::Wk:
    case Matrix::Wv: return Linear::Qkv;
    case Matrix::Wo: return Linear::O;
    case Matrix::W1:
    case Matrix::W3: return Linear::GateUp;
    case Matrix::W2: return Linear::Down;
  }
  throw std::invalid_argument("unknown matrix id " + std::to_string(int(m)));
}

// splitmix64 stream, normals by Box-Muller in double (deterministic init).
struct InitRng : SplitMix64 {
  explicit InitRng(uint64_t seed) { s = seed; }
  double normal() {
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};

// Rows of the attention's linears: q and o d_model each, k and v kv_dim each.
int64_t attn_rows(const ModelConfig& c) { return 2 * c.d_model + 2 * c.kv_dim(); }

int64_t layer_size(const ModelConfig& c) {
  const int64_t d = c.d_model, f = c.d_ff;
  return 2 * d + attn_rows(c) * d + 3 * f * d;
}

}  // namespace

Model::Model(const ModelConfig& cfg, ForLoading) : cfg_(cfg) {
  lay_out();
  stale_ = false;  // every scale is 0: the ternary weights compute zero until the loader sets them
}

Model::Model(const ModelConfig& cfg, uint64_t seed) : cfg_(cfg) {
  lay_out();
  // Deterministic init (scheme in model.h).
  const double out_scale = 1.0 / std::sqrt(2.0 * double(cfg_.n_layers));
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorInfo& t = tensors_[i];
    float* w = params_.data() + t.offset;
    const int64_t n = t.rows * t.cols;
    const std::string& nm = t.name;
    if (nm.size() >= 4 && nm.compare(nm.size() - 4, 4, "norm") == 0) {
      for (int64_t j = 0; j < n; ++j) w[j] = 1.0f;
      continue;
    }
    const bool is_out = (nm.size() > 3 && (nm.compare(nm.size() - 3, 3, ".wo") == 0 ||
                                           nm.compare(nm.size() - 3, 3, ".w2") == 0));
    const double stddev = 0.02 * (is_out ? out_scale : 1.0);
    InitRng rng{seed ^ (0x9E3779B97F4A7C15ull * uint64_t(i + 1))};
    for (int64_t j = 0; j < n; ++j) w[j] = float(stddev * rng.normal());
  }
  quantize(Exec{});
}

void Model::lay_out() {
  validate(cfg_);
  const int64_t d = cfg_.d_model, f = cfg_.d_ff, L = cfg_.n_layers, kv = cfg_.kv_dim();
  const int64_t head = cfg_.tied_head ? 0 : cfg_.vocab * d;
  params_ = AlignedBuffer<float>(size_t(cfg_.vocab * d + L * layer_size(cfg_) + d + head));

  // Tensor table, in buffer order.
  int64_t off = 0;
  auto add = [&](std::string name, int64_t rows, int64_t cols) {
    tensors_.push_back({std::move(name), off, rows, cols});
    off += rows * cols;
  };
  add("tok_embedding", cfg_.vocab, d);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attn_norm", 1, d);
    add(p + "wq", d, d);
    add(p + "wk", kv, d);
    add(p + "wv", kv, d);
    add(p + "wo", d, d);
    add(p + "ffn_norm", 1, d);
    add(p + "w1", f, d);
    add(p + "w3", f, d);
    add(p + "w2", d, f);
  }
  add("final_norm", 1, d);
  // Last, so every other tensor keeps its place (and its init stream).
  if (!cfg_.tied_head) add("output", cfg_.vocab, d);
  if (off != n_params()) throw std::logic_error("model: parameter layout mismatch");

  // RoPE tables.
  const int64_t half = cfg_.head_dim() / 2;
  rope_cos_ = AlignedBuffer<float>(size_t(cfg_.context * half));
  rope_sin_ = AlignedBuffer<float>(size_t(cfg_.context * half));
  for (int64_t pos = 0; pos < cfg_.context; ++pos)
    for (int64_t i = 0; i < half; ++i) {
      const double freq =
          std::pow(double(cfg_.rope_theta), -2.0 * double(i) / double(cfg_.head_dim()));
      const double a = double(pos) * freq;
      rope_cos_[size_t(pos * half + i)] = float(std::cos(a));
      rope_sin_[size_t(pos * half + i)] = float(std::sin(a));
    }
  ones_ = AlignedBuffer<float>(size_t(d));
  for (int64_t c = 0; c < d; ++c) ones_[size_t(c)] = 1.0f;

  packed_.resize(size_t(L * kLinearsPerLayer));
  int64_t arena = 0;  // packed2_bytes are multiples of 64 (whole tiles)
  for (int k = 0; k < kLinearsPerLayer; ++k) {
    const LinearShape s = linear_shape(Linear(k));
    arena += L * ternary::packed2_bytes(s.rows, s.cols);
  }
  packed_arena_ = AlignedBuffer<uint8_t>(size_t(arena), Mapping::Huge);
  int64_t at = 0;
  for (int64_t l = 0; l < L; ++l)
    for (int k = 0; k < kLinearsPerLayer; ++k) {
      const LinearShape s = linear_shape(Linear(k));
      PackedLinear& p = packed_[size_t(l * kLinearsPerLayer + k)];
      p.data = packed_arena_.data() + at;
      at += ternary::packed2_bytes(s.rows, s.cols);
      p.scales = AlignedBuffer<float>(size_t(s.rows));
    }
}

const TensorInfo& Model::tensor(const std::string& name) const {
  for (const TensorInfo& t : tensors_)
    if (t.name == name) return t;
  throw std::invalid_argument("model: no tensor named '" + name + "'");
}

void Model::check_layer(int64_t layer) const {
  if (layer < 0 || layer >= cfg_.n_layers)
    throw std::invalid_argument("model: layer " + std::to_string(layer) + " out of range [0, " +
                                std::to_string(cfg_.n_layers) + ")");
}

int64_t Model::norm_offset(int64_t norm) const {
  if (norm < 0 || norm >= cfg_.n_norms())
    throw std::invalid_argument("model: norm index " + std::to_string(norm) + " out of range [0, " +
                                std::to_string(cfg_.n_norms()) + ")");
  const int64_t d = cfg_.d_model, base = cfg_.vocab * d;
  if (norm == 2 * cfg_.n_layers) return base + cfg_.n_layers * layer_size(cfg_);
  const int64_t l = norm / 2;
  return base + l * layer_size(cfg_) + (norm % 2 == 0 ? 0 : d + attn_rows(cfg_) * d);
}

int64_t Model::head_offset() const {
  return cfg_.tied_head ? 0 : norm_offset(2 * cfg_.n_layers) + cfg_.d_model;
}

int64_t Model::f32_table_offset(int64_t offset) const {
  if (table_type_ != gemm::ElemType::F32)
    throw std::logic_error(std::string("model: the token tables are ") +
                           gemm::elem_type_name(table_type_) + ", not fp32");
  return offset;
}

TokenTable Model::embedding_table() const {
  if (table_type_ == gemm::ElemType::F32) return TokenTable(params_.data());
  return TokenTable(table_type_, tables16_.data());
}

TokenTable Model::head_table() const {
  if (table_type_ == gemm::ElemType::F32) return TokenTable(params_.data() + head_offset());
  return TokenTable(table_type_,
                    tables16_.data() + (cfg_.tied_head ? 0 : cfg_.vocab * cfg_.d_model));
}

void Model::set_table_type(gemm::ElemType t) {
  if (t == gemm::ElemType::F32)
    throw std::invalid_argument("model: set_table_type takes a 16-bit type");
  table_type_ = t;
  tables16_ = AlignedBuffer<uint16_t>(size_t((cfg_.tied_head ? 1 : 2) * cfg_.vocab * cfg_.d_model));
  fingerprint_.reset();  // the weights change (stale_ tracks the latent block weights only)
  head_panels_.clear();
}

int64_t Model::linear_offset(int64_t layer, Linear lin) const {
  check_layer(layer);
  const int64_t d = cfg_.d_model, f = cfg_.d_ff, a = attn_rows(cfg_) * d;
  const int64_t base = cfg_.vocab * d + layer * layer_size(cfg_);
  switch (lin) {
    case Linear::Qkv: return base + d;
    case Linear::O: return base + d + a - d * d;
    case Linear::GateUp: return base + 2 * d + a;
    case Linear::Down: return base + 2 * d + a + 2 * f * d;
  }
  throw std::invalid_argument("model: unknown linear id " + std::to_string(int(lin)));
}

LinearShape Model::linear_shape(Linear lin) const {
  const int64_t d = cfg_.d_model, f = cfg_.d_ff;
  switch (lin) {
    case Linear::Qkv: return {d + 2 * cfg_.kv_dim(), d};
    case Linear::O: return {d, d};
    case Linear::GateUp: return {2 * f, d};
    case Linear::Down: return {d, f};
  }
  throw std::invalid_argument("model: unknown linear id " + std::to_string(int(lin)));
}

LinearShape Model::matrix_shape(Matrix m) const {
  const int64_t d = cfg_.d_model, f = cfg_.d_ff;
  switch (m) {
    case Matrix::Wq:
    case Matrix::Wo: return {d, d};
    case Matrix::Wk:
    case Matrix::Wv: return {cfg_.kv_dim(), d};
    case Matrix::W1:
    case Matrix::W3: return {f, d};
    case Matrix::W2: return {d, f};
  }
  throw std::invalid_argument("unknown matrix id " + std::to_string(int(m)));
}

int64_t Model::matrix_row0(Matrix m) const {
  switch (m) {
    case Matrix::Wk: return cfg_.d_model;
    case Matrix::Wv: return cfg_.d_model + cfg_.kv_dim();
    case Matrix::W3: return cfg_.d_ff;
    case Matrix::Wq:
    case Matrix::Wo:
    case Matrix::W1:
    case Matrix::W2: return 0;
  }
  throw std::invalid_argument("unknown matrix id " + std::to_string(int(m)));
}

void Model::quantize(const Exec& ex) {
  const int64_t groups = cfg_.n_layers * kLinearsPerLayer;
  // Groups are independent: quantise and pack them in parallel (each group's
  // result does not depend on which thread computes it).
  parallel_ranges(ex, groups, 1, [&](int64_t g0, int64_t g1) {
    std::vector<int8_t> trits;
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t layer = g / kLinearsPerLayer;
      const Linear lin = Linear(g % kLinearsPerLayer);
      const LinearShape s = linear_shape(lin);
      trits.resize(size_t(s.rows * s.cols));
      const float* w = params_.data() + linear_offset(layer, lin);
      PackedLinear& p = packed_[size_t(g)];
      for (int k = 0; k < kMatricesPerLayer; ++k) {
        if (linear_of(Matrix(k)) != lin) continue;
        const int64_t r0 = matrix_row0(Matrix(k)), rows = matrix_shape(Matrix(k)).rows;
        ternary::absmean_quantize(w + r0 * s.cols, rows, s.cols, /*per_row=*/false,
                                  trits.data() + r0 * s.cols, p.scales.data() + r0);
      }
      ternary::pack2(trits.data(), s.rows, s.cols, p.data);
    }
  });
  stale_ = false;
  fingerprint_.reset();
  head_panels_.clear();
}

ternary::PackedTernary Model::packed(int64_t layer, Linear lin) const {
  check_layer(layer);
  const LinearShape s = linear_shape(lin);
  const PackedLinear& p = packed_[size_t(layer * kLinearsPerLayer + int(lin))];
  return {p.data, p.scales.data(), s.rows, s.cols};
}

void Model::get_ternary_rows(int64_t layer, Matrix m, int8_t* trits, float* row_scales) const {
  check_layer(layer);
  const Linear lin = linear_of(m);
  const LinearShape s = linear_shape(lin);
  const int64_t r0 = matrix_row0(m), rows = matrix_shape(m).rows;
  const PackedLinear& p = packed_[size_t(layer * kLinearsPerLayer + int(lin))];
  std::vector<int8_t> all(size_t(s.rows * s.cols));
  ternary::unpack2(p.data, s.rows, s.cols, all.data());
  std::copy(all.begin() + r0 * s.cols, all.begin() + (r0 + rows) * s.cols, trits);
  std::copy(p.scales.data() + r0, p.scales.data() + r0 + rows, row_scales);
}

bool Model::has_row_scales(int64_t layer, Matrix m) const {
  check_layer(layer);
  const Linear lin = linear_of(m);
  const int64_t r0 = matrix_row0(m), rows = matrix_shape(m).rows;
  const PackedLinear& p = packed_[size_t(layer * kLinearsPerLayer + int(lin))];
  for (int64_t r = 1; r < rows; ++r)
    if (p.scales[size_t(r0 + r)] != p.scales[size_t(r0)]) return true;
  return false;
}

void Model::get_ternary(int64_t layer, Matrix m, int8_t* trits, float* scale) const {
  if (has_row_scales(layer, m))
    throw std::logic_error("model: layers." + std::to_string(layer) + "." + matrix_name(m) +
                           " has one scale per row, not one per matrix");
  std::vector<float> row_scales(size_t(matrix_shape(m).rows));
  get_ternary_rows(layer, m, trits, row_scales.data());
  *scale = row_scales[0];
}

void Model::set_ternary(int64_t layer, Matrix m, const int8_t* trits, float scale) {
  check_layer(layer);
  if (!(std::isfinite(scale) && scale >= 0))
    throw std::invalid_argument("model: ternary scale of layers." + std::to_string(layer) + "." +
                                matrix_name(m) + " must be finite and >= 0, got " +
                                std::to_string(scale));
  const std::vector<float> row_scales(size_t(matrix_shape(m).rows), scale);
  set_ternary_rows(layer, m, trits, row_scales.data());
}

void Model::set_ternary_rows(int64_t layer, Matrix m, const int8_t* trits,
                             const float* row_scales) {
  check_layer(layer);
  const Linear lin = linear_of(m);
  const LinearShape s = linear_shape(lin);
  const int64_t r0 = matrix_row0(m), pr = matrix_shape(m).rows;
  for (int64_t r = 0; r < pr; ++r)
    if (!(std::isfinite(row_scales[r]) && row_scales[r] >= 0))
      throw std::invalid_argument("model: ternary scale of layers." + std::to_string(layer) + "." +
                                  matrix_name(m) + " row " + std::to_string(r) +
                                  " must be finite and >= 0, got " + std::to_string(row_scales[r]));
  for (int64_t i = 0; i < pr * s.cols; ++i)
    if (trits[i] < -1 || trits[i] > 1)
      throw std::invalid_argument("model: ternary weight " + std::to_string(i) + " of layers." +
                                  std::to_string(layer) + "." + matrix_name(m) +
                                  " must be -1, 0 or 1, got " + std::to_string(int(trits[i])));
  PackedLinear& p = packed_[size_t(layer * kLinearsPerLayer + int(lin))];
  std::vector<int8_t> all(size_t(s.rows * s.cols));
  ternary::unpack2(p.data, s.rows, s.cols, all.data());
  std::copy(trits, trits + pr * s.cols, all.begin() + r0 * s.cols);
  ternary::pack2(all.data(), s.rows, s.cols, p.data);
  std::copy(row_scales, row_scales + pr, p.scales.data() + r0);
  fingerprint_.reset();
}

std::vector<norm::GainView> f32_gain_views(const ModelConfig& cfg, const float* gains) {
  if (gains == nullptr) throw std::invalid_argument("adapter: gains pointer is null");
  std::vector<norm::GainView> v(size_t(cfg.n_norms()));
  for (int64_t i = 0; i < cfg.n_norms(); ++i) {
    v[size_t(i)].scheme = norm::GainScheme::F32;
    v[size_t(i)].d = cfg.d_model;
    v[size_t(i)].data = gains + i * cfg.d_model;
    v[size_t(i)].data_bytes = size_t(cfg.d_model) * sizeof(float);
  }
  return v;
}

void validate_adapter(const ModelConfig& cfg, const norm::GainView* views, int64_t n_views) {
  if (n_views != cfg.n_norms())
    throw std::invalid_argument("adapter: expected " + std::to_string(cfg.n_norms()) +
                                " gain vectors (2 per layer + final norm), got " +
                                std::to_string(n_views));
  if (views == nullptr) throw std::invalid_argument("adapter: gain views pointer is null");
  for (int64_t i = 0; i < n_views; ++i) {
    if (views[i].d != cfg.d_model)
      throw std::invalid_argument("adapter: gain vector " + std::to_string(i) + " has " +
                                  std::to_string(views[i].d) +
                                  " gains, expected d_model = " + std::to_string(cfg.d_model));
    // decode_gain validates the view and rejects non-finite gains (a NaN gain
    // would silently poison every NLL downstream).
    std::vector<float> g(size_t(cfg.d_model));
    const std::string which =
        "adapter: gain vector " + std::to_string(i) + " (" + norm_name(cfg, i) + ")";
    try {
      norm::decode_gain(views[i], g.data());
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(which + ": " + e.what());
    }
    // A finite but huge gain overflows the activations downstream; refuse it here, by name.
    for (size_t j = 0; j < g.size(); ++j)
      if (!limits::adapter::gain.contains(g[j])) {
        char v[32];
        std::snprintf(v, sizeof v, "%.9g", double(g[j]));
        throw std::invalid_argument(which + ": gain[" + std::to_string(j) + "] is " + v +
                                    "; a gain must be " + limits::adapter::gain.range());
      }
  }
}

std::string norm_name(const ModelConfig& cfg, int64_t i) {
  if (i == 2 * cfg.n_layers) return "final_norm";
  return "layers." + std::to_string(i / 2) + (i % 2 == 0 ? ".attn_norm" : ".ffn_norm");
}

}  // namespace ternorm::model
