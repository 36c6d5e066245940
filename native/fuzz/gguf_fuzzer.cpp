// libFuzzer target for the GGUF reader and block decoders (not part of the
// default build; the GGUF -> Model mapping is fuzzed in the test suite,
// native/tests/gguf_fuzz_test.cpp, since it needs the whole core).
//
// Build and run from the repository root (clang 14 or later):
/*
   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
     -fno-sanitize-recover=all -Inative native/fuzz/gguf_fuzzer.cpp \
     native/io/gguf.cpp native/io/gguf_quants.cpp native/io/container.cpp \
     native/io/crc32c.cpp native/io/sha256.cpp -o build/gguf_fuzzer
   mkdir -p build/gguf-corpus
   TERNORM_FUZZ_WRITE_SEEDS=build/gguf-corpus build/gguf_fuzzer build/gguf-corpus \
     -max_len=8192 -max_total_time=600
*/
// TERNORM_FUZZ_WRITE_SEEDS makes the target write a few valid files into the
// corpus directory at start-up (LLVMFuzzerInitialize).
//
// A parse must throw a std::exception or return a file that keeps every
// promise of the reader: unique names, each tensor's bytes inside the file
// at a multiple of the alignment, the byte count of its shape and type. The
// tensors of an accepted file are then decoded (every type decodes any
// bytes; a TQ2_0 code 3 is reported, not a crash). A broken promise aborts.
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "io/gguf.h"

using namespace ternorm::gguf;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

GgufLimits limits() {
  GgufLimits l;
  l.max_file_bytes = 1 << 20;
  l.max_tensors = 256;
  l.max_metadata = 256;
  l.max_string_bytes = 4096;
  l.max_array_elements = 1 << 16;
  l.max_metadata_values = 1 << 18;
  l.max_tensor_elements = 1 << 20;
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("TERNORM_FUZZ_WRITE_SEEDS");
  if (dir == nullptr) return 0;
  const std::string d = dir;
  Writer w;
  w.set("general.architecture", Value::string("llama"));
  w.set("llama.block_count", Value::u32(1));
  w.set("tokenizer.ggml.tokens", Value::array_strings({"a", "b", "c"}));
  w.set("tokenizer.ggml.scores", Value::array_f32({0, -1, -2}));
  w.set("nested", Value::array_of_arrays({Value::array_u8({1, 2}), Value::array_strings({"z"})}));
  w.set("flag", Value::boolean(true));
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::TQ1_0,
                     GgmlType::TQ2_0}) {
    const int64_t n = block_values(t) == 1 ? 4 : block_values(t);
    std::vector<float> v(size_t(n), 0.5f);
    std::vector<uint8_t> data(size_t(bytes_for(t, n)));
    encode_from_float(t, v.data(), n, data.data());
    w.add_tensor("t." + type_name(t), t, {n}, std::move(data));
  }
  w.write_file(d + "/all_types.seed");
  Writer empty;
  empty.write_file(d + "/empty.seed");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const File f = File::view(data, size, limits());
    require(f.file_bytes() == size);
    require(f.alignment() != 0 && (f.alignment() & (f.alignment() - 1)) == 0);
    std::set<std::string> names;
    for (const TensorInfo& t : f.tensors()) {
      require(names.insert(t.name).second && f.find_tensor(t.name) == &t);
      require(t.offset % f.alignment() == 0 && f.data_offset() <= size);
      require(t.offset <= size - f.data_offset() && t.bytes <= size - f.data_offset() - t.offset);
      require(t.bytes == bytes_for(t.type, t.elements()));
      std::vector<float> out(size_t(t.elements()));
      decode_to_float(t.type, f.data(t), t.elements(), out.data());
      if (is_ternary(t.type)) {
        std::vector<int8_t> trits(size_t(t.elements()));
        std::vector<uint16_t> d(size_t(t.elements() / kQK_K));
        int64_t bad = -1;
        const bool ok =
            decode_ternary(t.type, f.data(t), t.elements(), trits.data(), d.data(), &bad);
        require(ok || (bad >= 0 && bad < t.elements()));
      }
    }
    for (const KeyValue& kv : f.metadata()) require(f.find(kv.key) == &kv.value);
  } catch (const std::exception&) {
    // A clear refusal is a correct outcome.
  }
  return 0;
}
