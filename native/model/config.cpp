#include "config.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace ternorm::model {

namespace {
void check_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    throw std::invalid_argument("model config: " + std::string(name) + " must be in [" +
                                std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                                std::to_string(v));
}
}  // namespace

void validate(const ModelConfig& c) {
  check_range("vocab", c.vocab, 2, int64_t(1) << 24);
  check_range("d_model", c.d_model, 2, 65536);
  check_range("n_layers", c.n_layers, 1, 1024);
  check_range("n_heads", c.n_heads, 1, c.d_model);
  check_range("d_ff", c.d_ff, 1, 65536);
  check_range("context", c.context, 1, 65536);
  if (c.d_model % c.n_heads != 0)
    throw std::invalid_argument("model config: d_model (" + std::to_string(c.d_model) +
                                ") must be divisible by n_heads (" + std::to_string(c.n_heads) +
                                ")");
  check_range("n_kv_heads", c.n_kv_heads, 0, c.n_heads);
  if (c.n_heads % c.kv_heads() != 0)
    throw std::invalid_argument("model config: n_heads (" + std::to_string(c.n_heads) +
                                ") must be divisible by n_kv_heads (" +
                                std::to_string(c.n_kv_heads) + ")");
  if (c.head_dim() % 2 != 0)
    throw std::invalid_argument("model config: head dimension d_model/n_heads = " +
                                std::to_string(c.head_dim()) +
                                " must be even (RoPE rotates pairs of channels)");
  if (!(std::isfinite(c.norm_eps) && c.norm_eps > 0))
    throw std::invalid_argument("model config: norm_eps must be finite and > 0, got " +
                                std::to_string(c.norm_eps));
  if (!(std::isfinite(c.rope_theta) && c.rope_theta > 1))
    throw std::invalid_argument("model config: rope_theta must be finite and > 1, got " +
                                std::to_string(c.rope_theta));
}

}  // namespace ternorm::model
