#include "container.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include "crc32c.h"
#include "message.h"

#if defined(_WIN32)
#error \
    "native/io uses POSIX file calls (open, fsync, rename); a Windows port needs its own write_file_atomic and read_file"
#endif

// Tensors are handed out in place as arrays of their C++ type, which is only
// the stored little-endian value on a little-endian host.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ternorm container maps tensors in place and supports little-endian hosts only"
#endif

namespace ternorm::io {
namespace {

// ---- small helpers ------------------------------------------------------------

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

uint16_t le16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
uint32_t le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }
void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}

// Round up without overflow; the callers have bounded v by a file size limit.
uint64_t align_up(uint64_t v, uint64_t a) { return v + (a - v % a) % a; }

uint64_t entry_bytes(uint64_t name_len) { return align_up(kEntryFixedBytes + name_len, 8); }

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

constexpr size_t kNoError = ~size_t(0);

// Offset of the first byte that does not start a well-formed UTF-8 sequence
// (overlong forms, surrogates and code points above U+10FFFF are ill-formed),
// or kNoError.
size_t utf8_error(const uint8_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      const uint8_t b = s[i + k];
      if ((b & 0xC0) != 0x80) return i;
      cp = cp << 6 | (b & 0x3Fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return i;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return i;
    i += len;
  }
  return kNoError;
}

// A section name: valid UTF-8 without C0/C1 control characters or DEL, so it
// can be printed in an error message as it is.
bool printable_utf8(const uint8_t* s, size_t n) {
  if (utf8_error(s, n) != kNoError) return false;
  for (size_t i = 0; i < n; ++i) {
    if (s[i] < 0x20 || s[i] == 0x7F) return false;
    if (s[i] == 0xC2 && i + 1 < n && s[i + 1] >= 0x80 && s[i + 1] <= 0x9F) return false;
  }
  return true;
}

// A name for an error message: quoted, cut to a readable length, with the
// bytes of a malformed name escaped as \xHH.
std::string quoted(std::string_view name) {
  constexpr size_t kShow = 96;
  const auto* p = reinterpret_cast<const uint8_t*>(name.data());
  std::string out = "'";
  if (printable_utf8(p, name.size())) {
    size_t n = std::min(name.size(), kShow);
    while (n < name.size() && n > 0 && (p[n] & 0xC0) == 0x80) --n;  // keep whole characters
    out.append(name.data(), n);
    out += "'";
    if (n < name.size()) out += cat("... (", name.size(), " bytes)");
    return out;
  }
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < std::min(name.size(), kShow); ++i) {
    const uint8_t c = p[i];
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += char(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  out += "'";
  if (name.size() > kShow) out += cat("... (", name.size(), " bytes)");
  return out;
}

void check_limits(const Limits& lim) {
  if (lim.max_name_bytes == 0 || lim.max_name_bytes > kNameBytesCap)
    throw std::invalid_argument(cat("Limits::max_name_bytes must be in [1, ", kNameBytesCap,
                                    "], got ", lim.max_name_bytes));
  if (lim.max_file_bytes < kHeaderBytes)
    throw std::invalid_argument(cat("Limits::max_file_bytes must be at least ", kHeaderBytes,
                                    ", got ", lim.max_file_bytes));
}

// Why a caller-supplied name is refused, or "" when it is fine.
std::string name_problem(std::string_view name, const Limits& lim) {
  if (name.empty()) return "section name is empty";
  if (name.size() > lim.max_name_bytes)
    return cat("section name ", quoted(name.substr(0, 32)), "... is ", name.size(),
               " bytes, above the limit of ", lim.max_name_bytes, " (Limits::max_name_bytes)");
  if (!printable_utf8(reinterpret_cast<const uint8_t*>(name.data()), name.size()))
    return cat("section name ", quoted(name), " is not valid UTF-8 or contains control characters");
  return "";
}

// 64-byte aligned storage for a file image.
std::shared_ptr<uint8_t> alloc_aligned(uint64_t size) {
  if (size > uint64_t(SIZE_MAX) - kPayloadAlign) throw std::bad_alloc();
  const size_t bytes = size_t(align_up(std::max<uint64_t>(size, 1), kPayloadAlign));
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kPayloadAlign, bytes));
  if (p == nullptr) throw std::bad_alloc();
  return std::shared_ptr<uint8_t>(p, [](uint8_t* q) { std::free(q); });
}

std::string sys_error(const std::string& what, const std::string& path, int err) {
  return cat("cannot ", what, " '", path, "': ", std::strerror(err));
}

// ---- atomic replacement ------------------------------------------------------

// Refuses a target that exists and is not a regular file (a device, FIFO,
// socket or directory, or a symlink to one): renaming a regular file over it
// would replace, say, /dev/null. A missing target or a dangling symlink is a
// new file; other stat errors are left to open() to report.
void check_replaceable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;
  if (S_ISREG(st.st_mode)) return;
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISFIFO(st.st_mode) ? "a FIFO"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a regular file";
  throw std::runtime_error(
      cat("cannot write '", path, "': it exists and is ", kind, ", not a regular file"));
}

// A temp file beside `path`; commit() fsyncs it and renames it over `path`.
// Destroyed uncommitted (an exception on the way), it removes the temp file.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path) {
    check_replaceable(path_);
    const auto nanos = std::chrono::steady_clock::now().time_since_epoch().count();
    for (int attempt = 0; attempt < 100; ++attempt) {
      char suffix[96];
      std::snprintf(suffix, sizeof suffix, ".tmp-%ld-%llx-%d", long(::getpid()),
                    static_cast<unsigned long long>(nanos), attempt);
      temp_ = path_ + suffix;
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) break;
    }
    throw std::runtime_error(sys_error("write", path_, errno) + " (creating the temp file " +
                             temp_ + ")");
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  void write(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
      if (w < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(sys_error("write", path_, errno));
      }
      p += w;
      n -= size_t(w);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) throw std::runtime_error(sys_error("write", path_, errno) + " (fsync)");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw std::runtime_error(sys_error("write", path_, errno) + " (close)");
    check_replaceable(path_);  // again: the target may have changed while we wrote
    if (::rename(temp_.c_str(), path_.c_str()) != 0)
      throw std::runtime_error(sys_error("replace", path_, errno));
    committed_ = true;
    // Make the rename itself durable. Best effort: the new file is complete
    // and in place either way, and some file systems refuse fsync on a
    // directory.
    const size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path_.substr(0, slash);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

// ---- names of things ------------------------------------------------------------

const char* file_kind_name(FileKind kind) {
  switch (kind) {
    case FileKind::Model: return "model";
    case FileKind::Adapter: return "adapter";
    case FileKind::EncodedAdapter: return "encoded adapter";
  }
  return "unknown";
}

namespace {
bool file_kind_known(uint32_t v) { return v >= 1 && v <= 3; }
const char* article(FileKind kind) { return kind == FileKind::Model ? "a" : "an"; }
}  // namespace

std::optional<FileKind> declared_kind(const uint8_t* p, size_t n) {
  if (p == nullptr || n < 16 || std::memcmp(p, kMagic, sizeof kMagic) != 0) return std::nullopt;
  const uint32_t kind = le32(p + 12);
  if (!file_kind_known(kind)) return std::nullopt;
  return FileKind(kind);
}

bool dtype_known(uint32_t v) { return v >= 1 && v <= 13; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::U8: return "u8";
    case DType::I8: return "i8";
    case DType::U16: return "u16";
    case DType::I16: return "i16";
    case DType::F16: return "f16";
    case DType::U32: return "u32";
    case DType::I32: return "i32";
    case DType::F32: return "f32";
    case DType::U64: return "u64";
    case DType::I64: return "i64";
    case DType::F64: return "f64";
    case DType::Utf8: return "utf8";
    case DType::Json: return "json";
  }
  return "unknown";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::U16:
    case DType::I16:
    case DType::F16: return 2;
    case DType::U32:
    case DType::I32:
    case DType::F32: return 4;
    case DType::U64:
    case DType::I64:
    case DType::F64: return 8;
    default: return 1;
  }
}

// ---- parsing ------------------------------------------------------------------

Container Container::view(const void* data, size_t size, const ParseOptions& options) {
  if (data == nullptr && size > 0)
    throw std::invalid_argument("Container::view: null data with a nonzero size");
  const auto addr = reinterpret_cast<uintptr_t>(data);
  if (addr % kPayloadAlign != 0)
    throw std::invalid_argument(cat("Container::view needs a 64-byte aligned buffer (this one is ",
                                    addr % kPayloadAlign,
                                    " bytes past a multiple of 64); use Container::copy"));
  return parse(nullptr, static_cast<const uint8_t*>(data), size, options);
}

Container Container::copy(const void* data, size_t size, const ParseOptions& options) {
  if (data == nullptr && size > 0)
    throw std::invalid_argument("Container::copy: null data with a nonzero size");
  check_limits(options.limits);
  if (uint64_t(size) > options.limits.max_file_bytes)
    throw FormatError(cat("ternorm file of ", size, " bytes is above the limit of ",
                          options.limits.max_file_bytes, " bytes (Limits::max_file_bytes)"));
  std::shared_ptr<uint8_t> buf = alloc_aligned(size);
  if (size > 0) std::memcpy(buf.get(), data, size);
  const uint8_t* p = buf.get();
  return parse(std::move(buf), p, size, options);
}

Container Container::parse(std::shared_ptr<const void> owner, const uint8_t* p, size_t size,
                           const ParseOptions& options) {
  const Limits& lim = options.limits;
  check_limits(lim);

  // Magic and version first: they are the only fields every version shares.
  if (size < sizeof kMagic || std::memcmp(p, kMagic, sizeof kMagic) != 0) {
    if (size == 0) throw FormatError("not a ternorm file (empty)");
    if (size < sizeof kMagic && std::memcmp(p, kMagic, size) == 0)
      throw FormatError(cat("truncated ternorm file: ", size, " bytes, shorter than the ",
                            kHeaderBytes, "-byte header"));
    std::string found;
    for (size_t i = 0; i < std::min<size_t>(size, 8); ++i)
      found += cat(i ? " " : "", hex32(p[i]).substr(8));
    throw FormatError(
        cat("not a ternorm file (bad magic: expected \"TERNORM\\0\", found bytes ", found, ")"));
  }
  if (size < 12)
    throw FormatError(cat("truncated ternorm file: ", size, " bytes, shorter than the ",
                          kHeaderBytes, "-byte header"));
  const uint32_t version = le32(p + 8);
  if (version != kFormatVersion)
    throw FormatError(cat("unsupported ternorm file: file format version ", version,
                          ", this build reads ", kFormatVersion));
  if (size < kHeaderBytes)
    throw FormatError(cat("truncated ternorm file: ", size, " bytes, shorter than the ",
                          kHeaderBytes, "-byte header"));
  const uint32_t header_crc = le32(p + 60), header_crc_now = crc32c(p, 60);
  if (header_crc != header_crc_now)
    throw FormatError(cat("corrupt ternorm file: header checksum mismatch (stored ",
                          hex32(header_crc), ", computed ", hex32(header_crc_now), ")"));
  const uint32_t kind_value = le32(p + 12);
  if (!file_kind_known(kind_value))
    throw FormatError(cat("unsupported ternorm file: unknown file kind ", kind_value,
                          " (this build reads 1 model, 2 adapter, 3 encoded adapter)"));
  const FileKind kind = FileKind(kind_value);
  if (options.expected_kind && *options.expected_kind != kind)
    throw FormatError(cat("expected ", article(*options.expected_kind), " ",
                          file_kind_name(*options.expected_kind), " file, got ", article(kind), " ",
                          file_kind_name(kind), " file"));
  const std::string what = cat(file_kind_name(kind), " file");
  const std::string corrupt = "corrupt " + what + ": ";
  if (!all_zero(p + 40, 20)) throw FormatError(corrupt + "reserved header bytes are not zero");

  const uint64_t file_size = le64(p + 16);
  const uint64_t table_bytes = le64(p + 24);
  const uint32_t count = le32(p + 32);
  const uint32_t table_crc = le32(p + 36);
  if (file_size > lim.max_file_bytes)
    throw FormatError(cat(what, " of ", file_size, " bytes is above the limit of ",
                          lim.max_file_bytes, " bytes (Limits::max_file_bytes)"));
  if (file_size < kHeaderBytes)
    throw FormatError(cat(corrupt, "the header records a file size of ", file_size,
                          " bytes, less than the header"));
  if (size > file_size)
    throw FormatError(cat(corrupt, size - file_size,
                          " bytes of trailing data after the recorded end of the file (", file_size,
                          " bytes)"));
  if (count > lim.max_sections)
    throw FormatError(cat(what, " has ", count, " sections, above the limit of ", lim.max_sections,
                          " (Limits::max_sections)"));
  if (table_bytes > file_size - kHeaderBytes)
    throw FormatError(cat(corrupt, "a section table of ", table_bytes,
                          " bytes does not fit in a file of ", file_size, " bytes"));
  if (table_bytes < uint64_t(count) * kEntryFixedBytes)
    throw FormatError(cat(corrupt, "a section table of ", table_bytes, " bytes cannot hold ", count,
                          " sections"));
  const uint64_t table_end = kHeaderBytes + table_bytes;
  if (size < table_end)
    throw FormatError(cat(what, " truncated: the section table needs bytes [", kHeaderBytes, ", ",
                          table_end, ") but the file has ", size, " bytes (the header records ",
                          file_size, ")"));
  const uint32_t table_crc_now = crc32c(p + kHeaderBytes, size_t(table_bytes));
  if (table_crc != table_crc_now)
    throw FormatError(cat(corrupt, "section table checksum mismatch (stored ", hex32(table_crc),
                          ", computed ", hex32(table_crc_now), ")"));

  // The table. Payloads start at the first multiple of 64 after it.
  const uint64_t data_start = align_up(table_end, kPayloadAlign);
  Container c;
  c.sections_.reserve(count);
  uint64_t pos = kHeaderBytes;
  for (uint32_t i = 0; i < count; ++i) {
    if (table_end - pos < kEntryFixedBytes)
      throw FormatError(cat(corrupt, "table entry ", i, " runs past the end of the section table"));
    const uint8_t* e = p + pos;
    Section s;
    s.offset = le64(e);
    s.bytes = le64(e + 8);
    const uint32_t type = le32(e + 16);
    s.crc = le32(e + 20);
    const uint16_t name_len = le16(e + 24);
    if (!all_zero(e + 26, 6))
      throw FormatError(cat(corrupt, "reserved bytes of table entry ", i, " are not zero"));
    if (name_len == 0)
      throw FormatError(cat(corrupt, "table entry ", i, " has an empty section name"));
    if (name_len > lim.max_name_bytes)
      throw FormatError(cat(what, ": the name of table entry ", i, " is ", name_len,
                            " bytes, above the limit of ", lim.max_name_bytes,
                            " (Limits::max_name_bytes)"));
    const uint64_t len = entry_bytes(name_len);
    if (len > table_end - pos)
      throw FormatError(cat(corrupt, "table entry ", i, " runs past the end of the section table"));
    s.name.assign(reinterpret_cast<const char*>(e + kEntryFixedBytes), name_len);
    if (!printable_utf8(e + kEntryFixedBytes, name_len))
      throw FormatError(cat(corrupt, "the name of table entry ", i, ", ", quoted(s.name),
                            ", is not valid UTF-8 or contains control characters"));
    if (!all_zero(e + kEntryFixedBytes + name_len, size_t(len - kEntryFixedBytes - name_len)))
      throw FormatError(cat(corrupt, "padding of table entry ", i, " is not zero"));
    const std::string q = quoted(s.name);
    if (!dtype_known(type))
      throw FormatError(cat(corrupt, "section ", q, " has an unknown element type ", type));
    s.type = DType(type);
    if (s.bytes % dtype_size(s.type) != 0)
      throw FormatError(cat(corrupt, "section ", q, " holds ", s.bytes,
                            " bytes, not a whole number of ", dtype_name(s.type), " elements (",
                            dtype_size(s.type), " bytes each)"));
    if (s.offset % kPayloadAlign != 0)
      throw FormatError(
          cat(corrupt, "section ", q, " starts at byte ", s.offset, ", not a multiple of 64"));
    if (s.offset < data_start)
      throw FormatError(cat(corrupt, "section ", q, " starts at byte ", s.offset,
                            ", inside the header or section table (payloads start at byte ",
                            data_start, ")"));
    if (s.offset > file_size || s.bytes > file_size - s.offset)
      throw FormatError(cat(
          corrupt, "section ", q, " needs bytes [", s.offset, ", ",
          s.bytes > UINT64_MAX - s.offset ? std::string("2^64 or more") : cat(s.offset + s.bytes),
          ") but the header records a file of ", file_size, " bytes"));
    if (!c.index_.emplace(s.name, c.sections_.size()).second)
      throw FormatError(cat(corrupt, "duplicate section name ", q));
    c.sections_.push_back(std::move(s));
    pos += len;
  }
  if (pos != table_end)
    throw FormatError(
        cat(corrupt, table_end - pos, " unused bytes at the end of the section table"));

  // Placement: no overlaps, and the file ends where the last payload ends.
  std::vector<size_t> order(c.sections_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Section &x = c.sections_[a], &y = c.sections_[b];
    return x.offset != y.offset ? x.offset < y.offset : x.bytes < y.bytes;
  });
  uint64_t end = data_start;
  const Section* prev = nullptr;
  for (size_t i : order) {
    const Section& s = c.sections_[i];
    if (prev != nullptr && s.offset < prev->offset + prev->bytes)
      throw FormatError(cat(corrupt, "section ", quoted(s.name), " at bytes [", s.offset, ", ",
                            s.offset + s.bytes, ") overlaps section ", quoted(prev->name),
                            " at bytes [", prev->offset, ", ", prev->offset + prev->bytes, ")"));
    end = std::max(end, s.offset + s.bytes);
    prev = &s;
  }
  if (file_size != end)
    throw FormatError(cat(corrupt, "the header records a file of ", file_size,
                          " bytes but its sections end at byte ", end));
  if (size < file_size) {
    for (size_t i : order) {
      const Section& s = c.sections_[i];
      if (s.offset + s.bytes > size)
        throw FormatError(cat(what, " truncated: section ", quoted(s.name), " needs bytes [",
                              s.offset, ", ", s.offset + s.bytes, ") but the file has ", size,
                              " bytes (the header records ", file_size, ")"));
    }
    throw FormatError(
        cat(what, " truncated: the header records ", file_size, " bytes but the file has ", size));
  }

  // Every byte outside header, table and payloads is zero padding.
  uint64_t cursor = table_end;
  for (size_t i : order) {
    const Section& s = c.sections_[i];
    if (!all_zero(p + cursor, size_t(s.offset - cursor)))
      throw FormatError(cat(corrupt, "nonzero padding bytes before section ", quoted(s.name)));
    cursor = s.offset + s.bytes;
  }
  if (cursor < data_start && !all_zero(p + cursor, size_t(data_start - cursor)))
    throw FormatError(corrupt + "nonzero padding bytes after the section table");

  for (Section& s : c.sections_) {
    s.data = p + s.offset;
    const uint32_t now = crc32c(s.data, size_t(s.bytes));
    if (now != s.crc)
      throw FormatError(cat(corrupt, "checksum mismatch in section ", quoted(s.name), " (stored ",
                            hex32(s.crc), ", computed ", hex32(now), ")"));
    if (s.type == DType::Utf8 || s.type == DType::Json) {
      const size_t bad = utf8_error(s.data, size_t(s.bytes));
      if (bad != kNoError)
        throw FormatError(cat(corrupt, "section ", quoted(s.name), " (", dtype_name(s.type),
                              ") is not valid UTF-8 at byte ", bad));
    }
  }

  c.owner_ = std::move(owner);
  c.base_ = p;
  c.size_ = size;
  c.kind_ = kind;
  return c;
}

// ---- access ---------------------------------------------------------------------

const Section* Container::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &sections_[it->second];
}

const Section& Container::section(std::string_view name) const {
  const Section* s = find(name);
  if (s == nullptr)
    throw FormatError(cat(file_kind_name(kind_), " file has no section ", quoted(name)));
  return *s;
}

const Section& Container::typed(std::string_view name, DType type, int64_t expected_count) const {
  if (expected_count < kAnyCount)
    throw std::invalid_argument(cat("expected element count for section ", quoted(name),
                                    " is negative (", expected_count, ")"));
  const Section& s = section(name);
  if (s.type != type)
    throw FormatError(cat(file_kind_name(kind_), " file: section ", quoted(name), " holds ",
                          dtype_name(s.type), " data, expected ", dtype_name(type)));
  if (expected_count != kAnyCount && s.count() != uint64_t(expected_count))
    throw FormatError(cat(file_kind_name(kind_), " file: section ", quoted(name), " has ",
                          s.count(), " ", dtype_name(s.type), " values, expected ",
                          expected_count));
  return s;
}

std::string_view Container::get_text(std::string_view name) const {
  const Section& s = typed(name, DType::Utf8, kAnyCount);
  return {reinterpret_cast<const char*>(s.data), size_t(s.bytes)};
}

std::string_view Container::get_json(std::string_view name) const {
  const Section& s = typed(name, DType::Json, kAnyCount);
  return {reinterpret_cast<const char*>(s.data), size_t(s.bytes)};
}

// ---- reading a file ---------------------------------------------------------------

Container read_file(const std::string& path, const ParseOptions& options) {
  check_limits(options.limits);
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw std::runtime_error(sys_error("read", path, errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw std::runtime_error(sys_error("read", path, errno));
  if (!S_ISREG(st.st_mode))
    throw std::runtime_error(cat("cannot read '", path, "': not a regular file"));
  const uint64_t size = uint64_t(st.st_size);
  if (size > options.limits.max_file_bytes)
    throw FormatError(cat("'", path, "' is ", size, " bytes, above the limit of ",
                          options.limits.max_file_bytes,
                          " bytes for a ternorm file (Limits::max_file_bytes)"));
  std::shared_ptr<uint8_t> buf = alloc_aligned(size);
  uint64_t got = 0;
  while (got < size) {
    const ssize_t r =
        ::read(fd, buf.get() + got, size_t(std::min<uint64_t>(size - got, uint64_t(1) << 30)));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(sys_error("read", path, errno));
    }
    if (r == 0) break;  // the file shrank while we read: parse what we have, it will say truncated
    got += uint64_t(r);
  }
  const uint8_t* p = buf.get();
  try {
    return Container::parse(std::move(buf), p, size_t(got), options);
  } catch (const FormatError& e) {
    throw FormatError(cat("'", path, "': ", e.what()));
  }
}

// ---- writing ------------------------------------------------------------------------

Writer::Writer(FileKind kind, const Limits& limits) : kind_(kind), limits_(limits) {
  if (!file_kind_known(uint32_t(kind)))
    throw std::invalid_argument(cat("unknown file kind ", uint32_t(kind)));
  check_limits(limits_);
}

uint64_t Writer::file_bytes() const {
  const uint64_t data_start = align_up(kHeaderBytes + table_bytes_, kPayloadAlign);
  if (sections_.empty()) return data_start;
  const uint64_t last = sections_.back().payload.size();
  return data_start + aligned_payload_bytes_ - align_up(last, kPayloadAlign) + last;
}

void Writer::add(std::string_view name, DType type, const void* data, size_t bytes) {
  const std::string problem = name_problem(name, limits_);
  if (!problem.empty()) throw std::invalid_argument(problem);
  const std::string q = quoted(name);
  if (index_.count(name) != 0) throw std::invalid_argument(cat("duplicate section name ", q));
  if (!dtype_known(uint32_t(type)))
    throw std::invalid_argument(cat("section ", q, ": unknown element type ", uint32_t(type)));
  if (bytes % dtype_size(type) != 0)
    throw std::invalid_argument(cat("section ", q, ": ", bytes, " bytes is not a whole number of ",
                                    dtype_name(type), " elements"));
  if (data == nullptr && bytes > 0)
    throw std::invalid_argument(cat("section ", q, ": null data with a nonzero size"));
  const auto* src = static_cast<const uint8_t*>(data);
  if (type == DType::Utf8 || type == DType::Json) {
    const size_t bad = utf8_error(src, bytes);
    if (bad != kNoError)
      throw std::invalid_argument(
          cat("section ", q, " (", dtype_name(type), ") is not valid UTF-8 at byte ", bad));
  }
  if (sections_.size() >= limits_.max_sections)
    throw std::invalid_argument(cat("cannot add section ", q, ": the file already has ",
                                    sections_.size(),
                                    " sections, the limit (Limits::max_sections)"));
  // The file size with this section last; bytes is bounded first so the sums
  // below cannot overflow.
  const uint64_t limit = limits_.max_file_bytes;
  const uint64_t table = table_bytes_ + entry_bytes(name.size());
  const uint64_t data_start = align_up(kHeaderBytes + table, kPayloadAlign);
  const uint64_t total =
      uint64_t(bytes) > limit ? limit + 1 : data_start + aligned_payload_bytes_ + bytes;
  if (total > limit)
    throw std::invalid_argument(cat("cannot add section ", q, " (", bytes,
                                    " bytes): the file would exceed the limit of ", limit,
                                    " bytes (Limits::max_file_bytes)"));
  Pending s{std::string(name), type, std::vector<uint8_t>(src, src + bytes), crc32c(src, bytes)};
  index_.emplace(s.name, sections_.size());
  sections_.push_back(std::move(s));
  table_bytes_ = table;
  aligned_payload_bytes_ += align_up(bytes, kPayloadAlign);
}

template <typename Sink>
void Writer::emit(Sink&& sink) const {
  const uint64_t table_end = kHeaderBytes + table_bytes_;
  std::vector<uint8_t> head(size_t(table_end), 0);
  std::vector<uint64_t> offsets(sections_.size());
  uint64_t pos = kHeaderBytes, cursor = align_up(table_end, kPayloadAlign);
  for (size_t i = 0; i < sections_.size(); ++i) {
    const Pending& s = sections_[i];
    offsets[i] = align_up(cursor, kPayloadAlign);
    cursor = offsets[i] + s.payload.size();
    uint8_t* e = head.data() + pos;
    put64(e, offsets[i]);
    put64(e + 8, s.payload.size());
    put32(e + 16, uint32_t(s.type));
    put32(e + 20, s.crc);
    put16(e + 24, uint16_t(s.name.size()));
    std::memcpy(e + kEntryFixedBytes, s.name.data(), s.name.size());
    pos += entry_bytes(s.name.size());
  }
  const uint64_t total = file_bytes();
  if (pos != table_end || cursor != total)
    throw std::logic_error("Writer: layout bookkeeping out of step");
  uint8_t* h = head.data();
  std::memcpy(h, kMagic, sizeof kMagic);
  put32(h + 8, kFormatVersion);
  put32(h + 12, uint32_t(kind_));
  put64(h + 16, total);
  put64(h + 24, table_bytes_);
  put32(h + 32, uint32_t(sections_.size()));
  put32(h + 36, crc32c(h + kHeaderBytes, size_t(table_bytes_)));
  put32(h + 60, crc32c(h, 60));
  sink(head.data(), head.size());

  static constexpr uint8_t kZeros[kPayloadAlign] = {};
  uint64_t written = table_end;
  for (size_t i = 0; i < sections_.size(); ++i) {
    sink(kZeros, size_t(offsets[i] - written));
    sink(sections_[i].payload.data(), sections_[i].payload.size());
    written = offsets[i] + sections_[i].payload.size();
  }
  if (sections_.empty()) sink(kZeros, size_t(total - written));
}

std::vector<uint8_t> Writer::finish() const {
  std::vector<uint8_t> out;
  out.reserve(size_t(file_bytes()));
  emit([&](const uint8_t* p, size_t n) { out.insert(out.end(), p, p + n); });
  return out;
}

void Writer::write_file(const std::string& path) const {
  AtomicFile f(path);
  emit([&](const uint8_t* p, size_t n) { f.write(p, n); });
  f.commit();
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  if (data == nullptr && size > 0)
    throw std::invalid_argument("write_file_atomic: null data with a nonzero size");
  AtomicFile f(path);
  f.write(data, size);
  f.commit();
}

// ---- fingerprints ---------------------------------------------------------------------

namespace {
Fingerprint fingerprint_of(std::vector<const Section*> secs) {
  std::sort(secs.begin(), secs.end(),
            [](const Section* a, const Section* b) { return a->name < b->name; });
  static constexpr char kDomain[] = "ternorm.fingerprint.v1";  // hashed with its terminating NUL
  Sha256 h;
  h.update(kDomain, sizeof kDomain);
  uint8_t buf[12];
  put64(buf, secs.size());
  h.update(buf, 8);
  for (const Section* s : secs) {
    put32(buf, uint32_t(s->name.size()));
    h.update(buf, 4);
    h.update(s->name.data(), s->name.size());
    put32(buf, uint32_t(s->type));
    put64(buf + 4, s->bytes);
    h.update(buf, 12);
    h.update(s->data, size_t(s->bytes));
  }
  return h.finish();
}
}  // namespace

Fingerprint fingerprint(const Container& c) {
  std::vector<const Section*> secs;
  for (const Section& s : c.sections()) secs.push_back(&s);
  return fingerprint_of(std::move(secs));
}

Fingerprint fingerprint(const Container& c, const std::vector<std::string>& names) {
  std::vector<const Section*> secs;
  for (const std::string& n : names) secs.push_back(&c.section(n));
  std::sort(secs.begin(), secs.end());
  if (std::adjacent_find(secs.begin(), secs.end()) != secs.end())
    throw std::invalid_argument("fingerprint: a section is named twice in the list");
  return fingerprint_of(std::move(secs));
}

void add_base_fingerprint(Writer& w, const Fingerprint& base) {
  w.add_u8(kBaseFingerprintSection, base.data(), base.size());
}

void check_base_fingerprint(const Container& file, const Fingerprint& base) {
  const std::string what = file_kind_name(file.kind());
  const Section* s = file.find(kBaseFingerprintSection);
  if (s == nullptr)
    throw FormatError(cat(what, " file records no base-model fingerprint (no section '",
                          kBaseFingerprintSection, "')"));
  if (s->type != DType::U8 || s->bytes != base.size())
    throw FormatError(cat(what, " file: section '", kBaseFingerprintSection, "' should hold ",
                          base.size(), " u8 values, it holds ", s->count(), " ",
                          dtype_name(s->type)));
  if (std::memcmp(s->data, base.data(), base.size()) != 0) {
    Fingerprint recorded;
    std::memcpy(recorded.data(), s->data, recorded.size());
    throw FormatError(cat("this ", what, " was trained on base model ",
                          to_hex(recorded).substr(0, 16), "... but the loaded base model is ",
                          to_hex(base).substr(0, 16),
                          "...; load the base model it was trained on, or retrain it on this one"));
  }
}

}  // namespace ternorm::io
