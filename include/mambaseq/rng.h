// Seeded, reproducible random numbers (xoshiro256++). Same seed, same stream,
// on every machine: no dependence on std:: distributions, whose output is
// implementation-defined.
#pragma once
#include <array>
#include <cstdint>

namespace mambaseq {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  // A generator for a sub-stream, e.g. Rng::derive(seed, step) for step-local dropout,
  // so resuming at step k reproduces the exact same masks.
  static Rng derive(uint64_t seed, uint64_t stream);

  void seed_with(uint64_t seed);
  uint64_t next_u64();
  uint32_t next_u32() { return static_cast<uint32_t>(next_u64() >> 32); }
  double uniform();                      // [0, 1)
  float uniformf() { return static_cast<float>(uniform()); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal();                       // N(0, 1)
  uint64_t below(uint64_t n);            // uniform integer in [0, n)

  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_{};
};

}  // namespace mambaseq
