// Generation: a key/value cache for a batch of independent sequences and the
// incremental forward over it. Each sequence lives in a slot with its own
// position and, per call, its own adapter (multi-tenant serving: K users'
// sequences advance in one call, every row normalised with its user's gains,
// the weights read once for all rows). A call appends tokens to some slots,
// many per slot for a prompt, one per slot for a decoding step, and returns
// the logits of each slot's last new token.
//
// Numerics: the same layer functions as transformer_forward, so a row gets
// the bits of the full-window forward at its position (the logits of step t
// are the window's logits at position t), with two exceptions:
//  * an fp32 product on at most gemm::kDirectMaxM rows runs on gemm_f32's
//    small-m path, which sums in another order than the window's (more
//    rows): the output head (one row per entry) in a call of <= kDirectMaxM
//    entries, and in F32 the linear layers in a call of <= kDirectMaxM new
//    tokens. Those results differ by float rounding only (each a sum of k
//    products, so |diff| <= 2 gamma(k) sum |x_i w_i|). The ternary linears
//    (gemm_i8, matmul_f32) give the same bits for any row count, and the
//    head of a call of more entries runs the decode head kernel
//    (decode_kernels.h), which does the window's packed-path operations.
//  * attention (attention_cached_forward, one query row at a time over the
//    cache) gives a row the bits of a window's row block of more than
//    kDirectMaxM rows; a window of T tokens with T % 64 in 1..8 computes its
//    last block the other way.
// So in Ternary and TernaryF32Act the hidden state entering the head is
// bit-identical to the window's, and in a call of more than kDirectMaxM
// entries the logits are too, in every precision (against a window of more
// than kDirectMaxM tokens, T % 64 not in 1..8). Thread counts never change a
// bit; ISA paths differ in the fp32 products' rounding, as transformer_forward does.
//
// A call allocates nothing once the state has seen its thread count (the
// attention scratch grows to the largest thread count used), its slots'
// adapters (see checked_) and its longest sequence (the cache grows to hold
// it, doubling: reserve_cache).
//
// Context limit policy: refuse. A call that would take a slot past the
// model's context throws std::invalid_argument (nothing is changed); the
// caller ends that sequence or resets its slot. No sliding: the positions
// beyond the context have no RoPE angle the model was trained on.
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/aligned_buffer.h"
#include "../cpu/isa.h"
#include "../norm/gain_codec.h"
#include "model.h"

namespace ternorm::model {

// What one call appends to one slot.
struct DecodeEntry {
  int64_t slot = 0;
  const int32_t* tokens = nullptr;  // n token ids
  int64_t n = 0;
  // This sequence's adapter: n_norms gain views (any encoding the fused norm
  // kernel decodes), or null for the base model.
  const norm::GainView* gains = nullptr;
};

// The cache of `slots` sequences of up to context tokens each (per layer and
// position: kv_dim keys and kv_dim values, fp32) and the activations of one
// call of up to max_rows new tokens in all. Memory: cache_bytes_per_token() *
// slots * the cache's rows (from 32, doubled as the longest sequence passes
// them, up to the context) plus the activations. So a new state costs little
// until its sequences grow; a growth holds the old and the new cache at once
// (at the last one, 1.5x the whole context's).
class DecodeState {
 public:
  // Throws std::invalid_argument on a bad config, or slots / max_rows outside
  // limits::generate::sequences / rows.
  DecodeState(const ModelConfig& cfg, int64_t slots, int64_t max_rows);

  const ModelConfig& config() const { return cfg_; }
  int64_t slots() const { return slots_; }
  int64_t max_rows() const { return max_rows_; }
  // Tokens cached in the slot (its next token goes to this position).
  int64_t position(int64_t slot) const;
  // Empties the slot (its next token is position 0). The other slots are untouched.
  void reset(int64_t slot);
  void reset_all();
  // n_layers * 2 * kv_dim * 4 bytes.
  int64_t cache_bytes_per_token() const;

 private:
  friend void decode_forward(const Model&, Precision, DecodeState&, const DecodeEntry*, int64_t,
                             float*, const Exec&);
  void check_slot(int64_t slot) const;
  // Key/value head g's keys: cap_ positions in key panels (decode_kernels.h).
  float* keys(int64_t layer, int64_t slot, int64_t g);
  // Its values: cap_ x head_dim (one head's rows contiguous: a query streams them).
  float* values(int64_t layer, int64_t slot, int64_t g);
  // Grows the cache to hold `rows` positions per slot (the contents kept).
  void reserve_cache(int64_t rows);
  // Starts fetching (towards L2) the keys and values entry en's query heads
  // of key/value head g read in this call.
  void prefetch_cache(int64_t layer, const DecodeEntry& en, int64_t g);

  ModelConfig cfg_;
  int64_t slots_, max_rows_;
  // The context rounded up to whole key panels: the most cache rows per slot.
  int64_t rows_;
  // Cache rows per slot now (whole key panels, <= rows_; 0 before the first call).
  int64_t cap_ = 0;
  std::vector<int64_t> pos_;
  // [layer][slot][keys: kv head, cap_ / kKeyPanel panels | values: kv head, cap_ x head_dim]
  AlignedBuffer<float> cache_;
  // One call's activations (max_rows rows each), as in transformer_forward.
  AlignedBuffer<float> x_, h1_, qkv_, att_, h2_, gu_, s_, tmp_, xf_, q8s_;
  AlignedBuffer<int8_t> h1q_, attq_, h2q_, sq_;
  std::vector<int64_t> row_pos_, row_entry_;  // per row: its position and entry
  std::vector<int32_t> tokens_;
  // Per entry (at most one per slot): its first row, and e itself (the head's row -> entry map).
  std::vector<int64_t> entry_first_, entry_ident_;
  std::vector<char> slot_seen_;  // the call check's "slot named twice" marks
  // Per slot, the content (every view's fields, params and payload bytes) of
  // the adapter that last passed validate_adapter in it. Validating decodes
  // and range-checks every gain (~6 % of a shipped-model step at K = 16); a
  // step's adapter is almost always the slot's previous one, and comparing
  // content costs a memcmp. Content, not the buffer's address: a caller who
  // changes the gains between calls gets the check (and its error) again, and
  // the check is a function of the content alone.
  std::vector<std::vector<unsigned char>> checked_;
  // The head kernel's x^T (d x kHeadLanes per group of kHeadLanes entries).
  AlignedBuffer<float> head_xt_;
  // Attention scores, rows_ per thread (grown to the thread count in use).
  AlignedBuffer<float> scores_;
};

// Runs the n tokens of every entry through the model at their slots' next
// positions, writing their keys and values into the cache, and writes the
// logits (vocab floats) of each entry's last token at logits + e * vocab.
// Entries name distinct slots; their rows (sum of n) run through each linear
// layer together. Precision as in transformer_forward. Throws
// std::invalid_argument (nothing changed) on: no entries, a bad slot or a slot
// named twice, n < 1, a null token array, an id out of range, a slot that
// would pass the context, more than max_rows rows, a bad adapter, a state
// made for another config, null logits; std::logic_error when a ternary
// precision meets stale weights. Results do not depend on ex.threads.
void decode_forward(const Model& m, Precision p, DecodeState& st, const DecodeEntry* entries,
                    int64_t n_entries, float* logits, const Exec& ex);

}  // namespace ternorm::model
