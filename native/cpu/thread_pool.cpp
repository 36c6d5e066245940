#include "thread_pool.h"

#include <algorithm>
#include <chrono>

namespace ternorm {

namespace {

// How long a thread spins before it blocks: long enough to cover the gap
// between back-to-back kernel calls, short enough not to steal a shared core.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Whether a waiting thread spins first, from how long its recent waits took.
// Spinning pays when waits are short (back-to-back kernel calls on an idle
// machine). When they are long - the other thread descheduled on a busy
// machine, serial work between regions - the spin only burns CPU time: on a
// loaded 2-core machine it was a third of a bet user's CPU-seconds. Then the
// thread blocks at once, until short waits come back.
class SpinPolicy {
 public:
  bool spin() const { return avg_us_ < 0.5 * double(kSpin.count()); }
  void record(std::chrono::steady_clock::duration waited) {
    const double us = std::chrono::duration<double, std::micro>(waited).count();
    avg_us_ += (us - avg_us_) / 8;  // about the last 8 waits
  }

 private:
  double avg_us_ = 0;
};

// Waits for done(): spins up to kSpin when the policy says so, else (or after
// that) blocks in block(); records the wait.
template <typename Done, typename Block>
void wait_for(SpinPolicy& policy, Done done, Block block) {
  const auto t0 = std::chrono::steady_clock::now();
  if (policy.spin()) {
    const auto deadline = t0 + kSpin;
    for (int i = 0;; ++i) {
      if (done()) {
        policy.record(std::chrono::steady_clock::now() - t0);
        return;
      }
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) break;
      cpu_relax();
    }
  }
  block();
  policy.record(std::chrono::steady_clock::now() - t0);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  const int workers = std::max(1, n_threads) - 1;
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { worker_loop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  SpinPolicy policy;
  for (;;) {
    wait_for(
        policy, [&] { return stop_.load() || generation_.load(std::memory_order_acquire) != seen; },
        [&] {
          std::unique_lock<std::mutex> lock(mutex_);
          wake_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
        });
    const std::function<void(int, int)>* job;
    int n;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      seen = generation_.load();
      job = job_;
      n = job_threads_;
    }
    if (index >= n) continue;
    try {
      (*job)(index, n);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Taking the lock orders this wake-up after the caller's check of pending_.
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_.notify_one();
    }
  }
}

void ThreadPool::run(int n_threads, const std::function<void(int, int)>& fn) {
  const int n = std::max(1, std::min(n_threads, size()));
  if (n == 1) {
    fn(0, 1);
    return;
  }
  std::lock_guard<std::mutex> region(region_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_threads_ = n;
    pending_.store(n - 1);
    error_ = nullptr;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0, n);
  } catch (...) {
    mine = std::current_exception();
  }
  thread_local SpinPolicy policy;  // the callers' waits, per calling thread
  wait_for(
      policy, [&] { return pending_.load(std::memory_order_acquire) == 0; },
      [&] {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return pending_.load() == 0; });
      });
  std::lock_guard<std::mutex> lock(mutex_);
  job_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace {
// Threads a range of `chunks` grains may use on ex (1: run inline).
int threads_for(const Exec& ex, int64_t chunks) {
  return ex.pool
             ? static_cast<int>(std::min<int64_t>(chunks, std::min(ex.threads, ex.pool->size())))
             : 1;
}
}  // namespace

void parallel_ranges(const Exec& ex, int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int threads = threads_for(ex, chunks);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  // kPiecesPerThread pieces of whole grains per thread, taken in order from
  // a shared counter: a thread that starts late (woken from sleep, or
  // descheduled on a busy machine) or runs slower takes fewer pieces instead
  // of holding the others at the end of the region. Which thread runs a
  // piece never changes what the piece computes.
  const int64_t pieces = std::min<int64_t>(chunks, int64_t(threads) * kPiecesPerThread);
  std::atomic<int64_t> next{0};
  ex.pool->run(threads, [&](int, int) {
    for (int64_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < pieces;) {
      const int64_t c0 = chunks * p / pieces, c1 = chunks * (p + 1) / pieces;
      fn(c0 * grain, std::min(n, c1 * grain));
    }
  });
}

void parallel_split(const Exec& ex, int64_t n, int64_t grain,
                    const std::function<void(int, int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = (n + grain - 1) / grain;
  const int threads = threads_for(ex, chunks);
  if (threads <= 1) {
    fn(0, 0, n);
    return;
  }
  ex.pool->run(threads, [&](int t, int nt) {
    // Balanced split of whole grains: thread t gets chunks [c0, c1).
    const int64_t c0 = chunks * t / nt, c1 = chunks * (t + 1) / nt;
    const int64_t begin = c0 * grain, end = std::min(n, c1 * grain);
    if (begin < end) fn(t, begin, end);
  });
}

}  // namespace ternorm
