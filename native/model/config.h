// The model's shape: a decoder-only, Llama-style transformer (pre-norm RMSNorm,
// RoPE, causal multi-head or grouped-query attention, SwiGLU feed-forward,
// final RMSNorm, output head tied to the token embedding or its own table).
#pragma once
#include <cstdint>

namespace ternorm::model {

struct ModelConfig {
  int64_t vocab = 4096;
  int64_t d_model = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 4;
  int64_t d_ff = 768;
  int64_t context = 256;  // longest sequence the model sees (RoPE table length)
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  // Key/value heads (grouped-query attention, llama.cpp semantics: query head
  // h reads kv head h / (n_heads / kv_heads())). 0 = n_heads (multi-head), so
  // a config that only sets n_heads stays multi-head.
  int64_t n_kv_heads = 0;
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
// expected: every size positive, d_model divisible by n_heads, an even head
// dimension (RoPE rotates pairs), n_kv_heads 0 or a divisor of n_heads, vocab >= 2 and within int32 token ids,
// finite positive eps and theta, and sizes small enough that no buffer
// overflows (each dimension <= 65536, vocab <= 2^24).
void validate(const ModelConfig& cfg);

}  // namespace ternorm::model
