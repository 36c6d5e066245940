// Tokenizers of GGUF models, built from plain tokenizer metadata (what a GGUF's tokenizer.ggml.*
// keys hold), following llama.cpp's tokenizer so that ids are identical:
//  - model "gpt2": byte-level BPE. Tokens are GPT-2 bytes-to-unicode strings, merges "a b" in
//    rank order. Pre-tokenizers (tokenizer.ggml.pre): "default" (or absent; llama.cpp's four-pass
//    default), "gpt-2" (GPT-2's pattern) and "llama-bpe" (Llama 3's pattern; also llama3,
//    llama-v3, falcon3, pixtral), each a hand-written matcher of the pattern as in llama.cpp.
//  - model "llama": SentencePiece with scores: a space prefix (add_space_prefix), spaces as
//    U+2581, highest-score merges first, byte fallback through the <0xXX> tokens.
// Special tokens: CONTROL, USER_DEFINED and UNKNOWN tokens are cut out of the text before
// tokenizing, longest first, as llama.cpp does; USER_DEFINED ones always, CONTROL and UNKNOWN
// only when parse_special is set (the default is off: text is data, a user's "<s>" stays text).
// add_special adds BOS / EOS as the metadata's add_bos / add_eos say.
#pragma once
#include "tokenizer/byte_bpe.h"
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ternorm::tok {

// tokenizer.ggml.token_type values.
enum TokenType : int32_t {
  kTokenNormal = 1,
  kTokenUnknown = 2,
  kTokenControl = 3,
  kTokenUserDefined = 4,
  kTokenUnused = 5,
  kTokenByte = 6,
};

// The tokenizer metadata of a GGUF file as plain data. Ids are -1 when absent.
struct VocabData {
  std::string model;  // "gpt2" or "llama"
  std::string pre;    // tokenizer.ggml.pre (gpt2 only); "" = "default"
  std::vector<std::string> tokens;
  std::vector<float> scores;         // llama: required; gpt2: ignored
  std::vector<int32_t> token_types;  // empty = all normal
  std::vector<std::string> merges;   // gpt2: "left right", rank order
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = true;  // llama: tokenizer.ggml.add_space_prefix (default true)
};

enum class PreTokenizer { Default, Gpt2, Llama3 };

// The project byte BPE as a gpt2-style vocabulary, the form llama.cpp loads: token i is the
// GPT-2 bytes-to-unicode spelling of its bytes, merges "left right" in rank order (merge k made
// id 256 + k), every token normal, no special tokens. `pre` names the pre-tokenizer to record.
VocabData byte_bpe_vocab(const ByteBpe& bpe, const std::string& pre);

class VocabTokenizer {
 public:
  // Checks the metadata (array lengths, ids in range, merges naming known tokens, model and pre
  // supported) and throws std::invalid_argument with one line naming the problem.
  explicit VocabTokenizer(VocabData data);
  ~VocabTokenizer();
  VocabTokenizer(VocabTokenizer&&) noexcept;

  int32_t n_tokens() const { return int32_t(d_.tokens.size()); }
  const VocabData& data() const { return d_; }

  std::vector<int32_t> encode(const std::string& text, bool add_special, bool parse_special) const;
  // Bytes of the ids: gpt2 tokens mapped back through bytes-to-unicode, llama pieces with U+2581
  // as a space and <0xXX> as its byte. Control tokens give nothing unless render_special.
  // For "llama" with add_space_prefix, the space the encoder prefixed is removed (the first
  // piece's leading space), as llama.cpp's detokenize does with remove_special.
  std::string decode(const int32_t* ids, size_t n, bool render_special) const;

 private:
  void encode_text(const std::string& text, bool first, std::vector<int32_t>& out) const;
  void encode_bpe(const std::string& text, std::vector<int32_t>& out) const;
  void encode_spm(const std::string& text, std::vector<int32_t>& out) const;
  void encode_spm_piece(const std::string& text, std::vector<int32_t>& out) const;
  int32_t find(const std::string& s) const;
  int32_t byte_token(uint8_t b) const;

  VocabData d_;
  bool is_spm_ = false;
  PreTokenizer pre_ = PreTokenizer::Default;
  bool ignore_merges_ = false;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
  std::vector<int32_t> specials_;                        // longest text first
  bool spm_break_[256] = {};                             // ASCII bytes in no longer token
};

}  // namespace ternorm::tok
