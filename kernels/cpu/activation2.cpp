// ReLU, GELU and counter-based dropout.
#include <cmath>

#include "common.h"
#include "hash_uniform.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu_extra.h"

namespace mambaseq::cpu {

template <typename T>
void relu_forward(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <typename T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] += y[i] > T(0) ? dy[i] : T(0);
}

// gelu(x) = x·Φ(x), Φ(x) = (1 + erf(x/√2))/2 ; gelu'(x) = Φ(x) + x·φ(x)
template <typename T>
void gelu_forward(T* y, const T* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = T(0.5) * x[i] * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
}
template <typename T>
void gelu_backward(T* dx, const T* dy, const T* x, int64_t n) {
  const T inv_sqrt_2pi = T(0.3989422804014327);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T cdf = T(0.5) * (T(1) + std::erf(x[i] * T(M_SQRT1_2)));
    dx[i] += dy[i] * (cdf + x[i] * inv_sqrt_2pi * std::exp(T(-0.5) * x[i] * x[i]));
  }
}

template <typename T>
void dropout_hashed_forward(T* out, T* keep, const T* x, int64_t n, double p, uint64_t seed) {
  MS_CHECK(p >= 0.0 && p < 1.0, "dropout probability must be in [0, 1), got {}", p);
  const T scale = static_cast<T>(1.0 / (1.0 - p));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = (p == 0.0 || hash_uniform(seed, uint64_t(i)) >= p) ? scale : T(0);
    out[i] = x[i] * keep[i];
  }
}

#define INST(T)                                                                                  \
  template void relu_forward<T>(T*, const T*, int64_t);                                          \
  template void relu_backward<T>(T*, const T*, const T*, int64_t);                               \
  template void gelu_forward<T>(T*, const T*, int64_t);                                          \
  template void gelu_backward<T>(T*, const T*, const T*, int64_t);                               \
  template void dropout_hashed_forward<T>(T*, T*, const T*, int64_t, double, uint64_t);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
