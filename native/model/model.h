// The model's parameters: fp32 latent weights (one buffer, named tensors), the
// ternary weights derived from them (BitNet b1.58 absmean, one scale per
// matrix, packed in the 2-bit compute layout), the RMSNorm weights, the fp32
// token embedding, and the output head: the embedding itself (tied, the
// default) or an fp32 table of its own (untied, as many llama models have).
//
// Why the embedding/head stays fp32: it is a table lookup on the way in (no
// arithmetic to save) and the softmax over 4096 logits on the way out, whose
// resolution directly sets the per-token NLL we measure; BitNet keeps both in
// high precision for the same reason. It is also what the ternary blocks are
// compared against, so keeping it fixed isolates the effect of ternarisation.
// A GGUF's F16/BF16 table is kept as stored (TokenTable below): widening is
// exact, so it computes the same bits as its fp32 expansion with half the bytes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "../gemm/gemm.h"
#include "../io/sha256.h"
#include "../norm/gain_codec.h"
#include "../ternary/ternary.h"
#include "config.h"
#include "head_panels.h"

namespace ternorm::model {

// How the linear layers of the blocks compute.
enum class Precision : int {
  F32 = 0,      // latent fp32 weights, fp32 activations (plain training, fp32 baseline)
  Ternary = 1,  // ternary weights, per-token int8 activations (BitNet b1.58 inference/training)
  // Ternary weights, fp32 activations: the straight-through surrogate of
  // Ternary (the function whose gradient the STE backward computes when the
  // activation quantiser is taken as the identity). Used to check that
  // backward and to measure what activation quantisation costs.
  TernaryF32Act = 2,
  // Ternary weights, int8 activations with one scale per 256 values of a token
  // (ternary::quantize_activations_block): llama.cpp's TQ path.
  TernaryBlockAct = 3,
};
const char* precision_name(Precision p);
// Precisions whose linears take int8 activations (and their int8 kernels).
inline bool int8_act(Precision p) {
  return p == Precision::Ternary || p == Precision::TernaryBlockAct;
}

// The activation quantisation of the ternary precision, named by
// limits::act_quant::names (the index is the value).
enum class ActQuant : int { Token = 0, Block256 = 1 };
const char* act_quant_name(ActQuant a);
// The ActQuant named `name`; throws std::invalid_argument naming the choices.
ActQuant act_quant_of(const std::string& name);
// The precision that runs p with activation quantisation a: p itself for
// Token, TernaryBlockAct for (Ternary, Block256); throws
// std::invalid_argument for Block256 with another precision.
Precision with_act_quant(Precision p, ActQuant a);

// The four linear layers of a block. Qkv and GateUp are fused: their matrices
// are contiguous in the parameter buffer and run as one kernel call, but each
// matrix is ternarised with its own absmean scale. Qkv's parts differ in size
// under grouped-query attention (wq d_model rows, wk and wv kv_dim rows each).
enum class Linear : int { Qkv = 0, O = 1, GateUp = 2, Down = 3 };
constexpr int kLinearsPerLayer = 4;

// The seven weight matrices of a block, for export/import of ternary weights.
enum class Matrix : int { Wq = 0, Wk, Wv, Wo, W1 /* gate */, W3 /* up */, W2 /* down */ };
constexpr int kMatricesPerLayer = 7;
const char* matrix_name(Matrix m);

struct TensorInfo {
  std::string name;  // "tok_embedding", "layers.0.wq", ..., "final_norm", "output" (untied)
  int64_t offset = 0, rows = 0, cols = 0;  // offset into params(), row-major rows x cols
};

// A vocab x d_model token table (the embedding, or the head) as stored: fp32
// (f32), or F16/BF16 (h16) as a GGUF holds it.
struct TokenTable {
  TokenTable(const float* table) : f32(table) {}  // implicit: an fp32 table is the common case
  TokenTable(gemm::ElemType t, const uint16_t* table) : type(t), h16(table) {}
  gemm::ElemType type = gemm::ElemType::F32;
  const float* f32 = nullptr;
  const uint16_t* h16 = nullptr;
};

struct LinearShape {
  int64_t rows = 0, cols = 0;  // out x in (of the whole group for a fused linear)
};

class Model {
 public:
  // Validates cfg and initialises deterministically from seed:
  //  - tensor i draws from its own splitmix64 stream seeded by
  //    seed ^ (0x9E3779B97F4A7C15 * (i + 1)), Box-Muller normals in double;
  //  - embedding, untied head and linear weights ~ N(0, 0.02^2), the output
  //    projections of each residual branch (wo, w2) scaled by 1/sqrt(2 n_layers) (GPT-2);
  //  - RMSNorm weights = 1.
  // Then quantize() derives the ternary weights.
  Model(const ModelConfig& cfg, uint64_t seed);

  // A model whose every weight the caller is about to set (a loader): the
  // same layout and tables, parameters zero, every ternary scale 0 (so the
  // ternary weights compute zero) and marked current. Skips the random init
  // and its quantize(), most of the cost of loading a file.
  struct ForLoading {};
  Model(const ModelConfig& cfg, ForLoading);

  const ModelConfig& config() const { return cfg_; }

  // ---- latent fp32 parameters ------------------------------------------------
  int64_t n_params() const { return int64_t(params_.size()); }
  float* params() {  // a writer: the derived head panels go
    head_panels_.clear();
    return params_.data();
  }
  const float* params() const { return params_.data(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Throws std::invalid_argument on an unknown name.
  const TensorInfo& tensor(const std::string& name) const;

  // The fp32 token tables: vocab x d_model, in params(); std::logic_error for
  // a model with 16-bit tables (embedding_table / head_table serve both).
  const float* embedding() const { return params_.data() + f32_table_offset(0); }
  // The output head's table (vocab x d_model): the embedding when tied, else
  // the "output" tensor (the last one, after final_norm).
  int64_t head_offset() const;
  const float* head() const { return params_.data() + f32_table_offset(head_offset()); }

  // ---- the token tables as stored ---------------------------------------------------
  // fp32 in params() (the default: .tnm models, anything that trains the
  // base), or F16/BF16 as a GGUF stores them (a loader's choice), in a buffer
  // of their own: the embedding, then the untied head. The fp32 regions of
  // params() are then never written (zero pages, no memory behind them).
  gemm::ElemType table_type() const { return table_type_; }
  TokenTable embedding_table() const;
  TokenTable head_table() const;
  // A loader's: the tables become type t (F16 or BF16), zero, written
  // through tables16() (vocab * d_model values each, embedding first).
  void set_table_type(gemm::ElemType t);
  uint16_t* tables16() {
    head_panels_.clear();
    return tables16_.data();
  }
  // head_table() packed for the fp32 GEMM's blocked path, kept until the
  // weights change (head_panels.h); the head layer asks it for its panels.
  HeadPanels& head_panels() const { return head_panels_; }
  // Norm index: 2l = attention norm of layer l, 2l+1 = feed-forward norm,
  // 2 n_layers = final norm (the order of the adapter's gain rows).
  int64_t norm_offset(int64_t norm) const;
  int64_t linear_offset(int64_t layer, Linear lin) const;
  LinearShape linear_shape(Linear lin) const;

  // ---- ternary weights -----------------------------------------------------------
  // Re-derives every ternary matrix from the latent weights (absmean, one
  // scale per matrix) and packs it. Call after changing params() (training
  // does it after each ternary-aware step; after fp32 training it is the PTQ).
  void quantize(const Exec& ex);
  // True when params() changed since the last quantize(); the ternary paths
  // refuse to run on stale weights.
  bool ternary_stale() const { return stale_; }
  void mark_latent_changed() {
    stale_ = true;
    fingerprint_.reset();
    head_panels_.clear();
  }

  // The fingerprint of the file this model was loaded from or last saved to
  // (model_file.h: load_model sets it; the saver calls set_fingerprint with
  // model_fingerprint()). It is dropped whenever the weights change —
  // quantize(), mark_latent_changed(), set_ternary(); whoever writes params()
  // calls one of them — so an adapter is never tied to a base that moved on.
  const std::optional<io::Sha256Digest>& fingerprint() const { return fingerprint_; }
  void set_fingerprint(const io::Sha256Digest& f) { fingerprint_ = f; }

  ternary::PackedTernary packed(int64_t layer, Linear lin) const;

  // One ternarised matrix (rows x cols trits and its scale), e.g. for the
  // model file. set_ternary replaces it (trits in {-1,0,1}, finite scale >= 0)
  // without touching the latent weights (nor the stale flag, which tracks
  // them); the next quantize() overwrites it. Throws std::invalid_argument.
  // get_ternary throws std::logic_error when the matrix has per-row scales.
  void get_ternary(int64_t layer, Matrix m, int8_t* trits, float* scale) const;
  void set_ternary(int64_t layer, Matrix m, const int8_t* trits, float scale);
  // The same with one scale per row (row_scales[rows]): the kernels apply a
  // scale per output row, so per-row absmean (a GGUF import option) computes
  // exactly. quantize() derives one scale per matrix again.
  void get_ternary_rows(int64_t layer, Matrix m, int8_t* trits, float* row_scales) const;
  void set_ternary_rows(int64_t layer, Matrix m, const int8_t* trits, const float* row_scales);
  // True when the rows of the matrix carry different scales.
  bool has_row_scales(int64_t layer, Matrix m) const;
  // rows x cols of one matrix.
  LinearShape matrix_shape(Matrix m) const;
  // Its first row within its linear group.
  int64_t matrix_row0(Matrix m) const;

  // ---- fixed tables ------------------------------------------------------------------
  // RoPE: angle(pos, i) = pos * theta^(-2i/head_dim), i < head_dim/2, tables
  // are context x head_dim/2, computed in double.
  const float* rope_cos() const { return rope_cos_.data(); }
  const float* rope_sin() const { return rope_sin_.data(); }
  const float* ones() const { return ones_.data(); }  // d_model ones

 private:
  struct PackedLinear {
    uint8_t* data = nullptr;      // in packed_arena_
    AlignedBuffer<float> scales;  // one per row (each matrix of the group repeats its scale)
  };
  void check_layer(int64_t layer) const;
  int64_t f32_table_offset(int64_t offset) const;  // offset, checked that the tables are fp32
  void lay_out();  // the tensor table, the zeroed buffers and the RoPE tables

  ModelConfig cfg_;
  AlignedBuffer<float> params_;
  gemm::ElemType table_type_ = gemm::ElemType::F32;
  AlignedBuffer<uint16_t> tables16_;  // 16-bit tables (empty for fp32)
  std::vector<TensorInfo> tensors_;
  std::vector<PackedLinear> packed_;  // n_layers * kLinearsPerLayer
  // Every linear's packed weights, in the order a forward reads them, in huge
  // pages: a decoding step streams them all once per token.
  AlignedBuffer<uint8_t> packed_arena_;
  AlignedBuffer<float> rope_cos_, rope_sin_, ones_;
  bool stale_ = true;
  std::optional<io::Sha256Digest> fingerprint_;
  mutable HeadPanels head_panels_;  // derived from the head table, dropped when it changes
};

// ---- adapters: one gain vector per RMSNorm weight ---------------------------------
// An adapter is n_norms gain vectors of d_model, in norm order (see
// norm_offset), each in any encoding the fused RMSNorm kernel decodes.
// f32 views of a gains[n_norms * d_model] buffer:
std::vector<norm::GainView> f32_gain_views(const ModelConfig& cfg, const float* gains);
// Throws std::invalid_argument unless there are n_norms views of d_model
// valid gains each.
// Throws std::invalid_argument naming the norm and the index of a bad gain
// (not finite, or outside limits::adapter::gain).
void validate_adapter(const ModelConfig& cfg, const norm::GainView* views, int64_t n_views);
// The tensor name of adapter norm i ("layers.1.ffn_norm", "final_norm").
std::string norm_name(const ModelConfig& cfg, int64_t i);

}  // namespace ternorm::model
