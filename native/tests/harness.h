// A small self-registering test harness for the C++ core: TEST(name) { ... },
// CHECK(cond) / CHECK_MSG(cond, msg) / CHECK_THROWS(expr), a deterministic
// RNG, and every_isa() to run a comparison on each path this CPU supports.
// main() (main.cpp) runs all tests, or those whose name contains argv[1], and
// closes with "N passed, N failed".
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/features.h"
#include "cpu/isa.h"

namespace ternorm::test {

// The default ISA path on the calling thread alone.
inline Exec one_thread() { return Exec{default_isa(), nullptr, 1}; }

struct TestCase {
  const char* name;
  void (*fn)();
};
std::vector<TestCase>& registry();
struct Register {
  Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

// Records a failed check in the running test (the test goes on, and fails).
void fail(const char* file, int line, const std::string& what);

// Deterministic generator (splitmix64) so every run sees the same inputs.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  float uniform(float lo, float hi) { return lo + float(uniform()) * (hi - lo); }
  int64_t below(int64_t n) { return int64_t(next() % uint64_t(n)); }
  float normal() {  // Box-Muller
    const double u1 = uniform() + 1e-300, u2 = uniform();
    return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

 private:
  uint64_t s_;
};

// Every ISA path this CPU can run, scalar first.
inline std::vector<Isa> every_isa() { return supported_isas(); }

// True when f throws an E whose message contains needle (else prints the message).
template <class E, class F>
bool throws_with(F&& f, const std::string& needle) {
  try {
    f();
  } catch (const E& e) {
    if (std::string(e.what()).find(needle) != std::string::npos) return true;
    std::printf("  (message was: %s)\n", e.what());
    return false;
  } catch (...) {
    return false;
  }
  return false;
}

// gamma(n) = n u / (1 - n u), u = 2^-24: the standard bound on the relative
// rounding error of a float sum or dot product of n terms (Higham).
inline double gamma_bound(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return double(n) * u / (1.0 - double(n) * u);
}

// Largest |a - b| / max(1, |b|) over n elements.
double max_rel_err(const float* a, const float* b, int64_t n);

// What fn throws: the message of an E (any std::exception by default),
// "<other exception>" for anything else, "<no exception>" when fn returns.
template <typename E = std::exception, typename F>
std::string thrown_message(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (...) {
    return "<other exception>";
  }
  return "<no exception>";
}
inline bool mentions(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace ternorm::test

#define TERNORM_CAT2(a, b) a##b
#define TERNORM_CAT(a, b) TERNORM_CAT2(a, b)
#define TEST(name)                                                                            \
  static void TERNORM_CAT(test_fn_, name)();                                                  \
  static ::ternorm::test::Register TERNORM_CAT(test_reg_, name)(#name,                        \
                                                                TERNORM_CAT(test_fn_, name)); \
  static void TERNORM_CAT(test_fn_, name)()

#define CHECK(cond)                                                \
  do {                                                             \
    if (!(cond)) ::ternorm::test::fail(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_MSG(cond, msg)                                \
  do {                                                      \
    if (!(cond)) {                                          \
      std::ostringstream os_;                               \
      os_ << #cond << ": " << msg;                          \
      ::ternorm::test::fail(__FILE__, __LINE__, os_.str()); \
    }                                                       \
  } while (0)

#define CHECK_THROWS(expr)                                                          \
  do {                                                                              \
    bool threw_ = false;                                                            \
    try {                                                                           \
      expr;                                                                         \
    } catch (const std::exception&) {                                               \
      threw_ = true;                                                                \
    }                                                                               \
    if (!threw_) ::ternorm::test::fail(__FILE__, __LINE__, "no exception: " #expr); \
  } while (0)
