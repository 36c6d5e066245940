// The project's own byte-level BPE (the tokenizer stored in a .tnm model): ids 0..255 are the
// bytes themselves, id 256 + k is the k-th learned merge of two earlier ids. Merges never cross
// the chunks of the byte pre-tokenizer (byte_pretokenize.h), so training works on the unique
// chunks weighted by their counts.
//
// Training rule (deterministic): repeatedly merge the adjacent pair with the highest count
// (occurrences summed over all chunks, weighted by each chunk's frequency); ties go to the pair
// with the smallest left id, then the smallest right id. A merge rewrites every chunk left to
// right without overlap ("a a a" -> "aa a"). Encoding applies the merges in the same order
// (lowest rank first, leftmost first), so encoding the training text reproduces its segmentation.
//
// Serialized form (little-endian), version 1 ("TBPE", the .tnm tokenizer section):
//   "TBPE" | u16 version | u8 pre-tokenizer version | u8 reserved (0) | u32 vocabSize |
//   vocabSize-256 merges as (u16 left, u16 right) | u32 CRC-32 (zlib's) of all preceding bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ternorm::tok {

class ByteBpe {
 public:
  static constexpr int kFormatVersion = 1;
  static constexpr int kMinVocab = 256;
  static constexpr int kMaxVocab = 65536;

  // merges[2k], merges[2k+1]: the left and right ids of id 256 + k. Throws std::invalid_argument
  // naming the first merge that refers to an undefined id or repeats a pair.
  explicit ByteBpe(std::vector<uint16_t> merges);

  // Learns vocab_size - 256 merges from text (the rule above). Throws std::invalid_argument for
  // a vocab_size outside [256, 65536] or min_pair_count < 1, std::runtime_error when the text
  // runs out of pairs occurring >= min_pair_count times first.
  static ByteBpe train(const uint8_t* text, size_t n, int vocab_size, int64_t min_pair_count);

  // Parses serialize()'s output; std::invalid_argument "invalid tokenizer data (N bytes): why".
  static ByteBpe deserialize(const uint8_t* data, size_t n);
  std::vector<uint8_t> serialize() const;

  int vocab_size() const { return kMinVocab + int(merges_.size() / 2); }
  const std::vector<uint16_t>& merges() const { return merges_; }

  // Token ids of any byte string; decode() gives the bytes back exactly.
  std::vector<int32_t> encode(const uint8_t* text, size_t n) const;
  // Bytes of ids; std::invalid_argument "token i is id, expected an integer in [0, V)".
  std::vector<uint8_t> decode(const int32_t* ids, size_t n) const;
  // The bytes token id stands for (id must be in range).
  const uint8_t* token_bytes(int32_t id, size_t* len) const {
    *len = size_t(offsets_[id + 1] - offsets_[id]);
    return bytes_.data() + offsets_[id];
  }

 private:
  void encode_chunk(const uint8_t* s, size_t n, std::vector<int32_t>& out) const;
  int32_t rank(uint32_t key) const;  // merge index of pair key, or -1

  std::vector<uint16_t> merges_;
  std::vector<uint32_t> rank_keys_;  // open-addressing table: key + 1 (0 = empty)
  std::vector<int32_t> rank_vals_;
  uint32_t rank_mask_ = 0;
  std::vector<int32_t> offsets_;  // token id -> [offsets_[id], offsets_[id+1]) in bytes_
  std::vector<uint8_t> bytes_;
};

}  // namespace ternorm::tok
