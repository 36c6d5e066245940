#include "gguf_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <stdexcept>

#include "../cpu/features.h"
#include "../ternary/ternary.h"
#include "../io/message.h"
#include "../norm/gain_codec.h"
#include "model_file.h"

namespace ternorm::model {

namespace {

using gguf::FormatError;
using gguf::GgmlType;
using gguf::Value;

using io::cat;

constexpr const char* kArch = "llama";

// llama.cpp's general.file_type (enum llama_ftype) of each export type.
uint32_t file_type_of(GgufWeightType t) {
  switch (t) {
    case GgufWeightType::TQ2_0: return 37;
    case GgufWeightType::TQ1_0: return 36;
    case GgufWeightType::F16: return 1;
    case GgufWeightType::F32: return 0;
    case GgufWeightType::BF16: return 32;
    case GgufWeightType::Q8_0: return 7;
  }
  return 0;
}

GgmlType ggml_type_of(GgufWeightType t) {
  switch (t) {
    case GgufWeightType::TQ2_0: return GgmlType::TQ2_0;
    case GgufWeightType::TQ1_0: return GgmlType::TQ1_0;
    case GgufWeightType::F16: return GgmlType::F16;
    case GgufWeightType::F32: return GgmlType::F32;
    case GgufWeightType::BF16: return GgmlType::BF16;
    case GgufWeightType::Q8_0: return GgmlType::Q8_0;
  }
  return GgmlType::F32;
}

// llama.cpp's name of each block matrix, in Matrix order.
const char* matrix_tensor_suffix(Matrix m) {
  static const char* names[kMatricesPerLayer] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                 "ffn_gate", "ffn_up", "ffn_down"};
  return names[int(m)];
}
std::string matrix_tensor(int64_t layer, Matrix m) {
  return cat("blk.", layer, ".", matrix_tensor_suffix(m), ".weight");
}
// Norm index (Model::norm_offset order) -> tensor name.
std::string norm_tensor(const ModelConfig& c, int64_t norm) {
  if (norm == 2 * c.n_layers) return "output_norm.weight";
  return cat("blk.", norm / 2, norm % 2 == 0 ? ".attn_norm.weight" : ".ffn_norm.weight");
}

std::string key(const char* suffix) { return cat(kArch, ".", suffix); }

std::vector<uint8_t> f32_bytes(const float* v, int64_t n) {
  std::vector<uint8_t> b(size_t(n) * 4);
  if (n > 0) std::memcpy(b.data(), v, b.size());
  return b;
}

GgmlType ggml_table_type(gemm::ElemType t) {
  switch (t) {
    case gemm::ElemType::F32: return GgmlType::F32;
    case gemm::ElemType::F16: return GgmlType::F16;
    case gemm::ElemType::BF16: return GgmlType::BF16;
  }
  throw std::invalid_argument(cat("gguf: unknown table type ", int(t)));
}

// The n values of a token table as a tensor of type t: the stored bytes when
// t is the table's own type, else widened (exact) and rounded to t.
std::vector<uint8_t> table_bytes(const TokenTable& table, gemm::ElemType t, int64_t n,
                                 const char* name) {
  const GgmlType g = ggml_table_type(t);
  std::vector<uint8_t> out(static_cast<size_t>(gguf::bytes_for(g, n)));
  if (table.type == t) {
    std::memcpy(out.data(),
                table.type == gemm::ElemType::F32 ? static_cast<const void*>(table.f32)
                                                  : static_cast<const void*>(table.h16),
                out.size());
    return out;
  }
  std::vector<float> v(static_cast<size_t>(n));
  if (table.type == gemm::ElemType::F32)
    std::copy(table.f32, table.f32 + n, v.begin());
  else
    gemm::widen(table.type, table.h16, n, v.data(), Exec{default_isa(), nullptr, 1});
  gguf::encode_from_float(g, v.data(), n, out.data());
  std::vector<float> back(static_cast<size_t>(n));
  gguf::decode_to_float(g, out.data(), n, back.data());
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(back[size_t(i)]))
      throw std::invalid_argument(cat("gguf export: tensor '", name, "': value ", i, " (",
                                      v[size_t(i)], ") is not finite as ", gguf::type_name(g)));
  return out;
}

void check_tokenizer(const GgufTokenizer& t, int64_t vocab) {
  const auto fail = [](const std::string& why) {
    throw std::invalid_argument("gguf export: tokenizer: " + why);
  };
  if (t.model.empty()) fail("tokenizer.ggml.model is empty");
  if (int64_t(t.tokens.size()) != vocab)
    fail(cat(t.tokens.size(), " tokens but the model's vocabulary is ", vocab));
  if (!t.scores.empty() && t.scores.size() != t.tokens.size())
    fail(cat(t.scores.size(), " scores for ", t.tokens.size(), " tokens"));
  if (!t.token_type.empty() && t.token_type.size() != t.tokens.size())
    fail(cat(t.token_type.size(), " token types for ", t.tokens.size(), " tokens"));
  for (int64_t id : {t.bos_id, t.eos_id, t.unk_id, t.pad_id})
    if (id < -1 || id >= vocab)
      fail(cat("special token id ", id, " is outside the vocabulary of ", vocab));
}

void write_tokenizer(gguf::Writer& w, const GgufTokenizer& t) {
  w.set("tokenizer.ggml.model", Value::string(t.model));
  if (!t.pre.empty()) w.set("tokenizer.ggml.pre", Value::string(t.pre));
  w.set("tokenizer.ggml.tokens", Value::array_strings(t.tokens));
  if (!t.scores.empty()) w.set("tokenizer.ggml.scores", Value::array_f32(t.scores));
  if (!t.token_type.empty()) w.set("tokenizer.ggml.token_type", Value::array_i32(t.token_type));
  if (!t.merges.empty()) w.set("tokenizer.ggml.merges", Value::array_strings(t.merges));
  const std::pair<const char*, int64_t> ids[] = {{"tokenizer.ggml.bos_token_id", t.bos_id},
                                                 {"tokenizer.ggml.eos_token_id", t.eos_id},
                                                 {"tokenizer.ggml.unknown_token_id", t.unk_id},
                                                 {"tokenizer.ggml.padding_token_id", t.pad_id}};
  for (const auto& [k, id] : ids)
    if (id >= 0) w.set(k, Value::u32(uint32_t(id)));
  if (t.add_bos) w.set("tokenizer.ggml.add_bos_token", Value::boolean(*t.add_bos));
  if (t.add_eos) w.set("tokenizer.ggml.add_eos_token", Value::boolean(*t.add_eos));
}

}  // namespace

bool GgufTokenizer::operator==(const GgufTokenizer& o) const {
  return model == o.model && pre == o.pre && tokens == o.tokens && scores == o.scores &&
         token_type == o.token_type && merges == o.merges && bos_id == o.bos_id &&
         eos_id == o.eos_id && unk_id == o.unk_id && pad_id == o.pad_id && add_bos == o.add_bos &&
         add_eos == o.add_eos;
}

tok::VocabData vocab_data_of(const GgufTokenizer& t) {
  tok::VocabData d;
  d.model = t.model;
  d.pre = t.pre.empty() ? "default" : t.pre;
  d.tokens = t.tokens;
  d.scores = t.scores;
  d.token_types = t.token_type;
  d.merges = t.merges;
  d.bos = int32_t(t.bos_id);
  d.eos = int32_t(t.eos_id);
  d.unk = int32_t(t.unk_id);
  d.pad = int32_t(t.pad_id);
  d.add_bos = t.add_bos.value_or(false);
  d.add_eos = t.add_eos.value_or(false);
  return d;
}

GgufTokenizer gguf_tokenizer_of(const tok::VocabData& d) {
  GgufTokenizer t;
  t.model = d.model;
  t.pre = d.pre;
  t.tokens = d.tokens;
  t.scores = d.scores;
  t.token_type = d.token_types;
  t.merges = d.merges;
  t.bos_id = d.bos;
  t.eos_id = d.eos;
  t.unk_id = d.unk;
  t.pad_id = d.pad;
  if (d.bos >= 0) t.add_bos = d.add_bos;
  if (d.eos >= 0) t.add_eos = d.add_eos;
  return t;
}

std::vector<uint8_t> gguf_tokenizer_bytes(const GgufTokenizer& t) {
  gguf::Writer w;
  write_tokenizer(w, t);
  return w.finish();
}

const char* gguf_weight_type_name(GgufWeightType t) {
  switch (t) {
    case GgufWeightType::TQ2_0: return "tq2_0";
    case GgufWeightType::TQ1_0: return "tq1_0";
    case GgufWeightType::F16: return "f16";
    case GgufWeightType::F32: return "f32";
    case GgufWeightType::BF16: return "bf16";
    case GgufWeightType::Q8_0: return "q8_0";
  }
  return "?";
}

GgufWeightType gguf_weight_type_from_name(std::string_view name) {
  for (GgufWeightType t : {GgufWeightType::TQ2_0, GgufWeightType::TQ1_0, GgufWeightType::F16,
                           GgufWeightType::F32, GgufWeightType::BF16, GgufWeightType::Q8_0})
    if (name == gguf_weight_type_name(t)) return t;
  throw std::invalid_argument(
      cat("unknown GGUF export type '", name, "' (expected tq2_0, tq1_0, f16, f32, bf16 or q8_0)"));
}

const char* gguf_ternarise_name(GgufTernarise t) {
  return t == GgufTernarise::PerRow ? "per-row" : "per-tensor";
}

GgufTernarise gguf_ternarise_from_name(std::string_view name) {
  for (GgufTernarise t : {GgufTernarise::PerTensor, GgufTernarise::PerRow})
    if (name == gguf_ternarise_name(t)) return t;
  throw std::invalid_argument(
      cat("unknown ternarisation '", name, "' (expected per-tensor or per-row)"));
}

const char* gguf_matrix_source_name(GgufMatrixSource s) {
  switch (s) {
    case GgufMatrixSource::Native: return "native";
    case GgufMatrixSource::ExactTernary: return "exact-ternary";
    case GgufMatrixSource::AbsmeanPtq: return "absmean-ptq";
  }
  return "?";
}

// ---- export -------------------------------------------------------------------------

gguf::Writer gguf_model_writer(const Model& model, const GgufExportOptions& opt) {
  const GgmlType type = ggml_type_of(opt.type);
  if (opt.latent && gguf::is_ternary(type))
    throw std::invalid_argument(cat("gguf export: the latent weights are floats; ",
                                    gguf::type_name(type),
                                    " holds ternary ones (use f32, f16, bf16 or q8_0)"));
  if (!opt.latent && model.ternary_stale())
    throw std::logic_error(
        "gguf export: the ternary weights are stale (quantize the model after training)");
  const ModelConfig& c = model.config();
  if (opt.gains != nullptr)
    for (int64_t i = 0; i < c.n_gains(); ++i)
      if (!std::isfinite(opt.gains[i]))
        throw std::invalid_argument(cat("gguf export: adapter gain ", i, " is not finite"));
  if (opt.tokenizer != nullptr) check_tokenizer(*opt.tokenizer, c.vocab);

  gguf::Writer w;
  w.set("general.architecture", Value::string(kArch));
  if (!opt.name.empty()) w.set("general.name", Value::string(opt.name));
  w.set("general.file_type", Value::u32(file_type_of(opt.type)));
  w.set("general.quantization_version", Value::u32(2));
  w.set(key("vocab_size"), Value::u32(uint32_t(c.vocab)));
  w.set(key("context_length"), Value::u32(uint32_t(c.context)));
  w.set(key("embedding_length"), Value::u32(uint32_t(c.d_model)));
  w.set(key("block_count"), Value::u32(uint32_t(c.n_layers)));
  w.set(key("feed_forward_length"), Value::u32(uint32_t(c.d_ff)));
  w.set(key("attention.head_count"), Value::u32(uint32_t(c.n_heads)));
  w.set(key("attention.head_count_kv"), Value::u32(uint32_t(c.kv_heads())));
  w.set(key("rope.dimension_count"), Value::u32(uint32_t(c.head_dim())));
  w.set(key("rope.freq_base"), Value::f32(c.rope_theta));
  w.set(key("attention.layer_norm_rms_epsilon"), Value::f32(c.norm_eps));
  if (opt.tokenizer != nullptr) write_tokenizer(w, *opt.tokenizer);
  if (!opt.ternorm_tokenizer.empty())
    w.set(kTernormTokenizerKey, Value::array_u8(opt.ternorm_tokenizer));

  const int64_t d = c.d_model;
  const gemm::ElemType table = opt.table_type.value_or(model.table_type());
  w.add_tensor("token_embd.weight", ggml_table_type(table), {d, c.vocab},
               table_bytes(model.embedding_table(), table, c.vocab * d, "token_embd.weight"));

  std::vector<float> norm(size_t(d), 0.0f);
  const auto add_norm = [&](int64_t index) {
    const float* wt = model.params() + model.norm_offset(index);
    for (int64_t i = 0; i < d; ++i)
      norm[size_t(i)] = opt.gains ? wt[i] * opt.gains[index * d + i] : wt[i];
    w.add_tensor(norm_tensor(c, index), GgmlType::F32, {d}, f32_bytes(norm.data(), d));
  };

  std::vector<int8_t> trits;
  std::vector<float> values, row_scales;
  std::vector<uint16_t> block_d;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int k = 0; k < kMatricesPerLayer; ++k) {
      if (k == int(Matrix::Wq)) add_norm(2 * l);
      if (k == int(Matrix::W1)) add_norm(2 * l + 1);
      const Matrix m = Matrix(k);
      const LinearShape s = model.matrix_shape(m);
      const int64_t n = s.rows * s.cols;
      const std::string name = matrix_tensor(l, m);
      if (s.cols % gguf::block_values(type) != 0)
        throw std::invalid_argument(cat("gguf export: tensor '", name, "' has rows of ", s.cols,
                                        " values, ", gguf::type_name(type), " needs a multiple of ",
                                        gguf::block_values(type)));
      std::vector<uint8_t> data(size_t(gguf::bytes_for(type, n)));
      values.resize(size_t(n));
      if (opt.latent) {
        const float* lat =
            model.params() + model.tensor(cat("layers.", l, ".", matrix_name(m))).offset;
        std::copy(lat, lat + n, values.begin());
      } else {
        trits.resize(size_t(n));
        row_scales.resize(size_t(s.rows));
        model.get_ternary_rows(l, m, trits.data(), row_scales.data());
        if (gguf::is_ternary(type)) {
          block_d.resize(size_t(n / gguf::kQK_K));
          const int64_t blocks_per_row = s.cols / gguf::kQK_K;
          for (int64_t r = 0; r < s.rows; ++r) {
            const uint16_t h = norm::f32_to_f16(row_scales[size_t(r)]);
            if (!std::isfinite(norm::f16_to_f32(h)))
              throw std::invalid_argument(cat("gguf export: tensor '", name, "': scale ",
                                              row_scales[size_t(r)], " overflows fp16"));
            std::fill_n(block_d.begin() + r * blocks_per_row, blocks_per_row, h);
          }
          gguf::encode_ternary(type, trits.data(), block_d.data(), n, data.data());
          w.add_tensor(name, type, {s.cols, s.rows}, std::move(data));
          continue;
        }
        for (int64_t i = 0; i < n; ++i)
          values[size_t(i)] = float(trits[size_t(i)]) * row_scales[size_t(i / s.cols)];
      }
      try {
        gguf::encode_from_float(type, values.data(), n, data.data());
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(cat("gguf export: tensor '", name, "': ", e.what()));
      }
      // A value beyond the type's range (fp16 above 65504) would come back as inf.
      std::vector<float> back(size_t(gguf::block_values(type)));
      for (int64_t b = 0; b < n / gguf::block_values(type); ++b) {
        const int64_t bv = gguf::block_values(type);
        gguf::decode_to_float(type, data.data() + b * int64_t(gguf::block_bytes(type)), bv,
                              back.data());
        for (int64_t j = 0; j < bv; ++j)
          if (!std::isfinite(back[size_t(j)]))
            throw std::invalid_argument(cat("gguf export: tensor '", name, "': value ", b * bv + j,
                                            " (", values[size_t(b * bv + j)], ") is not finite as ",
                                            gguf::type_name(type)));
      }
      w.add_tensor(name, type, {s.cols, s.rows}, std::move(data));
    }
  }
  add_norm(2 * c.n_layers);
  if (!c.tied_head)
    w.add_tensor("output.weight", ggml_table_type(table), {d, c.vocab},
                 table_bytes(model.head_table(), table, c.vocab * d, "output.weight"));
  return w;
}

// ---- import -------------------------------------------------------------------------

namespace {

// A hyperparameter that must be a positive integer of modest size.
int64_t dim_key(const gguf::File& f, const std::string& k) {
  const uint64_t v = f.get(k).as_uint(k);
  if (v == 0 || v > (uint64_t(1) << 31))
    throw FormatError(cat("gguf: key '", k, "' is ", v, ", out of range"));
  return int64_t(v);
}

void check_shape(const gguf::TensorInfo& t, std::initializer_list<int64_t> ne) {
  bool ok = t.n_dims == ne.size();
  size_t i = 0;
  for (int64_t v : ne) ok = ok && t.ne[i++] == v;
  if (!ok) {
    std::string have, want;
    for (uint32_t d = 0; d < t.n_dims; ++d) have += cat(d ? ", " : "", t.ne[d]);
    i = 0;
    for (int64_t v : ne) want += cat(i++ ? ", " : "", v);
    throw FormatError(
        cat("gguf: tensor '", t.name, "' has shape [", have, "], expected [", want, "]"));
  }
}

// Any supported type -> f32, refusing non-finite values.
void decode_finite(const gguf::File& f, const gguf::TensorInfo& t, float* out) {
  gguf::decode_to_float(t.type, f.data(t), t.elements(), out);
  for (int64_t i = 0; i < t.elements(); ++i)
    if (!std::isfinite(out[i]))
      throw FormatError(cat("gguf: tensor '", t.name, "' holds a non-finite value at index ", i));
}

// A 16-bit tensor copied as stored into out (n values), refused like
// decode_finite when a value is inf or NaN.
void copy_finite16(const gguf::File& f, const gguf::TensorInfo& t, uint16_t* out) {
  const uint16_t exp = t.type == GgmlType::F16 ? 0x7c00 : 0x7f80;  // all ones: inf or NaN
  std::memcpy(out, f.data(t), size_t(t.elements()) * sizeof(uint16_t));
  for (int64_t i = 0; i < t.elements(); ++i)
    if ((out[i] & exp) == exp)
      throw FormatError(cat("gguf: tensor '", t.name, "' holds a non-finite value at index ", i));
}

ModelConfig config_of(const gguf::File& f, const GgufImportOptions& opt) {
  const Value& arch = f.get("general.architecture");
  if (arch.as_string("general.architecture") != kArch)
    throw FormatError(cat("gguf: architecture '", arch.as_string("general.architecture"),
                          "' is not supported (supported: llama)"));
  ModelConfig c;
  c.d_model = dim_key(f, key("embedding_length"));
  c.n_layers = dim_key(f, key("block_count"));
  c.n_heads = dim_key(f, key("attention.head_count"));
  c.d_ff = dim_key(f, key("feed_forward_length"));
  c.context = opt.context > 0 ? opt.context : dim_key(f, key("context_length"));
  const std::string eps = key("attention.layer_norm_rms_epsilon");
  c.norm_eps = float(f.get(eps).as_float(eps));
  const std::string base = key("rope.freq_base");
  c.rope_theta =
      f.find(base) ? float(f.get(base).as_float(base)) : 10000.0f;  // llama.cpp's default
  // Grouped-query attention: head_count_kv absent means multi-head.
  const std::string kv = key("attention.head_count_kv");
  c.n_kv_heads = f.find(kv) ? dim_key(f, kv) : c.n_heads;
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    throw FormatError(
        cat("gguf: ", kv, " = ", c.n_kv_heads, " must divide head_count = ", c.n_heads));
  // An untied output head is the tensor output.weight; without it the head is the embedding.
  c.tied_head = f.find_tensor("output.weight") == nullptr;
  const std::string rot = key("rope.dimension_count");
  if (f.find(rot) != nullptr && c.n_heads > 0 && dim_key(f, rot) != c.d_model / c.n_heads)
    throw FormatError(cat("gguf: ", rot, " = ", dim_key(f, rot), " but the head dimension is ",
                          c.d_model / c.n_heads, ": partial rotary embeddings are not supported"));
  const std::string scaling = key("rope.scaling.type");
  if (const Value* s = f.find(scaling); s != nullptr && s->as_string(scaling) != "none")
    throw FormatError(
        cat("gguf: ", scaling, " = '", s->as_string(scaling), "' is not supported (only 'none')"));
  const gguf::TensorInfo& emb = f.tensor("token_embd.weight");
  if (emb.n_dims != 2)
    throw FormatError(
        cat("gguf: tensor 'token_embd.weight' has ", emb.n_dims, " dimensions, expected 2"));
  c.vocab = emb.ne[1];
  const std::string vs = key("vocab_size");
  if (f.find(vs) != nullptr && int64_t(f.get(vs).as_uint(vs)) != c.vocab)
    throw FormatError(cat("gguf: ", vs, " = ", f.get(vs).as_uint(vs), " but token_embd.weight has ",
                          c.vocab, " rows"));
  try {
    validate(c);
  } catch (const std::invalid_argument& e) {
    throw FormatError(std::string("gguf: ") + e.what());
  }
  return c;
}

std::optional<GgufTokenizer> tokenizer_of(const gguf::File& f, int64_t vocab) {
  const Value* model = f.find("tokenizer.ggml.model");
  if (model == nullptr) return std::nullopt;
  GgufTokenizer t;
  t.model = model->as_string("tokenizer.ggml.model");
  if (const Value* v = f.find("tokenizer.ggml.pre")) t.pre = v->as_string("tokenizer.ggml.pre");
  t.tokens = f.get("tokenizer.ggml.tokens").strings("tokenizer.ggml.tokens");
  if (int64_t(t.tokens.size()) != vocab)
    throw FormatError(cat("gguf: tokenizer.ggml.tokens has ", t.tokens.size(),
                          " tokens but the model's vocabulary is ", vocab));
  if (const Value* v = f.find("tokenizer.ggml.scores"))
    t.scores = v->floats("tokenizer.ggml.scores");
  if (!t.scores.empty() && t.scores.size() != t.tokens.size())
    throw FormatError(cat("gguf: tokenizer.ggml.scores has ", t.scores.size(), " entries for ",
                          t.tokens.size(), " tokens"));
  if (const Value* v = f.find("tokenizer.ggml.token_type")) {
    for (int64_t x : v->ints("tokenizer.ggml.token_type")) {
      if (x < INT32_MIN || x > INT32_MAX)
        throw FormatError("gguf: tokenizer.ggml.token_type holds a value out of range");
      t.token_type.push_back(int32_t(x));
    }
    if (t.token_type.size() != t.tokens.size())
      throw FormatError(cat("gguf: tokenizer.ggml.token_type has ", t.token_type.size(),
                            " entries for ", t.tokens.size(), " tokens"));
  }
  if (const Value* v = f.find("tokenizer.ggml.merges"))
    t.merges = v->strings("tokenizer.ggml.merges");
  const std::pair<const char*, int64_t*> ids[] = {{"tokenizer.ggml.bos_token_id", &t.bos_id},
                                                  {"tokenizer.ggml.eos_token_id", &t.eos_id},
                                                  {"tokenizer.ggml.unknown_token_id", &t.unk_id},
                                                  {"tokenizer.ggml.padding_token_id", &t.pad_id}};
  for (const auto& [k, slot] : ids)
    if (const Value* v = f.find(k)) {
      const uint64_t id = v->as_uint(k);
      if (id >= uint64_t(vocab))
        throw FormatError(cat("gguf: ", k, " = ", id, " is outside the vocabulary of ", vocab));
      *slot = int64_t(id);
    }
  if (const Value* v = f.find("tokenizer.ggml.add_bos_token"))
    t.add_bos = v->as_bool("tokenizer.ggml.add_bos_token");
  if (const Value* v = f.find("tokenizer.ggml.add_eos_token"))
    t.add_eos = v->as_bool("tokenizer.ggml.add_eos_token");
  return t;
}

// A row whose trits are all zero takes the scale of the first row that has a
// nonzero trit (what it computes does not depend on it), so a matrix of one
// scale stays one.
void fill_zero_row_scales(const int8_t* trits, int64_t rows, int64_t cols, float* row_scales) {
  std::vector<char> zero_row(static_cast<size_t>(rows), 0);
  int64_t first = -1;
  for (int64_t r = 0; r < rows; ++r) {
    bool z = true;
    for (int64_t c = 0; c < cols && z; ++c) z = trits[r * cols + c] == 0;
    zero_row[size_t(r)] = z;
    if (!z && first < 0) first = r;
  }
  if (first < 0) return;
  for (int64_t r = 0; r < rows; ++r)
    if (zero_row[size_t(r)]) row_scales[r] = row_scales[first];
}

// One block matrix: its trits, row scales and latent values from the tensor.
GgufMatrixSource import_matrix(const gguf::File& f, const gguf::TensorInfo& t, int64_t rows,
                               int64_t cols, GgufTernarise ternarise, int8_t* trits,
                               float* row_scales, float* latent) {
  check_shape(t, {cols, rows});
  const int64_t n = rows * cols;
  if (gguf::is_ternary(t.type)) {
    std::vector<uint16_t> block_d(size_t(n / gguf::kQK_K));
    int64_t bad = -1;
    if (!gguf::decode_ternary(t.type, f.data(t), n, trits, block_d.data(), &bad))
      throw FormatError(cat("gguf: tensor '", t.name, "': value ", bad,
                            " holds the TQ2_0 code 3, not a ternary value"));
    // The kernels scale each row: every block of a row that holds a nonzero
    // trit must carry the same fp16 scale (per-block scales are not supported).
    const int64_t per_row = cols / gguf::kQK_K;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t first = -1;
      for (int64_t b = r * per_row; b < (r + 1) * per_row; ++b) {
        bool nonzero = false;
        for (int64_t i = 0; i < gguf::kQK_K && !nonzero; ++i)
          nonzero = trits[b * gguf::kQK_K + i] != 0;
        if (!nonzero) continue;
        if (first < 0) {
          first = b;
        } else if (block_d[size_t(b)] != block_d[size_t(first)]) {
          throw FormatError(cat("gguf: tensor '", t.name, "': its ", gguf::type_name(t.type),
                                " block scales differ within row ", r, " (block ", first, ": ",
                                norm::f16_to_f32(block_d[size_t(first)]), ", block ", b, ": ",
                                norm::f16_to_f32(block_d[size_t(b)]),
                                "); ternorm keeps one scale per row, per-block scales are not "
                                "supported"));
        }
      }
      const float sc = norm::f16_to_f32(block_d[size_t(first < 0 ? r * per_row : first)]);
      if (!(std::isfinite(sc) && sc >= 0))
        throw FormatError(
            cat("gguf: tensor '", t.name, "': block scale ", sc, " is not finite and >= 0"));
      row_scales[r] = sc;
    }
    fill_zero_row_scales(trits, rows, cols, row_scales);
    for (int64_t i = 0; i < n; ++i) latent[i] = float(trits[i]) * row_scales[i / cols];
    return GgufMatrixSource::Native;
  }
  decode_finite(f, t, latent);
  // Exactly ternary: every row holds only 0 and +-a for its own a.
  bool exact = true;
  for (int64_t r = 0; r < rows && exact; ++r) {
    const float* x = latent + r * cols;
    float a = 0;
    for (int64_t c = 0; c < cols; ++c) a = std::fmax(a, std::fabs(x[c]));
    for (int64_t c = 0; c < cols && exact; ++c) exact = x[c] == 0 || std::fabs(x[c]) == a;
    row_scales[r] = a;
  }
  if (exact) {
    for (int64_t i = 0; i < n; ++i) trits[i] = int8_t(latent[i] > 0 ? 1 : latent[i] < 0 ? -1 : 0);
    fill_zero_row_scales(trits, rows, cols, row_scales);
    return GgufMatrixSource::ExactTernary;
  }
  ternary::absmean_quantize(latent, rows, cols, ternarise == GgufTernarise::PerRow, trits,
                            row_scales);
  return GgufMatrixSource::AbsmeanPtq;
}

}  // namespace

GgufImported gguf_import(const gguf::File& f, const GgufImportOptions& opt) {
  const ModelConfig c = config_of(f, opt);
  GgufImported out;
  out.tokenizer = tokenizer_of(f, c.vocab);
  if (const Value* v = f.find("general.name")) out.name = v->as_string("general.name");
  if (const Value* v = f.find(kTernormTokenizerKey))
    out.ternorm_tokenizer = v->raw(kTernormTokenizerKey, gguf::ValueType::U8);

  // Every tensor must be one this mapping reads: an ignored tensor would
  // silently change what the model computes.
  std::set<std::string> expected{"token_embd.weight", "output_norm.weight"};
  if (!c.tied_head) expected.insert("output.weight");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    expected.insert(cat("blk.", l, ".attn_norm.weight"));
    expected.insert(cat("blk.", l, ".ffn_norm.weight"));
    for (int k = 0; k < kMatricesPerLayer; ++k) expected.insert(matrix_tensor(l, Matrix(k)));
  }
  for (const gguf::TensorInfo& t : f.tensors())
    if (expected.count(t.name) == 0)
      throw FormatError(cat("gguf: tensor '", t.name, "' is not part of a llama model of ",
                            c.n_layers, " blocks as ternorm maps it"));

  out.model = std::make_unique<Model>(c, Model::ForLoading{});
  Model& model = *out.model;
  const int64_t d = c.d_model;
  const gguf::TensorInfo& emb = f.tensor("token_embd.weight");
  check_shape(emb, {d, c.vocab});
  const gguf::TensorInfo* head = c.tied_head ? nullptr : &f.tensor("output.weight");
  if (head) check_shape(*head, {d, c.vocab});
  // F16/BF16 tables (of one type) stay as stored: half the bytes, the same bits.
  if ((emb.type == GgmlType::F16 || emb.type == GgmlType::BF16) &&
      (!head || head->type == emb.type)) {
    model.set_table_type(emb.type == GgmlType::F16 ? gemm::ElemType::F16 : gemm::ElemType::BF16);
    copy_finite16(f, emb, model.tables16());
    if (head) copy_finite16(f, *head, model.tables16() + c.vocab * d);
  } else {
    decode_finite(f, emb, model.params());
    if (head) decode_finite(f, *head, model.params() + model.tensor("output").offset);
  }
  for (int64_t i = 0; i < c.n_norms(); ++i) {
    const gguf::TensorInfo& t = f.tensor(norm_tensor(c, i));
    check_shape(t, {d});
    decode_finite(f, t, model.params() + model.norm_offset(i));
  }
  std::vector<int8_t> trits;
  std::vector<float> row_scales;
  std::set<std::string> types;
  int64_t n_ptq = 0, n_float = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    for (int k = 0; k < kMatricesPerLayer; ++k) {
      const Matrix m = Matrix(k);
      const LinearShape s = model.matrix_shape(m);
      float* latent = model.params() + model.tensor(cat("layers.", l, ".", matrix_name(m))).offset;
      const gguf::TensorInfo& t = f.tensor(matrix_tensor(l, m));
      trits.resize(size_t(s.rows * s.cols));
      row_scales.resize(size_t(s.rows));
      const GgufMatrixSource src = import_matrix(f, t, s.rows, s.cols, opt.ternarise, trits.data(),
                                                 row_scales.data(), latent);
      model.set_ternary_rows(l, m, trits.data(), row_scales.data());
      out.matrices.push_back({t.name, t.type, src});
      types.insert(gguf::type_name(t.type));
      n_ptq += src == GgufMatrixSource::AbsmeanPtq;
      n_float += !gguf::is_ternary(t.type);
    }
  }
  out.post_training_quantised = n_ptq > 0;
  out.latent_stored = n_float == int64_t(out.matrices.size());
  std::string type_list;
  for (const std::string& t : types) type_list += (type_list.empty() ? "" : "+") + t;
  out.info =
      cat("gguf v", f.version(), " llama: ", out.matrices.size(), " block matrices ", type_list,
          n_ptq > 0 ? cat(", ", n_ptq, " ternarised on load by absmean ",
                          opt.ternarise == GgufTernarise::PerRow ? "per row" : "per tensor",
                          " (post-training quantisation)")
                    : std::string(", ternary as stored")) +
      (model.table_type() != gemm::ElemType::F32
           ? cat(", ", gemm::elem_type_name(model.table_type()), " token table kept as stored")
           : std::string());
  // The adapters' base fingerprint (model_file.h) over the imported weights and the tokenizer the
  // model runs with: ternorm's own BPE when the file carries it (so an f32 export of a .tnm
  // re-imports with the .tnm's fingerprint), else the canonical bytes of tokenizer.ggml.*.
  if (!out.ternorm_tokenizer.empty() || out.tokenizer)
    out.model->set_fingerprint(model_fingerprint(
        *out.model, out.ternorm_tokenizer.empty() ? gguf_tokenizer_bytes(*out.tokenizer)
                                                  : out.ternorm_tokenizer));
  return out;
}

}  // namespace ternorm::model
