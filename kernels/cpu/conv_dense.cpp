// Dense Conv1d with 'same' padding (odd K), as K shifted GEMMs.
//
// The batch is copied into a padded layout xpad [batch·Lp, Cin], Lp = len + K − 1, where
// sequence b occupies rows b·Lp .. b·Lp+Lp−1 with its tokens at rows b·Lp + P + t
// (P = K/2) and zeros around them. Then for every padded row r
//     ypad[r] = Σ_k xpad[r + k] · W_kᵀ          (W_k = W[:, :, k], [Cout, Cin])
// and the output of (b, t) is ypad[b·Lp + t]. Rows b·Lp + t with t ≥ len straddle two
// sequences and are discarded. Each tap is one GEMM over all B·Lp − (K−1) rows, so BLAS
// sees large matrices instead of batch·K small ones.
#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu_extra.h"

namespace mambaseq::cpu {

namespace {
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, float a, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, a, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, double a,
                 const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, a, A, lda, B, ldb, beta, C, ldc);
}

void check_shape(int64_t batch, int64_t len, int64_t Cin, int64_t Cout, int64_t K) {
  MS_CHECK(batch > 0 && len > 0 && Cin > 0 && Cout > 0, "conv_dense: bad shape batch={} len={} Cin={} Cout={}",
           batch, len, Cin, Cout);
  MS_CHECK(K > 0 && K % 2 == 1, "conv_dense: 'same' padding needs an odd kernel size, got K={}", K);
}

// xpad rows: zeros, then each sequence's rows at b·Lp + P.
template <typename T>
void pad_rows(T* xpad, const T* x, int64_t batch, int64_t len, int64_t C, int64_t K) {
  const int64_t Lp = len + K - 1, P = K / 2;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    T* dst = xpad + b * Lp * C;
    std::fill(dst, dst + P * C, T(0));
    std::memcpy(dst + P * C, x + b * len * C, sizeof(T) * len * C);
    std::fill(dst + (P + len) * C, dst + Lp * C, T(0));
  }
}
}  // namespace

// xpad [B·Lp, Cin] | ypad or dpad [B·Lp, Cout] | dxpad [B·Lp, Cin] | Wt [K,Cout,Cin] | dWt [K,Cout,Cin]
int64_t conv_dense_workspace(int64_t batch, int64_t len, int64_t Cin, int64_t Cout, int64_t K) {
  const int64_t rows = batch * (len + K - 1);
  return rows * (2 * Cin + Cout) + 2 * K * Cout * Cin;
}

template <typename T>
void conv_dense_forward(T* out, const T* x, const T* W, const T* bias, int64_t batch, int64_t len, int64_t Cin,
                        int64_t Cout, int64_t K, T* ws) {
  check_shape(batch, len, Cin, Cout, K);
  const int64_t Lp = len + K - 1, rows = batch * Lp, Mr = rows - (K - 1);
  T* xpad = ws;
  T* ypad = xpad + rows * Cin;
  T* Wt = ypad + rows * Cout + rows * Cin;
  pad_rows(xpad, x, batch, len, Cin, K);
  // Wt[k,o,i] = W[o,i,k]: each tap a contiguous [Cout, Cin] matrix.
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < Cout; ++o)
    for (int64_t i = 0; i < Cin; ++i)
      for (int64_t k = 0; k < K; ++k) Wt[(k * Cout + o) * Cin + i] = W[(o * Cin + i) * K + k];
  for (int64_t k = 0; k < K; ++k)
    gemm(CblasNoTrans, CblasTrans, Mr, Cout, Cin, T(1), xpad + k * Cin, Cin, Wt + k * Cout * Cin, Cin,
         T(k == 0 ? 0 : 1), ypad, Cout);
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < len; ++t) {
      const T* src = ypad + (b * Lp + t) * Cout;
      T* dst = out + (b * len + t) * Cout;
      for (int64_t o = 0; o < Cout; ++o) dst[o] = src[o] + (bias ? bias[o] : T(0));
    }
}

template <typename T>
void conv_dense_backward(T* dx, T* dW, T* dbias, const T* dout, const T* x, const T* W, int64_t batch, int64_t len,
                         int64_t Cin, int64_t Cout, int64_t K, T* ws) {
  check_shape(batch, len, Cin, Cout, K);
  const int64_t Lp = len + K - 1, rows = batch * Lp, Mr = rows - (K - 1);
  T* xpad = ws;
  T* dpad = xpad + rows * Cin;
  T* dxpad = dpad + rows * Cout;
  T* Wt = dxpad + rows * Cin;
  T* dWt = Wt + K * Cout * Cin;
  // dout in the output's padded layout: row b·Lp + t (t < len), zero rows in between,
  // so the discarded straddling rows contribute nothing.
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < batch; ++b) {
    T* dst = dpad + b * Lp * Cout;
    std::memcpy(dst, dout + b * len * Cout, sizeof(T) * len * Cout);
    std::fill(dst + len * Cout, dst + Lp * Cout, T(0));
  }
  if (dbias) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < Cout; ++o) {
      T s = 0;
      for (int64_t r = 0; r < batch * len; ++r) s += dout[r * Cout + o];
      dbias[o] += s;
    }
  }
  if (dW) {
    pad_rows(xpad, x, batch, len, Cin, K);
    for (int64_t k = 0; k < K; ++k)  // dW_k = dpad[0:Mr]ᵀ · xpad[k : k+Mr]
      gemm(CblasTrans, CblasNoTrans, Cout, Cin, Mr, T(1), dpad, Cout, xpad + k * Cin, Cin, T(0),
           dWt + k * Cout * Cin, Cin);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < Cout; ++o)
      for (int64_t i = 0; i < Cin; ++i)
        for (int64_t k = 0; k < K; ++k) dW[(o * Cin + i) * K + k] += dWt[(k * Cout + o) * Cin + i];
  }
  if (dx) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < Cout; ++o)
      for (int64_t i = 0; i < Cin; ++i)
        for (int64_t k = 0; k < K; ++k) Wt[(k * Cout + o) * Cin + i] = W[(o * Cin + i) * K + k];
    std::fill(dxpad, dxpad + rows * Cin, T(0));
    for (int64_t k = 0; k < K; ++k)  // dxpad[k : k+Mr] += dpad[0:Mr] · W_k
      gemm(CblasNoTrans, CblasNoTrans, Mr, Cin, Cout, T(1), dpad, Cout, Wt + k * Cout * Cin, Cin, T(1),
           dxpad + k * Cin, Cin);
    const int64_t P = K / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < len; ++t) {
        const T* src = dxpad + (b * Lp + P + t) * Cin;
        T* dst = dx + (b * len + t) * Cin;
        for (int64_t i = 0; i < Cin; ++i) dst[i] += src[i];
      }
  }
}

#define INST(T)                                                                                                \
  template void conv_dense_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,     \
                                      int64_t, T*);                                                            \
  template void conv_dense_backward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,     \
                                       int64_t, int64_t, T*);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
