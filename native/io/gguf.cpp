#include "gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "message.h"

// Values are kept as their little-endian bytes and tensors handed out in
// place, which is only their value on a little-endian host.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader supports little-endian hosts only"
#endif

namespace ternorm::gguf {

namespace {

using io::cat;

// A key or tensor name for a message: quoted, cut to a readable length,
// bytes outside printable ASCII escaped.
std::string quoted(std::string_view s) {
  constexpr size_t kShow = 96;
  static const char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < std::min(s.size(), kShow); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\' && c != '\'') {
      out += char(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += "'";
  if (s.size() > kShow) out += cat("... (", s.size(), " bytes)");
  return out;
}

uint64_t rd_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

void put_le(std::vector<uint8_t>& out, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

// Size of a fixed-size value type, 0 for string and array.
size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64: return 8;
    default: return 0;
  }
}

bool is_signed_int(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_unsigned_int(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}

// The signed value of `n` little-endian bytes.
int64_t sign_extend(uint64_t bits, size_t n) {
  if (n == 8) return int64_t(bits);
  const uint64_t sign = uint64_t(1) << (8 * n - 1);
  return int64_t((bits ^ sign) - sign);
}

bool power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Rounds v up to a multiple of a (a power of two); false on overflow.
bool align_up(uint64_t v, uint64_t a, uint64_t* out) {
  const uint64_t r = v % a;
  if (r == 0) {
    *out = v;
    return true;
  }
  if (v > UINT64_MAX - (a - r)) return false;
  *out = v + (a - r);
  return true;
}

[[noreturn]] void kind_error(std::string_view key, ValueType have, const char* want) {
  throw FormatError(
      cat("gguf: key ", quoted(key), " is ", value_type_name(have), ", expected ", want));
}

}  // namespace

const char* value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::Bool: return "bool";
    case ValueType::String: return "string";
    case ValueType::Array: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

bool value_type_known(uint32_t v) { return v <= 12; }

// ---- Value ------------------------------------------------------------------------

Value Value::make_scalar(ValueType t, uint64_t bits) {
  Value r;
  r.type_ = t;
  r.bits_ = bits;
  return r;
}

Value Value::u8(uint8_t v) { return make_scalar(ValueType::U8, v); }
Value Value::i8(int8_t v) { return make_scalar(ValueType::I8, uint8_t(v)); }
Value Value::u16(uint16_t v) { return make_scalar(ValueType::U16, v); }
Value Value::i16(int16_t v) { return make_scalar(ValueType::I16, uint16_t(v)); }
Value Value::u32(uint32_t v) { return make_scalar(ValueType::U32, v); }
Value Value::i32(int32_t v) { return make_scalar(ValueType::I32, uint32_t(v)); }
Value Value::u64(uint64_t v) { return make_scalar(ValueType::U64, v); }
Value Value::i64(int64_t v) { return make_scalar(ValueType::I64, uint64_t(v)); }
Value Value::f32(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return make_scalar(ValueType::F32, b);
}
Value Value::f64(double v) {
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return make_scalar(ValueType::F64, b);
}
Value Value::boolean(bool v) { return make_scalar(ValueType::Bool, v ? 1 : 0); }
Value Value::string(std::string v) {
  Value r;
  r.type_ = ValueType::String;
  r.str_ = std::move(v);
  return r;
}

Value Value::array_raw(ValueType elem, uint64_t count, std::vector<uint8_t> bytes) {
  const size_t sz = scalar_size(elem);
  if (sz == 0) throw std::invalid_argument("gguf: array_raw needs a fixed-size element type");
  if (count > bytes.size() / sz || bytes.size() != count * sz)
    throw std::invalid_argument(cat("gguf: an array of ", count, " ", value_type_name(elem),
                                    " needs ", count, " x ", sz, " bytes, got ", bytes.size()));
  if (elem == ValueType::Bool)
    for (uint8_t b : bytes)
      if (b > 1) throw std::invalid_argument("gguf: a bool array element must be 0 or 1");
  Value r;
  r.type_ = ValueType::Array;
  r.elem_ = elem;
  r.count_ = count;
  r.raw_ = std::move(bytes);
  return r;
}

Value Value::array_u8(const std::vector<uint8_t>& v) {
  return array_raw(ValueType::U8, v.size(), v);
}

Value Value::array_i32(const std::vector<int32_t>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return array_raw(ValueType::I32, v.size(), std::move(b));
}

Value Value::array_f32(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return array_raw(ValueType::F32, v.size(), std::move(b));
}

Value Value::array_strings(std::vector<std::string> v) {
  Value r;
  r.type_ = ValueType::Array;
  r.elem_ = ValueType::String;
  r.count_ = v.size();
  r.strs_ = std::move(v);
  return r;
}

Value Value::array_of_arrays(std::vector<Value> v) {
  for (const Value& x : v)
    if (!x.is_array()) throw std::invalid_argument("gguf: array_of_arrays holds a non-array value");
  Value r;
  r.type_ = ValueType::Array;
  r.elem_ = ValueType::Array;
  r.count_ = v.size();
  r.items_ = std::move(v);
  return r;
}

uint64_t Value::as_uint(std::string_view key) const {
  if (is_unsigned_int(type_)) return bits_;
  if (is_signed_int(type_)) {
    const int64_t v = sign_extend(bits_, scalar_size(type_));
    if (v < 0)
      throw FormatError(cat("gguf: key ", quoted(key), " is ", v, ", expected a value >= 0"));
    return uint64_t(v);
  }
  kind_error(key, type_, "an unsigned integer");
}

int64_t Value::as_int(std::string_view key) const {
  if (is_signed_int(type_)) return sign_extend(bits_, scalar_size(type_));
  if (is_unsigned_int(type_)) {
    if (bits_ > uint64_t(INT64_MAX))
      throw FormatError(cat("gguf: key ", quoted(key), " is ", bits_, ", too large"));
    return int64_t(bits_);
  }
  kind_error(key, type_, "an integer");
}

double Value::as_float(std::string_view key) const {
  if (type_ == ValueType::F32) {
    float f;
    const uint32_t b = uint32_t(bits_);
    std::memcpy(&f, &b, 4);
    return f;
  }
  if (type_ == ValueType::F64) {
    double d;
    std::memcpy(&d, &bits_, 8);
    return d;
  }
  kind_error(key, type_, "a float");
}

bool Value::as_bool(std::string_view key) const {
  if (type_ != ValueType::Bool) kind_error(key, type_, "a bool");
  return bits_ != 0;
}

const std::string& Value::as_string(std::string_view key) const {
  if (type_ != ValueType::String) kind_error(key, type_, "a string");
  return str_;
}

namespace {
[[noreturn]] void array_error(std::string_view key, const Value& v, const char* want) {
  if (!v.is_array()) kind_error(key, v.type(), want);
  throw FormatError(cat("gguf: key ", quoted(key), " is an array of ",
                        value_type_name(v.elem_type()), ", expected ", want));
}
}  // namespace

const std::vector<std::string>& Value::strings(std::string_view key) const {
  if (!is_array() || elem_ != ValueType::String) array_error(key, *this, "an array of strings");
  return strs_;
}

std::vector<float> Value::floats(std::string_view key) const {
  if (!is_array() || elem_ != ValueType::F32) array_error(key, *this, "an array of f32");
  std::vector<float> out(static_cast<size_t>(count_));
  if (count_ > 0) std::memcpy(out.data(), raw_.data(), raw_.size());
  return out;
}

std::vector<int64_t> Value::ints(std::string_view key) const {
  if (!is_array() || !(is_signed_int(elem_) || is_unsigned_int(elem_)))
    array_error(key, *this, "an array of integers");
  const size_t sz = scalar_size(elem_);
  std::vector<int64_t> out(static_cast<size_t>(count_));
  for (size_t i = 0; i < out.size(); ++i) {
    const uint64_t b = rd_le(raw_.data() + i * sz, sz);
    if (elem_ == ValueType::U64 && b > uint64_t(INT64_MAX))
      throw FormatError(cat("gguf: key ", quoted(key), ": element ", i, " is ", b, ", too large"));
    out[i] = is_signed_int(elem_) ? sign_extend(b, sz) : int64_t(b);
  }
  return out;
}

const std::vector<uint8_t>& Value::raw(std::string_view key, ValueType elem) const {
  if (!is_array() || elem_ != elem) {
    const std::string want = cat("an array of ", value_type_name(elem));
    array_error(key, *this, want.c_str());
  }
  return raw_;
}

const std::vector<Value>& Value::arrays(std::string_view key) const {
  if (!is_array() || elem_ != ValueType::Array) array_error(key, *this, "an array of arrays");
  return items_;
}

bool Value::operator==(const Value& o) const {
  return type_ == o.type_ && elem_ == o.elem_ && bits_ == o.bits_ && count_ == o.count_ &&
         str_ == o.str_ && raw_ == o.raw_ && strs_ == o.strs_ && items_ == o.items_;
}

// ---- parsing ------------------------------------------------------------------------

class Parser {
 public:
  Parser(const uint8_t* p, size_t size, const GgufLimits& lim) : p_(p), size_(size), lim_(lim) {}

  File run() {
    File f;
    if (size_ == 0) throw FormatError("gguf: empty file");
    if (size_ < 4 || rd_le(p_, 4) != kGgufMagic) {
      if (size_ < 4 && std::memcmp(p_, "GGUF", size_) == 0)
        throw FormatError(cat("gguf: truncated: ", size_, " bytes, shorter than the header"));
      throw FormatError("gguf: not a GGUF file (bad magic, expected \"GGUF\")");
    }
    pos_ = 4;
    const uint32_t version = uint32_t(u(4, "the version"));
    if (version == 1)
      throw FormatError(
          "gguf: GGUF version 1 is not supported (it predates 64-bit counts); this build reads v2 "
          "and v3");
    if (version != 2 && version != 3) {
      if (version != 0 && (version & 0xFFFFu) == 0)
        throw FormatError(cat("gguf: version field 0x", std::hex, version,
                              " looks byte-swapped: big-endian GGUF files are not supported"));
      throw FormatError(
          cat("gguf: unsupported GGUF version ", version, " (this build reads v2 and v3)"));
    }
    f.version_ = version;
    const uint64_t n_tensors = u(8, "the tensor count");
    const uint64_t n_kv = u(8, "the metadata count");
    if (n_tensors > lim_.max_tensors)
      throw FormatError(cat("gguf: ", n_tensors, " tensors, above the limit of ", lim_.max_tensors,
                            " (GgufLimits::max_tensors)"));
    if (n_kv > lim_.max_metadata)
      throw FormatError(cat("gguf: ", n_kv, " metadata entries, above the limit of ",
                            lim_.max_metadata, " (GgufLimits::max_metadata)"));

    // Each entry takes at least 8 + 4 + 1 bytes: the count cannot promise
    // more entries than the file could hold, so reserve() is bounded.
    if (n_kv > (size_ - pos_) / 13)
      throw FormatError(cat("gguf: truncated: ", n_kv, " metadata entries do not fit"));
    f.kv_.reserve(size_t(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key =
          str(lim_.max_key_bytes, cat("metadata key ", i), "GgufLimits::max_key_bytes");
      if (key.empty()) throw FormatError(cat("gguf: metadata key ", i, " is empty"));
      if (f.kv_index_.count(key) != 0) throw FormatError(cat("gguf: duplicate key ", quoted(key)));
      const uint32_t type = uint32_t(u(4, cat("the type of key ", quoted(key))));
      if (!value_type_known(type))
        throw FormatError(cat("gguf: key ", quoted(key), " has unknown value type ", type));
      Value v = value(ValueType(type), key, 0);
      f.kv_index_.emplace(key, f.kv_.size());
      f.kv_.push_back({std::move(key), std::move(v)});
    }

    if (const auto it = f.kv_index_.find(kAlignmentKey); it != f.kv_index_.end()) {
      const Value& a = f.kv_[it->second].value;
      if (a.type() != ValueType::U32) kind_error(kAlignmentKey, a.type(), "u32");
      const uint64_t al = a.as_uint(kAlignmentKey);
      if (!power_of_two(al) || al > lim_.max_alignment)
        throw FormatError(cat("gguf: key '", kAlignmentKey, "' is ", al,
                              ", expected a power of two <= ", lim_.max_alignment));
      f.alignment_ = uint32_t(al);
    }

    // Each tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes.
    if (n_tensors > (size_ - pos_) / 32)
      throw FormatError(cat("gguf: truncated: ", n_tensors, " tensor infos do not fit"));
    f.tensors_.reserve(size_t(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
      TensorInfo t;
      t.name = str(lim_.max_tensor_name_bytes, cat("the name of tensor ", i),
                   "GgufLimits::max_tensor_name_bytes");
      if (t.name.empty()) throw FormatError(cat("gguf: tensor ", i, " has an empty name"));
      const std::string q = "gguf: tensor " + quoted(t.name);
      if (f.tensor_index_.count(t.name) != 0)
        throw FormatError(cat("gguf: duplicate tensor name ", quoted(t.name)));
      t.n_dims = uint32_t(u(4, "the dimension count of tensor " + quoted(t.name)));
      if (t.n_dims < 1 || t.n_dims > uint32_t(kMaxDims))
        throw FormatError(cat(q, " has ", t.n_dims, " dimensions, expected 1 to ", kMaxDims));
      int64_t total = 1;
      for (uint32_t d = 0; d < t.n_dims; ++d) {
        const uint64_t ne = u(8, cat("dimension ", d, " of tensor ", quoted(t.name)));
        if (ne > uint64_t(lim_.max_tensor_elements) ||
            (ne != 0 && uint64_t(total) > uint64_t(lim_.max_tensor_elements) / ne))
          throw FormatError(cat(q, " has more than ", lim_.max_tensor_elements,
                                " elements (GgufLimits::max_tensor_elements)"));
        t.ne[d] = int64_t(ne);
        total *= int64_t(ne);
      }
      const uint32_t type = uint32_t(u(4, "the type of tensor " + quoted(t.name)));
      if (!type_supported(type))
        throw FormatError(
            cat(q, " has type ", type_name(type),
                ", which this build does not read (supported: ", supported_type_list(), ")"));
      t.type = GgmlType(type);
      if (t.ne[0] % block_values(t.type) != 0)
        throw FormatError(cat(q, " (", type_name(t.type), ") has rows of ", t.ne[0],
                              " values, not a multiple of the block size ", block_values(t.type)));
      t.bytes = bytes_for(t.type, total);  // total <= 2^40: no overflow
      t.offset = u(8, "the data offset of tensor " + quoted(t.name));
      if (t.offset % f.alignment_ != 0)
        throw FormatError(cat(q, ": data offset ", t.offset, " is not a multiple of the alignment ",
                              f.alignment_));
      f.tensor_index_.emplace(t.name, f.tensors_.size());
      f.tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    uint64_t data = 0;
    if (!align_up(pos_, f.alignment_, &data))
      throw FormatError("gguf: data section offset overflows");
    f.data_offset_ = data;
    std::vector<size_t> order(f.tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const TensorInfo &x = f.tensors_[a], &y = f.tensors_[b];
      return x.offset != y.offset ? x.offset < y.offset : x.bytes < y.bytes;
    });
    const TensorInfo* prev = nullptr;
    for (size_t i : order) {
      const TensorInfo& t = f.tensors_[i];
      const uint64_t room = data <= size_ ? size_ - data : 0;
      if (data > size_ || t.offset > room || t.bytes > room - t.offset)
        throw FormatError(cat("gguf: tensor ", quoted(t.name), ": data offset ", t.offset, " + ",
                              t.bytes,
                              " bytes is past the end of the file (the data section holds ", room,
                              " bytes from byte ", data, ")"));
      if (prev != nullptr && t.bytes > 0 && t.offset < prev->offset + prev->bytes)
        throw FormatError(cat("gguf: tensor ", quoted(t.name), " (bytes ", t.offset, " to ",
                              t.offset + t.bytes, " of the data section) overlaps tensor ",
                              quoted(prev->name), " (bytes ", prev->offset, " to ",
                              prev->offset + prev->bytes, ")"));
      if (t.bytes > 0) prev = &t;
    }
    // ggml reads every tensor with its padding to the alignment, the last one
    // included, so a file cut inside that padding does not load there either.
    if (prev != nullptr) {
      uint64_t end = 0;
      if (!align_up(prev->offset + prev->bytes, f.alignment_, &end) || end > size_ - data)
        throw FormatError(
            cat("gguf: truncated: the data section ends inside the padding after tensor ",
                quoted(prev->name), " (", data + end, " bytes needed, the file has ", size_, ")"));
    }
    f.size_ = size_;
    return f;
  }

 private:
  void need(uint64_t n, const std::string& what) {
    if (n > size_ - pos_)
      throw FormatError(cat("gguf: truncated: ", what, " needs ", n, " bytes at byte ", pos_,
                            ", the file has ", size_));
  }
  uint64_t u(size_t n, const std::string& what) {
    need(n, what);
    const uint64_t v = rd_le(p_ + pos_, n);
    pos_ += n;
    return v;
  }
  std::string str(uint64_t max, const std::string& what, const char* limit_name) {
    const uint64_t len = u(8, "the length of " + what);
    if (len > max)
      throw FormatError(cat("gguf: ", what, " is ", len, " bytes long, above the limit of ", max,
                            " (", limit_name, ")"));
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }
  void count_values(uint64_t n, std::string_view key) {
    if (n > lim_.max_metadata_values - values_)
      throw FormatError(cat("gguf: key ", quoted(key), ": the metadata holds more than ",
                            lim_.max_metadata_values, " values (GgufLimits::max_metadata_values)"));
    values_ += n;
  }

  Value value(ValueType type, const std::string& key, uint32_t depth) {
    const std::string what = "the value of key " + quoted(key);
    if (type == ValueType::String) {
      count_values(1, key);
      return Value::string(str(lim_.max_string_bytes, what, "GgufLimits::max_string_bytes"));
    }
    if (type != ValueType::Array) {
      count_values(1, key);
      const size_t sz = scalar_size(type);
      const uint64_t bits = u(sz, what);
      if (type == ValueType::Bool && bits > 1)
        throw FormatError(cat("gguf: key ", quoted(key), ": a bool must be 0 or 1, got ", bits));
      return Value::make_scalar(type, bits);
    }
    if (depth >= lim_.max_array_depth)
      throw FormatError(cat("gguf: key ", quoted(key), ": arrays nest deeper than ",
                            lim_.max_array_depth, " (GgufLimits::max_array_depth)"));
    const uint32_t elem = uint32_t(u(4, "the element type of key " + quoted(key)));
    if (!value_type_known(elem))
      throw FormatError(
          cat("gguf: key ", quoted(key), " is an array of unknown value type ", elem));
    const uint64_t n = u(8, "the array length of key " + quoted(key));
    if (n > lim_.max_array_elements)
      throw FormatError(cat("gguf: key ", quoted(key), " is an array of ", n,
                            " elements, above the limit of ", lim_.max_array_elements,
                            " (GgufLimits::max_array_elements)"));
    const ValueType et = ValueType(elem);
    // The smallest encoding of one element: its bytes, a string's length, or
    // an array's element type and length. The whole array must fit in what
    // is left of the file before anything is allocated for it.
    const size_t min_bytes = et == ValueType::String  ? 8
                             : et == ValueType::Array ? 12
                                                      : scalar_size(et);
    if (n > (size_ - pos_) / min_bytes)
      throw FormatError(cat("gguf: truncated: key ", quoted(key), " is an array of ", n, " ",
                            value_type_name(et), " that does not fit in the ", size_ - pos_,
                            " bytes left"));
    count_values(n, key);
    if (et == ValueType::String) {
      std::vector<std::string> v;
      v.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i)
        v.push_back(str(lim_.max_string_bytes, cat("element ", i, " of key ", quoted(key)),
                        "GgufLimits::max_string_bytes"));
      return Value::array_strings(std::move(v));
    }
    if (et == ValueType::Array) {
      std::vector<Value> v;
      v.reserve(size_t(n));
      // Elements carry no type tag of their own: each is an array value
      // (element type, length, elements), as gguf-py writes nested arrays.
      for (uint64_t i = 0; i < n; ++i) v.push_back(value(ValueType::Array, key, depth + 1));
      return Value::array_of_arrays(std::move(v));
    }
    const size_t bytes = size_t(n) * min_bytes;
    std::vector<uint8_t> raw(p_ + pos_, p_ + pos_ + bytes);
    pos_ += bytes;
    if (et == ValueType::Bool)
      for (size_t i = 0; i < raw.size(); ++i)
        if (raw[i] > 1)
          throw FormatError(cat("gguf: key ", quoted(key), ": bool element ", i, " is ",
                                int(raw[i]), ", expected 0 or 1"));
    return Value::array_raw(et, n, std::move(raw));
  }

  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t values_ = 0;
  const GgufLimits& lim_;
};

File File::parse(std::shared_ptr<const void> owner, const uint8_t* p, size_t size,
                 const GgufLimits& limits) {
  if (uint64_t(size) > limits.max_file_bytes)
    throw FormatError(cat("gguf: file of ", size, " bytes is above the limit of ",
                          limits.max_file_bytes, " bytes (GgufLimits::max_file_bytes)"));
  File f = Parser(p, size, limits).run();
  f.owner_ = std::move(owner);
  f.base_ = p;
  return f;
}

File File::view(const void* data, size_t size, const GgufLimits& limits) {
  if (data == nullptr && size > 0)
    throw std::invalid_argument("gguf: File::view of null data with a nonzero size");
  return parse(nullptr, static_cast<const uint8_t*>(data), size, limits);
}

File File::copy(const void* data, size_t size, const GgufLimits& limits) {
  if (data == nullptr && size > 0)
    throw std::invalid_argument("gguf: File::copy of null data with a nonzero size");
  if (uint64_t(size) > limits.max_file_bytes)
    throw FormatError(cat("gguf: file of ", size, " bytes is above the limit of ",
                          limits.max_file_bytes, " bytes (GgufLimits::max_file_bytes)"));
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(data),
                                                    static_cast<const uint8_t*>(data) + size);
  const uint8_t* p = buf->data();
  return parse(std::move(buf), p, size, limits);
}

File File::open(const std::string& path, const GgufLimits& limits) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw std::runtime_error(cat("cannot read '", path, "': ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw std::runtime_error(cat("cannot read '", path, "': ", std::strerror(errno)));
  if (!S_ISREG(st.st_mode))
    throw std::runtime_error(cat("cannot read '", path, "': not a regular file"));
  const uint64_t size = uint64_t(st.st_size);
  try {
    if (size > limits.max_file_bytes)
      throw FormatError(cat("gguf: file of ", size, " bytes is above the limit of ",
                            limits.max_file_bytes, " bytes (GgufLimits::max_file_bytes)"));
    if (size == 0) throw FormatError("gguf: empty file");
    void* m = ::mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
      throw std::runtime_error(cat("cannot map '", path, "': ", std::strerror(errno)));
    const size_t len = size_t(size);
    std::shared_ptr<const void> owner(
        m, [len](const void* q) { ::munmap(const_cast<void*>(q), len); });
    return parse(std::move(owner), static_cast<const uint8_t*>(m), len, limits);
  } catch (const FormatError& e) {
    throw FormatError(cat("'", path, "': ", e.what()));
  }
}

const Value* File::find(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const Value& File::get(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) throw FormatError(cat("gguf: missing key ", quoted(key)));
  return *v;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (t == nullptr) throw FormatError(cat("gguf: missing tensor ", quoted(name)));
  return *t;
}

// ---- writing ----------------------------------------------------------------------------

namespace {

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put_le(out, s.size(), 8);
  out.insert(out.end(), s.begin(), s.end());
}

}  // namespace

class Serializer {
 public:
  static void value(std::vector<uint8_t>& out, const Value& v) {
    switch (v.type_) {
      case ValueType::String: put_string(out, v.str_); return;
      case ValueType::Array:
        put_le(out, uint32_t(v.elem_), 4);
        put_le(out, v.count_, 8);
        if (v.elem_ == ValueType::String) {
          for (const std::string& s : v.strs_) put_string(out, s);
        } else if (v.elem_ == ValueType::Array) {
          for (const Value& x : v.items_) value(out, x);
        } else {
          out.insert(out.end(), v.raw_.begin(), v.raw_.end());
        }
        return;
      default: put_le(out, v.bits_, scalar_size(v.type_)); return;
    }
  }
  // Checks a value against the limits (for the writer).
  static void check(const Value& v, const std::string& key, const GgufLimits& lim, uint32_t depth) {
    const auto fail = [&](const std::string& why) {
      throw std::invalid_argument(cat("gguf: key ", quoted(key), ": ", why));
    };
    if (v.type_ == ValueType::String && v.str_.size() > lim.max_string_bytes)
      fail(cat("a string of ", v.str_.size(), " bytes is above GgufLimits::max_string_bytes"));
    if (!v.is_array()) return;
    if (depth >= lim.max_array_depth) fail("arrays nest too deep (GgufLimits::max_array_depth)");
    if (v.count_ > lim.max_array_elements)
      fail("too many array elements (GgufLimits::max_array_elements)");
    for (const std::string& s : v.strs_)
      if (s.size() > lim.max_string_bytes) fail("an element is above GgufLimits::max_string_bytes");
    for (const Value& x : v.items_) check(x, key, lim, depth + 1);
  }
};

void Writer::set(std::string key, Value value) {
  if (key.empty()) throw std::invalid_argument("gguf: empty metadata key");
  if (key.size() > limits_.max_key_bytes)
    throw std::invalid_argument(
        cat("gguf: key ", quoted(key), " is above GgufLimits::max_key_bytes"));
  if (kv_index_.count(key) != 0)
    throw std::invalid_argument(cat("gguf: duplicate key ", quoted(key)));
  if (kv_.size() >= limits_.max_metadata)
    throw std::invalid_argument(
        cat("gguf: cannot add key ", quoted(key), ": GgufLimits::max_metadata reached"));
  Serializer::check(value, key, limits_, 0);
  uint32_t alignment = alignment_;
  if (key == kAlignmentKey) {
    if (value.type() != ValueType::U32)
      throw std::invalid_argument("gguf: general.alignment must be a u32");
    const uint64_t a = value.as_uint(key);
    if (!power_of_two(a) || a > limits_.max_alignment)
      throw std::invalid_argument(
          cat("gguf: general.alignment must be a power of two <= ", limits_.max_alignment));
    if (!tensors_.empty())
      throw std::invalid_argument("gguf: set general.alignment before adding tensors");
    alignment = uint32_t(a);
  }
  kv_index_.emplace(key, kv_.size());
  kv_.push_back({std::move(key), std::move(value)});
  alignment_ = alignment;
}

void Writer::add_tensor(std::string name, GgmlType type, const std::vector<int64_t>& ne,
                        std::vector<uint8_t> data) {
  const std::string q = "gguf: tensor " + quoted(name);
  if (name.empty()) throw std::invalid_argument("gguf: empty tensor name");
  if (name.size() > limits_.max_tensor_name_bytes)
    throw std::invalid_argument(cat(q, ": the name is ", name.size(), " bytes, above the limit of ",
                                    limits_.max_tensor_name_bytes,
                                    " (GgufLimits::max_tensor_name_bytes)"));
  if (tensor_index_.count(name) != 0)
    throw std::invalid_argument(cat("gguf: duplicate tensor name ", quoted(name)));
  if (tensors_.size() >= limits_.max_tensors)
    throw std::invalid_argument(cat(q, ": GgufLimits::max_tensors reached"));
  if (!type_supported(uint32_t(type)))
    throw std::invalid_argument(cat(q, ": unsupported type ", type_name(type)));
  if (ne.empty() || ne.size() > size_t(kMaxDims))
    throw std::invalid_argument(cat(q, ": ", ne.size(), " dimensions, expected 1 to ", kMaxDims));
  TensorInfo t;
  t.name = name;
  t.n_dims = uint32_t(ne.size());
  t.type = type;
  int64_t total = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 0 || ne[d] > limits_.max_tensor_elements ||
        (ne[d] != 0 && total > limits_.max_tensor_elements / ne[d]))
      throw std::invalid_argument(
          cat(q, ": dimension ", d, " = ", ne[d], " is negative or over the element limit"));
    t.ne[d] = ne[d];
    total *= ne[d];
  }
  if (t.ne[0] % block_values(type) != 0)
    throw std::invalid_argument(cat(q, " (", type_name(type), "): rows of ", t.ne[0],
                                    " values are not a multiple of the block size ",
                                    block_values(type)));
  t.bytes = bytes_for(type, total);
  if (data.size() != t.bytes)
    throw std::invalid_argument(
        cat(q, ": ", data.size(), " bytes of data, the shape needs ", t.bytes));
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({std::move(t), std::move(data)});
}

std::vector<uint8_t> Writer::finish() const {
  std::vector<uint8_t> out;
  put_le(out, kGgufMagic, 4);
  put_le(out, kGgufVersion, 4);
  put_le(out, tensors_.size(), 8);
  put_le(out, kv_.size(), 8);
  for (const KeyValue& kv : kv_) {
    put_string(out, kv.key);
    put_le(out, uint32_t(kv.value.type()), 4);
    Serializer::value(out, kv.value);
  }
  uint64_t offset = 0;
  for (const Pending& p : tensors_) {
    put_string(out, p.info.name);
    put_le(out, p.info.n_dims, 4);
    for (uint32_t d = 0; d < p.info.n_dims; ++d) put_le(out, uint64_t(p.info.ne[d]), 8);
    put_le(out, uint32_t(p.info.type), 4);
    put_le(out, offset, 8);
    align_up(offset + p.info.bytes, alignment_, &offset);
  }
  uint64_t end = 0;
  align_up(out.size(), alignment_, &end);
  out.resize(size_t(end), 0);
  out.reserve(size_t(end + offset));
  for (const Pending& p : tensors_) {
    out.insert(out.end(), p.data.begin(), p.data.end());
    align_up(out.size(), alignment_, &end);
    out.resize(size_t(end), 0);
  }
  return out;
}

void Writer::write_file(const std::string& path) const {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw std::runtime_error(cat("cannot write '", path, "': it exists and is not a regular file"));
  const std::vector<uint8_t> bytes = finish();
  io::write_file_atomic(path, bytes);
}

}  // namespace ternorm::gguf
