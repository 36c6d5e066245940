#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>

#include "harness.h"

namespace ternorm::test {

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

namespace {
int g_failures_in_test = 0;
}

void fail(const char* file, int line, const std::string& what) {
  if (g_failures_in_test < 10) std::printf("  FAIL %s:%d: %s\n", file, line, what.c_str());
  ++g_failures_in_test;
}

double max_rel_err(const float* a, const float* b, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e =
        std::fabs(double(a[i]) - double(b[i])) / std::max(1.0, std::fabs(double(b[i])));
    if (!(e <= worst)) worst = e;  // NaN propagates as the worst
  }
  return worst;
}

}  // namespace ternorm::test

int main(int argc, char** argv) {
  using namespace ternorm::test;
  const char* filter = argc > 1 ? argv[1] : nullptr;
  std::printf("ISA paths on this CPU:");
  for (ternorm::Isa isa : every_isa()) std::printf(" %s", ternorm::isa_name(isa));
  std::printf("\n");
  int passed = 0, failed = 0;
  for (const TestCase& t : registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    g_failures_in_test = 0;
    try {
      t.fn();
    } catch (const std::exception& e) {
      fail(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    }
    if (g_failures_in_test == 0) {
      ++passed;
      std::printf("ok   %s\n", t.name);
    } else {
      ++failed;
      std::printf("FAIL %s (%d failed checks)\n", t.name, g_failures_in_test);
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
