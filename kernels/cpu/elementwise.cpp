// Elementwise ops: SiLU, softplus, gating, residual add, dropout; mean pooling; losses.
#include <algorithm>
#include <cmath>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

// y = x·σ(x)
template <typename T>
void silu_forward(T* y, int64_t ldy, const T* x, int64_t ldx, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < C; ++j) y[i * ldy + j] = silu(x[i * ldx + j]);
}
template <typename T>
void silu_backward(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                   int64_t M, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < C; ++j) dx[i * lddx + j] += dy[i * lddy + j] * silu_grad(x[i * ldx + j]);
}

// y = log(1 + eˣ); dy/dx = σ(x)
template <typename T>
void softplus_forward(T* y, const T* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = softplus(x[i]);
}
template <typename T>
void softplus_backward(T* dx, const T* dy, const T* x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * softplus_grad(x[i]);
}

// out = y ⊙ silu(z)
template <typename T>
void gate_forward(T* out, const T* y, const T* z, int64_t ldz, int64_t M, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < C; ++j) out[i * C + j] = y[i * C + j] * silu(z[i * ldz + j]);
}
template <typename T>
void gate_backward(T* dy, T* dz, int64_t lddz, const T* dout, const T* y, const T* z, int64_t ldz,
                   int64_t M, int64_t C) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < C; ++j) {
      T zz = z[i * ldz + j], g = dout[i * C + j];
      if (dy) dy[i * C + j] += g * silu(zz);
      if (dz) dz[i * lddz + j] += g * y[i * C + j] * silu_grad(zz);
    }
}

template <typename T>
void add_forward(T* out, const T* a, const T* b, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
template <typename T>
void add_backward(T* da, T* db, const T* dout, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    if (da) da[i] += dout[i];
    if (db) db[i] += dout[i];
  }
}

// The mask is drawn serially from one stream so that it depends on the seed only,
// not on the thread count.
template <typename T>
void dropout_forward(T* out, T* keep, const T* x, int64_t n, double p, Rng& rng) {
  MS_CHECK(p >= 0.0 && p < 1.0, "dropout probability must be in [0, 1), got {}", p);
  T scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) {
    keep[i] = (p == 0.0 || rng.uniform() >= p) ? scale : T(0);
    out[i] = x[i] * keep[i];
  }
}
template <typename T>
void dropout_backward(T* dx, const T* dout, const T* keep, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dx[i] += dout[i] * keep[i];
}

// out[b,:] = (1/n_b) Σ_{t: mask} x[b,t,:]
template <typename T>
void mean_pool_forward(T* out, const T* x, const uint8_t* mask, int64_t batch, int64_t len,
                       int64_t D) {
  for (int64_t b = 0; b < batch; ++b) {
    int64_t n = 0;
    for (int64_t t = 0; t < len; ++t) n += mask[b * len + t] != 0;
    MS_CHECK(n > 0, "mean pooling: sequence {} of the batch has no non-padding token", b);
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    T* o = out + b * D;
    std::fill(o, o + D, T(0));
    int64_t n = 0;
    for (int64_t t = 0; t < len; ++t) {
      if (!mask[b * len + t]) continue;
      ++n;
      const T* xt = x + (b * len + t) * D;
      for (int64_t j = 0; j < D; ++j) o[j] += xt[j];
    }
    for (int64_t j = 0; j < D; ++j) o[j] /= static_cast<T>(n);
  }
}
template <typename T>
void mean_pool_backward(T* dx, const T* dout, const uint8_t* mask, int64_t batch, int64_t len,
                        int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    int64_t n = 0;
    for (int64_t t = 0; t < len; ++t) n += mask[b * len + t] != 0;
    if (n == 0) continue;
    T inv = T(1) / static_cast<T>(n);
    for (int64_t t = 0; t < len; ++t) {
      if (!mask[b * len + t]) continue;
      T* d = dx + (b * len + t) * D;
      for (int64_t j = 0; j < D; ++j) d[j] += dout[b * D + j] * inv;
    }
  }
}

// loss_i = logsumexp(logits_i) − logits_i[target_i]
template <typename T>
double cross_entropy_forward(const T* logits, const int32_t* targets, int64_t M, int64_t V,
                             int32_t ignore_index, int64_t* count) {
  int64_t n = 0;
  for (int64_t i = 0; i < M; ++i) {
    if (targets[i] == ignore_index) continue;
    MS_CHECK(targets[i] >= 0 && targets[i] < V, "cross-entropy: target {} at row {} is outside [0, {})",
             targets[i], i, V);
    ++n;
  }
  double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    if (targets[i] == ignore_index) continue;
    const T* l = logits + i * V;
    double mx = l[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(l[j]));
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(l[j] - mx);
    total += std::log(s) + mx - l[targets[i]];
  }
  if (count) *count = n;
  return n ? total / n : 0.0;
}

template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t M,
                            int64_t V, int32_t ignore_index, double scale) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    if (targets[i] == ignore_index) continue;
    const T* l = logits + i * V;
    T* d = dlogits + i * V;
    double mx = l[0];
    for (int64_t j = 1; j < V; ++j) mx = std::max(mx, static_cast<double>(l[j]));
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(l[j] - mx);
    for (int64_t j = 0; j < V; ++j)
      d[j] += static_cast<T>(scale * (std::exp(l[j] - mx) / s - (j == targets[i] ? 1.0 : 0.0)));
  }
}

template <typename T>
double mse_forward(const T* pred, const T* target, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(pred[i]) - target[i];
    s += d * d;
  }
  return n ? s / n : 0.0;
}
template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, int64_t n, double scale) {
  for (int64_t i = 0; i < n; ++i)
    dpred[i] += static_cast<T>(scale * 2.0 * (static_cast<double>(pred[i]) - target[i]) / n);
}

#define INST(T)                                                                                   \
  template void silu_forward<T>(T*, int64_t, const T*, int64_t, int64_t, int64_t);                \
  template void silu_backward<T>(T*, int64_t, const T*, int64_t, const T*, int64_t, int64_t,      \
                                 int64_t);                                                        \
  template void softplus_forward<T>(T*, const T*, int64_t);                                       \
  template void softplus_backward<T>(T*, const T*, const T*, int64_t);                            \
  template void gate_forward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t);               \
  template void gate_backward<T>(T*, T*, int64_t, const T*, const T*, const T*, int64_t, int64_t, \
                                 int64_t);                                                        \
  template void add_forward<T>(T*, const T*, const T*, int64_t);                                  \
  template void add_backward<T>(T*, T*, const T*, int64_t);                                       \
  template void dropout_forward<T>(T*, T*, const T*, int64_t, double, Rng&);                      \
  template void dropout_backward<T>(T*, const T*, const T*, int64_t);                             \
  template void mean_pool_forward<T>(T*, const T*, const uint8_t*, int64_t, int64_t, int64_t);    \
  template void mean_pool_backward<T>(T*, const T*, const uint8_t*, int64_t, int64_t, int64_t);   \
  template double cross_entropy_forward<T>(const T*, const int32_t*, int64_t, int64_t, int32_t,   \
                                           int64_t*);                                             \
  template void cross_entropy_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t,         \
                                          int32_t, double);                                       \
  template double mse_forward<T>(const T*, const T*, int64_t);                                    \
  template void mse_backward<T>(T*, const T*, const T*, int64_t, double);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
