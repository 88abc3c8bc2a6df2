// Counter-based uniforms for dropout masks (internal header): u(seed, i) depends only on
// its arguments, so masks are drawn in parallel, do not depend on the thread count, and
// a backward can regenerate a mask instead of storing it.
#pragma once
#include <cstdint>

namespace mambaseq::cpu {

inline uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// [0, 1) with 53 random bits; the seed is mixed first so that (seed, i) pairs do not alias.
inline double hash_uniform(uint64_t seed, uint64_t i) {
  const uint64_t z = mix64(mix64(seed + 0x632be59bd9b4e019ULL) + i * 0x9e3779b97f4a7c15ULL);
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

}  // namespace mambaseq::cpu
