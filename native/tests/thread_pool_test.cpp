#include <atomic>
#include <stdexcept>

#include "cpu/thread_pool.h"
#include "harness.h"

using namespace ternorm;

TEST(thread_pool_covers_every_index_once) {
  ThreadPool pool(4);
  for (int threads : {1, 2, 3, 4, 7}) {
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(5), int64_t(16), int64_t(1000)}) {
      for (int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h = 0;
        Exec ex{Isa::Scalar, &pool, threads};
        parallel_ranges(ex, n, grain, [&](int64_t b, int64_t e) {
          CHECK(b % grain == 0);
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) CHECK_MSG(hits[size_t(i)] == 1, "n=" << n << " i=" << i);
      }
    }
  }
}

TEST(thread_pool_rethrows_worker_exception) {
  ThreadPool pool(2);
  CHECK_THROWS(pool.run(2, [](int t, int) {
    if (t == 1) throw std::runtime_error("boom");
  }));
  // The pool stays usable after an exception.
  std::atomic<int> count{0};
  pool.run(2, [&](int, int) { count++; });
  CHECK(count == 2);
}

TEST(isa_names_round_trip) {
  for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon})
    CHECK(parse_isa(isa_name(isa)) == isa);
  CHECK_THROWS(parse_isa("sse9"));
  CHECK(isa_supported(Isa::Scalar));
  CHECK(isa_supported(best_isa()));
}
