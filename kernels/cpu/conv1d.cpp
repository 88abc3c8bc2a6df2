// Depthwise causal conv1d, any kernel size K.
#include <algorithm>

#include "common.h"
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

#define INST(T)                                                                                  \
  template void conv1d_forward<T>(T*, const T*, int64_t, const T*, const T*, int64_t, int64_t,   \
                                  int64_t, int64_t);                                             \
  template void conv1d_backward<T>(T*, int64_t, T*, T*, const T*, const T*, int64_t, const T*,   \
                                   int64_t, int64_t, int64_t, int64_t);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
