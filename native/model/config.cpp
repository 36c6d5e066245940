#include "config.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace ternorm::model {

void validate(const ModelConfig& c) {
  namespace L = limits::model;
  const char* w = "model config";
  limits::check(L::vocab, double(c.vocab), w);
  limits::check(L::d_model, double(c.d_model), w);
  limits::check(L::n_layers, double(c.n_layers), w);
  limits::check(L::n_heads, double(c.n_heads), double(c.d_model), w);
  limits::check(L::d_ff, double(c.d_ff), w);
  limits::check(L::context, double(c.context), w);
  limits::check(L::norm_eps, double(c.norm_eps), w);
  limits::check(L::rope_theta, double(c.rope_theta), w);
  if (c.d_model % c.n_heads != 0)
    throw std::invalid_argument("model config: d_model (" + std::to_string(c.d_model) +
                                ") must be divisible by n_heads (" + std::to_string(c.n_heads) +
                                ")");
  limits::check(L::n_kv_heads, double(c.n_kv_heads), double(c.n_heads), w);
  if (c.n_heads % c.kv_heads() != 0)
    throw std::invalid_argument("model config: n_heads (" + std::to_string(c.n_heads) +
                                ") must be divisible by n_kv_heads (" +
                                std::to_string(c.n_kv_heads) + ")");
  if (c.head_dim() % 2 != 0)
    throw std::invalid_argument(
        "model config: head dimension d_model/n_heads = " + std::to_string(c.head_dim()) +
        " must be even (RoPE rotates pairs of channels)");
}

}  // namespace ternorm::model
