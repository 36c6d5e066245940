// The model file and the adapter file on top of the io container (FORMAT.md):
// what sections each kind holds, how they map to a Model, and the base
// fingerprint that ties an adapter to its model. No Node dependency, so an
// edge application loads the same files the CLI writes.
//
// Model file (FileKind::Model), sections:
//   config              json  {"format":"ternorm.model","vocab":..,"d_model":..,"n_layers":..,
//                              "n_heads":..,"d_ff":..,"context":..,"norm_eps":..,"rope_theta":..
//                              [,"n_kv_heads":..][,"tied_head":false]}; the last two only
//                              when not the defaults (n_kv_heads = n_heads, tied head), so
//                              files written before them re-save byte for byte
//   tokenizer           u8    the tokenizer, opaque bytes (lib/tokenizer serialises it)
//   tok_embedding       f32   vocab x d_model
//   output              f32   vocab x d_model, the output head (only when untied)
//   layers.L.attn_norm, layers.L.ffn_norm, final_norm   f32  d_model each
//   layers.L.<m>.trits  u8    the rows x cols trits of matrix m (wq wk wv wo w1 w3 w2; wk and
//                              wv are n_kv_heads*head_dim rows), 5 trits per byte
//                              (ternary::pack5), row-major
//   ternary.scales      f32   n_layers x 7 absmean scales, in that matrix order
//   ternary.row_scales  f32   only when some matrix has one scale per row (a GGUF imported with
//                              per-row absmean): every matrix's rows scales, in that order (the
//                              first of each equals its ternary.scales entry); fingerprinted
//   meta                json  free-form record of the caller (optional, not fingerprinted)
// A checkpoint is a model file with, in addition:
//   checkpoint.latent   f32   every latent parameter (Model::params order)
//   checkpoint.adamw.m, checkpoint.adamw.v   f32   the optimiser moments
//   checkpoint.step     i64   [1] updates done
//   checkpoint.state    json  the caller's training state (options, data-order RNG), opaque here
//
// The fingerprint covers config, tokenizer and every weight section (not meta,
// not checkpoint.*): a checkpoint and the model file written from the same
// state share it, and any change to what inference computes changes it.
//
// Adapter file (FileKind::Adapter for scheme "f32", FileKind::EncodedAdapter for the others):
//   config              json  {"format":"ternorm.adapter","n_norms":..,"d_model":..,"scheme":S}
//   gains               f32   S = "f32" (a trained adapter): n_norms x d_model, norm order of
//                             Model::norm_offset
//   encoded             u8    any other S, a codec method name (codec::method_name): the
//                             adapter blob of n_norms records of d_model gains
//                             (codec::serialize_adapter; native/codec/README.md)
//   base.fingerprint    u8    32 bytes (io::add_base_fingerprint)
//   meta                json  optional, not interpreted
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../cpu/isa.h"
#include "../codec/codec.h"
#include "../io/container.h"
#include "model.h"

namespace ternorm::model {

struct CheckpointData {
  std::vector<float> adam_m, adam_v;
  int64_t step = 0;
  std::string state;  // the caller's json
};

// What a checkpoint adds to a model file (pointers valid during the call).
struct CheckpointView {
  const float* adam_m = nullptr;
  const float* adam_v = nullptr;
  int64_t n = 0;  // values per moment: Model::n_params()
  int64_t step = 0;
  std::string state;  // json text
};

// Builds the file. The model's ternary weights must be current (call
// Model::quantize after changing the latent weights): std::logic_error
// otherwise. meta and checkpoint->state must be JSON texts (not parsed here);
// empty meta = no meta section.
io::Writer model_writer(const Model& model, const std::vector<uint8_t>& tokenizer,
                        const std::string& meta, const CheckpointView* checkpoint);

struct LoadedModel {
  std::unique_ptr<Model> model;
  std::vector<uint8_t> tokenizer;
  std::string meta;         // empty when the file has none
  bool has_latent = false;  // a checkpoint: the latent weights are the trained ones
  std::optional<CheckpointData> checkpoint;
  io::Fingerprint fingerprint{};
};

// Parses a model file (or checkpoint). Throws io::FormatError naming what is
// wrong: another kind, a missing section, a config that does not validate,
// a section of the wrong type or size, trits out of range, non-finite
// weights. A model loaded without latent weights computes only with its
// ternary weights (its latent block weights are not the trained ones).
LoadedModel load_model(const io::Container& file);

// The fingerprint the model would have in a file with this tokenizer.
io::Fingerprint model_fingerprint(const Model& model, const std::vector<uint8_t>& tokenizer);

// Adapter file of f32 gains (n_gains of cfg) trained on the base `base`.
io::Writer adapter_writer(const ModelConfig& cfg, const float* gains, int64_t n,
                          const io::Fingerprint& base, const std::string& meta);

// Encoded adapter file: `tensors` (n_norms encodings of d_model gains, in
// norm order, each a scheme that method m produces) in the `encoded` section.
io::Writer encoded_adapter_writer(const ModelConfig& cfg, codec::Method m,
                                  const std::vector<codec::EncodedGain>& tensors,
                                  const io::Fingerprint& base, const std::string& meta);

struct LoadedAdapter {
  std::vector<float> gains;  // the gains (decoded, for an encoded file)
  std::string meta;
  std::string scheme;                       // "f32" or the codec method name
  std::vector<codec::EncodedGain> encoded;  // the encodings (empty for "f32")
};
// Reads either kind. Checks the kind against the scheme, the base fingerprint (refusing an adapter
// of another base), the shape against cfg, the encoded records (codec::parse_adapter, and that they
// are the named method's schemes) and that every gain is finite.
LoadedAdapter load_adapter(const io::Container& file, const ModelConfig& cfg,
                           const io::Fingerprint& base);

// Limits for reading an adapter of a model with this config: the exact
// payload plus room for the header, table and meta (1 MiB).
io::Limits adapter_limits(const ModelConfig& cfg);

// Throws FormatError naming the kind when `head` (a file's first n bytes)
// declares a model file: call before reading an adapter with adapter_limits,
// which a model file exceeds, so the user hears "a model file, not an adapter"
// rather than a size limit. `what` names the source (a path).
void refuse_model_as_adapter(const uint8_t* head, size_t n, const std::string& what);
// The same for a path (reads its first bytes; an unreadable file is left to the loader).
void refuse_model_as_adapter(const std::string& path);

// The config as the json of the config section, and back. config_from_json
// accepts exactly one flat object of the keys above (numbers, the "format"
// string, the booleans), refuses unknown or missing keys (n_kv_heads and
// tied_head are optional), then validate()s.
std::string config_json(const ModelConfig& cfg);
ModelConfig config_from_json(std::string_view json);

}  // namespace ternorm::model
