// ISA-free loop skeletons the SIMD kernel files share: a runtime count
// turned into a compile-time one, so a kernel templated on a tile or block
// size can be reached for every remainder without a hand-written switch.
// Included INSIDE an ISA file's anonymous namespace, after <cstdint>: every
// instantiation then stays local to that file and is compiled with its flags
// (DEVELOPERS.md, "Rules for ISA-specific C++ files"). No #include, no STL.
#pragma once

template <int N>
struct Count {
  static constexpr int value = N;
};

// body(Count<r>{}) for the runtime r when 1 <= r <= MAX; nothing otherwise.
template <int MAX, typename Body>
inline void with_count(int64_t r, Body&& body) {
  if constexpr (MAX >= 1) {
    if (r == MAX) return body(Count<MAX>{});
    with_count<MAX - 1>(r, body);
  }
}

// Walks [begin, end): body(Count<STEP>{}, i) for each whole step, then
// body(Count<r>{}, i) once for the remainder 0 < r < STEP.
template <int STEP, typename Body>
inline void by_steps(int64_t begin, int64_t end, Body&& body) {
  int64_t i = begin;
  for (; i + STEP <= end; i += STEP) body(Count<STEP>{}, i);
  with_count<STEP - 1>(end - i, [&](auto r) { body(r, i); });
}
