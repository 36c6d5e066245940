// The serialised form of encodings (layout in codec.h and README.md): a
// record per gain vector, an adapter blob of records. Writing validates (a
// record the parser would refuse is never written); parsing is defensive:
// every length is checked against the bytes left before it is used, nothing
// is allocated from an unchecked count, and the decoded gains are checked too
// (indices, padding nibbles, finite values). Integers and floats are
// assembled byte by byte, so the format is little-endian on any host.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "codec.h"

namespace ternorm::codec {

namespace {

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
float get_f32(const uint8_t* p) {
  const uint32_t b = get_u32(p);
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

[[noreturn]] void bad(const std::string& msg) {
  throw std::invalid_argument("gain record: " + msg);
}
[[noreturn]] void bad_adapter(const std::string& msg) {
  throw std::invalid_argument("encoded adapter: " + msg);
}

std::string known_schemes() {
  std::string s;
  for (uint32_t id = 0; id < 256; ++id) {
    const norm::GainDecoder* dec = norm::find_gain_decoder(static_cast<norm::GainScheme>(id));
    if (dec == nullptr) continue;
    if (!s.empty()) s += ", ";
    s += std::to_string(id) + " (" + dec->name + ")";
  }
  return s;
}

// Full validation of an encoding: the view checks and a decode (which refuses
// bad indices, padding and non-finite gains).
void check_encoding(const EncodedGain& e) {
  if (e.d <= 0 || e.d > kMaxD)
    bad("d = " + std::to_string(e.d) + ", expected 0 < d <= " + std::to_string(kMaxD));
  std::vector<float> scratch(size_t(e.d));
  norm::decode_gain(e.view(), scratch.data());
}

void check_format(uint32_t format) {
  if (format != kAdapterFormatVersion && format != kCompactAdapterFormatVersion)
    throw std::invalid_argument("encoded adapter: format " + std::to_string(format) +
                                ", expected 1 or 2");
}

void put_params_and_payload(const EncodedGain& e, std::vector<uint8_t>& out) {
  for (float f : e.params) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    put_u32(out, b);
  }
  out.insert(out.end(), e.payload.begin(), e.payload.end());
}

// The params and payload of a record whose header (scheme id, d, n_params)
// has been read; data/size start after the header. Returns the bytes used.
size_t parse_body(uint32_t id, uint64_t d, uint64_t n_params, const uint8_t* data, size_t size,
                  EncodedGain& e) {
  const norm::GainScheme scheme = static_cast<norm::GainScheme>(id);
  const norm::GainDecoder* dec = norm::find_gain_decoder(scheme);
  if (dec == nullptr)
    bad("unknown scheme id " + std::to_string(id) + ", expected one of " + known_schemes());
  const std::string what = std::string(dec->name) + ": ";
  if (d == 0 || d > uint64_t(kMaxD))
    bad(what + "d = " + std::to_string(d) + ", expected 0 < d <= " + std::to_string(kMaxD));
  if (n_params * 4 > size)
    bad(what + "truncated: " + std::to_string(n_params) + " params need " +
        std::to_string(n_params * 4) + " bytes but " + std::to_string(size) + " are left");
  e.scheme = scheme;
  e.d = int64_t(d);
  e.params.resize(size_t(n_params));
  for (uint64_t i = 0; i < n_params; ++i) e.params[size_t(i)] = get_f32(data + 4 * i);
  // The payload length follows from the scheme, d and the params: validate
  // them as validate_gain does before asking for it.
  norm::GainView v = e.view();
  for (uint64_t i = 0; i < n_params; ++i)
    if (!std::isfinite(e.params[size_t(i)]))
      bad(what + "params[" + std::to_string(i) + "] is not finite, expected a finite float");
  if (!dec->params_ok(v))
    bad(what + std::to_string(n_params) + " params, expected " + dec->params_expected);
  const uint64_t payload = dec->payload_bytes(v);
  const uint64_t at = 4 * n_params;
  if (payload > size - at)
    bad(what + "truncated: the payload needs " + std::to_string(payload) +
        " bytes for d = " + std::to_string(d) + " but " + std::to_string(size - at) + " are left");
  e.payload.assign(data + at, data + at + payload);
  return size_t(at + payload);
}

}  // namespace

uint64_t record_bytes(const EncodedGain& e) {
  norm::validate_gain(e.view());
  return kRecordHeaderBytes + 4 * uint64_t(e.params.size()) + uint64_t(e.payload.size());
}

uint64_t compact_record_bytes(const EncodedGain& e) {
  norm::validate_gain(e.view());
  return kCompactRecordHeaderBytes + 4 * uint64_t(e.params.size()) + uint64_t(e.payload.size());
}

uint64_t adapter_bytes(const std::vector<EncodedGain>& tensors, uint32_t format) {
  check_format(format);
  uint64_t n = format == 1 ? kAdapterHeaderBytes : kCompactAdapterHeaderBytes;
  for (const EncodedGain& e : tensors) n += format == 1 ? record_bytes(e) : compact_record_bytes(e);
  return n;
}

void append_record(const EncodedGain& e, std::vector<uint8_t>& out) {
  check_encoding(e);
  out.reserve(out.size() + size_t(kRecordHeaderBytes + 4 * e.params.size() + e.payload.size()));
  put_u32(out, uint32_t(e.scheme));
  put_u32(out, uint32_t(e.d));
  put_u32(out, uint32_t(e.params.size()));
  put_params_and_payload(e, out);
}

std::vector<uint8_t> serialize_adapter(const std::vector<EncodedGain>& tensors, uint32_t format) {
  check_format(format);
  if (tensors.empty() || tensors.size() > 65536)
    throw std::invalid_argument("serialize_adapter: " + std::to_string(tensors.size()) +
                                " tensors, expected 1..65536");
  std::vector<uint8_t> out;
  put_u32(out, format);
  put_u32(out, uint32_t(tensors.size()));
  if (format == kCompactAdapterFormatVersion) put_u32(out, uint32_t(tensors[0].d));
  for (size_t t = 0; t < tensors.size(); ++t) {
    try {
      if (format == kAdapterFormatVersion) {
        append_record(tensors[t], out);
        continue;
      }
      const EncodedGain& e = tensors[t];
      if (e.d != tensors[0].d)
        throw std::invalid_argument("d = " + std::to_string(e.d) +
                                    ", expected every tensor's d to be tensor 0's, " +
                                    std::to_string(tensors[0].d) + " (format 2)");
      if (e.params.size() > 0xffff || uint32_t(e.scheme) > 0xff)
        throw std::invalid_argument("scheme or param count does not fit format 2");
      check_encoding(e);
      out.push_back(uint8_t(e.scheme));
      out.push_back(uint8_t(e.params.size()));
      out.push_back(uint8_t(e.params.size() >> 8));
      put_params_and_payload(e, out);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("serialize_adapter: tensor " + std::to_string(t) + ": " +
                                  e.what());
    }
  }
  return out;
}

EncodedGain parse_record(const uint8_t* data, size_t size, size_t* consumed) {
  if (data == nullptr && size > 0) bad("data is null, expected a record");
  if (size < kRecordHeaderBytes)
    bad("truncated: " + std::to_string(size) + " bytes, expected at least the " +
        std::to_string(kRecordHeaderBytes) + "-byte header");
  EncodedGain e;
  const uint64_t total =
      kRecordHeaderBytes + parse_body(get_u32(data), get_u32(data + 4), get_u32(data + 8),
                                      data + kRecordHeaderBytes, size - kRecordHeaderBytes, e);
  if (consumed != nullptr)
    *consumed = size_t(total);
  else if (total != size)
    bad(std::string(scheme_name(e.scheme)) + ": " + std::to_string(size - total) +
        " bytes after the record, expected none");
  try {
    check_encoding(e);
  } catch (const std::invalid_argument& ex) {
    bad(ex.what());
  }
  return e;
}

namespace {

// A format-2 record (u8 scheme id, u16 n_params, params, payload) of d gains.
EncodedGain parse_compact_record(const uint8_t* data, size_t size, uint64_t d, size_t* consumed) {
  if (size < kCompactRecordHeaderBytes)
    bad("truncated: " + std::to_string(size) + " bytes, expected at least the " +
        std::to_string(kCompactRecordHeaderBytes) + "-byte header");
  EncodedGain e;
  *consumed = size_t(kCompactRecordHeaderBytes) +
              parse_body(data[0], d, uint64_t(data[1]) | uint64_t(data[2]) << 8,
                         data + kCompactRecordHeaderBytes, size - kCompactRecordHeaderBytes, e);
  try {
    check_encoding(e);
  } catch (const std::invalid_argument& ex) {
    bad(ex.what());
  }
  return e;
}

}  // namespace

std::vector<EncodedGain> parse_adapter(const uint8_t* data, size_t size, int64_t expected_tensors,
                                       int64_t expected_d, uint32_t* format) {
  if (data == nullptr && size > 0) bad_adapter("data is null");
  if (size < kAdapterHeaderBytes)
    bad_adapter("truncated: " + std::to_string(size) + " bytes, expected at least the " +
                std::to_string(kAdapterHeaderBytes) + "-byte header");
  const uint32_t version = get_u32(data), n = get_u32(data + 4);
  if (version != kAdapterFormatVersion && version != kCompactAdapterFormatVersion)
    bad_adapter("format version " + std::to_string(version) + ", expected " +
                std::to_string(kAdapterFormatVersion) + " or " +
                std::to_string(kCompactAdapterFormatVersion));
  const bool compact = version == kCompactAdapterFormatVersion;
  const uint64_t header = compact ? kCompactAdapterHeaderBytes : kAdapterHeaderBytes;
  const uint64_t rec_header = compact ? kCompactRecordHeaderBytes : kRecordHeaderBytes;
  if (size < header)
    bad_adapter("truncated: " + std::to_string(size) + " bytes, expected at least the " +
                std::to_string(header) + "-byte header of format " + std::to_string(version));
  const uint64_t d = compact ? get_u32(data + 8) : 0;
  if (compact && (d == 0 || d > uint64_t(kMaxD)))
    bad_adapter("d = " + std::to_string(d) + ", expected 0 < d <= " + std::to_string(kMaxD));
  if (compact && expected_d >= 0 && int64_t(d) != expected_d)
    bad_adapter("d = " + std::to_string(d) + ", expected " + std::to_string(expected_d));
  if (n == 0 || n > 65536) bad_adapter(std::to_string(n) + " tensors, expected 1..65536");
  if (expected_tensors >= 0 && int64_t(n) != expected_tensors)
    bad_adapter(std::to_string(n) + " tensors, expected " + std::to_string(expected_tensors));
  // Each record takes at least its header: refuse a count the bytes cannot hold
  // before reserving anything.
  if (uint64_t(n) * rec_header > size - header)
    bad_adapter("truncated: " + std::to_string(n) + " records need at least " +
                std::to_string(uint64_t(n) * rec_header) + " bytes but " +
                std::to_string(size - header) + " are left");
  std::vector<EncodedGain> out;
  out.reserve(n);
  size_t at = size_t(header);
  for (uint32_t t = 0; t < n; ++t) {
    size_t used = 0;
    try {
      out.push_back(compact ? parse_compact_record(data + at, size - at, d, &used)
                            : parse_record(data + at, size - at, &used));
    } catch (const std::invalid_argument& e) {
      bad_adapter("tensor " + std::to_string(t) + ": " + e.what());
    }
    if (expected_d >= 0 && out.back().d != expected_d)
      bad_adapter("tensor " + std::to_string(t) + " has d = " + std::to_string(out.back().d) +
                  ", expected " + std::to_string(expected_d));
    at += used;
  }
  if (at != size)
    bad_adapter(std::to_string(size - at) + " bytes after the last record, expected none");
  if (format != nullptr) *format = version;
  return out;
}

}  // namespace ternorm::codec
