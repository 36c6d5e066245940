// The model and adapter files (model/model_file.h): round trips bit for bit,
// checkpoints that resume exactly, base fingerprints, and every malformed
// input refused with io::FormatError (truncations, bit flips, and sections
// rewritten with valid checksums but bad content).
#include <cstring>
#include <string>
#include <vector>

#include "codec/codec.h"
#include "harness.h"
#include "io/container.h"
#include "model/model.h"
#include "model/model_file.h"
#include "model/train.h"
#include "ternary/ternary.h"

namespace ternorm::test {
namespace {

using model::Model;
using model::ModelConfig;

ModelConfig file_config() {
  ModelConfig c;
  c.vocab = 40;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 2;
  c.d_ff = 24;
  c.context = 12;
  return c;
}

const std::vector<uint8_t> kTokenizer = {'T', 'B', 'P', 'E', 1, 2, 3};

io::Container parse(const std::vector<uint8_t>& bytes) {
  return io::Container::copy(bytes.data(), bytes.size());
}

bool same_params(const Model& a, const Model& b) {
  return a.n_params() == b.n_params() &&
         std::memcmp(a.params(), b.params(), size_t(a.n_params()) * sizeof(float)) == 0;
}

bool same_ternary(const Model& a, const Model& b) {
  const ModelConfig& c = a.config();
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int k = 0; k < model::kMatricesPerLayer; ++k) {
      const model::LinearShape s = a.matrix_shape(model::Matrix(k));
      std::vector<int8_t> ta(size_t(s.rows * s.cols)), tb(ta.size());
      float sa = 0, sb = 0;
      a.get_ternary(l, model::Matrix(k), ta.data(), &sa);
      b.get_ternary(l, model::Matrix(k), tb.data(), &sb);
      if (ta != tb || sa != sb) return false;
    }
  return true;
}

std::vector<int32_t> batch_tokens(uint64_t seed, int64_t batch, int64_t seq, int64_t vocab) {
  Rng r(seed);
  std::vector<int32_t> t(size_t(batch * (seq + 1)));
  for (int32_t& x : t) x = int32_t(r.below(vocab));
  return t;
}

// Refused with FormatError (never another exception, never a crash).
template <typename F>
bool format_error(F&& f) {
  try {
    f();
  } catch (const io::FormatError&) {
    return true;
  } catch (...) {
    return false;
  }
  return false;
}

}  // namespace

TEST(model_file_round_trip) {
  Model m(file_config(), 5);
  const std::vector<uint8_t> bytes =
      model::model_writer(m, kTokenizer, "{\"k\":1}", nullptr).finish();
  const model::LoadedModel lm = model::load_model(parse(bytes));
  CHECK(lm.tokenizer == kTokenizer);
  CHECK(lm.meta == "{\"k\":1}");
  CHECK(!lm.has_latent && !lm.checkpoint);
  CHECK(same_ternary(m, *lm.model));
  CHECK(lm.fingerprint == model::model_fingerprint(m, kTokenizer));
  // The file's tensors are the same bytes; writing the loaded model again gives the same file.
  CHECK(model::model_writer(*lm.model, kTokenizer, "{\"k\":1}", nullptr).finish() == bytes);
  // Meta is not fingerprinted; the tokenizer is.
  const auto no_meta =
      model::load_model(parse(model::model_writer(m, kTokenizer, "", nullptr).finish()));
  CHECK(no_meta.fingerprint == lm.fingerprint && no_meta.meta.empty());
  CHECK(model::model_fingerprint(m, {1, 2}) != lm.fingerprint);
  CHECK(model::model_fingerprint(Model(file_config(), 6), kTokenizer) != lm.fingerprint);
  // A stale model (latent weights changed, not quantised) cannot be written.
  Model stale(file_config(), 5);
  stale.mark_latent_changed();
  bool refused = false;
  try {
    model::model_writer(stale, kTokenizer, "", nullptr);
  } catch (const std::logic_error&) {
    refused = true;
  }
  CHECK(refused);
}

// Grouped-query attention and an untied head: the config carries both, the
// file an "output" section, and everything round-trips byte for byte. The
// default config writes neither (the config text of every earlier file).
TEST(model_file_gqa_untied) {
  ModelConfig c = file_config();
  c.n_heads = 4, c.n_kv_heads = 2, c.tied_head = false;
  Model m(c, 5);
  const std::string json = model::config_json(c);
  CHECK_MSG(json.find(",\"n_kv_heads\":2,\"tied_head\":false}") != std::string::npos, json);
  const std::vector<uint8_t> bytes = model::model_writer(m, kTokenizer, "", nullptr).finish();
  const io::Container file = parse(bytes);
  CHECK(file.has("output") && file.section("output").bytes == uint64_t(c.vocab * c.d_model * 4));
  CHECK(file.section("layers.0.wk.trits").bytes == uint64_t(ternary::packed5_bytes(8 * 16)));
  const model::LoadedModel lm = model::load_model(file);
  const ModelConfig& back = lm.model->config();
  CHECK(back.kv_heads() == 2 && !back.tied_head && back.n_heads == 4);
  CHECK(same_ternary(m, *lm.model));
  const model::TensorInfo& out = m.tensor("output");
  CHECK(std::memcmp(lm.model->head(), m.head(), size_t(out.rows * out.cols) * 4) == 0);
  CHECK(model::model_writer(*lm.model, kTokenizer, "", nullptr).finish() == bytes);
  CHECK(lm.fingerprint == model::model_fingerprint(m, kTokenizer));
  // Each field changes what inference computes: each changes the fingerprint.
  ModelConfig tied = c;
  tied.tied_head = true;
  CHECK(model::model_fingerprint(Model(tied, 5), kTokenizer) != lm.fingerprint);
  // The defaults stay out of the config (n_kv_heads = n_heads written out or not).
  ModelConfig mha = file_config();
  const std::string plain =
      "{\"format\":\"ternorm.model\",\"vocab\":40,\"d_model\":16,\"n_layers\":2,"
      "\"n_heads\":2,\"d_ff\":24,\"context\":12,\"norm_eps\":9.99999975e-06,"
      "\"rope_theta\":10000}";
  CHECK_MSG(model::config_json(mha) == plain, model::config_json(mha));
  mha.n_kv_heads = 2;
  CHECK(model::config_json(mha) == plain);
  CHECK(model::config_from_json(plain).kv_heads() == 2 && model::config_from_json(plain).tied_head);
  // A file missing its output section, or with one of the wrong size, is refused.
  auto without = [&](const std::string& name, size_t keep) {
    io::Writer w(io::FileKind::Model);
    for (const io::Section& s : file.sections())
      if (s.name != name)
        w.add(s.name, s.type, s.data, size_t(s.bytes));
      else if (keep > 0)
        w.add(s.name, s.type, s.data, keep);
    return w.finish();
  };
  CHECK(format_error([&] { model::load_model(parse(without("output", 0))); }));
  CHECK(format_error(
      [&] { model::load_model(parse(without("output", size_t(out.rows * out.cols) * 4 - 4))); }));
  int refused = 0, total = 0;
  Rng r(7);
  for (int i = 0; i < 500; ++i) {
    std::vector<uint8_t> b = bytes;
    b[size_t(r.below(int64_t(b.size())))] ^= uint8_t(1u << r.below(8));
    ++total;
    refused += format_error([&] { model::load_model(parse(b)); });
  }
  CHECK_MSG(refused == total, refused << " of " << total << " refused");
}

TEST(model_file_checkpoint_resumes_exactly) {
  const ModelConfig c = file_config();
  model::TrainConfig tc;
  tc.batch = 2;
  tc.seq = 8;
  tc.schedule = {3e-3f, 3e-4f, 1, 6};
  Exec ex;
  Model straight(c, 9);
  model::Trainer ts(straight, tc);
  for (int s = 0; s < 5; ++s) ts.step(batch_tokens(100 + s, 2, 8, c.vocab).data(), 2, 8, ex);

  Model first(c, 9);
  model::Trainer tf(first, tc);
  for (int s = 0; s < 2; ++s) tf.step(batch_tokens(100 + s, 2, 8, c.vocab).data(), 2, 8, ex);
  model::CheckpointView ck{tf.adam_m(), tf.adam_v(), tf.state_size(), tf.steps_done(),
                           "{\"rng\":\"00\"}"};
  const std::vector<uint8_t> bytes = model::model_writer(first, kTokenizer, "", &ck).finish();
  model::LoadedModel lm = model::load_model(parse(bytes));
  CHECK(lm.has_latent && lm.checkpoint && lm.checkpoint->step == 2 &&
        lm.checkpoint->state == "{\"rng\":\"00\"}");
  CHECK(same_params(first, *lm.model) && same_ternary(first, *lm.model));
  CHECK(lm.fingerprint == model::model_fingerprint(first, kTokenizer));
  model::Trainer tr(*lm.model, tc);
  tr.restore_state(lm.checkpoint->adam_m.data(), lm.checkpoint->adam_v.data(),
                   int64_t(lm.checkpoint->adam_m.size()), lm.checkpoint->step);
  for (int s = 2; s < 5; ++s) tr.step(batch_tokens(100 + s, 2, 8, c.vocab).data(), 2, 8, ex);
  CHECK(same_params(straight, *lm.model) && same_ternary(straight, *lm.model));
  CHECK_THROWS(tr.restore_state(lm.checkpoint->adam_m.data(), lm.checkpoint->adam_v.data(), 3, 0));
}

TEST(model_file_adapter_and_base_fingerprint) {
  const ModelConfig c = file_config();
  Model base(c, 1), other(c, 2);
  const io::Fingerprint fb = model::model_fingerprint(base, kTokenizer);
  const io::Fingerprint fo = model::model_fingerprint(other, kTokenizer);
  std::vector<float> gains(size_t(c.n_gains()));
  for (size_t i = 0; i < gains.size(); ++i) gains[i] = 1.0f + 0.01f * float(i % 7);
  const std::vector<uint8_t> bytes =
      model::adapter_writer(c, gains.data(), int64_t(gains.size()), fb, "").finish();
  const io::ParseOptions opts{model::adapter_limits(c), io::FileKind::Adapter};
  const io::Container file = io::Container::copy(bytes.data(), bytes.size(), opts);
  CHECK(model::load_adapter(file, c, fb).gains == gains);
  CHECK(format_error([&] { model::load_adapter(file, c, fo); }));
  ModelConfig wider = c;
  wider.d_model = 32;
  CHECK(format_error([&] { model::load_adapter(file, wider, fb); }));
  CHECK_THROWS(model::adapter_writer(c, gains.data(), 3, fb, ""));
  gains[4] = NAN;
  CHECK_THROWS(model::adapter_writer(c, gains.data(), int64_t(gains.size()), fb, ""));
  // A model file is not an adapter, and is over an adapter's size limit anyway.
  const std::vector<uint8_t> mbytes = model::model_writer(base, kTokenizer, "", nullptr).finish();
  CHECK(format_error([&] { io::Container::copy(mbytes.data(), mbytes.size(), opts); }));
  CHECK(format_error([&] { model::load_model(file); }));
}

// Encoded adapter files: every method round trips (records bit for bit, gains
// = the decoded ones), a file that names one method but holds another's
// records is refused, and so is every truncation, bit flip and a blob that
// does not fit the base's shape.
TEST(model_file_encoded_adapter) {
  const ModelConfig c = file_config();
  Model base(c, 1), other(c, 2);
  const io::Fingerprint fb = model::model_fingerprint(base, kTokenizer);
  const io::Fingerprint fo = model::model_fingerprint(other, kTokenizer);
  std::vector<float> gains(size_t(c.n_gains()));
  Rng r(5);
  for (float& g : gains) g = 1.0f + 0.05f * (r.uniform() - 0.5f);
  const io::ParseOptions opts{model::adapter_limits(c), io::FileKind::EncodedAdapter};
  // A loss for the searching methods: distance of the decoded gains from the trained ones.
  const codec::AdapterLoss loss = [&](const std::vector<norm::GainView>& views) {
    double e = 0;
    std::vector<float> dec(size_t(c.d_model));
    for (size_t t = 0; t < views.size(); ++t) {
      norm::decode_gain(views[t], dec.data());
      for (int64_t i = 0; i < c.d_model; ++i)
        e += std::abs(double(dec[size_t(i)]) - gains[t * size_t(c.d_model) + size_t(i)]);
    }
    return e;
  };
  codec::EncodeOptions eo;
  eo.byte_budget = 1000;
  for (const codec::Method m : codec::all_methods()) {
    const codec::EncodedAdapter enc =
        codec::encode_adapter(m, gains.data(), c.n_norms(), c.d_model, eo, loss);
    const std::vector<uint8_t> bytes =
        model::encoded_adapter_writer(c, m, enc.tensors, fb, "{}").finish();
    const model::LoadedAdapter a =
        model::load_adapter(io::Container::copy(bytes.data(), bytes.size(), opts), c, fb);
    CHECK(a.scheme == codec::method_name(m));
    CHECK(codec::serialize_adapter(a.encoded) == codec::serialize_adapter(enc.tensors));
    std::vector<float> dec(gains.size());
    for (size_t t = 0; t < enc.tensors.size(); ++t)
      norm::decode_gain(enc.tensors[t].view(), dec.data() + t * size_t(c.d_model));
    CHECK(a.gains == dec);
    CHECK(a.meta == "{}");
    CHECK(format_error([&] {
      model::load_adapter(io::Container::copy(bytes.data(), bytes.size(), opts), c, fo);
    }));
  }
  // The writer refuses records of another method, a wrong count or d.
  const codec::EncodedAdapter i8 =
      codec::encode_adapter(codec::Method::Int8PerTensor, gains.data(), c.n_norms(), c.d_model);
  CHECK_THROWS(model::encoded_adapter_writer(c, codec::Method::Int4Delta, i8.tensors, fb, ""));
  std::vector<codec::EncodedGain> fewer(i8.tensors.begin(), i8.tensors.end() - 1);
  CHECK_THROWS(model::encoded_adapter_writer(c, codec::Method::Int8PerTensor, fewer, fb, ""));
  ModelConfig wider = c;
  wider.d_model = 32;
  CHECK_THROWS(
      model::encoded_adapter_writer(wider, codec::Method::Int8PerTensor, i8.tensors, fb, ""));

  // A valid container whose config names another method than its records.
  const std::vector<uint8_t> good =
      model::encoded_adapter_writer(c, codec::Method::Int8PerTensor, i8.tensors, fb, "").finish();
  const io::Container gc = parse(good);
  auto with_config = [&](const std::string& scheme,
                         io::FileKind kind = io::FileKind::EncodedAdapter) {
    io::Writer w(kind);
    for (const io::Section& s : gc.sections()) {
      if (s.name == "config") {
        const std::string j =
            "{\"format\":\"ternorm.adapter\",\"n_norms\":" + std::to_string(c.n_norms()) +
            ",\"d_model\":" + std::to_string(c.d_model) + ",\"scheme\":\"" + scheme + "\"}";
        w.add_json("config", j);
      } else {
        w.add(s.name, s.type, s.data, size_t(s.bytes));
      }
    }
    return w.finish();
  };
  CHECK(!format_error([&] { model::load_adapter(parse(with_config("int8_per_tensor")), c, fb); }));
  CHECK(format_error([&] { model::load_adapter(parse(with_config("int4_delta")), c, fb); }));
  CHECK(format_error([&] { model::load_adapter(parse(with_config("mixed")), c, fb); }));
  CHECK(format_error([&] { model::load_adapter(parse(with_config("int9")), c, fb); }));
  CHECK(format_error(
      [&] { model::load_adapter(parse(with_config("f32")), c, fb); }));  // f32 in an encoded file
  CHECK(format_error([&] {
    model::load_adapter(parse(with_config("int8_per_tensor", io::FileKind::Adapter)), c, fb);
  }));
  CHECK(format_error([&] {
    model::load_adapter(parse(with_config("f32", io::FileKind::Adapter)), c, fb);
  }));  // no gains
  // The same records read as a wider base's adapter.
  CHECK(format_error([&] { model::load_adapter(gc, wider, fb); }));

  // Every truncation and a sample of bit flips: refused, never a crash.
  int refused = 0, total = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    ++total;
    refused += format_error(
        [&] { model::load_adapter(io::Container::copy(good.data(), n, opts), c, fb); });
  }
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> b = good;
    b[size_t(r.below(int64_t(b.size())))] ^= uint8_t(1u << r.below(8));
    ++total;
    refused += format_error(
        [&] { model::load_adapter(io::Container::copy(b.data(), b.size(), opts), c, fb); });
  }
  CHECK_MSG(refused == total, refused << " of " << total << " refused");
}

TEST(model_file_config_json) {
  const ModelConfig c = file_config();
  const ModelConfig back = model::config_from_json(model::config_json(c));
  CHECK(back.vocab == c.vocab && back.d_model == c.d_model && back.n_layers == c.n_layers &&
        back.n_heads == c.n_heads && back.d_ff == c.d_ff && back.context == c.context &&
        back.norm_eps == c.norm_eps && back.rope_theta == c.rope_theta);
  const std::string good = model::config_json(c);
  const std::vector<std::string> bad = {
      "",
      "{",
      "[]",
      "{\"format\":\"ternorm.model\"}",
      good + "x",
      good.substr(0, good.size() - 1),
      "{\"format\":\"ternorm.adapter\"" + good.substr(good.find(',')),
      "{\"extra\":1," + good.substr(1),
      "{\"vocab\":1," + good.substr(1),  // duplicate key
  };
  for (const std::string& s : bad) CHECK_MSG(format_error([&] { model::config_from_json(s); }), s);
  auto replace = [&](const std::string& key, const std::string& value) {
    std::string s = good;
    const size_t at = s.find("\"" + key + "\":") + key.size() + 3;
    const size_t end = s.find_first_of(",}", at);
    return s.replace(at, end - at, value);
  };
  for (const auto& [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"n_heads", "3"},
                                                        {"vocab", "1"},
                                                        {"d_model", "16.5"},
                                                        {"context", "-4"},
                                                        {"norm_eps", "0"},
                                                        {"rope_theta", "\"x\""},
                                                        {"vocab", "1e400"},
                                                        {"d_ff", "99999999999"}})
    CHECK_MSG(format_error([&] { model::config_from_json(replace(k, v)); }), k << "=" << v);
  // The optional fields: n_kv_heads a divisor of n_heads (= 2 here) in [1, n_heads], tied_head a
  // boolean.
  const std::string base = good.substr(0, good.size() - 1);
  for (const char* tail :
       {",\"n_kv_heads\":0}", ",\"n_kv_heads\":3}", ",\"n_kv_heads\":-1}", ",\"n_kv_heads\":1.5}",
        ",\"n_kv_heads\":true}", ",\"tied_head\":1}", ",\"tied_head\":\"false\"}",
        ",\"tied_head\":fals}", ",\"tied_head\":falsey}", ",\"n_kv_heads\":1,\"n_kv_heads\":1}"})
    CHECK_MSG(format_error([&] { model::config_from_json(base + tail); }), tail);
  CHECK(model::config_from_json(base + ",\"n_kv_heads\":1}").kv_heads() == 1);
  CHECK(!model::config_from_json(base + ",\"tied_head\":false}").tied_head);
  CHECK(model::config_from_json(base + ",\"tied_head\":true}").tied_head);
  CHECK(format_error([&] { model::config_from_json(replace("vocab", "true")); }));
}

// Every truncation and a sample of single-bit flips of a model file and a
// checkpoint, and sections rewritten with valid checksums but bad content.
TEST(model_file_fuzz) {
  const ModelConfig c = file_config();
  Model m(c, 3);
  model::Trainer t(
      m, model::TrainConfig{model::TrainMode::TernaryBase, 1, 4, {1e-3f, 1e-4f, 0, 4}, {}, 1.0f});
  t.step(batch_tokens(1, 1, 4, c.vocab).data(), 1, 4, Exec{});
  model::CheckpointView ck{t.adam_m(), t.adam_v(), t.state_size(), t.steps_done(), "{}"};
  for (const bool with_ck : {false, true}) {
    const std::vector<uint8_t> bytes =
        model::model_writer(m, kTokenizer, "{}", with_ck ? &ck : nullptr).finish();
    int refused = 0, total = 0;
    for (size_t n = 0; n < bytes.size(); n += (n < 4096 ? 1 : 97)) {
      ++total;
      refused += format_error([&] { model::load_model(io::Container::copy(bytes.data(), n)); });
    }
    Rng r(with_ck ? 2 : 1);
    for (int i = 0; i < 1500; ++i) {
      std::vector<uint8_t> b = bytes;
      b[size_t(r.below(int64_t(b.size())))] ^= uint8_t(1u << r.below(8));
      ++total;
      refused += format_error([&] { model::load_model(parse(b)); });
    }
    CHECK_MSG(refused == total, refused << " of " << total << " refused");
  }

  // Valid containers with bad content: rebuild the file with one section replaced.
  const std::vector<uint8_t> bytes = model::model_writer(m, kTokenizer, "{}", nullptr).finish();
  const io::Container good = parse(bytes);
  CHECK(!format_error([&] { model::load_model(good); }));
  auto rebuilt = [&](const std::string& name, io::DType type, std::vector<uint8_t> payload,
                     bool drop = false) {
    io::Writer w(io::FileKind::Model);
    for (const io::Section& s : good.sections()) {
      if (s.name != name)
        w.add(s.name, s.type, s.data, size_t(s.bytes));
      else if (!drop)
        w.add(s.name, type, payload.data(), payload.size());
    }
    return w.finish();
  };
  const io::Section& trits = good.section("layers.1.w2.trits");
  std::vector<uint8_t> t243(trits.data, trits.data + trits.bytes);
  t243[0] = 243;
  std::vector<uint8_t> scales(
      good.section("ternary.scales").data,
      good.section("ternary.scales").data + good.section("ternary.scales").bytes);
  const float nan = NAN;
  std::memcpy(scales.data() + 4, &nan, 4);
  std::vector<uint8_t> emb(
      good.section("tok_embedding").data,
      good.section("tok_embedding").data + good.section("tok_embedding").bytes);
  std::vector<uint8_t> short_emb(emb.begin(), emb.end() - 4);
  const std::string cfg7 = model::config_json(c).replace(
      model::config_json(c).find("\"n_layers\":2"), 12, "\"n_layers\":3");
  const std::vector<std::vector<uint8_t>> cases = {
      rebuilt("layers.1.w2.trits", io::DType::U8, t243),
      rebuilt("ternary.scales", io::DType::F32, scales),
      rebuilt("tok_embedding", io::DType::F32, short_emb),
      rebuilt("tok_embedding", io::DType::U8, emb),
      rebuilt("final_norm", io::DType::F32, {}, true),
      rebuilt("tokenizer", io::DType::U8, {}),
      rebuilt("config", io::DType::Json, std::vector<uint8_t>(cfg7.begin(), cfg7.end())),
      rebuilt("meta", io::DType::U8, {1}),
  };
  for (size_t i = 0; i < cases.size(); ++i)
    CHECK_MSG(format_error([&] { model::load_model(parse(cases[i])); }), "case " << i);
}

}  // namespace ternorm::test
