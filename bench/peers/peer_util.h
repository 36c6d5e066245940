// Shared by the llama.cpp peer harnesses (llama_peer.cpp, ggml_mul_mat.cpp):
// loading ggml's CPU backend from the prebuilt libraries, files, timing and a
// small JSON writer. Header-only; both tools are single translation units.
#pragma once
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ggml-backend.h"

namespace peer {

// Thrown for bad input or a failing library call; main() prints it as one line.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The prebuilt libggml loads its CPU backend as a plugin (one .so per CPU
// generation, the best one scored at load time) from a directory it is told;
// that directory is the one libggml itself was loaded from, found with dladdr
// so the harness keeps working wherever the package is installed.
inline std::string ggml_library_dir() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&ggml_backend_load_all_from_path), &info) || !info.dli_fname)
    throw Error("cannot locate the loaded libggml (dladdr failed)");
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

// Loads the CPU backend plugins; returns the CPU device or throws.
inline ggml_backend_dev_t load_cpu_backend() {
  const std::string dir = ggml_library_dir();
  ggml_backend_load_all_from_path(dir.c_str());
  ggml_backend_dev_t dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (!dev) throw Error("no ggml CPU backend could be loaded from " + dir);
  return dev;
}

// The CPU backend's feature list ("AVX2", "AVX512", ...), as the loaded plugin reports it.
inline std::vector<std::string> cpu_backend_features(ggml_backend_dev_t dev) {
  std::vector<std::string> out;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  auto get = reinterpret_cast<ggml_backend_get_features_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
  if (!get) return out;
  for (const ggml_backend_feature* f = get(reg); f && f->name; ++f)
    if (std::string(f->value) == "1")
      out.push_back(f->name);
    else
      out.push_back(std::string(f->name) + "=" + f->value);
  return out;
}

inline std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(std::string("cannot open ") + what + " '" + path + "'");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(std::string("cannot read ") + what + " '" + path + "'");
  return s;
}

// Fails with a clear line when path cannot be opened and read (before a library says less).
inline void read_file_head(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  char c;
  if (!in || !in.get(c))
    throw Error(std::string("cannot open or read ") + what + " '" + path + "'");
}

// Token ids as the tokenize subcommand prints them: decimal, whitespace-separated.
inline std::vector<int32_t> read_tokens(const std::string& path) {
  const std::string s = read_file(path, "tokens file");
  std::vector<int32_t> out;
  std::istringstream in(s);
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > INT32_MAX)
      throw Error("tokens file '" + path + "': token " + std::to_string(out.size()) +
                  " is not a non-negative 32-bit integer: '" + word + "'");
    out.push_back(int32_t(v));
  }
  return out;
}

inline void write_file(const std::string& path, const void* data, size_t bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot create '" + tmp + "'");
    out.write(static_cast<const char*>(data), std::streamsize(bytes));
    if (!out.flush()) throw Error("cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error("cannot rename '" + tmp + "' to '" + path + "'");
}

inline double now_s() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline int64_t parse_int(const std::string& s, const char* what, int64_t lo, int64_t hi) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < lo || v > hi)
    throw Error(std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got '" + s + "'");
  return v;
}

inline double parse_seconds(const std::string& s, const char* what) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
    throw Error(std::string(what) + " must be a positive number of seconds, got '" + s + "'");
  return v;
}

// A one-object-per-call JSON writer: enough for flat documents with arrays.
class Json {
 public:
  Json& key(const std::string& k) {
    sep();
    str(k);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  Json& begin_obj() { return open('{'); }
  Json& end_obj() { return close('}'); }
  Json& begin_arr() { return open('['); }
  Json& end_arr() { return close(']'); }
  Json& val(const std::string& s) {
    sep();
    str(s);
    return *this;
  }
  Json& val(const char* s) { return val(std::string(s)); }
  Json& val(bool b) {
    sep();
    out_ += b ? "true" : "false";
    return *this;
  }
  Json& val(int64_t v) {
    sep();
    out_ += std::to_string(v);
    return *this;
  }
  Json& val(int v) { return val(int64_t(v)); }
  Json& val(double v) {
    sep();
    if (!std::isfinite(v)) {
      out_ += "null";
    } else {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", v);
      out_ += buf;
    }
    return *this;
  }
  template <class T>
  Json& kv(const std::string& k, const T& v) {
    key(k);
    return val(v);
  }
  const std::string& str() const { return out_; }

 private:
  Json& open(char c) {
    sep();
    out_ += c;
    first_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }
  void sep() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_ && !out_.empty()) out_ += ',';
    first_ = false;
  }
  void str(const std::string& s) {
    out_ += '"';
    for (unsigned char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += char(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out_ += buf;
      } else {
        out_ += char(c);
      }
    }
    out_ += '"';
  }
  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace peer
