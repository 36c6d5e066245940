// The GGUF reader and writer (io/gguf.h): round trips of every value type and
// tensor type, determinism, the byte layout of the header, memory-mapped
// files, v2, and each refusal with the message that names the problem.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "harness.h"
#include "io/gguf.h"
#include "le_bytes.h"

namespace ternorm::test {
namespace {

using gguf::GgmlType;
using gguf::Value;
using gguf::ValueType;

// Every value type, nested arrays, and one tensor of each supported type.
gguf::Writer sample_writer(uint32_t alignment = 0) {
  gguf::Writer w;
  if (alignment != 0) w.set(gguf::kAlignmentKey, Value::u32(alignment));
  w.set("general.architecture", Value::string("llama"));
  w.set("t.u8", Value::u8(200));
  w.set("t.i8", Value::i8(-5));
  w.set("t.u16", Value::u16(65000));
  w.set("t.i16", Value::i16(-30000));
  w.set("t.u32", Value::u32(4000000000u));
  w.set("t.i32", Value::i32(-2000000000));
  w.set("t.u64", Value::u64(uint64_t(1) << 60));
  w.set("t.i64", Value::i64(-(int64_t(1) << 60)));
  w.set("t.f32", Value::f32(1.5f));
  w.set("t.f64", Value::f64(-2.25));
  w.set("t.bool", Value::boolean(true));
  w.set("t.str", Value::string("h\xC3\xA9llo"));
  w.set("t.strs", Value::array_strings({"a", "", "b c"}));
  w.set("t.f32s", Value::array_f32({1.0f, -0.5f}));
  w.set("t.i32s", Value::array_i32({7, -8, 9}));
  w.set("t.nested",
        Value::array_of_arrays({Value::array_strings({"x"}), Value::array_u8({1, 2, 3})}));
  w.set("t.empty", Value::array_u8({}));
  Rng rng(3);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::TQ1_0,
                     GgmlType::TQ2_0}) {
    const int64_t cols = gguf::block_values(t) == 1 ? 3 : gguf::block_values(t), rows = 2;
    std::vector<float> v(size_t(rows * cols));
    for (auto& x : v) x = rng.normal();
    std::vector<uint8_t> bytes(size_t(gguf::bytes_for(t, rows * cols)));
    gguf::encode_from_float(t, v.data(), rows * cols, bytes.data());
    w.add_tensor("w." + gguf::type_name(t), t, {cols, rows}, std::move(bytes));
  }
  return w;
}

std::string parse_error(const Bytes& b, const gguf::GgufLimits& lim = {}) {
  return thrown_message([&] { gguf::File::copy(b.data(), b.size(), lim); });
}

TEST(gguf_io_round_trip_every_value_and_tensor_type) {
  for (uint32_t alignment : {0u, 1u, 64u}) {
    const gguf::Writer w = sample_writer(alignment);
    const Bytes bytes = w.finish();
    CHECK(bytes == sample_writer(alignment).finish());  // deterministic
    const gguf::File f = gguf::File::view(bytes.data(), bytes.size());
    CHECK(f.version() == 3);
    CHECK(f.alignment() == (alignment == 0 ? 32u : alignment));
    CHECK(f.data_offset() % f.alignment() == 0);
    CHECK(f.get("t.u8").as_uint("t.u8") == 200);
    CHECK(f.get("t.i8").as_int("t.i8") == -5);
    CHECK(f.get("t.u16").as_uint("") == 65000 && f.get("t.i16").as_int("") == -30000);
    CHECK(f.get("t.u32").as_uint("") == 4000000000u && f.get("t.i32").as_int("") == -2000000000);
    CHECK(f.get("t.u64").as_uint("") == uint64_t(1) << 60 &&
          f.get("t.i64").as_int("") == -(int64_t(1) << 60));
    CHECK(f.get("t.f32").as_float("") == 1.5 && f.get("t.f64").as_float("") == -2.25);
    CHECK(f.get("t.bool").as_bool("") && f.get("t.str").as_string("") == "h\xC3\xA9llo");
    CHECK((f.get("t.strs").strings("") == std::vector<std::string>{"a", "", "b c"}));
    CHECK((f.get("t.f32s").floats("") == std::vector<float>{1.0f, -0.5f}));
    CHECK((f.get("t.i32s").ints("") == std::vector<int64_t>{7, -8, 9}));
    const auto& nested = f.get("t.nested").arrays("t.nested");
    CHECK(nested.size() == 2 && nested[0].strings("")[0] == "x" &&
          nested[1].raw("", ValueType::U8).size() == 3);
    CHECK(f.get("t.empty").count() == 0);
    // Every value equals what was set, in order.
    CHECK(f.metadata().size() == (alignment == 0 ? 18u : 19u));
    CHECK(f.tensors().size() == 6);
    const gguf::File again = gguf::File::copy(bytes.data(), bytes.size());
    for (size_t i = 0; i < f.metadata().size(); ++i)
      CHECK(f.metadata()[i].key == again.metadata()[i].key &&
            f.metadata()[i].value == again.metadata()[i].value);
    for (const gguf::TensorInfo& t : f.tensors()) {
      CHECK(t.offset % f.alignment() == 0);
      CHECK(t.n_dims == 2 && t.ne[1] == 2);
      CHECK(f.data(t) + t.bytes <= bytes.data() + bytes.size());
    }
    CHECK(f.tensor("w.tq2_0").type == GgmlType::TQ2_0 &&
          f.tensor("w.tq2_0").bytes == 2 * gguf::kTq2Bytes);
  }
}

TEST(gguf_io_header_layout) {
  gguf::Writer w;
  w.set("k", Value::u32(7));
  w.add_tensor("t", GgmlType::F32, {2}, Bytes{0, 0, 128, 63, 0, 0, 0, 64});
  const Bytes b = w.finish();
  // magic, version 3, 1 tensor, 1 key; key "k" (u64 length 1), type 4, value 7.
  CHECK(std::memcmp(b.data(), "GGUF", 4) == 0 && rd32(b, 4) == 3 && rd64(b, 8) == 1 &&
        rd64(b, 16) == 1);
  CHECK(rd64(b, 24) == 1 && b[32] == 'k' && rd32(b, 33) == 4 && rd32(b, 37) == 7);
  // tensor info: name "t", n_dims 1, ne 2, type 0 (f32), offset 0.
  CHECK(rd64(b, 41) == 1 && b[49] == 't' && rd32(b, 50) == 1 && rd64(b, 54) == 2 &&
        rd32(b, 62) == 0 && rd64(b, 66) == 0);
  const gguf::File f = gguf::File::copy(b.data(), b.size());
  CHECK(f.data_offset() == 96);  // the infos end at byte 74, the next multiple of 32 is 96
  CHECK(b.size() == 128);        // 8 data bytes padded to 32, as ggml pads the last tensor too
  float v[2];
  std::memcpy(v, f.data(f.tensor("t")), 8);
  CHECK(v[0] == 1.0f && v[1] == 2.0f);
  // A nested array: type 9, element type 9, count 1, then the inner array
  // without a tag of its own: element type 0 (u8), count 1, the byte 5.
  gguf::Writer n;
  n.set("n", Value::array_of_arrays({Value::array_u8({5})}));
  const Bytes nb = n.finish();
  CHECK(rd32(nb, 33) == 9 && rd32(nb, 37) == 9 && rd64(nb, 41) == 1 && rd32(nb, 49) == 0 &&
        rd64(nb, 53) == 1 && nb[61] == 5);
  CHECK(gguf::File::copy(nb.data(), nb.size()).get("n").arrays("n")[0].raw("n", ValueType::U8) ==
        Bytes{5});
}

TEST(gguf_io_version_2_reads_and_others_are_refused) {
  Bytes b = sample_writer().finish();
  wr32(b, 4, 2);
  CHECK(gguf::File::copy(b.data(), b.size()).version() == 2);
  wr32(b, 4, 1);
  CHECK(mentions(parse_error(b), "GGUF version 1 is not supported"));
  wr32(b, 4, 4);
  CHECK(mentions(parse_error(b), "unsupported GGUF version 4"));
  wr32(b, 4, 0x03000000);
  CHECK(mentions(parse_error(b), "big-endian"));
  Bytes bad = b;
  bad[0] = 'X';
  CHECK(mentions(parse_error(bad), "not a GGUF file"));
  CHECK(mentions(parse_error(Bytes{}), "empty"));
  CHECK(mentions(parse_error(Bytes{'G', 'G'}), "truncated"));
}

// A file with one tensor whose info fields are easy to patch.
struct OneTensor {
  Bytes bytes;
  size_t ne0_at, type_at, offset_at, ndims_at;
};
OneTensor one_tensor(GgmlType type = GgmlType::F32, int64_t n = 32) {
  gguf::Writer w;
  std::vector<float> v(size_t(n), 0.5f);
  Bytes data(size_t(gguf::bytes_for(type, n)));
  gguf::encode_from_float(type, v.data(), n, data.data());
  w.add_tensor("blk.3.attn_q.weight", type, {n}, std::move(data));
  OneTensor o{w.finish(), 0, 0, 0, 0};
  o.ndims_at = 24 + 8 + 19;
  o.ne0_at = o.ndims_at + 4;
  o.type_at = o.ne0_at + 8;
  o.offset_at = o.type_at + 4;
  return o;
}

TEST(gguf_io_refusals_name_the_tensor_or_key) {
  {
    OneTensor o = one_tensor();
    CHECK(gguf::File::copy(o.bytes.data(), o.bytes.size()).tensors().size() == 1);
    wr64(o.bytes, o.offset_at, 4096);
    const std::string e = parse_error(o.bytes);
    CHECK_MSG(mentions(e, "tensor 'blk.3.attn_q.weight': data offset 4096") &&
                  mentions(e, "past the end of the file"),
              e);
  }
  {
    OneTensor o = one_tensor();
    wr64(o.bytes, o.offset_at, 8);
    CHECK(mentions(parse_error(o.bytes), "not a multiple of the alignment 32"));
  }
  {
    OneTensor o = one_tensor();
    wr32(o.bytes, o.type_at, 12);
    const std::string e = parse_error(o.bytes);
    CHECK_MSG(mentions(e, "'blk.3.attn_q.weight' has type q4_K") &&
                  mentions(e, "supported: f32, f16, bf16, q8_0, tq1_0, tq2_0"),
              e);
  }
  {
    OneTensor o = one_tensor(GgmlType::Q8_0, 64);
    wr64(o.bytes, o.ne0_at, 40);
    CHECK(mentions(parse_error(o.bytes), "not a multiple of the block size 32"));
  }
  {
    OneTensor o = one_tensor();
    wr32(o.bytes, o.ndims_at, 5);
    CHECK(mentions(parse_error(o.bytes), "has 5 dimensions"));
  }
  {
    OneTensor o = one_tensor();
    wr64(o.bytes, o.ne0_at, uint64_t(1) << 62);
    CHECK(mentions(parse_error(o.bytes), "GgufLimits::max_tensor_elements"));
  }
  {
    // Two tensors at the same offset overlap; a second tensor of the same name is a duplicate.
    gguf::Writer w;
    w.add_tensor("a", GgmlType::F32, {8}, Bytes(32, 0));
    w.add_tensor("b", GgmlType::F32, {8}, Bytes(32, 0));
    Bytes b = w.finish();
    const size_t b_offset_at = 24 + (8 + 1 + 4 + 8 + 4 + 8) + (8 + 1 + 4 + 8 + 4);
    CHECK(rd64(b, b_offset_at) == 32);
    wr64(b, b_offset_at, 0);
    CHECK(mentions(parse_error(b),
                   "tensor 'b' (bytes 0 to 32 of the data section) overlaps tensor 'a'") ||
          mentions(parse_error(b),
                   "tensor 'a' (bytes 0 to 32 of the data section) overlaps tensor 'b'"));
    wr64(b, b_offset_at, 32);
    b[b_offset_at - 17] = 'a';  // the second name: 'b' -> 'a'
    CHECK(mentions(parse_error(b), "duplicate tensor name 'a'"));
  }
  {
    gguf::Writer w;
    w.set("k", Value::u8(1));
    Bytes b = w.finish();
    wr32(b, 33, 13);
    CHECK(mentions(parse_error(b), "key 'k' has unknown value type 13"));
    wr32(b, 33, 7);
    b[37] = 2;
    CHECK(mentions(parse_error(b), "key 'k': a bool must be 0 or 1"));
  }
  {
    // An array claiming 2^40 elements is refused before anything is allocated.
    gguf::Writer w;
    w.set("tokenizer.ggml.tokens", Value::array_strings({"a", "b"}));
    Bytes b = w.finish();
    const size_t count_at = 24 + 8 + 21 + 4 + 4;  // key length, key, type, element type
    CHECK(rd64(b, count_at) == 2);
    wr64(b, count_at, uint64_t(1) << 40);
    CHECK(mentions(parse_error(b), "GgufLimits::max_array_elements"));
    wr64(b, count_at, 1000);
    CHECK(mentions(parse_error(b), "does not fit"));
    wr64(b, count_at, 2);
    wr64(b, count_at + 8, uint64_t(1) << 50);  // the first string's length
    CHECK(mentions(parse_error(b),
                   "element 0 of key 'tokenizer.ggml.tokens' is 1125899906842624 bytes long"));
  }
  {
    Bytes b = sample_writer().finish();
    wr64(b, 8, uint64_t(1) << 40);
    CHECK(mentions(parse_error(b), "GgufLimits::max_tensors"));
    wr64(b, 8, 6);
    wr64(b, 16, uint64_t(1) << 40);
    CHECK(mentions(parse_error(b), "GgufLimits::max_metadata"));
  }
  {
    gguf::Writer w;
    w.set(gguf::kAlignmentKey, Value::u32(64));
    Bytes b = w.finish();
    wr32(b, 24 + 8 + 17 + 4, 48);
    CHECK(mentions(parse_error(b), "expected a power of two"));
  }
  // A duplicate key.
  {
    gguf::Writer w;
    w.set("aa", Value::u8(1));
    w.set("ab", Value::u8(2));
    Bytes b = w.finish();
    b[24 + 8 + 2 + 4 + 1 + 8 + 1] = 'a';
    CHECK(mentions(parse_error(b), "duplicate key 'aa'"));
  }
}

TEST(gguf_io_writer_refuses_bad_input) {
  gguf::Writer w;
  w.set("a", Value::u8(1));
  CHECK(mentions(thrown_message([&] { w.set("a", Value::u8(2)); }), "duplicate key 'a'"));
  CHECK_THROWS(w.set("", Value::u8(2)));
  CHECK_THROWS(w.set(gguf::kAlignmentKey, Value::u32(48)));
  CHECK_THROWS(w.set(gguf::kAlignmentKey, Value::u64(64)));
  CHECK_THROWS(w.add_tensor("t", GgmlType::F32, {3}, Bytes(8)));       // 3 floats need 12 bytes
  CHECK_THROWS(w.add_tensor("t", GgmlType::TQ2_0, {100}, Bytes(66)));  // not a whole block
  CHECK_THROWS(w.add_tensor("t", GgmlType::F32, {1, 1, 1, 1, 1}, Bytes(4)));
  CHECK_THROWS(w.add_tensor(std::string(64, 'x'), GgmlType::F32, {1}, Bytes(4)));
  CHECK_THROWS(w.add_tensor("t", GgmlType(12), {1}, Bytes(4)));
  w.add_tensor("t", GgmlType::F32, {1}, Bytes(4));
  CHECK(mentions(thrown_message([&] { w.add_tensor("t", GgmlType::F32, {1}, Bytes(4)); }),
                 "duplicate tensor name"));
  CHECK_THROWS(w.set(gguf::kAlignmentKey, Value::u32(64)));  // after tensors
  CHECK_THROWS(Value::array_raw(ValueType::U32, 3, Bytes(8)));
  CHECK_THROWS(Value::array_raw(ValueType::Bool, 1, Bytes{2}));
}

TEST(gguf_io_typed_reads_refuse_other_kinds) {
  const Bytes b = sample_writer().finish();
  const gguf::File f = gguf::File::copy(b.data(), b.size());
  CHECK(mentions(thrown_message([&] { f.get("t.str").as_uint("t.str"); }),
                 "key 't.str' is string, expected an unsigned"));
  CHECK(mentions(thrown_message([&] { f.get("t.i8").as_uint("t.i8"); }), "expected a value >= 0"));
  CHECK(mentions(thrown_message([&] { f.get("t.u64").as_float("t.u64"); }), "expected a float"));
  CHECK(mentions(thrown_message([&] { f.get("t.f32s").strings("t.f32s"); }),
                 "is an array of f32, expected an array of strings"));
  CHECK(mentions(thrown_message([&] { f.get("missing"); }), "missing key 'missing'"));
  CHECK(mentions(thrown_message([&] { f.tensor("nope"); }), "missing tensor 'nope'"));
  CHECK(f.find("missing") == nullptr && f.find_tensor("w.f32") != nullptr);
}

TEST(gguf_io_files_mapped_and_written_atomically) {
  char dir_template[] = "/tmp/ternorm-gguf-XXXXXX";
  const char* dir = mkdtemp(dir_template);
  CHECK(dir != nullptr);
  if (dir == nullptr) return;
  const std::string path = std::string(dir) + "/m.gguf";
  const gguf::Writer w = sample_writer();
  w.write_file(path);
  const gguf::File f = gguf::File::open(path);
  const Bytes want = w.finish();
  CHECK(f.file_bytes() == want.size());
  const gguf::TensorInfo& t = f.tensor("w.q8_0");
  CHECK(std::memcmp(f.data(t), want.data() + f.data_offset() + t.offset, size_t(t.bytes)) == 0);
  w.write_file(path);  // replaces a regular file
  CHECK(gguf::File::open(path).tensors().size() == 6);
  // A directory is neither read nor replaced; a missing file is a system error naming it.
  CHECK(mentions(thrown_message([&] { gguf::File::open(dir); }), "not a regular file"));
  CHECK(mentions(thrown_message([&] { w.write_file(dir); }), "not a regular file"));
  CHECK(mentions(thrown_message([&] { gguf::File::open(path + ".missing"); }), "m.gguf.missing"));
  // Content errors name the path.
  const std::string empty = std::string(dir) + "/empty.gguf";
  std::FILE* fp = std::fopen(empty.c_str(), "wb");
  if (fp) std::fclose(fp);
  CHECK(
      mentions(thrown_message([&] { gguf::File::open(empty); }), "empty.gguf': gguf: empty file"));
  std::remove(empty.c_str());
  std::remove(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace ternorm::test
