// Bindings of the tokenizers (native/tokenizer): the project byte BPE (a ByteBpe handle built
// from merges; training and parsing return merges) and the GGUF-metadata tokenizers (a
// VocabTokenizer handle built from a plain metadata object). One call tokenizes a whole text.
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "addon.h"
#include "tokenizer/byte_bpe.h"
#include "tokenizer/byte_pretokenize.h"
#include "tokenizer/vocab.h"

namespace ternorm::addon {
namespace {

using tok::ByteBpe;
using tok::VocabData;
using tok::VocabTokenizer;

Napi::Uint16Array merges_array(Napi::Env env, const std::vector<uint16_t>& m) {
  auto a = Napi::Uint16Array::New(env, m.size());
  if (!m.empty()) std::memcpy(a.Data(), m.data(), m.size() * sizeof(uint16_t));
  return a;
}

Napi::Int32Array ids_array(Napi::Env env, const std::vector<int32_t>& ids) {
  auto a = Napi::Int32Array::New(env, ids.size());
  if (!ids.empty()) std::memcpy(a.Data(), ids.data(), ids.size() * sizeof(int32_t));
  return a;
}

// Runs fn, turning a core exception into the matching JS error (methods of wrapped classes are
// not behind guarded<>).
template <typename F>
Napi::Value core_call(Napi::Env env, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw make_error(env, classify_current_exception());
  }
}

// ---- ByteBpe ------------------------------------------------------------------------------
class ByteBpeHandle : public Napi::ObjectWrap<ByteBpeHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "ByteBpe",
                       {InstanceMethod<&ByteBpeHandle::VocabSize>("vocabSize"),
                        InstanceMethod<&ByteBpeHandle::Merges>("merges"),
                        InstanceMethod<&ByteBpeHandle::Serialize>("serialize"),
                        InstanceMethod<&ByteBpeHandle::Encode>("encode"),
                        InstanceMethod<&ByteBpeHandle::Decode>("decode"),
                        InstanceMethod<&ByteBpeHandle::TokenBytes>("tokenBytes")});
  }

  // new ByteBpe(merges: Uint16Array)
  explicit ByteBpeHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ByteBpeHandle>(info) {
    const auto m = array_arg<uint16_t>(info, 0, "merges");
    try {
      bpe_ = std::make_unique<ByteBpe>(std::vector<uint16_t>(m.data, m.data + m.length));
    } catch (...) {
      throw make_error(info.Env(), classify_current_exception());
    }
  }

 private:
  Napi::Value VocabSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), bpe_->vocab_size());
  }
  Napi::Value Merges(const Napi::CallbackInfo& info) {
    return merges_array(info.Env(), bpe_->merges());
  }
  Napi::Value Serialize(const Napi::CallbackInfo& info) {
    return core_call(info.Env(), [&] {
      const std::vector<uint8_t> b = bpe_->serialize();
      return copy_bytes(info.Env(), b.data(), b.size());
    });
  }
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    const auto t = array_arg<uint8_t>(info, 0, "bytes");
    return core_call(info.Env(),
                     [&] { return ids_array(info.Env(), bpe_->encode(t.data, t.length)); });
  }
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    const I32Arg ids = int32_arg(info, 0, "ids");
    return core_call(info.Env(), [&] {
      const std::vector<uint8_t> b = bpe_->decode(ids.data, ids.length);
      return copy_bytes(info.Env(), b.data(), b.size());
    });
  }
  Napi::Value TokenBytes(const Napi::CallbackInfo& info) {
    const double id = number_arg(info, 0, "id");
    if (!(id >= 0 && id < bpe_->vocab_size() && id == double(int32_t(id))))
      throw_range(info.Env(),
                  "id " + num(id) + " outside [0, " + std::to_string(bpe_->vocab_size()) + ")");
    size_t len;
    const uint8_t* p = bpe_->token_bytes(int32_t(id), &len);
    return copy_bytes(info.Env(), p, len);
  }

  std::unique_ptr<ByteBpe> bpe_;
};

// byteBpeTrain(text: Uint8Array, vocabSize, minPairCount) -> merges
Napi::Value ByteBpeTrain(const Napi::CallbackInfo& info) {
  const auto t = array_arg<uint8_t>(info, 0, "text");
  const int64_t vocab = size_arg(info, 1, "vocabSize");
  const int64_t min_pair = size_arg(info, 2, "minPairCount");
  if (vocab > ByteBpe::kMaxVocab)
    throw_range(info.Env(), "vocabSize must be <= 65536, got " + std::to_string(vocab));
  return merges_array(info.Env(), ByteBpe::train(t.data, t.length, int(vocab), min_pair).merges());
}

// byteBpeParse(data: Uint8Array) -> merges of a valid "TBPE" blob
Napi::Value ByteBpeParse(const Napi::CallbackInfo& info) {
  const auto d = array_arg<uint8_t>(info, 0, "data");
  return merges_array(info.Env(), ByteBpe::deserialize(d.data, d.length).merges());
}

// byteChunkBounds(bytes) -> Uint32Array [0, end0, end1, ...]
Napi::Value ByteChunkBounds(const Napi::CallbackInfo& info) {
  const auto t = array_arg<uint8_t>(info, 0, "bytes");
  std::vector<uint32_t> b{0};
  for (size_t i = 0; i < t.length;)
    b.push_back(uint32_t(i = tok::byte_chunk_end(t.data, t.length, i)));
  auto a = Napi::Uint32Array::New(info.Env(), b.size());
  std::memcpy(a.Data(), b.data(), b.size() * sizeof(uint32_t));
  return a;
}

// ---- VocabTokenizer ---------------------------------------------------------------------------
std::vector<std::string> string_list(Napi::Env env, Napi::Object o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return {};
  if (!v.IsArray())
    throw_type(env, std::string("metadata.") + key + " must be an array of strings");
  const Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const Napi::Value s = a.Get(i);
    if (!s.IsString())
      throw_type(env,
                 std::string("metadata.") + key + "[" + std::to_string(i) + "] must be a string");
    out[i] = s.As<Napi::String>().Utf8Value();
  }
  return out;
}

template <typename T, typename A>
std::vector<T> typed_list(Napi::Env env, Napi::Object o, const char* key, napi_typedarray_type type,
                          const char* tname) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return {};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_type(env, std::string("metadata.") + key + " must be " + tname);
  const A a = v.As<A>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

int32_t id_prop(Napi::Env env, Napi::Object o, const char* key) {
  return o.Get(key).IsUndefined() ? -1 : int32_t(int_prop(env, o, key, -1, INT32_MAX, "metadata"));
}

bool flag_prop(Napi::Env env, Napi::Object o, const char* key, bool fallback) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw_type(env, std::string("metadata.") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string str_prop(Napi::Env env, Napi::Object o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return "";
  if (!v.IsString()) throw_type(env, std::string("metadata.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

class VocabTokenizerHandle : public Napi::ObjectWrap<VocabTokenizerHandle> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "VocabTokenizer",
                       {InstanceMethod<&VocabTokenizerHandle::Size>("size"),
                        InstanceMethod<&VocabTokenizerHandle::Encode>("encode"),
                        InstanceMethod<&VocabTokenizerHandle::Decode>("decode")});
  }

  // new VocabTokenizer({ model, pre?, tokens, scores?: Float32Array, tokenTypes?: Int32Array,
  //   merges?, bos?, eos?, unk?, pad?, addBos?, addEos?, addSpacePrefix? })
  explicit VocabTokenizerHandle(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<VocabTokenizerHandle>(info) {
    Napi::Env env = info.Env();
    VocabData d = vocab_data_arg(info, 0);
    try {
      tok_ = std::make_unique<VocabTokenizer>(std::move(d));
    } catch (...) {
      throw make_error(env, classify_current_exception());
    }
  }

 private:
  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), tok_->n_tokens());
  }
  // encode(bytes: Uint8Array, addSpecial: boolean, parseSpecial: boolean) -> Int32Array
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    const auto t = array_arg<uint8_t>(info, 0, "bytes");
    const bool add_special = bool_arg(info, 1, "addSpecial");
    const bool parse_special = bool_arg(info, 2, "parseSpecial");
    return core_call(info.Env(), [&] {
      const std::string text(reinterpret_cast<const char*>(t.data), t.length);
      return ids_array(info.Env(), tok_->encode(text, add_special, parse_special));
    });
  }
  // decode(ids: Int32Array, renderSpecial: boolean) -> Uint8Array
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    const I32Arg ids = int32_arg(info, 0, "ids");
    const bool render = bool_arg(info, 1, "renderSpecial");
    return core_call(info.Env(), [&] {
      const std::string s = tok_->decode(ids.data, ids.length, render);
      return copy_bytes(info.Env(), reinterpret_cast<const uint8_t*>(s.data()), s.size());
    });
  }

  std::unique_ptr<VocabTokenizer> tok_;
};

}  // namespace

VocabData vocab_data_arg(const Napi::CallbackInfo& info, size_t index) {
  Napi::Env env = info.Env();
  const Napi::Object o = object_arg(info, index, "metadata");
  VocabData d;
  d.model = str_prop(env, o, "model");
  d.pre = str_prop(env, o, "pre");
  d.tokens = string_list(env, o, "tokens");
  d.scores =
      typed_list<float, Napi::Float32Array>(env, o, "scores", napi_float32_array, "a Float32Array");
  d.token_types = typed_list<int32_t, Napi::Int32Array>(env, o, "tokenTypes", napi_int32_array,
                                                        "an Int32Array");
  d.merges = string_list(env, o, "merges");
  d.bos = id_prop(env, o, "bos");
  d.eos = id_prop(env, o, "eos");
  d.unk = id_prop(env, o, "unk");
  d.pad = id_prop(env, o, "pad");
  d.add_bos = flag_prop(env, o, "addBos", false);
  d.add_eos = flag_prop(env, o, "addEos", false);
  d.add_space_prefix = flag_prop(env, o, "addSpacePrefix", true);
  return d;
}

Napi::Object vocab_object(Napi::Env env, const VocabData& d) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("model", d.model);
  o.Set("pre", d.pre);
  Napi::Array tokens = Napi::Array::New(env, d.tokens.size());
  for (size_t i = 0; i < d.tokens.size(); ++i)
    tokens.Set(uint32_t(i), Napi::String::New(env, d.tokens[i]));
  o.Set("tokens", tokens);
  if (!d.scores.empty()) o.Set("scores", copy_f32(env, d.scores.data(), d.scores.size()));
  if (!d.token_types.empty()) {
    auto tt = Napi::Int32Array::New(env, d.token_types.size());
    std::memcpy(tt.Data(), d.token_types.data(), d.token_types.size() * 4);
    o.Set("tokenTypes", tt);
  }
  Napi::Array merges = Napi::Array::New(env, d.merges.size());
  for (size_t i = 0; i < d.merges.size(); ++i)
    merges.Set(uint32_t(i), Napi::String::New(env, d.merges[i]));
  o.Set("merges", merges);
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", d.bos}, {"eos", d.eos}, {"unk", d.unk}, {"pad", d.pad}};
  for (const auto& [k, id] : ids)
    if (id >= 0) o.Set(k, double(id));
  o.Set("addBos", d.add_bos);
  o.Set("addEos", d.add_eos);
  o.Set("addSpacePrefix", d.add_space_prefix);
  return o;
}

void register_tokenizer(Napi::Env env, Napi::Object exports) {
  Napi::Object k = Napi::Object::New(env);  // the core's constants, read once by lib/tokenizer
  k.Set("formatVersion", ByteBpe::kFormatVersion);
  k.Set("pretokenizerVersion", tok::kPretokenizerVersion);
  k.Set("maxChunkBytes", double(tok::kMaxChunkBytes));
  k.Set("minVocabSize", ByteBpe::kMinVocab);
  k.Set("maxVocabSize", ByteBpe::kMaxVocab);
  exports.Set("byteBpeConstants", k);
  exports.Set("ByteBpe", ByteBpeHandle::define(env));
  exports.Set("VocabTokenizer", VocabTokenizerHandle::define(env));
  exports.Set("byteBpeTrain", Napi::Function::New(env, guarded<ByteBpeTrain>, "byteBpeTrain"));
  exports.Set("byteBpeParse", Napi::Function::New(env, guarded<ByteBpeParse>, "byteBpeParse"));
  exports.Set("byteChunkBounds",
              Napi::Function::New(env, guarded<ByteChunkBounds>, "byteChunkBounds"));
}

}  // namespace ternorm::addon
