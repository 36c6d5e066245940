#include "tokenizer/byte_bpe.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <queue>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "tokenizer/byte_pretokenize.h"

namespace ternorm::tok {

namespace {

constexpr uint8_t kMagic[4] = {'T', 'B', 'P', 'E'};
constexpr size_t kHeaderBytes = 12;

inline uint32_t pair_key(uint32_t a, uint32_t b) { return (a << 16) | b; }

// CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320).
uint32_t crc32_zlib(const uint8_t* p, size_t n) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

inline uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline void wr16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
inline void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

ByteBpe::ByteBpe(std::vector<uint16_t> merges) : merges_(std::move(merges)) {
  const size_t num = merges_.size() / 2;
  if (merges_.size() % 2 != 0 || num > size_t(kMaxVocab - kMinVocab))
    throw std::invalid_argument(
        "ByteBpe: merges must hold 2 * (vocabSize - 256) ids with vocabSize <= 65536, got " +
        std::to_string(merges_.size()));
  size_t cap = 16;
  while (cap < 2 * num + 2) cap <<= 1;
  rank_keys_.assign(cap, 0);
  rank_vals_.assign(cap, -1);
  rank_mask_ = uint32_t(cap - 1);
  offsets_.assign(kMinVocab + num + 1, 0);
  for (int b = 0; b < 256; ++b) offsets_[b + 1] = b + 1;
  for (size_t k = 0; k < num; ++k) {
    const uint32_t a = merges_[2 * k], b = merges_[2 * k + 1], id = uint32_t(kMinVocab + k);
    if (a >= id || b >= id)
      throw std::invalid_argument("merge " + std::to_string(k) + " (" + std::to_string(a) + ", " +
                                  std::to_string(b) + ") refers to an id not defined before " +
                                  std::to_string(id));
    const uint32_t key = pair_key(a, b);
    if (rank(key) >= 0)
      throw std::invalid_argument("merge " + std::to_string(k) + " repeats the pair (" +
                                  std::to_string(a) + ", " + std::to_string(b) + ")");
    uint32_t h = (key * 2654435761u) & rank_mask_;
    while (rank_keys_[h] != 0) h = (h + 1) & rank_mask_;
    rank_keys_[h] = key + 1;
    rank_vals_[h] = int32_t(k);
    offsets_[id + 1] =
        offsets_[id] + (offsets_[a + 1] - offsets_[a]) + (offsets_[b + 1] - offsets_[b]);
  }
  bytes_.resize(size_t(offsets_.back()));
  for (int b = 0; b < 256; ++b) bytes_[b] = uint8_t(b);
  for (size_t k = 0; k < num; ++k) {
    const uint32_t a = merges_[2 * k], b = merges_[2 * k + 1];
    uint8_t* at = bytes_.data() + offsets_[kMinVocab + k];
    const size_t la = size_t(offsets_[a + 1] - offsets_[a]);
    std::memcpy(at, bytes_.data() + offsets_[a], la);
    std::memcpy(at + la, bytes_.data() + offsets_[b], size_t(offsets_[b + 1] - offsets_[b]));
  }
}

int32_t ByteBpe::rank(uint32_t key) const {
  uint32_t h = (key * 2654435761u) & rank_mask_;
  for (;;) {
    const uint32_t k = rank_keys_[h];
    if (k == 0) return -1;
    if (k == key + 1) return rank_vals_[h];
    h = (h + 1) & rank_mask_;
  }
}

// Applies merges lowest rank first, leftmost first: equal to replaying the merges in order.
void ByteBpe::encode_chunk(const uint8_t* s, size_t n, std::vector<int32_t>& out) const {
  int32_t sym[kMaxChunkBytes];
  size_t len = n;
  for (size_t j = 0; j < n; ++j) sym[j] = s[j];
  for (;;) {
    int32_t best = -1;
    size_t at = 0;
    for (size_t j = 0; j + 1 < len; ++j) {
      const int32_t r = rank(pair_key(uint32_t(sym[j]), uint32_t(sym[j + 1])));
      if (r >= 0 && (best < 0 || r < best)) best = r, at = j;
    }
    if (best < 0) break;
    sym[at] = kMinVocab + best;
    std::memmove(sym + at + 1, sym + at + 2, (len - at - 2) * sizeof(int32_t));
    --len;
  }
  out.insert(out.end(), sym, sym + len);
}

std::vector<int32_t> ByteBpe::encode(const uint8_t* text, size_t n) const {
  std::vector<int32_t> out;
  out.reserve(n / 3 + 16);
  // Chunk -> its ids in `seen`: text repeats most chunks, and a lookup is cheaper than BPE.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> seen;
  for (size_t i = 0; i < n;) {
    const size_t e = byte_chunk_end(text, n, i);
    if (e - i == 1) {
      out.push_back(text[i]);
    } else {
      const std::string_view key(reinterpret_cast<const char*>(text + i), e - i);
      auto it = cache.find(key);
      if (it == cache.end()) {
        const uint32_t at = uint32_t(seen.size());
        encode_chunk(text + i, e - i, seen);
        it = cache.emplace(key, std::make_pair(at, uint32_t(seen.size()) - at)).first;
      }
      out.insert(out.end(), seen.begin() + it->second.first,
                 seen.begin() + it->second.first + it->second.second);
    }
    i = e;
  }
  return out;
}

std::vector<uint8_t> ByteBpe::decode(const int32_t* ids, size_t n) const {
  const int32_t v = vocab_size();
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= v)
      throw std::invalid_argument("token " + std::to_string(i) + " is " + std::to_string(ids[i]) +
                                  ", expected an integer in [0, " + std::to_string(v) + ")");
    total += size_t(offsets_[ids[i] + 1] - offsets_[ids[i]]);
  }
  std::vector<uint8_t> out(total);
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const size_t len = size_t(offsets_[ids[i] + 1] - offsets_[ids[i]]);
    std::memcpy(out.data() + at, bytes_.data() + offsets_[ids[i]], len);
    at += len;
  }
  return out;
}

std::vector<uint8_t> ByteBpe::serialize() const {
  const size_t num = merges_.size() / 2;
  std::vector<uint8_t> out(kHeaderBytes + 4 * num + 4);
  std::memcpy(out.data(), kMagic, 4);
  wr16(out.data() + 4, kFormatVersion);
  out[6] = kPretokenizerVersion;
  out[7] = 0;
  wr32(out.data() + 8, uint32_t(vocab_size()));
  for (size_t k = 0; k < num; ++k) {
    wr16(out.data() + kHeaderBytes + 4 * k, merges_[2 * k]);
    wr16(out.data() + kHeaderBytes + 4 * k + 2, merges_[2 * k + 1]);
  }
  wr32(out.data() + out.size() - 4, crc32_zlib(out.data(), out.size() - 4));
  return out;
}

ByteBpe ByteBpe::deserialize(const uint8_t* data, size_t n) {
  const auto fail = [n](const std::string& why) {
    throw std::invalid_argument("invalid tokenizer data (" + std::to_string(n) + " bytes): " + why);
  };
  if (n < kHeaderBytes + 4)
    fail("truncated: need at least " + std::to_string(kHeaderBytes + 4) + " bytes");
  if (std::memcmp(data, kMagic, 4) != 0) fail("bad magic, expected \"TBPE\"");
  const uint16_t version = rd16(data + 4);
  if (version != kFormatVersion)
    fail("unsupported format version " + std::to_string(version) + ", expected " +
         std::to_string(kFormatVersion));
  if (data[6] != kPretokenizerVersion)
    fail("unsupported pre-tokenizer version " + std::to_string(data[6]) + ", expected " +
         std::to_string(kPretokenizerVersion));
  if (data[7] != 0) fail("reserved byte is " + std::to_string(data[7]) + ", expected 0");
  const uint32_t vocab = rd32(data + 8);
  if (vocab < uint32_t(kMinVocab) || vocab > uint32_t(kMaxVocab))
    fail("vocabSize " + std::to_string(vocab) + " outside [256, 65536]");
  const size_t num = vocab - kMinVocab;
  const size_t expected = kHeaderBytes + 4 * num + 4;
  if (n != expected)
    fail(std::string(n < expected ? "truncated" : "trailing bytes") + ": vocabSize " +
         std::to_string(vocab) + " needs exactly " + std::to_string(expected) + " bytes");
  const uint32_t stored = rd32(data + expected - 4), actual = crc32_zlib(data, expected - 4);
  if (stored != actual)
    fail("checksum mismatch (stored crc32 " + hex32(stored) + ", computed " + hex32(actual) + ")");
  std::vector<uint16_t> merges(2 * num);
  for (size_t k = 0; k < num; ++k) {
    merges[2 * k] = rd16(data + kHeaderBytes + 4 * k);
    merges[2 * k + 1] = rd16(data + kHeaderBytes + 4 * k + 2);
  }
  try {
    return ByteBpe(std::move(merges));
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  throw std::logic_error("unreachable");
}

// ---- training -------------------------------------------------------------------------------

ByteBpe ByteBpe::train(const uint8_t* text, size_t n, int vocab_size, int64_t min_pair_count) {
  if (vocab_size < kMinVocab || vocab_size > kMaxVocab)
    throw std::invalid_argument("vocabSize must be an integer in [256, 65536], got " +
                                std::to_string(vocab_size));
  if (min_pair_count < 1)
    throw std::invalid_argument("minPairCount must be an integer >= 1, got " +
                                std::to_string(min_pair_count));

  // Unique chunks with their counts.
  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> weights;
  {
    std::unordered_map<std::string_view, size_t> index;
    for (size_t i = 0; i < n;) {
      const size_t e = byte_chunk_end(text, n, i);
      if (e - i > 1) {
        const std::string_view key(reinterpret_cast<const char*>(text + i), e - i);
        auto [it, fresh] = index.emplace(key, words.size());
        if (fresh) {
          words.emplace_back(text + i, text + e);
          weights.push_back(1);
        } else {
          ++weights[it->second];
        }
      }
      i = e;
    }
  }

  // Pair counts and, per pair, the words that may contain it (stale entries are skipped).
  std::unordered_map<uint32_t, int64_t> pair_counts;
  std::unordered_map<uint32_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& word = words[w];
    for (size_t j = 0; j + 1 < word.size(); ++j) {
      const uint32_t k = pair_key(uint32_t(word[j]), uint32_t(word[j + 1]));
      pair_counts[k] += weights[w];
      auto& list = where[k];
      if (list.empty() || list.back() != int32_t(w)) list.push_back(int32_t(w));
    }
  }
  // Max-heap on (count, then the smaller key = smaller left, then right id).
  using Entry = std::pair<int64_t, uint32_t>;
  const auto below = [](const Entry& x, const Entry& y) {
    return x.first < y.first || (x.first == y.first && x.second > y.second);
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(below)> heap(below);
  for (const auto& [k, c] : pair_counts) heap.push({c, k});

  const int num = vocab_size - kMinVocab;
  std::vector<uint16_t> merges(2 * size_t(num));
  std::vector<int32_t> visited(words.size(), -1);
  std::unordered_map<uint32_t, int64_t> delta;
  for (int m = 0; m < num; ++m) {
    // Pop until an entry matches its pair's current count (older entries are stale).
    int64_t key = -1, count = 0;
    while (!heap.empty()) {
      const Entry top = heap.top();
      heap.pop();
      const auto it = pair_counts.find(top.second);
      if (it != pair_counts.end() && it->second == top.first) {
        key = top.second;
        count = top.first;
        break;
      }
    }
    if (key < 0 || count < min_pair_count)
      throw std::runtime_error("the training text supports only " + std::to_string(m) +
                               " merges with pairs occurring >= " + std::to_string(min_pair_count) +
                               " times (vocabSize " + std::to_string(vocab_size) + " needs " +
                               std::to_string(num) + "); give more text or a smaller vocabSize");
    const int32_t a = int32_t(key >> 16), b = int32_t(key & 0xFFFF), id = kMinVocab + m;
    merges[2 * size_t(m)] = uint16_t(a);
    merges[2 * size_t(m) + 1] = uint16_t(b);
    pair_counts.erase(uint32_t(key));
    const std::vector<int32_t> list = std::move(where[uint32_t(key)]);
    where.erase(uint32_t(key));
    delta.clear();
    for (const int32_t w : list) {
      if (visited[size_t(w)] == m) continue;
      visited[size_t(w)] = m;
      std::vector<int32_t>& word = words[size_t(w)];
      const size_t len = word.size();
      size_t hits = 0;
      for (size_t j = 0; j + 1 < len; ++j)
        if (word[j] == a && word[j + 1] == b) ++hits, ++j;
      if (hits == 0) continue;
      const int64_t c = weights[size_t(w)];
      for (size_t j = 0; j + 1 < len; ++j)
        delta[pair_key(uint32_t(word[j]), uint32_t(word[j + 1]))] -= c;
      std::vector<int32_t> merged;
      merged.reserve(len - hits);
      for (size_t j = 0; j < len; ++j) {
        if (j + 1 < len && word[j] == a && word[j + 1] == b) {
          merged.push_back(id);
          ++j;
        } else {
          merged.push_back(word[j]);
        }
      }
      word = std::move(merged);
      for (size_t j = 0; j + 1 < word.size(); ++j) {
        const int32_t x = word[j], y = word[j + 1];
        const uint32_t k = pair_key(uint32_t(x), uint32_t(y));
        delta[k] += c;
        if (x == id || y == id) {
          auto& l = where[k];
          if (l.empty() || l.back() != w) l.push_back(w);
        }
      }
    }
    for (const auto& [k, d] : delta) {
      if (d == 0 || k == uint32_t(key)) continue;
      const auto it = pair_counts.find(k);
      const int64_t c = (it == pair_counts.end() ? 0 : it->second) + d;
      if (c > 0) {
        pair_counts[k] = c;
        heap.push({c, k});
      } else {
        if (it != pair_counts.end()) pair_counts.erase(it);
        where.erase(k);
      }
    }
  }
  return ByteBpe(std::move(merges));
}

}  // namespace ternorm::tok
