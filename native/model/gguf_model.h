// A Model to and from GGUF with general.architecture = "llama", the layout
// llama.cpp loads. Tensor names and shapes (ggml ne = [cols, rows], so
// ternorm's row-major rows x cols data goes in unchanged):
//   token_embd.weight          [d_model, vocab]   f32, f16 or bf16 (the table type)
//   blk.N.attn_norm.weight     [d_model]          f32   (x adapter gain, when given)
//   blk.N.attn_q.weight        [d_model, d_model] Wq
//   blk.N.attn_k/v.weight      [d_model, kv_dim]  Wk Wv (kv_dim = head_count_kv x head dim)
//   blk.N.attn_output.weight   [d_model, d_model] Wo
//   blk.N.ffn_norm.weight      [d_model]          f32   (x adapter gain)
//   blk.N.ffn_gate/up.weight   [d_model, d_ff]    W1 W3
//   blk.N.ffn_down.weight      [d_ff, d_model]    W2
//   output_norm.weight         [d_model]          f32   (x adapter gain)
//   output.weight              [d_model, vocab]   as token_embd (only for an untied head)
// A tied head (the embedding) has no output.weight. No Q/K row
// permutation: ternorm's RoPE rotates adjacent pairs (2i, 2i+1), which is
// llama.cpp's normal RoPE for this architecture.
//
// Ternary matrices hold trit x scale with one absmean scale per matrix, or
// one per row (a per-row import; the kernels scale each output row exactly).
// Export of the ternary weights: tq2_0 / tq1_0 write the trits and give every
// 256-weight block its row's scale rounded to fp16 (round to nearest even);
// f16 / bf16 write trit x scale rounded to the type (the same rounding of the
// scale); q8_0 writes q = +-127 with d = fp16(scale / 127); f32 writes trit x
// scale exactly. Export of the latent weights (GgufExportOptions::latent):
// the model's fp32 latent block matrices, encoded as f32 (exact), f16 / bf16
// (round to nearest even) or q8_0 (ggml's block rule), for a float GGUF that
// is ternarised on load. The token tables (embedding, untied head) are
// written in GgufExportOptions::table_type, by default as the model stores
// them (f32, or the f16/bf16 of an imported GGUF, byte for byte); an f32
// table written as f16/bf16 is rounded to nearest even, and a value that
// overflows the type is an error. Imported F16/BF16 tables of one type are
// kept as stored (Model::table_type; widening to f32 is exact), other types
// are decoded to f32. The norm weights are always f32;
// an adapter's gains are multiplied into the norm weights in f32 (one
// rounding of each product, exactly what an f32 norm weight can hold).
//
// Import: TQ1_0 / TQ2_0 matrices are used natively. The blocks of a row must
// carry one fp16 scale (blocks whose trits are all zero do not count): rows
// of different scales give per-row scales; blocks of different scales within
// a row are refused with an error naming the tensor (per-block scales in the
// kernels are not supported). F32 / F16 / BF16 / Q8_0 matrices whose every row
// holds exactly {-a, 0, +a} are taken as trits with that scale (lossless: what
// a float export of ternary weights holds); any other float matrix is
// ternarised by absmean, per tensor (default) or per row
// (GgufImportOptions::ternarise), which is post-training quantisation and the
// result says so. A row whose trits are all zero takes the scale of the first
// row that has a nonzero trit (what it computes does not depend on it), so a
// one-scale matrix stays one-scale. Embedding and norms of any supported type
// are decoded to f32. export -> import -> export gives the same bytes for
// every type, of the ternary weights and of the latent ones.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../io/gguf.h"
#include "../tokenizer/vocab.h"
#include "model.h"

namespace ternorm::model {

// The tokenizer.ggml.* metadata, passed through for the tokenizer layer.
// Empty vectors, id -1 and nullopt mean "key absent".
struct GgufTokenizer {
  std::string model;  // tokenizer.ggml.model: "gpt2" (byte-level BPE), "llama" (SentencePiece)
  std::string pre;    // tokenizer.ggml.pre ("default", "llama-bpe", ...)
  std::vector<std::string> tokens;  // tokenizer.ggml.tokens, one per vocabulary entry
  std::vector<float> scores;        // tokenizer.ggml.scores
  std::vector<int32_t> token_type;  // tokenizer.ggml.token_type
  std::vector<std::string> merges;  // tokenizer.ggml.merges ("a b")
  int64_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;  // tokenizer.ggml.*_token_id
  std::optional<bool> add_bos, add_eos;                        // tokenizer.ggml.add_{bos,eos}_token
  bool operator==(const GgufTokenizer& o) const;
};

// The same metadata as the core tokenizer's plain data and back. To VocabData: a missing
// token_type array means all normal, an empty pre "default", add_bos/add_eos absent false;
// add_space_prefix keeps its default (true).
tok::VocabData vocab_data_of(const GgufTokenizer& t);
GgufTokenizer gguf_tokenizer_of(const tok::VocabData& d);
// A canonical byte form of the metadata (the tokenizer.ggml.* keys as a GGUF with no tensors):
// what the base fingerprint covers for a GGUF model without ternorm's own tokenizer.
std::vector<uint8_t> gguf_tokenizer_bytes(const GgufTokenizer& t);

// The type the block matrices are written in.
enum class GgufWeightType { TQ2_0, TQ1_0, F16, F32, BF16, Q8_0 };
// "tq2_0", "tq1_0", "f16", "f32", "bf16", "q8_0"
const char* gguf_weight_type_name(GgufWeightType t);
// std::invalid_argument listing the names on anything else.
GgufWeightType gguf_weight_type_from_name(std::string_view name);

struct GgufExportOptions {
  GgufWeightType type = GgufWeightType::TQ2_0;
  // Write the fp32 latent block matrices instead of trit x scale (a float type
  // only). The caller checks that the model's latent weights are real ones
  // (a checkpoint, a created model, a float GGUF), not a model file's.
  bool latent = false;
  std::string name;              // general.name; empty = not written
  const float* gains = nullptr;  // optional adapter: Model::config().n_gains() gains, norm order
  const GgufTokenizer* tokenizer = nullptr;  // written as tokenizer.ggml.*; null = none
  // The token tables' type (f32, f16 or bf16); unset = the model's table_type().
  std::optional<gemm::ElemType> table_type;
  std::vector<uint8_t> ternorm_tokenizer;  // ternorm's own tokenizer bytes ("ternorm.tokenizer", u8
                                           // array); empty = none
};

// The metadata key holding ternorm's own tokenizer bytes.
inline constexpr const char* kTernormTokenizerKey = "ternorm.tokenizer";

// Builds the GGUF. The model's ternary weights must be current
// (std::logic_error otherwise); a shape the type cannot hold (tq rows not a
// multiple of 256), a non-finite gain, a latent export of a tq type, a latent
// weight that is not finite or overflows the type, or a tokenizer
// inconsistent with the vocabulary is std::invalid_argument naming it.
gguf::Writer gguf_model_writer(const Model& model, const GgufExportOptions& options);

// How one block matrix was obtained on import.
enum class GgufMatrixSource {
  Native,        // TQ1_0 / TQ2_0 trits and their one scale
  ExactTernary,  // a float type holding exactly {-a, 0, +a}: trits with scale a, lossless
  AbsmeanPtq,    // a float type ternarised by absmean (post-training quantisation)
};
const char* gguf_matrix_source_name(GgufMatrixSource s);

struct GgufImportedMatrix {
  std::string tensor;  // "blk.0.attn_q.weight"
  gguf::GgmlType type = gguf::GgmlType::F32;
  GgufMatrixSource source = GgufMatrixSource::Native;
};

// How a float matrix that is not ternary is ternarised on load: one absmean
// scale per tensor (BitNet b1.58, as ternorm trains) or one per row.
enum class GgufTernarise { PerTensor, PerRow };
const char* gguf_ternarise_name(GgufTernarise t);  // "per-tensor", "per-row"
// std::invalid_argument listing the names on anything else.
GgufTernarise gguf_ternarise_from_name(std::string_view name);

struct GgufImportOptions {
  int64_t context = 0;  // the context length to build the model for; 0 = llama.context_length
  GgufTernarise ternarise = GgufTernarise::PerTensor;
};

struct GgufImported {
  // The model. Its latent params() hold every tensor as stored (decoded to
  // f32; a TQ matrix as trit x scale; F16/BF16 token tables are kept in the
  // model's 16-bit table instead); its ternary weights are set from the
  // file as described above, not re-derived by Model::quantize.
  std::unique_ptr<Model> model;
  std::string name;                          // general.name, empty when absent
  std::optional<GgufTokenizer> tokenizer;    // when tokenizer.ggml.model is present
  std::vector<uint8_t> ternorm_tokenizer;    // kTernormTokenizerKey, empty when absent
  std::vector<GgufImportedMatrix> matrices;  // n_layers x 7, in Matrix order per layer
  bool post_training_quantised = false;      // some matrix is AbsmeanPtq
  // Every block matrix was stored as floats, so the model's latent params()
  // are the file's weights (a latent export writes them back).
  bool latent_stored = false;
  // One line: "gguf v3 llama: 28 block matrices tq2_0, ternary as stored", or "... f16, 28
  // ternarised on load by absmean per tensor (post-training quantisation)".
  std::string info;
  // model->fingerprint() is set when the file carries a tokenizer (see gguf_import).
};

// Maps a parsed GGUF to a Model. Throws io::FormatError naming the key or
// tensor: another architecture, a missing or out-of-range hyperparameter, a
// missing, unexpected or misshapen tensor, non-finite values, a TQ2_0 code
// that is not a trit, block scales that differ within a matrix, tokenizer
// arrays of mismatched lengths. Grouped-query attention (head_count_kv) and an
// untied head (output.weight, f32 or any float type) are read.
GgufImported gguf_import(const gguf::File& file, const GgufImportOptions& options = {});

}  // namespace ternorm::model
