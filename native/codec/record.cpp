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

}  // namespace

uint64_t record_bytes(const EncodedGain& e) {
  norm::validate_gain(e.view());
  return kRecordHeaderBytes + 4 * uint64_t(e.params.size()) + uint64_t(e.payload.size());
}

uint64_t adapter_bytes(const std::vector<EncodedGain>& tensors) {
  uint64_t n = kAdapterHeaderBytes;
  for (const EncodedGain& e : tensors) n += record_bytes(e);
  return n;
}

void append_record(const EncodedGain& e, std::vector<uint8_t>& out) {
  check_encoding(e);
  out.reserve(out.size() + size_t(kRecordHeaderBytes + 4 * e.params.size() + e.payload.size()));
  put_u32(out, uint32_t(e.scheme));
  put_u32(out, uint32_t(e.d));
  put_u32(out, uint32_t(e.params.size()));
  for (float f : e.params) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    put_u32(out, b);
  }
  out.insert(out.end(), e.payload.begin(), e.payload.end());
}

std::vector<uint8_t> serialize_adapter(const std::vector<EncodedGain>& tensors) {
  if (tensors.empty() || tensors.size() > 65536)
    throw std::invalid_argument("serialize_adapter: " + std::to_string(tensors.size()) +
                                " tensors, expected 1..65536");
  std::vector<uint8_t> out;
  put_u32(out, kAdapterFormatVersion);
  put_u32(out, uint32_t(tensors.size()));
  for (size_t t = 0; t < tensors.size(); ++t) {
    try {
      append_record(tensors[t], out);
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
  const uint32_t id = get_u32(data), d = get_u32(data + 4), n_params = get_u32(data + 8);
  const norm::GainScheme scheme = static_cast<norm::GainScheme>(id);
  const norm::GainDecoder* dec = norm::find_gain_decoder(scheme);
  if (dec == nullptr)
    bad("unknown scheme id " + std::to_string(id) + ", expected one of " + known_schemes());
  const std::string what = std::string(dec->name) + ": ";
  if (d == 0 || d > uint64_t(kMaxD))
    bad(what + "d = " + std::to_string(d) + ", expected 0 < d <= " + std::to_string(kMaxD));
  const uint64_t left = size - kRecordHeaderBytes;
  if (uint64_t(n_params) * 4 > left)
    bad(what + "truncated: " + std::to_string(n_params) + " params need " +
        std::to_string(uint64_t(n_params) * 4) + " bytes but " + std::to_string(left) +
        " are left");

  EncodedGain e;
  e.scheme = scheme;
  e.d = d;
  e.params.resize(n_params);
  for (uint32_t i = 0; i < n_params; ++i)
    e.params[i] = get_f32(data + kRecordHeaderBytes + 4 * uint64_t(i));
  // The payload length follows from the scheme, d and the params: validate
  // them as validate_gain does before asking for it.
  norm::GainView v = e.view();
  for (uint32_t i = 0; i < n_params; ++i)
    if (!std::isfinite(e.params[i]))
      bad(what + "params[" + std::to_string(i) + "] is not finite, expected a finite float");
  if (!dec->params_ok(v))
    bad(what + std::to_string(n_params) + " params, expected " + dec->params_expected);
  const uint64_t payload = dec->payload_bytes(v);
  const uint64_t at = kRecordHeaderBytes + 4 * uint64_t(n_params);
  if (payload > size - at)
    bad(what + "truncated: the payload needs " + std::to_string(payload) +
        " bytes for d = " + std::to_string(d) + " but " + std::to_string(size - at) + " are left");
  e.payload.assign(data + at, data + at + payload);
  const uint64_t total = at + payload;
  if (consumed != nullptr)
    *consumed = size_t(total);
  else if (total != size)
    bad(what + std::to_string(size - total) + " bytes after the record, expected none");
  try {
    check_encoding(e);
  } catch (const std::invalid_argument& ex) {
    bad(ex.what());
  }
  return e;
}

std::vector<EncodedGain> parse_adapter(const uint8_t* data, size_t size, int64_t expected_tensors,
                                       int64_t expected_d) {
  if (data == nullptr && size > 0) bad_adapter("data is null");
  if (size < kAdapterHeaderBytes)
    bad_adapter("truncated: " + std::to_string(size) + " bytes, expected at least the " +
                std::to_string(kAdapterHeaderBytes) + "-byte header");
  const uint32_t version = get_u32(data), n = get_u32(data + 4);
  if (version != kAdapterFormatVersion)
    bad_adapter("format version " + std::to_string(version) + ", expected " +
                std::to_string(kAdapterFormatVersion));
  if (n == 0 || n > 65536) bad_adapter(std::to_string(n) + " tensors, expected 1..65536");
  if (expected_tensors >= 0 && int64_t(n) != expected_tensors)
    bad_adapter(std::to_string(n) + " tensors, expected " + std::to_string(expected_tensors));
  // Each record takes at least its header: refuse a count the bytes cannot hold
  // before reserving anything.
  if (uint64_t(n) * kRecordHeaderBytes > size - kAdapterHeaderBytes)
    bad_adapter("truncated: " + std::to_string(n) + " records need at least " +
                std::to_string(uint64_t(n) * kRecordHeaderBytes) + " bytes but " +
                std::to_string(size - kAdapterHeaderBytes) + " are left");
  std::vector<EncodedGain> out;
  out.reserve(n);
  size_t at = size_t(kAdapterHeaderBytes);
  for (uint32_t t = 0; t < n; ++t) {
    size_t used = 0;
    try {
      out.push_back(parse_record(data + at, size - at, &used));
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
  return out;
}

}  // namespace ternorm::codec
