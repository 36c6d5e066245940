// A fixed set of worker threads that run one parallel region at a time.
// Kernels split their output rows into contiguous ranges, one per thread, so a
// result never depends on the thread count.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "isa.h"

namespace ternorm {

class ThreadPool {
 public:
  // n_threads counts the calling thread: a pool of 1 starts no worker.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(thread_index, n) on n = min(n_threads, size()) threads, the caller
  // being thread 0, and returns when all are done. Regions from different
  // callers are serialised. The first exception thrown by fn is rethrown.
  void run(int n_threads, const std::function<void(int, int)>& fn);

 private:
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one region at a time
  // Region state: written under mutex_ before generation_ is bumped, read
  // under mutex_ by the workers. Waiting spins briefly on the atomics before
  // it blocks, because a condition-variable wake-up costs tens of
  // microseconds, as much as a whole small kernel call.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int job_threads_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
};

// Hardware threads available to this process (at least 1).
int hardware_threads();

// Pieces per thread of a parallel_ranges call.
inline constexpr int kPiecesPerThread = 4;

// Splits [0, n) into contiguous pieces whose sizes are multiples of `grain`
// (but the last) and runs fn(begin, end) once for each, on ex's threads: a
// thread runs any number of pieces, in no fixed order, so fn must write only
// its own range's outputs and compute them the same whatever the range.
void parallel_ranges(const Exec& ex, int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t)>& fn);

// Like parallel_ranges but one contiguous range per thread: fn(slot, begin,
// end) with a distinct slot in [0, threads used), for callers that give each
// thread its own scratch. The split is fixed, so a late thread delays the call.
void parallel_split(const Exec& ex, int64_t n, int64_t grain,
                    const std::function<void(int, int64_t, int64_t)>& fn);

}  // namespace ternorm
