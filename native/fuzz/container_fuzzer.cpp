// libFuzzer target for the container parser (not part of the default build).
//
// Build and run from the repository root (clang 14 or later):
/*
   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined \
     -fno-sanitize-recover=all -Inative native/fuzz/container_fuzzer.cpp \
     native/io/container.cpp native/io/crc32c.cpp native/io/sha256.cpp \
     -o build/container_fuzzer
   mkdir -p build/fuzz-corpus
   TERNORM_FUZZ_WRITE_SEEDS=build/fuzz-corpus build/container_fuzzer build/fuzz-corpus \
     -max_len=4096 -max_total_time=600
*/
// TERNORM_FUZZ_WRITE_SEEDS makes the target write a few valid files into the
// corpus directory at start-up (LLVMFuzzerInitialize); without it libFuzzer
// starts from nothing and finds the magic through its comparison tracing.
//
// Each input is parsed twice: as it is, and with every checksum recomputed
// (the header's, the table's, each in-range payload's) so that mutations
// reach the checks behind the checksums. A parse must throw a std::exception
// or return a container that keeps every promise of the format; a broken
// promise aborts (a "crash" for libFuzzer).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "io/container.h"
#include "io/crc32c.h"

using namespace ternorm::io;

namespace {

uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }
void wr32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

void require(bool ok) {
  if (!ok) std::abort();
}

void reseal(std::vector<uint8_t>& b) {
  if (b.size() < 64) return;
  const uint64_t table = rd64(&b[24]);
  const uint64_t table_end = table <= b.size() - 64 ? 64 + table : b.size();
  const uint32_t count = rd32(&b[32]);
  uint64_t pos = 64;
  for (uint32_t i = 0; i < count && pos + 32 <= table_end; ++i) {
    uint8_t* e = &b[pos];
    const uint64_t off = rd64(e), n = rd64(e + 8);
    if (off <= b.size() && n <= b.size() - off) wr32(e + 20, crc32c(b.data() + off, size_t(n)));
    pos += (32 + (uint64_t(e[24]) | uint64_t(e[25]) << 8) + 7) / 8 * 8;
  }
  if (table <= b.size() - 64) wr32(&b[36], crc32c(b.data() + 64, size_t(table)));
  wr32(&b[60], crc32c(b.data(), 60));
}

void check(const uint8_t* data, size_t size) {
  ParseOptions opt;
  opt.limits.max_file_bytes = 1 << 20;
  opt.limits.max_sections = 256;
  try {
    const Container c = Container::copy(data, size, opt);
    require(c.file_bytes() == size);
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const Section& s : c.sections()) {
      require(!s.name.empty() && s.name.size() <= opt.limits.max_name_bytes);
      require(c.find(s.name) == &s);
      require(s.offset % 64 == 0 && s.offset <= size && s.bytes <= size - s.offset);
      require(s.bytes % dtype_size(s.type) == 0);
      require(crc32c(s.data, size_t(s.bytes)) == s.crc);
      for (const auto& r : ranges)
        require(s.offset + s.bytes <= r.first || s.offset >= r.second || s.bytes == 0);
      ranges.push_back({s.offset, s.offset + s.bytes});
      if (s.type == DType::Utf8) require(c.get_text(s.name).size() == s.bytes);
      if (s.type == DType::F32) require(c.get_f32(s.name, int64_t(s.count())).size == s.count());
    }
    (void)fingerprint(c);
  } catch (const std::exception&) {
    // A clear refusal is a correct outcome.
  }
}

}  // namespace

// TERNORM_FUZZ_WRITE_SEEDS=dir: write a few valid files into dir (a seed
// corpus), then fuzz as usual.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("TERNORM_FUZZ_WRITE_SEEDS");
  if (dir == nullptr) return 0;
  const std::string d = dir;
  Writer a(FileKind::Adapter);
  const float g[5] = {1, 1.5f, 0.5f, 2, 1};
  a.add_f32("norm.0.gain", g, 5);
  a.add_json("config", "{\"d\":5}");
  add_base_fingerprint(a, Fingerprint{1, 2, 3});
  write_file_atomic(d + "/adapter.seed", a.finish());
  Writer m(FileKind::Model);
  const int8_t w[7] = {-1, 0, 1, 1, 0, -1, 0};
  m.add_i8("w", w, 7);
  m.add_text("name", "tiny \xC3\xA9");
  m.add_u16("h", nullptr, 0);
  write_file_atomic(d + "/model.seed", m.finish());
  write_file_atomic(d + "/empty.seed", Writer(FileKind::EncodedAdapter).finish());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check(data, size);
  std::vector<uint8_t> b(data, data + size);
  reseal(b);
  check(b.data(), b.size());
  return 0;
}
