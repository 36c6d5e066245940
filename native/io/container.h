// The ternorm container: the one file format for the base model, the per-user
// adapter and encoded-adapter files. Versioned, checksummed section by
// section, written atomically, and parsed defensively: a truncated, corrupt,
// wrong-kind, wrong-version or oversized file throws an error that says what
// is wrong, never crashes. No Node dependency (edge applications link it).
// native/io/FORMAT.md describes the same layout with the reasoning.
//
// Byte layout, version 1. All integers little-endian. Offsets from file start.
//
//   Header, 64 bytes
//     0   u8[8]  magic "TERNORM\0"
//     8   u32    format version (1); read before anything else, so a later
//                version may change everything after it
//     12  u32    file kind: 1 model, 2 adapter, 3 encoded adapter
//     16  u64    file size in bytes (the whole file)
//     24  u64    section table size in bytes (the table starts at byte 64)
//     32  u32    section count
//     36  u32    CRC-32C of the section table
//     40  u8[20] reserved, zero
//     60  u32    CRC-32C of header bytes [0, 60)
//
//   Section table, at byte 64: `section count` entries back to back
//     0   u64    payload offset (a multiple of 64)
//     8   u64    payload size in bytes (a multiple of the element size)
//     16  u32    element type (DType below)
//     20  u32    CRC-32C of the payload
//     24  u16    name length in bytes (1 .. Limits::max_name_bytes)
//     26  u8[6]  reserved, zero
//     32  u8[]   name: UTF-8, no control characters, unique in the file
//     ..         zero padding to a multiple of 8 bytes
//
//   Payloads: from the first multiple of 64 at or after the end of the table,
//   each payload at a multiple of 64 (so tensors can be used in place),
//   non-overlapping, in any order. Every byte between the table and the
//   payloads and between payloads is zero, and the file ends at the end of the
//   last payload: every byte of a valid file is covered by a checksum or must
//   be zero, so any single flipped bit is detected.
//
// The writer lays payloads out in the order the sections were added.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "sha256.h"

namespace ternorm::io {

inline constexpr char kMagic[8] = {'T', 'E', 'R', 'N', 'O', 'R', 'M', '\0'};
inline constexpr uint32_t kFormatVersion = 1;  // the only version this build reads and writes
inline constexpr size_t kHeaderBytes = 64;
inline constexpr size_t kEntryFixedBytes = 32;
inline constexpr size_t kPayloadAlign = 64;
inline constexpr uint32_t kNameBytesCap = 65535;  // u16 name length

enum class FileKind : uint32_t { Model = 1, Adapter = 2, EncodedAdapter = 3 };

// "model", "adapter", "encoded adapter".
const char* file_kind_name(FileKind kind);

// The kind the first n bytes of a file declare, when they start a ternorm
// header of a known kind (nothing else is checked): lets a loader name a file
// of the wrong kind before it applies its own size limit to it.
std::optional<FileKind> declared_kind(const uint8_t* p, size_t n);

// Element types. Values are part of the format: never renumber.
enum class DType : uint32_t {
  U8 = 1,
  I8 = 2,
  U16 = 3,
  I16 = 4,
  F16 = 5,  // IEEE binary16, stored as uint16_t
  U32 = 6,
  I32 = 7,
  F32 = 8,
  U64 = 9,
  I64 = 10,
  F64 = 11,
  Utf8 = 12,  // text, checked to be valid UTF-8 when parsed
  Json = 13,  // UTF-8 text holding JSON; the reader checks UTF-8, the consumer parses it
};

bool dtype_known(uint32_t value);
// "u8", "i8", ..., "f64", "utf8", "json"; "unknown" for a value not in DType.
const char* dtype_name(DType t);
// Element size in bytes (1 for the text types).
size_t dtype_size(DType t);

// The C++ element type of each numeric DType.
template <DType D>
struct DTypeTraits;
template <>
struct DTypeTraits<DType::U8> {
  using type = uint8_t;
};
template <>
struct DTypeTraits<DType::I8> {
  using type = int8_t;
};
template <>
struct DTypeTraits<DType::U16> {
  using type = uint16_t;
};
template <>
struct DTypeTraits<DType::I16> {
  using type = int16_t;
};
template <>
struct DTypeTraits<DType::F16> {
  using type = uint16_t;
};
template <>
struct DTypeTraits<DType::U32> {
  using type = uint32_t;
};
template <>
struct DTypeTraits<DType::I32> {
  using type = int32_t;
};
template <>
struct DTypeTraits<DType::F32> {
  using type = float;
};
template <>
struct DTypeTraits<DType::U64> {
  using type = uint64_t;
};
template <>
struct DTypeTraits<DType::I64> {
  using type = int64_t;
};
template <>
struct DTypeTraits<DType::F64> {
  using type = double;
};

// Bounds a reader accepts (and a writer produces). The defaults admit models
// of a few hundred MB with room to spare; a caller that knows better (an
// adapter is a few KB) passes tighter ones.
struct Limits {
  uint64_t max_file_bytes = uint64_t(2) << 30;  // 2 GiB
  uint32_t max_sections = 16384;
  uint32_t max_name_bytes = 256;  // at most kNameBytesCap
};

// The file's content is wrong: not a ternorm file, truncated, corrupt, another
// version or kind, over a limit, or not what the caller expected (a missing
// section, another type or element count, another base model).
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A read-only array view.
template <typename T>
struct Span {
  const T* data = nullptr;
  size_t size = 0;
  const T* begin() const { return data; }
  const T* end() const { return data + size; }
  const T& operator[](size_t i) const { return data[i]; }
  bool empty() const { return size == 0; }
};

// One section of a parsed file.
struct Section {
  std::string name;
  DType type = DType::U8;
  uint64_t offset = 0;  // from the start of the file, a multiple of 64
  uint64_t bytes = 0;
  uint32_t crc = 0;               // CRC-32C of the payload (verified by the parser)
  const uint8_t* data = nullptr;  // the payload, 64-byte aligned in memory
  uint64_t count() const { return bytes / dtype_size(type); }
};

struct ParseOptions {
  Limits limits;
  // When set, a file of another kind is refused ("expected an adapter file,
  // got a model file").
  std::optional<FileKind> expected_kind;
};

// A parsed, fully validated container: every checksum verified, every offset
// and length inside the file, names unique and valid, text sections valid
// UTF-8. Cheap to copy (the bytes are shared).
class Container {
 public:
  static constexpr int64_t kAnyCount = -1;

  // Parses a file image in place, without copying. `data` must stay alive and
  // unchanged as long as the result is used, and must be 64-byte aligned (so
  // the typed views are aligned); std::invalid_argument otherwise.
  static Container view(const void* data, size_t size, const ParseOptions& options = {});
  // Parses a private, aligned copy of the image; any buffer will do.
  static Container copy(const void* data, size_t size, const ParseOptions& options = {});

  FileKind kind() const { return kind_; }
  uint32_t version() const { return kFormatVersion; }
  uint64_t file_bytes() const { return size_; }
  const uint8_t* bytes() const { return base_; }

  // In table order.
  const std::vector<Section>& sections() const { return sections_; }
  const Section* find(std::string_view name) const;
  bool has(std::string_view name) const { return find(name) != nullptr; }
  // Throws FormatError "<kind> file has no section 'name'".
  const Section& section(std::string_view name) const;

  // The payload as an array of its C++ type. Throws FormatError when the
  // section is missing, holds another type, or (unless expected_count is
  // kAnyCount) holds another number of elements. The view lives as long as
  // the container's bytes.
  template <DType D>
  Span<typename DTypeTraits<D>::type> get(std::string_view name,
                                          int64_t expected_count = kAnyCount) const {
    const Section& s = typed(name, D, expected_count);
    return {reinterpret_cast<const typename DTypeTraits<D>::type*>(s.data), size_t(s.count())};
  }
  Span<uint8_t> get_u8(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::U8>(n, c);
  }
  Span<int8_t> get_i8(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::I8>(n, c);
  }
  Span<uint16_t> get_u16(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::U16>(n, c);
  }
  Span<int16_t> get_i16(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::I16>(n, c);
  }
  Span<uint16_t> get_f16(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::F16>(n, c);
  }
  Span<uint32_t> get_u32(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::U32>(n, c);
  }
  Span<int32_t> get_i32(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::I32>(n, c);
  }
  Span<float> get_f32(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::F32>(n, c);
  }
  Span<uint64_t> get_u64(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::U64>(n, c);
  }
  Span<int64_t> get_i64(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::I64>(n, c);
  }
  Span<double> get_f64(std::string_view n, int64_t c = kAnyCount) const {
    return get<DType::F64>(n, c);
  }
  // Text sections (valid UTF-8, checked at parse time).
  std::string_view get_text(std::string_view name) const;  // DType::Utf8
  std::string_view get_json(std::string_view name) const;  // DType::Json

 private:
  friend Container read_file(const std::string& path, const ParseOptions& options);
  Container() = default;
  static Container parse(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                         const ParseOptions& options);
  const Section& typed(std::string_view name, DType type, int64_t expected_count) const;

  std::shared_ptr<const void> owner_;  // the copied bytes; null for a view
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  FileKind kind_ = FileKind::Model;
  std::vector<Section> sections_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Reads and parses a file. The size is checked against options.limits before
// anything is read; a path that is not a regular file is refused (so a FIFO
// cannot hang the reader). Errors name the path. System errors (missing file,
// no permission) are std::runtime_error; content errors are FormatError.
Container read_file(const std::string& path, const ParseOptions& options = {});

// Collects named sections and produces the file. Payloads are copied when
// added, so the caller's buffers may go away. Every add checks the name
// (non-empty, valid UTF-8 without control characters, at most
// limits.max_name_bytes, unique), the size (a multiple of the element size)
// and the limits (section count, resulting file size), throwing
// std::invalid_argument and leaving the writer unchanged.
class Writer {
 public:
  explicit Writer(FileKind kind, const Limits& limits = {});

  void add(std::string_view name, DType type, const void* data, size_t bytes);
  void add_u8(std::string_view name, const uint8_t* p, size_t n) { add(name, DType::U8, p, n); }
  void add_i8(std::string_view name, const int8_t* p, size_t n) { add(name, DType::I8, p, n); }
  void add_u16(std::string_view name, const uint16_t* p, size_t n) {
    add(name, DType::U16, p, n * 2);
  }
  void add_i16(std::string_view name, const int16_t* p, size_t n) {
    add(name, DType::I16, p, n * 2);
  }
  void add_f16(std::string_view name, const uint16_t* p, size_t n) {
    add(name, DType::F16, p, n * 2);
  }
  void add_u32(std::string_view name, const uint32_t* p, size_t n) {
    add(name, DType::U32, p, n * 4);
  }
  void add_i32(std::string_view name, const int32_t* p, size_t n) {
    add(name, DType::I32, p, n * 4);
  }
  void add_f32(std::string_view name, const float* p, size_t n) { add(name, DType::F32, p, n * 4); }
  void add_u64(std::string_view name, const uint64_t* p, size_t n) {
    add(name, DType::U64, p, n * 8);
  }
  void add_i64(std::string_view name, const int64_t* p, size_t n) {
    add(name, DType::I64, p, n * 8);
  }
  void add_f64(std::string_view name, const double* p, size_t n) {
    add(name, DType::F64, p, n * 8);
  }
  void add_text(std::string_view name, std::string_view text) {
    add(name, DType::Utf8, text.data(), text.size());
  }
  void add_json(std::string_view name, std::string_view json) {
    add(name, DType::Json, json.data(), json.size());
  }

  FileKind kind() const { return kind_; }
  size_t section_count() const { return sections_.size(); }
  // The exact size of the file finish() produces.
  uint64_t file_bytes() const;

  // The complete file image.
  std::vector<uint8_t> finish() const;
  // Streams the file to `path` through write_file_atomic's temp-file protocol
  // without building the image in memory.
  void write_file(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType type;
    std::vector<uint8_t> payload;
    uint32_t crc;
  };
  template <typename Sink>
  void emit(Sink&& sink) const;

  FileKind kind_;
  Limits limits_;
  std::vector<Pending> sections_;
  std::map<std::string, size_t, std::less<>> index_;
  uint64_t table_bytes_ = 0;
  uint64_t aligned_payload_bytes_ = 0;  // sum of payload sizes rounded up to 64
};

// Replaces `path` atomically: writes a temp file in the same directory, fsyncs
// it, renames it over `path`, then fsyncs the directory. On any failure the
// temp file is removed, `path` is left as it was, and std::runtime_error names
// the path and the system error. (A replaced file gets fresh permissions from
// the umask; a symlink at `path` is replaced, not followed.) A `path` that
// exists and is not a regular file -- a device, FIFO, socket, directory, or a
// symlink to one -- is refused with std::runtime_error before anything is
// written.
void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_file_atomic(path, bytes.data(), bytes.size());
}

// ---- fingerprints -----------------------------------------------------------
// SHA-256 over a canonical encoding of sections, independent of their order
// and placement in the file:
//   "ternorm.fingerprint.v1\0" (23 bytes), u64 section count, then per section
//   in ascending byte order of names: u32 name length, name bytes, u32 DType,
//   u64 payload size, payload bytes (integers little-endian).
using Fingerprint = Sha256Digest;

// Over every section of the file.
Fingerprint fingerprint(const Container& c);
// Over the named sections only (each must exist; duplicates are refused).
Fingerprint fingerprint(const Container& c, const std::vector<std::string>& names);

// The section in which an adapter (or encoded adapter) records the fingerprint
// of its base model: DType::U8, 32 bytes.
inline constexpr const char* kBaseFingerprintSection = "base.fingerprint";

// Writes kBaseFingerprintSection.
void add_base_fingerprint(Writer& w, const Fingerprint& base);
// Throws FormatError when `file` has no valid kBaseFingerprintSection, or when
// it differs from `base` ("this adapter was trained on base model 1a2b... but
// the loaded base model is 3c4d...").
void check_base_fingerprint(const Container& file, const Fingerprint& base);

}  // namespace ternorm::io
