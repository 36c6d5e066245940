// A deterministic mutation fuzzer for the GGUF reader and the GGUF -> Model
// mapping, run in the normal suite (so also under ASan/UBSan). Every parse of
// a damaged file must throw a std::exception or return a self-consistent
// result; it must never crash, hang or allocate without bound. GGUF has no
// checksums, so damage inside tensor data parses: those files go on to
// gguf_import, which must refuse them or build a valid model.
// native/fuzz/gguf_fuzzer.cpp is the libFuzzer counterpart.
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness.h"
#include "io/gguf.h"
#include "le_bytes.h"
#include "model/gguf_model.h"
#include "model/model.h"

namespace ternorm::test {
namespace {

using gguf::GgmlType;
using gguf::Value;

// Small limits, so that the limit checks fire too and nothing large is ever
// allocated (a file of a few KB cannot make the reader allocate more than
// its own size times a small factor).
gguf::GgufLimits fuzz_limits() {
  gguf::GgufLimits l;
  l.max_file_bytes = 1 << 20;
  l.max_tensors = 64;
  l.max_metadata = 64;
  l.max_key_bytes = 64;
  l.max_string_bytes = 256;
  l.max_array_elements = 4096;
  l.max_metadata_values = 16384;
  l.max_array_depth = 3;
  l.max_tensor_elements = 1 << 20;
  return l;
}

Bytes metadata_seed() {
  gguf::Writer w;
  w.set("general.architecture", Value::string("llama"));
  w.set("a.u8", Value::u8(1));
  w.set("a.i16", Value::i16(-2));
  w.set("a.u32", Value::u32(3));
  w.set("a.i64", Value::i64(-4));
  w.set("a.f32", Value::f32(0.5f));
  w.set("a.f64", Value::f64(0.25));
  w.set("a.bool", Value::boolean(false));
  w.set("a.s", Value::string("text"));
  w.set("a.ss", Value::array_strings({"x", "yz"}));
  w.set("a.nest", Value::array_of_arrays({Value::array_i32({1, 2}), Value::array_strings({"q"})}));
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::TQ1_0,
                     GgmlType::TQ2_0}) {
    const int64_t n = gguf::block_values(t) == 1 ? 4 : gguf::block_values(t);
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = float(i % 3) - 1.0f;
    Bytes data(size_t(gguf::bytes_for(t, n)));
    gguf::encode_from_float(t, v.data(), n, data.data());
    w.add_tensor("t." + gguf::type_name(t), t, {n}, std::move(data));
  }
  return w.finish();
}

// A tiny model (f16 matrices: its rows of 16 cannot be TQ blocks, and an f16
// token table, which the import keeps as stored) with a tokenizer.
Bytes model_seed() {
  model::ModelConfig c;
  c.vocab = 12;
  c.d_model = 16;
  c.n_layers = 1;
  c.n_heads = 2;
  c.d_ff = 32;
  c.context = 8;
  model::Model m(c, 5);
  model::GgufTokenizer tok;
  tok.model = "llama";
  for (int i = 0; i < 12; ++i) {
    tok.tokens.push_back(std::string(1, char('a' + i)));
    tok.scores.push_back(-float(i));
  }
  tok.bos_id = 1;
  model::GgufExportOptions o;
  o.type = model::GgufWeightType::F16;
  o.table_type = gemm::ElemType::F16;
  o.tokenizer = &tok;
  return model::gguf_model_writer(m, o).finish();
}

struct Outcome {
  int64_t parses = 0, accepted = 0, imported = 0;
  std::map<std::string, int64_t> reached;  // the first words of each refusal
};

// The checks the fuzzer must reach (substrings of the reader's messages).
const char* const kChecks[] = {
    "truncated",
    "not a GGUF file",
    "unsupported GGUF version",
    "duplicate key",
    "unknown value type",
    "a bool must be",
    "dimensions, expected",
    "which this build does not read",
    "not a multiple of the alignment",
    "past the end of the file",
    "not a multiple of the block size",
    "GgufLimits::",
    "overlaps",
};

void check_consistent(const gguf::File& f, const Bytes& b) {
  CHECK(f.file_bytes() == b.size());
  CHECK(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
  std::set<std::string> names;
  for (const gguf::TensorInfo& t : f.tensors()) {
    CHECK(names.insert(t.name).second);
    CHECK(f.find_tensor(t.name) == &t);
    CHECK(t.n_dims >= 1 && t.n_dims <= 4 && t.offset % f.alignment() == 0);
    CHECK(f.data_offset() <= b.size() && t.offset <= b.size() - f.data_offset() &&
          t.bytes <= b.size() - f.data_offset() - t.offset);
    CHECK(t.bytes == gguf::bytes_for(t.type, t.elements()));
  }
  for (const gguf::KeyValue& kv : f.metadata()) CHECK(f.find(kv.key) == &kv.value);
}

void try_parse(const Bytes& b, Outcome& out, bool import) {
  ++out.parses;
  gguf::File f = [&]() -> gguf::File {
    try {
      return gguf::File::view(b.data(), b.size(), fuzz_limits());
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      for (const char* k : kChecks)
        if (msg.find(k) != std::string::npos) ++out.reached[k];
      throw;
    }
  }();
  ++out.accepted;
  check_consistent(f, b);
  if (!import) return;
  const model::GgufImported im = model::gguf_import(f);
  ++out.imported;
  CHECK(im.model->config().vocab == 12 && im.model->config().d_model >= 2);
}

void run(const Bytes& b, Outcome& out, bool import) {
  try {
    try_parse(b, out, import);
  } catch (const std::exception&) {
    // A clear refusal is a correct outcome.
  }
}

// Where the data section starts: edits before it hit the structure.
size_t header_bytes(const Bytes& b) {
  return size_t(gguf::File::view(b.data(), b.size()).data_offset());
}

TEST(gguf_fuzz_seeds_are_valid) {
  Outcome out;
  try_parse(metadata_seed(), out, false);
  try_parse(model_seed(), out, true);
  CHECK(out.accepted == 2 && out.imported == 1);
}

TEST(gguf_fuzz_every_truncation_is_refused) {
  for (const Bytes& s : {metadata_seed(), model_seed()}) {
    Outcome out;
    for (size_t n = 0; n < s.size(); ++n) {
      const Bytes cut(s.begin(), s.begin() + long(n));
      run(cut, out, false);
    }
    CHECK_MSG(out.accepted == 0,
              out.accepted << " truncations of a " << s.size() << "-byte file were accepted");
    std::printf("    truncations: %lld parses\n", static_cast<long long>(out.parses));
  }
}

TEST(gguf_fuzz_every_header_bit_flip) {
  Outcome out;
  const Bytes seeds[2] = {metadata_seed(), model_seed()};
  for (int which = 0; which < 2; ++which) {
    const Bytes& s = seeds[which];
    for (size_t i = 0; i < header_bytes(s); ++i)
      for (int bit = 0; bit < 8; ++bit) {
        Bytes b = s;
        b[i] ^= uint8_t(1u << bit);
        run(b, out, which == 1);
      }
  }
  std::printf("    header bit flips: %lld parses, %lld accepted, %lld imported\n",
              static_cast<long long>(out.parses), static_cast<long long>(out.accepted),
              static_cast<long long>(out.imported));
  CHECK(out.accepted > 0);  // flips inside string values keep a file valid
}

TEST(gguf_fuzz_random_edits_reach_every_check) {
  Rng rng(0x66F);
  Outcome out;
  const Bytes seeds[2] = {metadata_seed(), model_seed()};
  const size_t heads[2] = {header_bytes(seeds[0]), header_bytes(seeds[1])};
  static const uint8_t kInteresting[] = {0,  1,  2,  3,  4,  5,  7,  8,    9,    12,
                                         13, 16, 31, 32, 34, 35, 64, 0x7F, 0x80, 0xFF};
  for (int it = 0; it < 20000; ++it) {
    const int which = int(rng.below(2));
    Bytes b = seeds[which];
    const int edits = 1 + int(rng.below(4));
    for (int k = 0; k < edits; ++k) {
      // Mostly the header (where the structure is), sometimes anywhere.
      const size_t span = rng.below(4) == 0 ? b.size() : heads[which];
      const size_t at = size_t(rng.below(int64_t(span)));
      b[at] = rng.below(2) ? kInteresting[rng.below(sizeof kInteresting)] : uint8_t(rng.next());
    }
    if (rng.below(10) == 0) b.resize(size_t(rng.below(int64_t(b.size()) + 1)));
    if (rng.below(20) == 0) b.resize(b.size() + size_t(rng.below(100)), uint8_t(rng.next()));
    run(b, out, which == 1);
  }
  std::printf("    random edits: %lld parses, %lld accepted, %lld imported\n",
              static_cast<long long>(out.parses), static_cast<long long>(out.accepted),
              static_cast<long long>(out.imported));
  for (const char* k : kChecks) {
    std::printf("      %6lld x \"%s\"\n", static_cast<long long>(out.reached[k]), k);
    CHECK_MSG(out.reached[k] > 0, "the fuzzer never reached the check \"" << k << "\"");
  }
  CHECK(out.imported > 0);
}

TEST(gguf_fuzz_damaged_tensor_data_is_refused_or_imported) {
  // Tensor bytes have no checksum: every edit there parses, and the import
  // must cope (a non-finite f16 value is refused naming the tensor; the
  // 16-bit token table is checked as it is copied, as the matrices are as
  // they are decoded).
  Rng rng(0xDA7A);
  Outcome out;
  const Bytes seed = model_seed();
  const size_t head = header_bytes(seed);
  CHECK(model::gguf_import(gguf::File::copy(seed.data(), seed.size())).model->table_type() ==
        gemm::ElemType::F16);
  int64_t refused = 0, table_refused = 0;
  for (int it = 0; it < 2000; ++it) {
    Bytes b = seed;
    for (int k = 0; k < 3; ++k)
      b[head + size_t(rng.below(int64_t(b.size() - head)))] = uint8_t(rng.next());
    try {
      try_parse(b, out, true);
    } catch (const std::exception& e) {
      ++refused;
      table_refused += mentions(e.what(), "gguf: tensor 'token_embd.weight' holds a non-finite");
      CHECK_MSG(mentions(e.what(), "gguf: tensor '"), e.what());
    }
  }
  CHECK(out.accepted == 2000 && out.imported + refused == 2000 && refused > 0 && out.imported > 0);
  CHECK(table_refused > 0);
}

}  // namespace
}  // namespace ternorm::test
