// Owning, 64-byte aligned array of trivially copyable T (zero-initialised).
//
// Large buffers (kMapMinBytes and up: workspaces, model parameters) are
// anonymous memory maps, which the kernel hands out as zero pages on first
// touch. Zeroing them here would fault every page in on the allocating thread
// before any work starts, a serial step that took a third of a 107 M-parameter
// evaluation's time at 2 threads; mapped lazily, the pages fault in where the
// kernels first write them, on every thread. Smaller buffers come from the
// heap (which reuses freed memory) and are zeroed here.
//
// A map starts on a 2 MB boundary, so that where transparent huge pages are
// on (madvise mode) the whole buffer can sit in huge pages: a decoding step
// streams ~40 MB of weights once per token, and with 4 KB pages every 4 KB
// of it costs a TLB miss. Callers that want that for a smaller buffer (the
// packed ternary weights of a small model) ask for Mapping::Huge.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define TERNORM_ALIGNED_BUFFER_MMAP 1
#endif

namespace ternorm {

// How a buffer is allocated: by size (above), or always mapped in huge pages.
enum class Mapping { BySize, Huge };

template <typename T>
class AlignedBuffer {
 public:
  static constexpr size_t kAlign = 64;
  static constexpr size_t kMapMinBytes = size_t(16) << 20;
  static constexpr size_t kHugePage = size_t(2) << 20;
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n, Mapping how = Mapping::BySize) : n_(n) {
    if (n == 0) return;
    const size_t bytes = (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
#ifdef TERNORM_ALIGNED_BUFFER_MMAP
    if (bytes >= kMapMinBytes || how == Mapping::Huge) {
      // Map one huge page more and trim the ends, to start on a 2 MB boundary.
      const size_t span = bytes + kHugePage;
      void* p = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      const uintptr_t at = reinterpret_cast<uintptr_t>(p);
      const uintptr_t start = (at + kHugePage - 1) / kHugePage * kHugePage;
      const size_t page = size_t(sysconf(_SC_PAGESIZE));
      const size_t kept = (bytes + page - 1) / page * page;
      if (start > at) munmap(p, start - at);
      if (at + span > start + kept)
        munmap(reinterpret_cast<void*>(start + kept), at + span - (start + kept));
#ifdef MADV_HUGEPAGE
      // Fewer faults and TLB misses where transparent huge pages are on.
      madvise(reinterpret_cast<void*>(start), kept, MADV_HUGEPAGE);
#endif
      data_ = reinterpret_cast<T*>(start);
      mapped_ = kept;
      return;
    }
#endif
    data_ = static_cast<T*>(std::aligned_alloc(kAlign, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(data_), 0, bytes);
  }
  ~AlignedBuffer() { release(); }
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), n_(o.n_), mapped_(o.mapped_) {
    o.data_ = nullptr;
    o.n_ = 0;
    o.mapped_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = o.data_;
      n_ = o.n_;
      mapped_ = o.mapped_;
      o.data_ = nullptr;
      o.n_ = 0;
      o.mapped_ = 0;
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return n_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  void release() {
#ifdef TERNORM_ALIGNED_BUFFER_MMAP
    if (mapped_ != 0) {
      munmap(static_cast<void*>(data_), mapped_);
      return;
    }
#endif
    std::free(data_);
  }

  T* data_ = nullptr;
  size_t n_ = 0;
  size_t mapped_ = 0;  // bytes mapped; 0 = from the heap
};

}  // namespace ternorm
