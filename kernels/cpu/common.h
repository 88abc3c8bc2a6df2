// Scalar helpers shared by the CPU kernels (internal header).
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

#include <omp.h>

namespace mambaseq::cpu {

// exp for the scan's inner loop: written so the compiler vectorises it under
// `omp simd` (glibc's expf is only vectorised with -ffast-math). Cephes polynomial,
// ~1 ulp on [-87, 88]; below that it returns ~1e-38 instead of denormals/0.
inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float magic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r2 + r + 1.0f;
  int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  return y * std::bit_cast<float>(e);
}
inline double exp_fast(double x) { return std::exp(x); }

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
template <typename T>
inline T silu(T x) {
  return x * sigmoid(x);
}
// d silu / dx = σ(x)·(1 + x·(1 − σ(x)))
template <typename T>
inline T silu_grad(T x) {
  T s = sigmoid(x);
  return s * (T(1) + x * (T(1) - s));
}
// PyTorch's softplus (beta 1, threshold 20)
template <typename T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}
template <typename T>
inline T softplus_grad(T x) {
  return x > T(20) ? T(1) : sigmoid(x);
}

inline int num_threads() { return omp_get_max_threads(); }

}  // namespace mambaseq::cpu

#define MS_INSTANTIATE_FLOAT_DOUBLE(MACRO) \
  MACRO(float)                             \
  MACRO(double)
