#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cpu/aligned_buffer.h"
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

// A thread that is slow (here: the caller sleeps in its first piece) must not
// hold the region: the other threads take the remaining pieces. Every index
// is still covered exactly once, in ranges of whole grains.
TEST(thread_pool_late_thread_takes_fewer_pieces) {
  ThreadPool pool(2);
  Exec ex{Isa::Scalar, &pool, 2};
  const int64_t n = 64, grain = 4;
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  for (auto& h : hits) h = 0;
  std::atomic<int> calls{0}, slow_calls{0};
  const std::thread::id caller = std::this_thread::get_id();
  parallel_ranges(ex, n, grain, [&](int64_t b, int64_t e) {
    CHECK(b % grain == 0);
    calls++;
    if (std::this_thread::get_id() == caller) {
      if (slow_calls++ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
  });
  for (int64_t i = 0; i < n; ++i) CHECK_MSG(hits[size_t(i)] == 1, "i=" << i);
  CHECK(calls == 2 * kPiecesPerThread);
  CHECK_MSG(slow_calls < calls, "the worker took no piece while the caller slept");
}

TEST(thread_pool_split_gives_each_thread_one_slot) {
  ThreadPool pool(4);
  for (int threads : {1, 2, 3, 4}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(100)}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n)), slots(4);
      for (auto& h : hits) h = 0;
      for (auto& h : slots) h = 0;
      Exec ex{Isa::Scalar, &pool, threads};
      parallel_split(ex, n, 2, [&](int slot, int64_t b, int64_t e) {
        CHECK(slot >= 0 && slot < threads);
        CHECK(b % 2 == 0);
        slots[size_t(slot)]++;
        for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
      });
      for (int64_t i = 0; i < n; ++i) CHECK_MSG(hits[size_t(i)] == 1, "n=" << n << " i=" << i);
      for (auto& h : slots) CHECK(h <= 1);
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

// Buffers of kMapMinBytes and up, and Mapping::Huge ones of any size, are
// mapped (on a 2 MB boundary) instead of allocated and zeroed; they must read
// as zero all the same, be writable, move and free like the small ones.
TEST(aligned_buffer_large_is_zero_and_moves) {
  struct Case {
    size_t bytes;
    Mapping how;
  };
  const size_t big = AlignedBuffer<float>::kMapMinBytes + 12;
  for (const Case& k : {Case{1000, Mapping::BySize}, Case{big, Mapping::BySize},
                        Case{1000, Mapping::Huge}, Case{(size_t(5) << 20) + 4, Mapping::Huge}}) {
    const size_t n = k.bytes / sizeof(float);
    AlignedBuffer<float> a(n, k.how);
    CHECK(reinterpret_cast<uintptr_t>(a.data()) % AlignedBuffer<float>::kAlign == 0);
#ifdef TERNORM_ALIGNED_BUFFER_MMAP
    if (k.bytes >= big || k.how == Mapping::Huge)
      CHECK(reinterpret_cast<uintptr_t>(a.data()) % AlignedBuffer<float>::kHugePage == 0);
#endif
    bool zero = true;
    for (size_t i = 0; i < n; i += 997) zero = zero && a[i] == 0.0f;
    CHECK(zero && a[n - 1] == 0.0f);
    a[n - 1] = 3.0f;
    AlignedBuffer<float> b(std::move(a));
    CHECK(a.data() == nullptr && a.size() == 0);
    CHECK(b.size() == n && b[n - 1] == 3.0f);
    AlignedBuffer<float> c(8);
    c = std::move(b);
    CHECK(c.size() == n && c[n - 1] == 3.0f);
  }
}
