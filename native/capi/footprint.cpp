#include "footprint.h"

#include "../model/decode.h"
#include "../ternary/ternary.h"

namespace ternorm::capi {

Footprint footprint(const model::Model& m) {
  const model::ModelConfig& c = m.config();
  Footprint f;
  int64_t b = m.n_params() * int64_t(sizeof(float));
  // 16-bit token tables live in a buffer of their own; their fp32 regions of
  // the parameter buffer are never written (the kernel backs no memory there).
  if (m.table_type() != gemm::ElemType::F32)
    b -= (c.tied_head ? 1 : 2) * c.vocab * c.d_model *
         (int64_t(sizeof(float)) - gemm::elem_bytes(m.table_type()));
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (int i = 0; i < model::kLinearsPerLayer; ++i) {
      const ternary::PackedTernary p = m.packed(l, model::Linear(i));
      b += ternary::packed2_bytes(p.rows, p.cols) + p.rows * int64_t(sizeof(float));
    }
  // rope_cos and rope_sin: context x head_dim / 2 each (model.h); ones: d_model.
  b += 2 * c.context * (c.head_dim() / 2) * int64_t(sizeof(float));
  b += c.d_model * int64_t(sizeof(float));
  f.weight_bytes = b;
  // One slot, one row: the smallest state, asked for its per-token cache size.
  f.kv_bytes_per_token = model::DecodeState(c, 1, 1).cache_bytes_per_token();
  f.adapter_f32_bytes = c.n_gains() * int64_t(sizeof(float));
  return f;
}

}  // namespace ternorm::capi
