// GGUF, the model file format of llama.cpp / ggml: a hardened reader (v2 and
// v3, little-endian, memory-mapped or from a buffer) and a deterministic v3
// writer. No Node dependency. The tensor block codecs are in gguf_quants.h;
// the mapping to a ternorm Model is model/gguf_model.h.
//
// Layout (all integers little-endian; a "string" is u64 byte length + bytes,
// no terminator):
//   u32 magic "GGUF", u32 version (2 or 3; v1 used 32-bit counts and is
//   refused), u64 tensor count, u64 metadata count;
//   metadata: string key, u32 value type, value. Value types: 0 u8, 1 i8,
//   2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte, 0 or 1), 8 string,
//   9 array (u32 element type, u64 count, elements; an element of an array of
//   arrays is itself element type, count, elements, with no tag), 10 u64,
//   11 i64, 12 f64;
//   tensor infos: string name, u32 n_dims (1..4), u64 ne[n_dims] (ne[0] is
//   the innermost, contiguous dimension: a rows x cols matrix is
//   ne = [cols, rows]), u32 ggml type, u64 offset from the data section;
//   padding to the alignment (metadata "general.alignment", u32, a power of
//   two, default 32); the data section, each tensor at a multiple of the
//   alignment.
//
// Every count, length and offset is checked before use and every limit
// (GgufLimits) before any allocation; errors are io::FormatError, one line,
// starting "gguf: " and naming the key or tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "container.h"  // io::FormatError, io::write_file_atomic
#include "gguf_quants.h"

namespace ternorm::gguf {

using io::FormatError;

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kGgufVersion = 3;         // what the writer produces
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr const char* kAlignmentKey = "general.alignment";
inline constexpr int kMaxDims = 4;

// Bounds the reader accepts and the writer produces. Allocation is bounded by
// them and by the file size (an array's elements must fit in the bytes left).
struct GgufLimits {
  uint64_t max_file_bytes = uint64_t(64) << 30;  // 64 GiB (mapped, not read)
  uint64_t max_tensors = 65536;
  uint64_t max_metadata = 65536;  // key/value pairs
  uint64_t max_key_bytes = 65535;
  uint64_t max_string_bytes = uint64_t(16) << 20;    // one string value
  uint64_t max_array_elements = uint64_t(1) << 26;   // one array (a 256k vocabulary fits easily)
  uint64_t max_metadata_values = uint64_t(1) << 27;  // scalars + strings over all metadata
  uint32_t max_array_depth = 4;                      // arrays of arrays of ...
  uint64_t max_tensor_name_bytes = 63;  // ggml's GGML_MAX_NAME (64) minus the terminator
  int64_t max_tensor_elements = int64_t(1) << 40;
  uint32_t max_alignment = 1u << 20;
};

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
const char* value_type_name(ValueType t);  // "u8", ..., "array"
bool value_type_known(uint32_t v);

// One metadata value. Scalars keep their type; arrays keep their element
// type and their elements: fixed-size scalars as raw little-endian bytes,
// strings as strings, arrays as values.
class Value {
 public:
  Value() = default;
  // Scalars.
  static Value u8(uint8_t v);
  static Value i8(int8_t v);
  static Value u16(uint16_t v);
  static Value i16(int16_t v);
  static Value u32(uint32_t v);
  static Value i32(int32_t v);
  static Value u64(uint64_t v);
  static Value i64(int64_t v);
  static Value f32(float v);
  static Value f64(double v);
  static Value boolean(bool v);
  static Value string(std::string v);
  // Arrays.
  static Value array_u8(const std::vector<uint8_t>& v);
  static Value array_i32(const std::vector<int32_t>& v);
  static Value array_f32(const std::vector<float>& v);
  static Value array_strings(std::vector<std::string> v);
  // An array of any fixed-size scalar type from its little-endian bytes.
  static Value array_raw(ValueType elem, uint64_t count, std::vector<uint8_t> bytes);
  static Value array_of_arrays(std::vector<Value> v);

  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::Array; }
  ValueType elem_type() const { return elem_; }  // arrays only
  uint64_t count() const { return count_; }      // arrays only

  // Typed reads. `key` names the value in the error; each throws FormatError
  // ("gguf: key 'x' is a string, expected an unsigned integer") when the
  // value is of another kind or out of range.
  uint64_t as_uint(std::string_view key) const;  // any integer type, >= 0
  int64_t as_int(std::string_view key) const;    // any integer type, within int64
  double as_float(std::string_view key) const;   // f32 or f64
  bool as_bool(std::string_view key) const;
  const std::string& as_string(std::string_view key) const;
  // Arrays of one kind.
  const std::vector<std::string>& strings(std::string_view key) const;
  std::vector<float> floats(std::string_view key) const;  // f32 elements
  std::vector<int64_t> ints(std::string_view key) const;  // any integer elements
  const std::vector<uint8_t>& raw(std::string_view key,
                                  ValueType elem) const;  // fixed-size elements
  const std::vector<Value>& arrays(std::string_view key) const;

  bool operator==(const Value& o) const;
  bool operator!=(const Value& o) const { return !(*this == o); }

 private:
  friend class Parser;
  friend class Serializer;
  static Value make_scalar(ValueType t, uint64_t bits);
  ValueType type_ = ValueType::U8;
  ValueType elem_ = ValueType::U8;
  uint64_t bits_ = 0;  // a fixed-size scalar's little-endian bits
  uint64_t count_ = 0;
  std::string str_;
  std::vector<uint8_t> raw_;       // array of fixed-size scalars
  std::vector<std::string> strs_;  // array of strings
  std::vector<Value> items_;       // array of arrays
};

struct KeyValue {
  std::string key;
  Value value;
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  int64_t ne[kMaxDims] = {1, 1, 1, 1};  // dims past n_dims are 1
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;  // from the start of the data section
  uint64_t bytes = 0;
  int64_t elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// A parsed, validated GGUF file. Cheap to copy (the bytes are shared).
class File {
 public:
  // Maps `path` read-only (a non-regular file is refused). System errors are
  // std::runtime_error, content errors FormatError; both name the path. A
  // mapped file that another process truncates while it is in use faults
  // (SIGBUS), as with any mmap reader.
  static File open(const std::string& path, const GgufLimits& limits = {});
  // Parses bytes held by the caller, without copying: they must outlive the
  // result and every view into it.
  static File view(const void* data, size_t size, const GgufLimits& limits = {});
  // Parses a private copy.
  static File copy(const void* data, size_t size, const GgufLimits& limits = {});

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // from the start of the file
  uint64_t file_bytes() const { return size_; }

  const std::vector<KeyValue>& metadata() const { return kv_; }
  const Value* find(std::string_view key) const;
  const Value& get(std::string_view key) const;  // FormatError "gguf: missing key 'x'"

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  const TensorInfo& tensor(std::string_view name) const;  // FormatError "gguf: missing tensor 'x'"
  // The tensor's bytes (TensorInfo::bytes of them), in place.
  const uint8_t* data(const TensorInfo& t) const { return base_ + data_offset_ + t.offset; }

 private:
  friend class Parser;
  File() = default;
  static File parse(std::shared_ptr<const void> owner, const uint8_t* p, size_t size,
                    const GgufLimits& limits);

  std::shared_ptr<const void> owner_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<KeyValue> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Builds a GGUF v3 file: metadata in the order set, tensors in the order
// added, each tensor's data padded to the alignment ("general.alignment" when
// set, a u32 power of two; 32 otherwise). Same calls -> same bytes. Every
// call checks its input against the limits and throws std::invalid_argument
// naming the key or tensor, leaving the writer unchanged.
class Writer {
 public:
  explicit Writer(const GgufLimits& limits = {}) : limits_(limits) {}

  void set(std::string key, Value value);
  // `ne` has 1..4 dims, innermost first; data holds exactly the bytes of
  // that shape in `type`.
  void add_tensor(std::string name, GgmlType type, const std::vector<int64_t>& ne,
                  std::vector<uint8_t> data);

  uint32_t alignment() const { return alignment_; }
  // The complete file image.
  std::vector<uint8_t> finish() const;
  // Writes the file atomically (temp file + rename, io::write_file_atomic).
  // An existing `path` that is not a regular file (a directory, FIFO,
  // device) is refused.
  void write_file(const std::string& path) const;

 private:
  struct Pending {
    TensorInfo info;
    std::vector<uint8_t> data;
  };
  GgufLimits limits_;
  uint32_t alignment_ = kDefaultAlignment;
  std::vector<KeyValue> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<Pending> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace ternorm::gguf
