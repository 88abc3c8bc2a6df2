// BatchNorm over the rows of [M, C] (PyTorch nn.BatchNorm1d with the channel last).
// Work is split over blocks of channels, so the per-channel sums need no reduction
// between threads and each row read touches one contiguous block.
#include <algorithm>
#include <cmath>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu_extra.h"

namespace mambaseq::cpu {

namespace {
constexpr int64_t CB = 16;  // channels per block: one 64-byte line of floats per row

int64_t counted_rows(const uint8_t* mask, int64_t M) {
  if (!mask) return M;
  int64_t n = 0;
  for (int64_t i = 0; i < M; ++i) n += mask[i] != 0;
  return n;
}
}  // namespace

// Training: μ = Σx/n, σ² = Σ(x−μ)²/n (two passes, in double);
// y = (x−μ)·rstd·w + b, rstd = 1/sqrt(σ²+eps); running stats updated with σ²·n/(n−1).
template <typename T>
void batchnorm_forward(T* y, T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const T* w,
                       const T* b, const uint8_t* mask, int64_t M, int64_t C, bool batch_stats, double momentum,
                       double eps) {
  if (batch_stats) {
    const int64_t n = counted_rows(mask, M);
    MS_CHECK(n > 1, "batchnorm: training needs more than 1 value per channel, got {} (rows={}, masked={})", n, M,
             M - n);
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += CB) {
      const int64_t c1 = std::min(C, c0 + CB), nc = c1 - c0;
      double s[CB] = {}, v[CB] = {};
      for (int64_t i = 0; i < M; ++i) {
        if (mask && !mask[i]) continue;
        const T* xi = x + i * C + c0;
        for (int64_t c = 0; c < nc; ++c) s[c] += xi[c];
      }
      for (int64_t c = 0; c < nc; ++c) s[c] /= double(n);
      for (int64_t i = 0; i < M; ++i) {
        if (mask && !mask[i]) continue;
        const T* xi = x + i * C + c0;
        for (int64_t c = 0; c < nc; ++c) v[c] += (xi[c] - s[c]) * (xi[c] - s[c]);
      }
      for (int64_t c = 0; c < nc; ++c) {
        const double var = v[c] / double(n);
        mean[c0 + c] = static_cast<T>(s[c]);
        rstd[c0 + c] = static_cast<T>(1.0 / std::sqrt(var + eps));
        if (running_mean)
          running_mean[c0 + c] = static_cast<T>((1 - momentum) * running_mean[c0 + c] + momentum * s[c]);
        if (running_var)
          running_var[c0 + c] =
              static_cast<T>((1 - momentum) * running_var[c0 + c] + momentum * var * double(n) / double(n - 1));
      }
    }
  } else {
    MS_CHECK(running_mean && running_var, "batchnorm: eval mode needs the running statistics");
    for (int64_t c = 0; c < C; ++c) {
      mean[c] = running_mean[c];
      rstd[c] = static_cast<T>(1.0 / std::sqrt(double(running_var[c]) + eps));
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    T* yi = y + i * C;
    if (mask && !mask[i]) {
      std::fill(yi, yi + C, T(0));
      continue;
    }
    const T* xi = x + i * C;
    for (int64_t c = 0; c < C; ++c) yi[c] = (xi[c] - mean[c]) * rstd[c] * w[c] + b[c];
  }
}

// x̂ = (x−μ)·rstd, ĝ = dy·w.  Batch statistics: dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),
// the means over counted rows; running statistics are constants: dx = ĝ·rstd.
template <typename T>
void batchnorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                        const uint8_t* mask, int64_t M, int64_t C, bool batch_stats) {
  const int64_t n = counted_rows(mask, M);
  if (n == 0) return;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < C; c0 += CB) {
    const int64_t c1 = std::min(C, c0 + CB), nc = c1 - c0;
    double sg[CB] = {}, sgx[CB] = {}, sdy[CB] = {}, sdyx[CB] = {};
    for (int64_t i = 0; i < M; ++i) {
      if (mask && !mask[i]) continue;
      const T* xi = x + i * C + c0;
      const T* gi = dy + i * C + c0;
      for (int64_t c = 0; c < nc; ++c) {
        const double xh = (double(xi[c]) - mean[c0 + c]) * rstd[c0 + c];
        sdy[c] += gi[c];
        sdyx[c] += gi[c] * xh;
      }
    }
    for (int64_t c = 0; c < nc; ++c) {
      sg[c] = sdy[c] * w[c0 + c] / double(n);
      sgx[c] = sdyx[c] * w[c0 + c] / double(n);
      if (dw) dw[c0 + c] += static_cast<T>(sdyx[c]);
      if (db) db[c0 + c] += static_cast<T>(sdy[c]);
    }
    if (!dx) continue;
    for (int64_t i = 0; i < M; ++i) {
      if (mask && !mask[i]) continue;
      const T* xi = x + i * C + c0;
      const T* gi = dy + i * C + c0;
      T* di = dx + i * C + c0;
      for (int64_t c = 0; c < nc; ++c) {
        const T r = rstd[c0 + c], g = gi[c] * w[c0 + c];
        if (batch_stats) {
          const T xh = (xi[c] - mean[c0 + c]) * r;
          di[c] += r * (g - static_cast<T>(sg[c]) - xh * static_cast<T>(sgx[c]));
        } else {
          di[c] += g * r;
        }
      }
    }
  }
}

#define INST(T)                                                                                                \
  template void batchnorm_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, const uint8_t*, int64_t, \
                                     int64_t, bool, double, double);                                           \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,             \
                                      const uint8_t*, int64_t, int64_t, bool);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
