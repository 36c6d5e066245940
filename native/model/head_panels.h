// The output head's table packed once as gemm_f32_packed's B: forward reads
// op(B) = table^T (d x V), backward op(B) = table (V x d). Packing the 4 MB
// table of the shipped model cost a few % of every scoring and training call
// that ran it again; the table does not change while a user's adapter trains
// and its conditions are scored. The Model owns one (model.h) and drops it
// whenever its weights change (with the fingerprint), so the panels are never
// older than the table.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>

#include "../cpu/isa.h"
#include "../gemm/packed_b.h"

namespace ternorm::model {

struct TokenTable;

class HeadPanels {
 public:
  // Kept only up to this many table values (V x d): two fp32 copies of it,
  // 2 x 16 MB at most (the shipped model's 4096 x 256 takes 2 x 4 MB; the
  // 107 M config's 128 MB table is packed per call, as before).
  static constexpr int64_t kMaxValues = int64_t(4) << 20;

  HeadPanels() = default;
  HeadPanels(const HeadPanels&) {}  // a copy starts empty (its table is another)
  HeadPanels& operator=(const HeadPanels&) {
    clear();
    return *this;
  }

  // The panels of `table` (V x d) for the path ex.isa, packed on the first
  // call (threads of ex) and kept while the table and path stay the same;
  // null when the table is over kMaxValues. Safe to call from several threads.
  std::shared_ptr<const gemm::PackedB> forward(const TokenTable& table, int64_t V, int64_t d,
                                               const Exec& ex);
  std::shared_ptr<const gemm::PackedB> backward(const TokenTable& table, int64_t V, int64_t d,
                                                const Exec& ex);
  void clear();

 private:
  std::shared_ptr<const gemm::PackedB> get(bool transposed, const TokenTable& table, int64_t V,
                                           int64_t d, const Exec& ex);
  std::mutex mutex_;
  std::shared_ptr<const gemm::PackedB> panels_[2];  // [transposed]: forward, [0]: backward
  const void* source_ = nullptr;                    // the table they were packed from
  Isa isa_ = Isa::Scalar;
};

}  // namespace ternorm::model
