// Depthwise causal conv1d, any kernel size K.
#include <algorithm>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

// out[b,t,c] = bias[c] + Σ_k w[c,k]·x[b, t−(K−1)+k, c]
template <typename T>
void conv1d_forward(T* out, const T* x, int64_t ldx, const T* w, const T* bias, int64_t batch,
                    int64_t len, int64_t C, int64_t K) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      T* o = out + (b * len + t) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = bias ? bias[c] : T(0);
      for (int64_t k = 0; k < K; ++k) {
        int64_t j = t - (K - 1) + k;
        if (j < 0) continue;
        const T* xj = x + (b * len + j) * ldx;
        for (int64_t c = 0; c < C; ++c) o[c] += w[c * K + k] * xj[c];
      }
    }
}

// dx[b,j,c] += Σ_k w[c,k]·dout[b, j+(K−1)−k, c] ; dw[c,k] += Σ dout·x ; dbias[c] += Σ dout
// Split over channel blocks so that dw/dbias need no reduction between threads.
template <typename T>
void conv1d_backward(T* dx, int64_t lddx, T* dw, T* dbias, const T* dout, const T* x, int64_t ldx,
                     const T* w, int64_t batch, int64_t len, int64_t C, int64_t K) {
  constexpr int64_t CB = 32;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += CB) {
    int64_t c1 = std::min(C, c0 + CB);
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < len; ++t) {
        const T* g = dout + (b * len + t) * C;
        for (int64_t c = c0; c < c1; ++c)
          if (dbias) dbias[c] += g[c];
        for (int64_t k = 0; k < K; ++k) {
          int64_t j = t - (K - 1) + k;
          if (j < 0) continue;
          if (dw) {
            const T* xj = x + (b * len + j) * ldx;
            for (int64_t c = c0; c < c1; ++c) dw[c * K + k] += g[c] * xj[c];
          }
          if (dx) {
            T* dxj = dx + (b * len + j) * lddx;
            for (int64_t c = c0; c < c1; ++c) dxj[c] += w[c * K + k] * g[c];
          }
        }
      }
  }
}

namespace {
// x̃ = init_state ‖ x: the input at time j ∈ [−(K−1), len) of channel c.
template <typename T>
inline T conv_in(const Conv1dParams<T>& p, int64_t b, int64_t j, int64_t c) {
  if (j >= 0) return p.x[(b * p.len + j) * p.ldx + c];
  return p.init_state ? p.init_state[(b * p.C + c) * (p.K - 1) + (p.K - 1) + j] : T(0);
}
template <typename T>
inline T conv_pre(const Conv1dParams<T>& p, int64_t b, int64_t t, int64_t c) {
  T acc = p.bias ? p.bias[c] : T(0);
  for (int64_t k = 0; k < p.K; ++k) acc += p.w[c * p.K + k] * conv_in(p, b, t - (p.K - 1) + k, c);
  return acc;
}
template <typename T>
void check_conv(const Conv1dParams<T>& p) {
  MS_CHECK(p.batch >= 0 && p.len >= 0 && p.C > 0 && p.K > 0 && p.ldx >= p.C && p.x && p.w,
           "conv1d: bad arguments batch={} len={} C={} K={} ldx={}", p.batch, p.len, p.C, p.K, p.ldx);
}
}  // namespace

// out = act(bias + Σ_k w[c,k]·x̃[t−(K−1)+k]) ; final_state = x̃[len−(K−1) .. len−1]
template <typename T>
void conv1d_forward(const Conv1dParams<T>& p, std::type_identity_t<T>* out,
                    std::type_identity_t<T>* final_state) {
  check_conv(p);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t t = 0; t < p.len; ++t)
      for (int64_t c = 0; c < p.C; ++c) {
        const T v = conv_pre(p, b, t, c);
        out[(b * p.len + t) * p.C + c] = p.silu ? silu(v) : v;
      }
  if (final_state)
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t c = 0; c < p.C; ++c)
        for (int64_t i = 0; i < p.K - 1; ++i)
          final_state[(b * p.C + c) * (p.K - 1) + i] = conv_in(p, b, p.len - (p.K - 1) + i, c);
}

// dpre = dout·act'(pre) (pre recomputed) ; dx̃[t−(K−1)+k] += w[c,k]·dpre[t] ;
// dw[c,k] += Σ dpre[t]·x̃[t−(K−1)+k] ; dbias += Σ dpre. One thread per channel: no races.
template <typename T>
void conv1d_backward(const Conv1dParams<T>& p, const std::type_identity_t<T>* dout,
                     std::type_identity_t<T>* dx, int64_t lddx, std::type_identity_t<T>* dw,
                     std::type_identity_t<T>* dbias, std::type_identity_t<T>* dinit_state) {
  check_conv(p);
  const int64_t K = p.K;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t t = 0; t < p.len; ++t) {
        T g = dout[(b * p.len + t) * p.C + c];
        if (p.silu) g *= silu_grad(conv_pre(p, b, t, c));
        if (dbias) dbias[c] += g;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t j = t - (K - 1) + k;
          if (dw) dw[c * K + k] += g * conv_in(p, b, j, c);
          if (j >= 0) {
            if (dx) dx[(b * p.len + j) * lddx + c] += p.w[c * K + k] * g;
          } else if (dinit_state) {
            dinit_state[(b * p.C + c) * (K - 1) + (K - 1) + j] += p.w[c * K + k] * g;
          }
        }
      }
}

#define INST(T)                                                                                  \
  template void conv1d_forward<T>(T*, const T*, int64_t, const T*, const T*, int64_t, int64_t,   \
                                  int64_t, int64_t);                                             \
  template void conv1d_backward<T>(T*, int64_t, T*, T*, const T*, const T*, int64_t, const T*,   \
                                   int64_t, int64_t, int64_t, int64_t);                          \
  template void conv1d_forward<T>(const Conv1dParams<T>&, T*, T*);                               \
  template void conv1d_backward<T>(const Conv1dParams<T>&, const T*, T*, int64_t, T*, T*, T*);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
