// RMSNorm and LayerNorm over the last dimension, one row per token.
#include <cmath>

#include "common.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

// y = x · rstd · w ; rstd = 1/sqrt(mean(x²) + eps)
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t M, int64_t D, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    const T* xi = x + i * D;
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    T r = static_cast<T>(1.0 / std::sqrt(ss / D + eps));
    rstd[i] = r;
    for (int64_t j = 0; j < D; ++j) y[i * D + j] = xi[j] * r * w[j];
  }
}

// With x̂ = x·r:  dw += Σ dy·x̂ ;  dx += r·(dy·w − x̂ · mean(dy·w·x̂))
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t M,
                      int64_t D) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
      const T* xi = x + i * D;
      const T* gi = dy + i * D;
      T r = rstd[i];
      double dot = 0;
      for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(gi[j]) * w[j] * xi[j] * r;
      T m = static_cast<T>(dot / D);
      for (int64_t j = 0; j < D; ++j) dx[i * D + j] += r * (gi[j] * w[j] - xi[j] * r * m);
    }
  }
  if (dw) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < D; ++j) {
      T s = 0;
      for (int64_t i = 0; i < M; ++i) s += dy[i * D + j] * x[i * D + j] * rstd[i];
      dw[j] += s;
    }
  }
}

// y = (x − μ)·rstd·w + b
template <typename T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t M,
                       int64_t D, double eps) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    const T* xi = x + i * D;
    double s = 0;
    for (int64_t j = 0; j < D; ++j) s += xi[j];
    double mu = s / D;
    double v = 0;
    for (int64_t j = 0; j < D; ++j) v += (xi[j] - mu) * (xi[j] - mu);
    T r = static_cast<T>(1.0 / std::sqrt(v / D + eps));
    mean[i] = static_cast<T>(mu);
    rstd[i] = r;
    for (int64_t j = 0; j < D; ++j)
      y[i * D + j] = (xi[j] - static_cast<T>(mu)) * r * w[j] + (b ? b[j] : T(0));
  }
}

// With x̂ = (x − μ)·r and g = dy·w:  dx += r·(g − mean(g) − x̂·mean(g·x̂))
template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t M, int64_t D) {
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i) {
      const T* xi = x + i * D;
      const T* gi = dy + i * D;
      T mu = mean[i], r = rstd[i];
      double sg = 0, sgx = 0;
      for (int64_t j = 0; j < D; ++j) {
        double g = static_cast<double>(gi[j]) * w[j];
        sg += g;
        sgx += g * (xi[j] - mu) * r;
      }
      T mg = static_cast<T>(sg / D), mgx = static_cast<T>(sgx / D);
      for (int64_t j = 0; j < D; ++j)
        dx[i * D + j] += r * (gi[j] * w[j] - mg - (xi[j] - mu) * r * mgx);
    }
  }
  if (dw || db) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < D; ++j) {
      T sw = 0, sb = 0;
      for (int64_t i = 0; i < M; ++i) {
        sw += dy[i * D + j] * (x[i * D + j] - mean[i]) * rstd[i];
        sb += dy[i * D + j];
      }
      if (dw) dw[j] += sw;
      if (db) db[j] += sb;
    }
  }
}

#define INST(T)                                                                                  \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);        \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int64_t,     \
                                    int64_t);                                                    \
  template void layernorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                     double);                                                    \
  template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                      const T*, int64_t, int64_t);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
