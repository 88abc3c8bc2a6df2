// Operations along the length axis: max pooling (CNN) and reversal within each
// sequence's real length (bidirectional Mamba).
#include <cstring>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu_extra.h"

namespace mambaseq::cpu {

int64_t maxpool_out_len(int64_t len, int64_t k, int64_t s) {
  MS_CHECK(k > 0 && s > 0, "maxpool: kernel {} and stride {} must be positive", k, s);
  return len >= k ? (len - k) / s + 1 : 0;
}

// out[b,j,c] = max_i x[b, j·s+i, c]; strict '>' keeps the first maximum (PyTorch), and a
// NaN wins so that it propagates as in PyTorch.
template <typename T>
void maxpool_forward(T* out, int32_t* idx, const T* x, int64_t batch, int64_t len, int64_t C, int64_t k,
                     int64_t s) {
  const int64_t Lo = maxpool_out_len(len, k, s);
  MS_CHECK(Lo > 0, "maxpool: sequence length {} is shorter than the pooling kernel {}", len, k);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < Lo; ++j) {
      const int64_t t0 = j * s;
      T* o = out + (b * Lo + j) * C;
      int32_t* id = idx + (b * Lo + j) * C;
      const T* x0 = x + (b * len + t0) * C;
      for (int64_t c = 0; c < C; ++c) {
        o[c] = x0[c];
        id[c] = static_cast<int32_t>(t0);
      }
      for (int64_t i = 1; i < k; ++i) {
        const T* xi = x + (b * len + t0 + i) * C;
        for (int64_t c = 0; c < C; ++c)
          if (xi[c] > o[c] || std::isnan(xi[c])) {
            o[c] = xi[c];
            id[c] = static_cast<int32_t>(t0 + i);
          }
      }
    }
}

// Windows may overlap when s < k: one thread per sequence so that no two threads add
// into the same row of dx.
template <typename T>
void maxpool_backward(T* dx, const T* dout, const int32_t* idx, int64_t batch, int64_t len, int64_t C, int64_t k,
                      int64_t s) {
  const int64_t Lo = maxpool_out_len(len, k, s);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = 0; j < Lo; ++j) {
      const T* g = dout + (b * Lo + j) * C;
      const int32_t* id = idx + (b * Lo + j) * C;
      for (int64_t c = 0; c < C; ++c) dx[(b * len + id[c]) * C + c] += g[c];
    }
}

template <typename T>
void reverse_within_length(T* dst, const T* src, const int64_t* lens, int64_t batch, int64_t len, int64_t D,
                           bool accumulate) {
  for (int64_t b = 0; b < batch; ++b)
    MS_CHECK(lens[b] >= 0 && lens[b] <= len, "reverse: sequence {} has length {}, outside [0, {}]", b, lens[b], len);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      const int64_t n = lens[b], from = t < n ? n - 1 - t : t;
      const T* s = src + (b * len + from) * D;
      T* d = dst + (b * len + t) * D;
      if (accumulate)
        for (int64_t j = 0; j < D; ++j) d[j] += s[j];
      else
        std::memcpy(d, s, sizeof(T) * D);
    }
}

#define INST(T)                                                                                                \
  template void maxpool_forward<T>(T*, int32_t*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t);        \
  template void maxpool_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t); \
  template void reverse_within_length<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t, bool);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
