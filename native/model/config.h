// The model's shape: a decoder-only, Llama-style transformer (pre-norm RMSNorm,
// RoPE, causal multi-head or grouped-query attention, SwiGLU feed-forward,
// final RMSNorm, output head tied to the token embedding or its own table).
#pragma once
#include <cstdint>

#include "limits.h"

namespace ternorm::model {

struct ModelConfig {
  // Defaults and ranges: limits::model (limits.h).
  int64_t vocab = int64_t(limits::model::vocab.def);
  int64_t d_model = int64_t(limits::model::d_model.def);
  int64_t n_layers = int64_t(limits::model::n_layers.def);
  int64_t n_heads = int64_t(limits::model::n_heads.def);
  int64_t d_ff = int64_t(limits::model::d_ff.def);
  int64_t context =
      int64_t(limits::model::context.def);  // longest sequence the model sees (RoPE table length)
  float norm_eps = float(limits::model::norm_eps.def);
  float rope_theta = float(limits::model::rope_theta.def);
  // Key/value heads (grouped-query attention, llama.cpp semantics: query head
  // h reads kv head h / (n_heads / kv_heads())). 0 = n_heads (multi-head), so
  // a config that only sets n_heads stays multi-head.
  int64_t n_kv_heads = int64_t(limits::model::n_kv_heads.def);
  // The output head is the token embedding (true) or a table of its own.
  bool tied_head = true;

  int64_t head_dim() const { return d_model / n_heads; }
  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t kv_dim() const { return kv_heads() * head_dim(); }
  // Two RMSNorms per block plus the final one; each carries d_model gains in
  // a norm-only adapter (2*4+1 = 9 norms x 256 = 2304 gains by default).
  int64_t n_norms() const { return 2 * n_layers + 1; }
  int64_t n_gains() const { return n_norms() * d_model; }
};

// Throws std::invalid_argument naming the offending field and what was
// expected: every field within limits::model (sizes small enough that no
// buffer overflows), n_heads <= d_model and dividing it, n_kv_heads 0 or a
// divisor of n_heads, and an even head dimension (RoPE rotates pairs).
void validate(const ModelConfig& cfg);

}  // namespace ternorm::model
