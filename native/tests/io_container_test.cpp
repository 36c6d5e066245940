// The container (native/io): checksums and hashes against published vectors,
// round trips of every type, the byte layout against FORMAT.md, atomic
// writes, and every error path with its message.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/aligned_buffer.h"
#include "harness.h"
#include "le_bytes.h"
#include "io/container.h"
#include "io/crc32c.h"
#include "io/sha256.h"

using namespace ternorm;
using namespace ternorm::io;
using namespace ternorm::test;

namespace {

// Recompute the header CRC / the table CRC after an edit, so the parser gets
// past them to the check under test.
void reseal_header(Bytes& b) { wr32(b, 60, crc32c(b.data(), 60)); }
void reseal_table(Bytes& b) {
  wr32(b, 36, crc32c(b.data() + 64, size_t(rd64(b, 24))));
  reseal_header(b);
}
// Byte position of table entry i (walks the variable-length entries).
size_t entry_at(const Bytes& b, size_t i) {
  size_t pos = 64;
  for (size_t k = 0; k < i; ++k) {
    const size_t name_len = size_t(b[pos + 24]) | size_t(b[pos + 25]) << 8;
    pos += (32 + name_len + 7) / 8 * 8;
  }
  return pos;
}

#define CHECK_ERROR(expr, ...)                                                                  \
  do {                                                                                          \
    const std::string msg_ = thrown_message([&] { (void)(expr); });                             \
    CHECK_MSG(msg_ != "<no exception>", "no exception: " #expr);                                \
    for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})                      \
      CHECK_MSG(mentions(msg_, part_), "message \"" << msg_ << "\" lacks \"" << part_ << "\""); \
  } while (0)

Container parse(const Bytes& b, const ParseOptions& o = {}) {
  return Container::copy(b.data(), b.size(), o);
}

// A small adapter-like file used by the error-path tests.
Bytes sample_adapter() {
  Writer w(FileKind::Adapter);
  std::vector<float> g(37);
  for (size_t i = 0; i < g.size(); ++i) g[i] = 1.0f + 0.01f * float(i);
  w.add_f32("norm.0.gain", g.data(), g.size());
  w.add_json("config", "{\"d\":37}");
  const uint8_t fp[32] = {1, 2, 3};
  w.add_u8("base.fingerprint", fp, 32);
  return w.finish();
}

struct TempDir {
  std::string path;
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/ternorm-io-test-XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() {
    for (const std::string& n : entries()) {
      const std::string p = path + "/" + n;
      struct stat st;
      if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        ::rmdir(p.c_str());
      else
        ::unlink(p.c_str());
    }
    ::rmdir(path.c_str());
  }
  std::set<std::string> entries() const {
    std::set<std::string> out;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          out.insert(e->d_name);
      ::closedir(d);
    }
    return out;
  }
};

Bytes slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

}  // namespace

// ---- checksums and hashes ------------------------------------------------------

TEST(io_crc32c_standard_vectors) {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  CHECK(crc32c(nullptr, 0) == 0u);
  // RFC 3720 (iSCSI) appendix B.4.
  uint8_t buf[48] = {};
  CHECK(crc32c(buf, 32) == 0x8A9136AAu);
  std::memset(buf, 0xFF, 32);
  CHECK(crc32c(buf, 32) == 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = uint8_t(i);
  CHECK(crc32c(buf, 32) == 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = uint8_t(31 - i);
  CHECK(crc32c(buf, 32) == 0x113FDB5Cu);
  const uint8_t pdu[48] = {0x01, 0xc0, 0, 0, 0, 0, 0,    0, 0,    0, 0, 0,    0, 0, 0, 0,
                           0x14, 0,    0, 0, 0, 0, 0x04, 0, 0,    0, 0, 0x14, 0, 0, 0, 0x18,
                           0x28, 0,    0, 0, 0, 0, 0,    0, 0x02, 0, 0, 0,    0, 0, 0, 0};
  CHECK(crc32c(pdu, 48) == 0xD9963A56u);
}

TEST(io_crc32c_matches_bitwise_reference) {
  // The textbook one-bit-at-a-time CRC-32C; the slicing-by-8 path must agree
  // at every length and alignment, and extend() must chain.
  auto bitwise = [](const uint8_t* p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
      c ^= p[i];
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
    }
    return ~c;
  };
  Rng rng(11);
  std::vector<uint8_t> buf(600);
  for (auto& b : buf) b = uint8_t(rng.next());
  for (size_t off = 0; off < 8; ++off)
    for (size_t n = 0; n + off <= 300; n += (n < 40 ? 1 : 7)) {
      const uint32_t want = bitwise(buf.data() + off, n);
      CHECK_MSG(crc32c(buf.data() + off, n) == want, "off=" << off << " n=" << n);
      const size_t split = n / 3;
      CHECK(crc32c_extend(crc32c(buf.data() + off, split), buf.data() + off + split, n - split) ==
            want);
    }
}

TEST(io_sha256_fips_vectors) {
  CHECK(to_hex(sha256("", 0)) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(to_hex(sha256("abc", 3)) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(to_hex(sha256(m448.data(), m448.size())) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
      "pqrsmnopqrstnopqrstu";
  CHECK(to_hex(sha256(m896.data(), m896.size())) ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  // One million 'a', fed in uneven pieces through the incremental interface.
  Sha256 h;
  const std::string chunk(997, 'a');
  size_t left = 1000000;
  while (left > 0) {
    const size_t n = std::min(left, chunk.size());
    h.update(chunk.data(), n);
    left -= n;
  }
  CHECK(to_hex(h.finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK_THROWS(h.update("x", 1));
}

TEST(io_sha256_padding_boundaries) {
  // Lengths around the 55/56/64-byte padding edges; digests from Python's
  // hashlib over bytes (7 i + 3) mod 256.
  const std::pair<size_t, const char*> cases[] = {
      {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
      {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
      {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
      {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
      {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
      {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
      {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
      {127, "a8d23e75d936f303d248888d9b165ee543f4cbafcad3c9dd2a79bd84faa11d07"},
      {128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6"},
  };
  for (const auto& [n, hex] : cases) {
    std::vector<uint8_t> m(n);
    for (size_t i = 0; i < n; ++i) m[i] = uint8_t(i * 7 + 3);
    CHECK_MSG(to_hex(sha256(m.data(), n)) == hex, "n=" << n);
    Sha256 h;  // byte by byte
    for (size_t i = 0; i < n; ++i) h.update(&m[i], 1);
    CHECK_MSG(to_hex(h.finish()) == hex, "n=" << n << " byte by byte");
  }
}

// ---- round trips ---------------------------------------------------------------

TEST(io_round_trip_every_type) {
  Rng rng(3);
  auto fill = [&](size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = uint8_t(rng.next());
    return v;
  };
  const size_t n = 37;  // odd, so payloads do not end on 64-byte boundaries
  const auto u8 = fill(n), i8 = fill(n), u16 = fill(2 * n), i16 = fill(2 * n), f16 = fill(2 * n),
             u32 = fill(4 * n), i32 = fill(4 * n), u64 = fill(8 * n), i64 = fill(8 * n),
             f64 = fill(8 * n);
  std::vector<float> f32(n);
  for (auto& x : f32) x = rng.normal();
  f32[0] = -0.0f;
  f32[1] = std::numeric_limits<float>::infinity();
  f32[2] = std::numeric_limits<float>::quiet_NaN();
  f32[3] = std::numeric_limits<float>::denorm_min();
  const std::string text = "Call me Ishmael. \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80",
                    json = "{\"d_model\": 64}";

  Writer w(FileKind::Model);
  w.add_u8("u8", u8.data(), n);
  w.add_i8("i8", reinterpret_cast<const int8_t*>(i8.data()), n);
  w.add_u16("u16", reinterpret_cast<const uint16_t*>(u16.data()), n);
  w.add_i16("i16", reinterpret_cast<const int16_t*>(i16.data()), n);
  w.add_f16("f16", reinterpret_cast<const uint16_t*>(f16.data()), n);
  w.add_u32("u32", reinterpret_cast<const uint32_t*>(u32.data()), n);
  w.add_i32("i32", reinterpret_cast<const int32_t*>(i32.data()), n);
  w.add_f32("f32", f32.data(), n);
  w.add_u64("u64", reinterpret_cast<const uint64_t*>(u64.data()), n);
  w.add_i64("i64", reinterpret_cast<const int64_t*>(i64.data()), n);
  w.add_f64("f64", reinterpret_cast<const double*>(f64.data()), n);
  w.add_text("text", text);
  w.add_json("config", json);
  const Bytes file = w.finish();
  CHECK(file.size() == w.file_bytes());

  // Both entry points: a copy of an unaligned vector, and a view of an aligned buffer.
  AlignedBuffer<uint8_t> aligned(file.size());
  std::memcpy(aligned.data(), file.data(), file.size());
  for (const Container& c : {parse(file), Container::view(aligned.data(), file.size())}) {
    CHECK(c.kind() == FileKind::Model);
    CHECK(c.version() == 1);
    CHECK(c.file_bytes() == file.size());
    CHECK(c.sections().size() == 13);
    const char* order[] = {"u8",  "i8",  "u16", "i16", "f16",  "u32",   "i32",
                           "f32", "u64", "i64", "f64", "text", "config"};
    for (size_t i = 0; i < 13; ++i) {
      const Section& s = c.sections()[i];
      CHECK(s.name == order[i]);
      CHECK(reinterpret_cast<uintptr_t>(s.data) % 64 == 0);
      CHECK(s.offset % 64 == 0);
    }
    auto same = [](const auto& span, const std::vector<uint8_t>& raw) {
      return span.size * sizeof(*span.data) == raw.size() &&
             std::memcmp(span.data, raw.data(), raw.size()) == 0;
    };
    CHECK(same(c.get_u8("u8", n), u8));
    CHECK(same(c.get_i8("i8", n), i8));
    CHECK(same(c.get_u16("u16", n), u16));
    CHECK(same(c.get_i16("i16", n), i16));
    CHECK(same(c.get_f16("f16", n), f16));
    CHECK(same(c.get_u32("u32", n), u32));
    CHECK(same(c.get_i32("i32", n), i32));
    CHECK(same(c.get_u64("u64", n), u64));
    CHECK(same(c.get_i64("i64", n), i64));
    CHECK(same(c.get_f64("f64", n), f64));
    const Span<float> f = c.get_f32("f32");  // any count
    CHECK(f.size == n);
    CHECK(std::memcmp(f.data, f32.data(), n * 4) == 0);  // bit-exact, NaN and -0 included
    CHECK(c.get_text("text") == text);
    CHECK(c.get_json("config") == json);
    CHECK(c.section("u16").count() == n && c.section("u16").bytes == 2 * n);
    CHECK(c.section("f64").type == DType::F64);
  }
}

TEST(io_empty_file_and_empty_sections) {
  const Bytes empty = Writer(FileKind::EncodedAdapter).finish();
  CHECK(empty.size() == 64);
  const Container e = parse(empty);
  CHECK(e.kind() == FileKind::EncodedAdapter);
  CHECK(e.sections().empty());
  CHECK(!e.has("x"));

  Writer w(FileKind::Adapter);
  w.add_f32("a", nullptr, 0);
  w.add_text("t", "");
  w.add_u8("b", reinterpret_cast<const uint8_t*>("xyz"), 3);
  w.add_i64("z", nullptr, 0);  // empty last section
  const Bytes file = w.finish();
  const Container c = parse(file);
  CHECK(c.get_f32("a", 0).empty());
  CHECK(c.get_text("t").empty());
  CHECK(c.get_u8("b", 3)[2] == 'z');
  CHECK(c.get_i64("z", 0).size == 0);
  CHECK(c.section("z").offset == file.size());  // an empty section may sit at the very end
}

TEST(io_many_sections) {
  Rng rng(5);
  Writer w(FileKind::Model);
  std::vector<std::vector<float>> data(1000);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i].resize(size_t(rng.below(70)));
    for (auto& x : data[i]) x = rng.normal();
    w.add_f32("layers." + std::to_string(i) + ".w", data[i].data(), data[i].size());
  }
  const Container c = parse(w.finish());
  CHECK(c.sections().size() == 1000);
  for (size_t i = 0; i < data.size(); i += 37) {
    const Span<float> s = c.get_f32("layers." + std::to_string(i) + ".w", int64_t(data[i].size()));
    CHECK(std::memcmp(s.data, data[i].data(), data[i].size() * 4) == 0);
  }
}

TEST(io_layout_follows_the_spec) {
  // One f32 gain [1.5, -2] in an adapter, laid out by hand from FORMAT.md.
  const float g[2] = {1.5f, -2.0f};
  Writer w(FileKind::Adapter);
  w.add_f32("g", g, 2);
  const Bytes file = w.finish();
  Bytes want(64 + 64 + 8,
             0);  // header, table entry (32 + 1 name byte -> 40) padded to 128, payload
  std::memcpy(want.data(), "TERNORM", 8);
  wr32(want, 8, 1);
  wr32(want, 12, 2);
  wr64(want, 16, want.size());
  wr64(want, 24, 40);
  wr32(want, 32, 1);
  wr64(want, 64, 128);  // payload offset
  wr64(want, 72, 8);    // payload bytes
  wr32(want, 80, 8);    // DType::F32
  std::memcpy(want.data() + 128, g, 8);
  wr32(want, 84, crc32c(g, 8));
  want[88] = 1;  // name length
  want[96] = 'g';
  wr32(want, 36, crc32c(want.data() + 64, 40));
  wr32(want, 60, crc32c(want.data(), 60));
  CHECK(file == want);

  // Payload placement for a few sizes: 64-aligned, packed in order, file ends
  // at the last payload.
  Writer w2(FileKind::Model);
  const std::vector<uint8_t> blob(200, 7);
  for (size_t n : {0, 1, 64, 65, 130, 3}) w2.add_u8("s" + std::to_string(n), blob.data(), n);
  const Bytes f2 = w2.finish();
  const Container c2 = parse(f2);
  uint64_t expect = (64 + rd64(f2, 24) + 63) / 64 * 64;
  for (const Section& s : c2.sections()) {
    CHECK(s.offset == expect);
    expect = (s.offset + s.bytes + 63) / 64 * 64;
  }
  const Section& last = c2.sections().back();
  CHECK(f2.size() == last.offset + last.bytes);
}

// ---- atomic writes and reading files ----------------------------------------------------

TEST(io_atomic_write_replaces_and_leaves_no_temp) {
  TempDir dir;
  const std::string path = dir.path + "/user.adapter";
  const Bytes a = sample_adapter();
  write_file_atomic(path, a);
  CHECK(slurp(path) == a);
  Writer w(FileKind::Adapter);
  w.add_text("note", "second version");
  w.write_file(path);  // streams, replacing the first
  CHECK(slurp(path) == w.finish());
  CHECK(read_file(path).get_text("note") == "second version");
  CHECK(dir.entries() == std::set<std::string>{"user.adapter"});
  // Relative paths (no directory part) work too.
  char cwd[4096];
  CHECK(::getcwd(cwd, sizeof cwd) != nullptr);
  CHECK(::chdir(dir.path.c_str()) == 0);
  write_file_atomic("rel.bin", a);
  CHECK(::chdir(cwd) == 0);
  CHECK(slurp(dir.path + "/rel.bin") == a);
}

TEST(io_atomic_write_failures_keep_the_old_file) {
  TempDir dir;
  const Bytes old_bytes = sample_adapter();
  const Bytes big(1 << 20, 0x5A);

  // Missing directory: a clear error, nothing created.
  CHECK_ERROR(write_file_atomic(dir.path + "/no/such/dir/x.adapter", big), "cannot write",
              "no/such/dir/x.adapter");

  // The target is a directory: refused before any temp file; the directory
  // survives.
  CHECK(::mkdir((dir.path + "/adir").c_str(), 0755) == 0);
  CHECK_ERROR(write_file_atomic(dir.path + "/adir", big), "cannot write", "adir",
              "a directory, not a regular file");
  struct stat st;
  CHECK(::stat((dir.path + "/adir").c_str(), &st) == 0 && S_ISDIR(st.st_mode));
  CHECK(dir.entries() == std::set<std::string>{"adir"});

  // A write that fails half way (file size limit -> EFBIG): the old file is
  // intact and no temp file remains. Works as root too, unlike a read-only
  // directory.
  const std::string path = dir.path + "/user.adapter";
  write_file_atomic(path, old_bytes);
  struct rlimit saved;
  CHECK(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  void (*saved_handler)(int) = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  CHECK(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string msg = thrown_message([&] { write_file_atomic(path, big); });
  Writer w(FileKind::Adapter);
  w.add_u8("blob", big.data(), big.size());
  const std::string msg2 = thrown_message([&] { w.write_file(path); });
  CHECK(::setrlimit(RLIMIT_FSIZE, &saved) == 0);
  ::signal(SIGXFSZ, saved_handler);
  CHECK_MSG(mentions(msg, "cannot write") && mentions(msg, "user.adapter"), msg);
  CHECK_MSG(mentions(msg2, "cannot write"), msg2);
  CHECK(slurp(path) == old_bytes);
  CHECK(dir.entries() == (std::set<std::string>{"adir", "user.adapter"}));

  // Without write permission on the directory (meaningful when not root).
  if (::geteuid() != 0) {
    CHECK(::chmod(dir.path.c_str(), 0555) == 0);
    CHECK_THROWS(write_file_atomic(path, big));
    CHECK(::chmod(dir.path.c_str(), 0755) == 0);
    CHECK(slurp(path) == old_bytes);
  }
}

TEST(io_atomic_write_refuses_special_files) {
  // Renaming a regular file over a device node would replace it (as root,
  // --out /dev/null would replace /dev/null). A FIFO and a symlink to the
  // character device /dev/null stand in for any special file; /dev/null itself
  // is never a target here.
  TempDir dir;
  const Bytes a = sample_adapter();
  const std::string fifo = dir.path + "/fifo";
  CHECK(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_ERROR(write_file_atomic(fifo, a), "cannot write", "fifo", "a FIFO, not a regular file");
  Writer w(FileKind::Adapter);
  w.add_text("note", "x");
  CHECK_ERROR(w.write_file(fifo), "cannot write", "fifo", "a FIFO");
  const std::string link = dir.path + "/null-link";
  CHECK(::symlink("/dev/null", link.c_str()) == 0);
  CHECK_ERROR(write_file_atomic(link, a), "cannot write", "null-link", "a character device");
  struct stat st;
  CHECK(::lstat(fifo.c_str(), &st) == 0 && S_ISFIFO(st.st_mode));
  CHECK(::lstat(link.c_str(), &st) == 0 && S_ISLNK(st.st_mode));
  CHECK(::stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode));
  CHECK(dir.entries() == (std::set<std::string>{"fifo", "null-link"}));
  // A symlink to a regular file is still replaced (not followed), as documented.
  const std::string target = dir.path + "/target";
  write_file_atomic(target, a);
  const std::string reg_link = dir.path + "/reg-link";
  CHECK(::symlink(target.c_str(), reg_link.c_str()) == 0);
  write_file_atomic(reg_link, w.finish());
  CHECK(::lstat(reg_link.c_str(), &st) == 0 && S_ISREG(st.st_mode));
  CHECK(slurp(target) == a);
}

TEST(io_read_file_errors) {
  TempDir dir;
  CHECK_ERROR(read_file(dir.path + "/missing.adapter"), "cannot read", "missing.adapter",
              "No such file");
  CHECK_ERROR(read_file(dir.path), "not a regular file");
  const std::string fifo = dir.path + "/fifo";
  CHECK(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_ERROR(read_file(fifo), "not a regular file");  // and does not wait for a writer

  const std::string path = dir.path + "/user.adapter";
  const Bytes a = sample_adapter();
  write_file_atomic(path, a);
  ParseOptions tight;
  tight.limits.max_file_bytes = a.size() - 1;
  CHECK_ERROR(read_file(path, tight), "user.adapter", "above the limit",
              std::to_string(a.size()).c_str());
  ParseOptions want_model;
  want_model.expected_kind = FileKind::Model;
  CHECK_ERROR(read_file(path, want_model), "user.adapter",
              "expected a model file, got an adapter file");
  CHECK_ERROR(read_file(path, want_model), "user.adapter");

  Bytes cut(a.begin(), a.begin() + long(a.size() - 10));
  write_file_atomic(path, cut);
  CHECK_ERROR(read_file(path), "user.adapter", "adapter file truncated", "needs bytes");
  try {
    read_file(path);
  } catch (const FormatError&) {  // content errors keep their type through read_file
  } catch (...) {
    CHECK_MSG(false, "expected FormatError");
  }
  ParseOptions want_adapter;
  want_adapter.expected_kind = FileKind::Adapter;
  write_file_atomic(path, a);
  const Container c = read_file(path, want_adapter);
  CHECK(c.get_f32("norm.0.gain", 37)[36] == 1.0f + 0.01f * 36.0f);
  CHECK(reinterpret_cast<uintptr_t>(c.section("norm.0.gain").data) % 64 == 0);
}

// ---- error paths and their messages ----------------------------------------------------

TEST(io_header_errors) {
  const Bytes a = sample_adapter();
  CHECK_ERROR(parse(Bytes{}), "not a ternorm file", "empty");
  CHECK_ERROR(parse(Bytes{'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0}), "not a ternorm file (bad magic",
              "50 4b 03 04");
  CHECK_ERROR(parse(Bytes(a.begin(), a.begin() + 5)), "truncated", "64-byte header");
  CHECK_ERROR(parse(Bytes(a.begin(), a.begin() + 40)), "truncated", "64-byte header");

  Bytes v = a;
  wr32(v, 8, 2);
  CHECK_ERROR(parse(v), "file format version 2, this build reads 1");
  wr32(v, 8, 0);
  CHECK_ERROR(parse(v), "file format version 0, this build reads 1");

  Bytes h = a;
  h[17] ^= 1;  // file size field, header CRC not updated
  CHECK_ERROR(parse(h), "corrupt ternorm file", "header checksum mismatch");
  h = a;
  h[62] ^= 0x80;  // the CRC itself
  CHECK_ERROR(parse(h), "header checksum mismatch");

  Bytes k = a;
  wr32(k, 12, 9);
  reseal_header(k);
  CHECK_ERROR(parse(k), "unknown file kind 9");

  ParseOptions want;
  want.expected_kind = FileKind::Model;
  CHECK_ERROR(parse(a, want), "expected a model file, got an adapter file");
  want.expected_kind = FileKind::EncodedAdapter;
  CHECK_ERROR(parse(a, want), "expected an encoded adapter file, got an adapter file");
  want.expected_kind = FileKind::Adapter;
  CHECK(parse(a, want).kind() == FileKind::Adapter);

  Bytes r = a;
  r[50] = 1;
  reseal_header(r);
  CHECK_ERROR(parse(r), "corrupt adapter file", "reserved header bytes");

  ParseOptions small;
  small.limits.max_file_bytes = a.size() - 1;
  CHECK_ERROR(parse(a, small), "above the limit", std::to_string(a.size() - 1).c_str());
  Bytes huge = a;  // a header that claims an enormous file
  wr64(huge, 16, uint64_t(1) << 40);
  reseal_header(huge);
  CHECK_ERROR(parse(huge), "adapter file of 1099511627776 bytes is above the limit");

  Bytes trailing = a;
  trailing.push_back(0);
  CHECK_ERROR(parse(trailing), "1 bytes of trailing data");

  Bytes small_size = a;
  wr64(small_size, 16, 10);
  reseal_header(small_size);
  CHECK_ERROR(parse(small_size), "less than the header");

  ParseOptions few;
  few.limits.max_sections = 2;
  CHECK_ERROR(parse(a, few), "3 sections, above the limit of 2");
  ParseOptions bad_limits;
  bad_limits.limits.max_name_bytes = 70000;
  CHECK_ERROR(parse(a, bad_limits), "max_name_bytes");
}

TEST(io_truncation_and_checksum_errors) {
  const Bytes a = sample_adapter();
  const Container c = parse(a);
  const Section& g = c.section("norm.0.gain");
  // Cut inside the first payload: the message names the section and the range.
  const Bytes cut(a.begin(), a.begin() + long(g.offset + 10));
  CHECK_ERROR(parse(cut), "adapter file truncated: section 'norm.0.gain' needs bytes [",
              (std::to_string(g.offset) + ", " + std::to_string(g.offset + g.bytes) + ")").c_str(),
              ("but the file has " + std::to_string(g.offset + 10) + " bytes").c_str());
  const Bytes in_table(a.begin(), a.begin() + 80);
  CHECK_ERROR(parse(in_table), "adapter file truncated: the section table needs bytes [64, ");
  // Every shorter length is refused.
  for (size_t n = 0; n < a.size(); ++n) CHECK_THROWS(parse(Bytes(a.begin(), a.begin() + long(n))));

  Bytes t = a;
  t[64 + 3] ^= 4;  // table byte, table CRC not updated
  CHECK_ERROR(parse(t), "section table checksum mismatch");

  Bytes p = a;
  p[g.offset + 5] ^= 1;
  CHECK_ERROR(parse(p), "checksum mismatch in section 'norm.0.gain'");

  Bytes pad = a;
  pad[g.offset + g.bytes + 1] = 0x11;  // between two payloads
  CHECK_ERROR(parse(pad), "nonzero padding");
  Bytes pad2 = a;
  pad2[64 + rd64(a, 24) + 1] = 0x22;  // after the table
  CHECK_ERROR(parse(pad2), "nonzero padding");
}

TEST(io_section_table_errors) {
  const Bytes a = sample_adapter();
  const Container c = parse(a);
  const size_t e0 = entry_at(a, 0), e1 = entry_at(a, 1), e2 = entry_at(a, 2);
  auto edited = [&](const std::function<void(Bytes&)>& edit) {
    Bytes b = a;
    edit(b);
    reseal_table(b);
    return b;
  };
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr32(b, e0 + 16, 99); })), "section 'norm.0.gain'",
              "unknown element type 99");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e0, rd64(b, e0) + 8); })),
              "not a multiple of 64");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e0, 64); })),
              "inside the header or section table");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e1, rd64(b, e0)); })), "overlaps section");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e2 + 8, 1000); })),
              "section 'base.fingerprint' needs bytes [", "the header records a file of");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e2 + 8, ~uint64_t(0)); })), "needs bytes",
              "2^64 or more");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e0 + 8, 6); })),
              "6 bytes, not a whole number of f32");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e0 + 8, 4); })),
              "nonzero padding bytes before section 'config'");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr64(b, e2 + 8, 0); })), "sections end at byte");
  CHECK_ERROR(parse(edited([&](Bytes& b) { b[e0 + 28] = 1; })), "reserved bytes of table entry 0");
  CHECK_ERROR(parse(edited([&](Bytes& b) {
                b[e1 + 24] = 11;  // name length 6 -> 11 would run into the next entry: refused
              })),
              "corrupt adapter file");
  CHECK_ERROR(parse(edited([&](Bytes& b) { b[e0 + 32] = 0xFF; })), "table entry 0",
              "not valid UTF-8", "\\xff");
  CHECK_ERROR(parse(edited([&](Bytes& b) { b[e0 + 33] = '\n'; })), "control characters");
  CHECK_ERROR(parse(edited([&](Bytes& b) {
                b[e0 + 24] = 0;
                b[e0 + 25] = 0;
              })),
              "empty section name");
  CHECK_ERROR(parse(edited([&](Bytes& b) { b[e0 + 32 + 11] = 'x'; })), "padding of table entry 0");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr32(b, 32, 2); })),
              "unused bytes at the end of the section table");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr32(b, 32, 4); })),
              "runs past the end of the section table");
  CHECK_ERROR(parse(edited([&](Bytes& b) { wr32(b, 32, 1000); })), "cannot hold 1000 sections");
  Bytes big_table = a;  // the table CRC cannot be recomputed over a table that is not there
  wr64(big_table, 24, uint64_t(1) << 50);
  reseal_header(big_table);
  CHECK_ERROR(parse(big_table), "does not fit in a file");
  ParseOptions short_names;
  short_names.limits.max_name_bytes = 8;
  CHECK_ERROR(parse(a, short_names), "11 bytes, above the limit of 8");
  (void)c;
}

TEST(io_duplicate_names_and_bad_text_payloads) {
  // Two sections with names of equal length, then one renamed to the other.
  Writer w(FileKind::Adapter);
  const float x[3] = {1, 2, 3};
  w.add_f32("alpha", x, 3);
  w.add_f32("bravo", x, 3);
  w.add_text("notes", "fine");
  const Bytes a = w.finish();
  Bytes b = a;
  std::memcpy(&b[entry_at(b, 1) + 32], "alpha", 5);
  reseal_table(b);
  CHECK_ERROR(parse(b), "duplicate section name 'alpha'");

  // A text payload that is not UTF-8, with its checksum made to match.
  Bytes t = a;
  const Section notes = parse(a).section("notes");
  t[notes.offset + 1] = 0xC0;  // overlong lead byte
  wr32(t, entry_at(t, 2) + 20, crc32c(&t[notes.offset], size_t(notes.bytes)));
  reseal_table(t);
  CHECK_ERROR(parse(t), "section 'notes' (utf8) is not valid UTF-8 at byte 1");
}

TEST(io_accessor_errors) {
  const Container c = parse(sample_adapter());
  CHECK_ERROR(c.get_f32("norm.1.gain"), "adapter file has no section 'norm.1.gain'");
  CHECK_ERROR(c.get_u8("norm.0.gain"), "section 'norm.0.gain' holds f32 data, expected u8");
  CHECK_ERROR(c.get_f32("norm.0.gain", 2304),
              "section 'norm.0.gain' has 37 f32 values, expected 2304");
  CHECK_ERROR(c.get_text("config"), "holds json data, expected utf8");
  CHECK_ERROR(c.get_f32("norm.0.gain", -5), "negative");
  CHECK(c.get_f32("norm.0.gain", 37).size == 37);
  CHECK(c.get_json("config") == "{\"d\":37}");

  AlignedBuffer<uint8_t> buf(sample_adapter().size() + 64);
  CHECK_ERROR(Container::view(buf.data() + 8, 100), "64-byte aligned", "Container::copy");
  CHECK_ERROR(Container::view(nullptr, 5), "null data");
}

TEST(io_writer_errors_leave_the_writer_unchanged) {
  Writer w(FileKind::Model);
  const float x[2] = {1, 2};
  w.add_f32("a", x, 2);
  const Bytes before = w.finish();
  const uint8_t raw[3] = {1, 2, 3};
  CHECK_ERROR(w.add_f32("", x, 2), "section name is empty");
  CHECK_ERROR(w.add_f32("a", x, 2), "duplicate section name 'a'");
  CHECK_ERROR(w.add_f32("bad\xFFname", x, 2), "not valid UTF-8", "\\xff");
  CHECK_ERROR(w.add_f32("tab\there", x, 2), "control characters");
  CHECK_ERROR(w.add_f32(std::string(300, 'n'), x, 2), "300 bytes, above the limit of 256");
  CHECK_ERROR(w.add("odd", DType::F32, raw, 3), "3 bytes is not a whole number of f32");
  CHECK_ERROR(w.add("null", DType::U8, nullptr, 3), "null data");
  CHECK_ERROR(w.add("weird", DType(77), raw, 3), "unknown element type 77");
  CHECK_ERROR(w.add_text("t", "\xED\xA0\x80"), "not valid UTF-8 at byte 0");  // a surrogate
  CHECK_ERROR(w.add_json("j", "{\"a\":\xF5}"), "not valid UTF-8 at byte 5");
  CHECK(w.finish() == before);
  CHECK(w.section_count() == 1);

  Limits lim;
  lim.max_sections = 2;
  lim.max_file_bytes = 1000;
  Writer small(FileKind::Adapter, lim);
  std::vector<uint8_t> blob(2000, 1);
  CHECK_ERROR(small.add_u8("big", blob.data(), blob.size()),
              "would exceed the limit of 1000 bytes");
  CHECK_ERROR(small.add_u8("big", blob.data(), ~size_t(0) >> 1),
              "would exceed the limit");  // no overflow
  small.add_u8("one", blob.data(), 100);
  const uint64_t size1 = small.file_bytes();
  CHECK_ERROR(small.add_u8("two", blob.data(), 900), "would exceed the limit");
  CHECK(small.file_bytes() == size1);
  small.add_u8("two", blob.data(), 100);
  CHECK_ERROR(small.add_u8("three", blob.data(), 1), "Limits::max_sections");
  // A file the writer accepted is read back under the same limits.
  ParseOptions o;
  o.limits = lim;
  CHECK(parse(small.finish(), o).sections().size() == 2);
  CHECK_ERROR(Writer(FileKind(0)), "unknown file kind 0");
  Limits bad;
  bad.max_name_bytes = 0;
  CHECK_ERROR(Writer(FileKind::Model, bad), "max_name_bytes");
}

// ---- fingerprints -------------------------------------------------------------------------

TEST(io_fingerprint_is_canonical) {
  const float w1[3] = {1, 2, 3};
  const int8_t w2[4] = {-1, 0, 1, 0};
  Writer a(FileKind::Model), b(FileKind::Model);
  a.add_f32("w1", w1, 3);
  a.add_i8("w2", w2, 4);
  a.add_json("config", "{}");
  b.add_json("config", "{}");  // another order, so other offsets
  b.add_i8("w2", w2, 4);
  b.add_f32("w1", w1, 3);
  const Container ca = parse(a.finish()), cb = parse(b.finish());
  CHECK(fingerprint(ca) == fingerprint(cb));

  // The documented encoding, spelled out.
  Sha256 h;
  h.update("ternorm.fingerprint.v1", 23);
  auto u32 = [&](uint32_t v) {
    uint8_t t[4];
    for (int i = 0; i < 4; ++i) t[i] = uint8_t(v >> (8 * i));
    h.update(t, 4);
  };
  auto u64 = [&](uint64_t v) {
    u32(uint32_t(v));
    u32(uint32_t(v >> 32));
  };
  u64(3);
  u32(6), h.update("config", 6), u32(13), u64(2), h.update("{}", 2);
  u32(2), h.update("w1", 2), u32(8), u64(12), h.update(w1, 12);
  u32(2), h.update("w2", 2), u32(2), u64(4), h.update(w2, 4);
  CHECK(fingerprint(ca) == h.finish());

  // A subset, and sensitivity to payload, name and type.
  CHECK(fingerprint(ca, {"w2", "w1", "config"}) == fingerprint(ca));
  CHECK(fingerprint(ca, {"w1"}) != fingerprint(ca));
  CHECK_ERROR(fingerprint(ca, {"w1", "w1"}), "named twice");
  CHECK_ERROR(fingerprint(ca, {"nope"}), "no section 'nope'");
  const float w1b[3] = {1, 2, 3.0000002f};
  Writer c(FileKind::Model), d(FileKind::Model), e(FileKind::Model);
  c.add_f32("w1", w1b, 3), c.add_i8("w2", w2, 4), c.add_json("config", "{}");
  d.add_f32("w1x", w1, 3), d.add_i8("w2", w2, 4), d.add_json("config", "{}");
  e.add_f32("w1", w1, 3), e.add_u8("w2", reinterpret_cast<const uint8_t*>(w2), 4),
      e.add_json("config", "{}");
  CHECK(fingerprint(parse(c.finish())) != fingerprint(ca));
  CHECK(fingerprint(parse(d.finish())) != fingerprint(ca));
  CHECK(fingerprint(parse(e.finish())) != fingerprint(ca));
}

TEST(io_base_fingerprint_check) {
  const float w[2] = {0.5f, 0.25f};
  Writer m1(FileKind::Model), m2(FileKind::Model);
  m1.add_f32("w", w, 2);
  m2.add_f32("w", w, 1);
  const Fingerprint f1 = fingerprint(parse(m1.finish())), f2 = fingerprint(parse(m2.finish()));
  Writer ad(FileKind::Adapter);
  add_base_fingerprint(ad, f1);
  const Container adapter = parse(ad.finish());
  check_base_fingerprint(adapter, f1);  // the right base: no error
  CHECK_ERROR(check_base_fingerprint(adapter, f2), "this adapter was trained on base model",
              to_hex(f1).substr(0, 16).c_str(),
              ("the loaded base model is " + to_hex(f2).substr(0, 16)).c_str());
  Writer enc(FileKind::EncodedAdapter);
  enc.add_text("scheme", "int8");
  CHECK_ERROR(check_base_fingerprint(parse(enc.finish()), f1),
              "encoded adapter file records no base-model fingerprint");
  Writer wrong(FileKind::Adapter);
  wrong.add_f32(kBaseFingerprintSection, w, 2);
  CHECK_ERROR(check_base_fingerprint(parse(wrong.finish()), f1), "should hold 32 u8 values",
              "2 f32");
}
