#include "model_file.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <stdexcept>

#include "../cpu/features.h"
#include "../ternary/ternary.h"

namespace ternorm::model {

namespace {

using io::FormatError;

constexpr const char* kModelFormat = "ternorm.model";
constexpr const char* kAdapterFormat = "ternorm.adapter";

// ---- a flat JSON object: {"key": number | "string" | true | false, ...} -------------------
// The config sections hold nothing else, so this small strict reader is all
// the C++ side needs (the meta and checkpoint.state sections stay opaque).
struct FlatValue {
  bool is_string = false, is_bool = false;
  std::string text;  // the string, or the number's or boolean's literal
  double number = 0;
  bool boolean = false;
};

class FlatJson {
 public:
  FlatJson(std::string_view s, const char* what) : s_(s), what_(what) {}

  std::map<std::string, FlatValue> parse() {
    std::map<std::string, FlatValue> out;
    ws();
    expect('{');
    ws();
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        ws();
        std::string key = string();
        ws();
        expect(':');
        ws();
        FlatValue v;
        if (peek() == '"') {
          v.is_string = true;
          v.text = string();
        } else if (literal("true")) {
          v.is_bool = v.boolean = true;
          v.text = "true";
        } else if (literal("false")) {
          v.is_bool = true;
          v.text = "false";
        } else {
          v.text = number_literal();
          char* end = nullptr;
          v.number = std::strtod(v.text.c_str(), &end);
          if (end != v.text.c_str() + v.text.size() || !std::isfinite(v.number))
            fail("a finite number");
        }
        if (!out.emplace(key, v).second)
          throw FormatError(std::string(what_) + ": key '" + key + "' appears twice");
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        break;
      }
    }
    ws();
    if (i_ != s_.size()) fail("the end of the object");
    return out;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  [[noreturn]] void fail(const char* expected) const {
    throw FormatError(std::string(what_) + ": malformed JSON at byte " + std::to_string(i_) +
                      ", expected " + expected);
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  void expect(char c) {
    if (peek() != c)
      fail(c == '{' ? "'{'" : c == '}' ? "'}' or ','" : c == ':' ? "':'" : "a character");
    ++i_;
  }
  std::string string() {
    expect('"');
    std::string r;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\' || static_cast<unsigned char>(s_[i_]) < 0x20)
        fail("a plain string (no escapes)");
      r += s_[i_++];
    }
    expect('"');
    return r;
  }
  // Consumes word if it comes next.
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  std::string number_literal() {
    const size_t start = i_;
    while (i_ < s_.size() && std::strchr("+-.0123456789eE", s_[i_]) != nullptr) ++i_;
    if (i_ == start) fail("a number or a string");
    return std::string(s_.substr(start, i_ - start));
  }

  std::string_view s_;
  const char* what_;
  size_t i_ = 0;
};

int64_t int_field(const std::map<std::string, FlatValue>& m, const char* key, const char* what) {
  auto it = m.find(key);
  if (it == m.end()) throw FormatError(std::string(what) + ": missing key '" + key + "'");
  const FlatValue& v = it->second;
  if (v.is_string || v.is_bool || v.number != std::floor(v.number) || std::fabs(v.number) > 9.0e15)
    throw FormatError(std::string(what) + ": '" + key + "' must be an integer, got " + v.text);
  return int64_t(v.number);
}

double num_field(const std::map<std::string, FlatValue>& m, const char* key, const char* what) {
  auto it = m.find(key);
  if (it == m.end()) throw FormatError(std::string(what) + ": missing key '" + key + "'");
  if (it->second.is_string || it->second.is_bool)
    throw FormatError(std::string(what) + ": '" + key + "' must be a number");
  return it->second.number;
}

bool bool_field(const std::map<std::string, FlatValue>& m, const char* key, const char* what) {
  auto it = m.find(key);
  if (it == m.end()) throw FormatError(std::string(what) + ": missing key '" + key + "'");
  if (!it->second.is_bool)
    throw FormatError(std::string(what) + ": '" + key + "' must be true or false");
  return it->second.boolean;
}

void check_format(const std::map<std::string, FlatValue>& m, const char* format, const char* what) {
  auto it = m.find("format");
  if (it == m.end() || !it->second.is_string || it->second.text != format)
    throw FormatError(std::string(what) + ": \"format\" must be \"" + format + "\"");
}

void check_keys(const std::map<std::string, FlatValue>& m, std::initializer_list<const char*> keys,
                const char* what) {
  for (const auto& [k, v] : m) {
    bool known = false;
    for (const char* want : keys) known = known || k == want;
    if (!known) throw FormatError(std::string(what) + ": unknown key '" + k + "'");
  }
}

std::string g9(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string trits_name(int64_t l, Matrix m) {
  return "layers." + std::to_string(l) + "." + matrix_name(m) + ".trits";
}

bool is_norm_tensor(const TensorInfo& t) { return t.rows == 1; }

// The fp32 tables: the embedding and, when untied, the output head.
bool is_table_tensor(const TensorInfo& t) {
  return t.name == "tok_embedding" || t.name == "output";
}

// True when some matrix carries one scale per row (a per-row GGUF import):
// the file then holds them all in ternary.row_scales.
bool has_row_scales(const Model& model) {
  for (int64_t l = 0; l < model.config().n_layers; ++l)
    for (int k = 0; k < kMatricesPerLayer; ++k)
      if (model.has_row_scales(l, Matrix(k))) return true;
  return false;
}

// Rows of every block matrix, in file order: the length of ternary.row_scales.
int64_t total_matrix_rows(const Model& model) {
  int64_t n = 0;
  for (int k = 0; k < kMatricesPerLayer; ++k) n += model.matrix_shape(Matrix(k)).rows;
  return n * model.config().n_layers;
}

// The inference sections (fingerprinted), in file order.
std::vector<std::string> weight_section_names(const Model& model) {
  std::vector<std::string> names{"config", "tokenizer"};
  for (const TensorInfo& t : model.tensors())
    if (is_table_tensor(t)) names.push_back(t.name);
  for (const TensorInfo& t : model.tensors())
    if (is_norm_tensor(t)) names.push_back(t.name);
  for (int64_t l = 0; l < model.config().n_layers; ++l)
    for (int k = 0; k < kMatricesPerLayer; ++k) names.push_back(trits_name(l, Matrix(k)));
  names.push_back("ternary.scales");
  if (has_row_scales(model)) names.push_back("ternary.row_scales");
  return names;
}

void add_weights(io::Writer& w, const Model& model, const std::vector<uint8_t>& tokenizer) {
  if (model.ternary_stale())
    throw std::logic_error(
        "model file: the ternary weights are stale (quantize the model after training)");
  const ModelConfig& cfg = model.config();
  w.add_json("config", config_json(cfg));
  w.add_u8("tokenizer", tokenizer.data(), tokenizer.size());
  // The tables are fp32 in the file: 16-bit ones widened (exact), so a model
  // and its fp32 expansion save, and fingerprint, alike.
  std::vector<float> wide;
  for (const TensorInfo& t : model.tensors()) {
    if (!is_table_tensor(t)) continue;
    const TokenTable table = t.name == "output" ? model.head_table() : model.embedding_table();
    const int64_t n = t.rows * t.cols;
    if (table.type == gemm::ElemType::F32) {
      w.add_f32(t.name, model.params() + t.offset, size_t(n));
    } else {
      wide.resize(size_t(n));
      gemm::widen(table.type, table.h16, n, wide.data(), Exec{default_isa(), nullptr, 1});
      w.add_f32(t.name, wide.data(), size_t(n));
    }
  }
  for (const TensorInfo& t : model.tensors())
    if (is_norm_tensor(t)) w.add_f32(t.name, model.params() + t.offset, size_t(t.cols));
  std::vector<float> scales, row_scales, rs;
  std::vector<int8_t> trits;
  std::vector<uint8_t> packed;
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (int k = 0; k < kMatricesPerLayer; ++k) {
      const LinearShape s = model.matrix_shape(Matrix(k));
      const int64_t n = s.rows * s.cols;
      trits.resize(size_t(n));
      rs.resize(size_t(s.rows));
      packed.resize(size_t(ternary::packed5_bytes(n)));
      model.get_ternary_rows(l, Matrix(k), trits.data(), rs.data());
      ternary::pack5(trits.data(), n, packed.data());
      w.add_u8(trits_name(l, Matrix(k)), packed.data(), packed.size());
      scales.push_back(rs[0]);
      row_scales.insert(row_scales.end(), rs.begin(), rs.end());
    }
  w.add_f32("ternary.scales", scales.data(), scales.size());
  if (has_row_scales(model)) w.add_f32("ternary.row_scales", row_scales.data(), row_scales.size());
}

void check_finite_span(io::Span<float> v, const std::string& name) {
  for (size_t i = 0; i < v.size; ++i)
    if (!std::isfinite(v[i]))
      throw FormatError("model file: section '" + name + "' holds a non-finite value at " +
                        std::to_string(i));
}

}  // namespace

std::string config_json(const ModelConfig& c) {
  return std::string("{\"format\":\"") + kModelFormat + "\",\"vocab\":" + std::to_string(c.vocab) +
         ",\"d_model\":" + std::to_string(c.d_model) +
         ",\"n_layers\":" + std::to_string(c.n_layers) +
         ",\"n_heads\":" + std::to_string(c.n_heads) + ",\"d_ff\":" + std::to_string(c.d_ff) +
         ",\"context\":" + std::to_string(c.context) + ",\"norm_eps\":" + g9(c.norm_eps) +
         ",\"rope_theta\":" + g9(c.rope_theta) +
         // Only when they differ from the defaults, so every file written
         // before they existed re-saves byte for byte (and keeps its fingerprint).
         (c.kv_heads() != c.n_heads ? ",\"n_kv_heads\":" + std::to_string(c.kv_heads()) : "") +
         (c.tied_head ? "" : ",\"tied_head\":false") + "}";
}

ModelConfig config_from_json(std::string_view json) {
  const char* what = "model file config";
  const auto m = FlatJson(json, what).parse();
  check_format(m, kModelFormat, what);
  check_keys(m,
             {"format", "vocab", "d_model", "n_layers", "n_heads", "d_ff", "context", "norm_eps",
              "rope_theta", "n_kv_heads", "tied_head"},
             what);
  ModelConfig c;
  c.vocab = int_field(m, "vocab", what);
  c.d_model = int_field(m, "d_model", what);
  c.n_layers = int_field(m, "n_layers", what);
  c.n_heads = int_field(m, "n_heads", what);
  c.d_ff = int_field(m, "d_ff", what);
  c.context = int_field(m, "context", what);
  c.norm_eps = float(num_field(m, "norm_eps", what));
  c.rope_theta = float(num_field(m, "rope_theta", what));
  // Optional (absent: the defaults, multi-head attention and the tied head).
  if (m.count("n_kv_heads")) {
    c.n_kv_heads = int_field(m, "n_kv_heads", what);
    if (c.n_kv_heads < 1)
      throw FormatError(std::string(what) + ": 'n_kv_heads' must be >= 1, got " +
                        std::to_string(c.n_kv_heads));
  }
  if (m.count("tied_head")) c.tied_head = bool_field(m, "tied_head", what);
  try {
    validate(c);
  } catch (const std::invalid_argument& e) {
    throw FormatError(std::string(what) + ": " + e.what());
  }
  return c;
}

io::Writer model_writer(const Model& model, const std::vector<uint8_t>& tokenizer,
                        const std::string& meta, const CheckpointView* ck) {
  io::Writer w(io::FileKind::Model);
  add_weights(w, model, tokenizer);
  if (!meta.empty()) w.add_json("meta", meta);
  if (ck != nullptr) {
    if (ck->n != model.n_params() || !ck->adam_m || !ck->adam_v)
      throw std::invalid_argument("checkpoint: the optimiser state must hold n_params = " +
                                  std::to_string(model.n_params()) + " values per moment, got " +
                                  std::to_string(ck->n));
    w.add_f32("checkpoint.latent", model.params(), size_t(model.n_params()));
    w.add_f32("checkpoint.adamw.m", ck->adam_m, size_t(ck->n));
    w.add_f32("checkpoint.adamw.v", ck->adam_v, size_t(ck->n));
    w.add_i64("checkpoint.step", &ck->step, 1);
    w.add_json("checkpoint.state", ck->state.empty() ? std::string("{}") : ck->state);
  }
  return w;
}

io::Fingerprint model_fingerprint(const Model& model, const std::vector<uint8_t>& tokenizer) {
  io::Writer w(io::FileKind::Model);
  add_weights(w, model, tokenizer);
  const std::vector<uint8_t> bytes = w.finish();
  const io::Container c = io::Container::copy(bytes.data(), bytes.size());
  return io::fingerprint(c, weight_section_names(model));
}

LoadedModel load_model(const io::Container& file) {
  if (file.kind() != io::FileKind::Model)
    throw FormatError(std::string("expected a model file, got ") + io::file_kind_name(file.kind()) +
                      " file");
  LoadedModel out;
  const ModelConfig cfg = config_from_json(file.get_json("config"));
  out.model = std::make_unique<Model>(cfg, Model::ForLoading{});
  Model& model = *out.model;
  const io::Span<uint8_t> tok = file.get_u8("tokenizer");
  if (tok.empty()) throw FormatError("model file: the tokenizer section is empty");
  out.tokenizer.assign(tok.begin(), tok.end());
  if (const io::Section* s = file.find("meta")) {
    if (s->type != io::DType::Json) throw FormatError("model file: section 'meta' must be json");
    out.meta = std::string(file.get_json("meta"));
  }

  const bool checkpoint = file.has("checkpoint.latent");
  if (checkpoint) {
    const io::Span<float> lat = file.get_f32("checkpoint.latent", model.n_params());
    check_finite_span(lat, "checkpoint.latent");
    std::memcpy(model.params(), lat.data, lat.size * sizeof(float));
  }
  // Embedding, untied head and norms: from their own sections (equal to the
  // latent ones in a checkpoint: both come from the same buffer when written).
  for (const TensorInfo& t : model.tensors()) {
    if (!is_norm_tensor(t) && !is_table_tensor(t)) continue;
    const io::Span<float> v = file.get_f32(t.name, t.rows * t.cols);
    check_finite_span(v, t.name);
    if (checkpoint && std::memcmp(model.params() + t.offset, v.data, v.size * sizeof(float)) != 0)
      throw FormatError("checkpoint: section '" + t.name + "' differs from its latent weights");
    std::memcpy(model.params() + t.offset, v.data, v.size * sizeof(float));
  }
  const io::Span<float> scales = file.get_f32("ternary.scales", cfg.n_layers * kMatricesPerLayer);
  // Per-row scales (optional): the first of each matrix's rows must be its ternary.scales entry.
  const bool per_row = file.has("ternary.row_scales");
  const io::Span<float> row_scales =
      per_row ? file.get_f32("ternary.row_scales", total_matrix_rows(model)) : io::Span<float>{};
  size_t row = 0;
  std::vector<int8_t> trits;
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (int k = 0; k < kMatricesPerLayer; ++k) {
      const LinearShape s = model.matrix_shape(Matrix(k));
      const int64_t n = s.rows * s.cols;
      const std::string name = trits_name(l, Matrix(k));
      const io::Span<uint8_t> packed = file.get_u8(name, ternary::packed5_bytes(n));
      trits.resize(size_t(n));
      try {
        ternary::unpack5(packed.data, n, trits.data());
      } catch (const std::invalid_argument& e) {
        throw FormatError("model file: section '" + name + "': " + e.what());
      }
      const std::string where = "layers." + std::to_string(l) + "." + matrix_name(Matrix(k));
      const float scale = scales[size_t(l * kMatricesPerLayer + k)];
      if (!(std::isfinite(scale) && scale >= 0))
        throw FormatError("model file: ternary scale of " + where + " must be finite and >= 0");
      if (!per_row) {
        model.set_ternary(l, Matrix(k), trits.data(), scale);
        continue;
      }
      const float* rs = row_scales.data + row;
      row += size_t(s.rows);
      if (rs[0] != scale)
        throw FormatError("model file: ternary.row_scales of " + where +
                          " does not start with its ternary.scales entry");
      for (int64_t r = 0; r < s.rows; ++r)
        if (!(std::isfinite(rs[r]) && rs[r] >= 0))
          throw FormatError("model file: ternary row scale " + std::to_string(r) + " of " + where +
                            " must be finite and >= 0");
      model.set_ternary_rows(l, Matrix(k), trits.data(), rs);
    }

  if (checkpoint) {
    out.has_latent = true;
    CheckpointData ck;
    const io::Span<float> m = file.get_f32("checkpoint.adamw.m", model.n_params());
    const io::Span<float> v = file.get_f32("checkpoint.adamw.v", model.n_params());
    check_finite_span(m, "checkpoint.adamw.m");
    check_finite_span(v, "checkpoint.adamw.v");
    ck.adam_m.assign(m.begin(), m.end());
    ck.adam_v.assign(v.begin(), v.end());
    ck.step = file.get_i64("checkpoint.step", 1)[0];
    if (ck.step < 0) throw FormatError("checkpoint: negative step count");
    ck.state = std::string(file.get_json("checkpoint.state"));
    out.checkpoint = std::move(ck);
  }
  out.fingerprint = io::fingerprint(file, weight_section_names(model));
  model.set_fingerprint(out.fingerprint);
  return out;
}

io::Limits adapter_limits(const ModelConfig& cfg) {
  io::Limits l;
  l.max_file_bytes = uint64_t(cfg.n_gains()) * 4 + (uint64_t(1) << 20);
  l.max_sections = 16;
  return l;
}

namespace {

std::string adapter_config_json(const ModelConfig& cfg, const char* scheme) {
  return std::string("{\"format\":\"") + kAdapterFormat +
         "\",\"n_norms\":" + std::to_string(cfg.n_norms()) +
         ",\"d_model\":" + std::to_string(cfg.d_model) + ",\"scheme\":\"" + scheme + "\"}";
}

void add_adapter_tail(io::Writer& w, const io::Fingerprint& base, const std::string& meta) {
  io::add_base_fingerprint(w, base);
  if (!meta.empty()) w.add_json("meta", meta);
}

}  // namespace

io::Writer adapter_writer(const ModelConfig& cfg, const float* gains, int64_t n,
                          const io::Fingerprint& base, const std::string& meta) {
  if (!gains || n != cfg.n_gains())
    throw std::invalid_argument("adapter: expected n_norms * d_model = " +
                                std::to_string(cfg.n_gains()) + " gains, got " + std::to_string(n));
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(gains[i]))
      throw std::invalid_argument("adapter: gain " + std::to_string(i) + " is not finite");
  io::Writer w(io::FileKind::Adapter, adapter_limits(cfg));
  w.add_json("config", adapter_config_json(cfg, "f32"));
  w.add_f32("gains", gains, size_t(n));
  add_adapter_tail(w, base, meta);
  return w;
}

io::Writer encoded_adapter_writer(const ModelConfig& cfg, codec::Method m,
                                  const std::vector<codec::EncodedGain>& tensors,
                                  const io::Fingerprint& base, const std::string& meta) {
  if (int64_t(tensors.size()) != cfg.n_norms())
    throw std::invalid_argument(
        "encoded adapter: expected n_norms = " + std::to_string(cfg.n_norms()) +
        " encodings, got " + std::to_string(tensors.size()));
  for (size_t t = 0; t < tensors.size(); ++t)
    if (tensors[t].d != cfg.d_model)
      throw std::invalid_argument("encoded adapter: encoding " + std::to_string(t) + " holds " +
                                  std::to_string(tensors[t].d) +
                                  " gains, expected d_model = " + std::to_string(cfg.d_model));
  codec::check_method_schemes(m, tensors, codec::adapter_format(m));
  // validates every record
  const std::vector<uint8_t> blob = codec::serialize_adapter(tensors, codec::adapter_format(m));
  io::Writer w(io::FileKind::EncodedAdapter, adapter_limits(cfg));
  w.add_json("config", adapter_config_json(cfg, codec::method_name(m)));
  w.add_u8("encoded", blob.data(), blob.size());
  add_adapter_tail(w, base, meta);
  return w;
}

void refuse_model_as_adapter(const uint8_t* head, size_t n, const std::string& what) {
  if (io::declared_kind(head, n) == io::FileKind::Model)
    throw FormatError(
        what +
        " is a model file, not an adapter (a base model is passed as the model; an adapter "
        "is what train-adapter or quantize writes)");
}

void refuse_model_as_adapter(const std::string& path) {
  uint8_t head[16] = {};
  std::ifstream f(path, std::ios::binary);
  if (!f) return;
  f.read(reinterpret_cast<char*>(head), sizeof head);
  refuse_model_as_adapter(head, size_t(f.gcount()), path);
}

LoadedAdapter load_adapter(const io::Container& file, const ModelConfig& cfg,
                           const io::Fingerprint& base) {
  if (file.kind() != io::FileKind::Adapter && file.kind() != io::FileKind::EncodedAdapter)
    throw FormatError(std::string("expected an adapter file, got ") +
                      io::file_kind_name(file.kind()) + " file");
  io::check_base_fingerprint(file, base);
  const char* what = "adapter file config";
  const auto m = FlatJson(file.get_json("config"), what).parse();
  check_format(m, kAdapterFormat, what);
  check_keys(m, {"format", "n_norms", "d_model", "scheme"}, what);
  auto sc = m.find("scheme");
  if (sc == m.end() || !sc->second.is_string)
    throw FormatError(std::string(what) +
                      ": \"scheme\" must be a string (\"f32\" or a codec method name)");
  if (int_field(m, "n_norms", what) != cfg.n_norms() ||
      int_field(m, "d_model", what) != cfg.d_model)
    throw FormatError(
        "adapter file: its shape (n_norms x d_model) does not match the base model's " +
        std::to_string(cfg.n_norms()) + " x " + std::to_string(cfg.d_model));
  LoadedAdapter out;
  out.scheme = sc->second.text;
  if ((out.scheme == "f32") != (file.kind() == io::FileKind::Adapter))
    throw FormatError(
        std::string("adapter file: a ") + io::file_kind_name(file.kind()) + " file with scheme \"" +
        out.scheme +
        "\" (raw f32 gains are an adapter file, any other scheme an encoded adapter file)");
  if (out.scheme == "f32") {
    const io::Span<float> g = file.get_f32("gains", cfg.n_gains());
    out.gains.assign(g.begin(), g.end());
  } else {
    try {
      const codec::Method method = codec::method_from_name(out.scheme);
      const io::Span<uint8_t> blob = file.get_u8("encoded");
      uint32_t format = 0;
      out.encoded =
          codec::parse_adapter(blob.begin(), blob.size, cfg.n_norms(), cfg.d_model, &format);
      codec::check_method_schemes(method, out.encoded, format);
    } catch (const std::invalid_argument& e) {
      throw FormatError(std::string("adapter file (scheme ") + out.scheme + "): " + e.what());
    }
    out.gains.resize(size_t(cfg.n_gains()));
    for (size_t t = 0; t < out.encoded.size(); ++t)
      norm::decode_gain(out.encoded[t].view(), out.gains.data() + t * size_t(cfg.d_model));
  }
  for (size_t i = 0; i < out.gains.size(); ++i)
    if (!std::isfinite(out.gains[i]))
      throw FormatError("adapter file: gain " + std::to_string(i) + " is not finite");
  if (const io::Section* s = file.find("meta")) {
    if (s->type != io::DType::Json) throw FormatError("adapter file: section 'meta' must be json");
    out.meta = std::string(file.get_json("meta"));
  }
  return out;
}

}  // namespace ternorm::model
