// Linear and Embedding. Matrix products go through BLAS; this file only picks the
// transposes and strides.
#include <cblas.h>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

namespace {
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, float a,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, a, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K, double a,
                 const double* A, int64_t lda, const double* B, int64_t ldb, double beta, double* C,
                 int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, a, A, lda, B, ldb, beta, C, ldc);
}
}  // namespace

// y[M,N] = x[M,K] · W[N,K]ᵀ + b
template <typename T>
void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, const T* b, int64_t M,
                    int64_t K, int64_t N) {
  if (M == 0 || N == 0) return;
  gemm(CblasNoTrans, CblasTrans, M, N, K, T(1), x, ldx, W, K, T(0), y, ldy);
  if (b) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[i * ldy + j] += b[j];
  }
}

// dx[M,K] += dy[M,N]·W[N,K] ; dW[N,K] += dyᵀ·x ; db[N] += Σ_i dy[i,:]
template <typename T>
void linear_backward(T* dx, int64_t lddx, T* dW, T* db, const T* dy, int64_t lddy, const T* x,
                     int64_t ldx, const T* W, int64_t M, int64_t K, int64_t N) {
  if (M == 0) return;
  if (dx) gemm(CblasNoTrans, CblasNoTrans, M, K, N, T(1), dy, lddy, W, K, T(1), dx, lddx);
  if (dW) gemm(CblasTrans, CblasNoTrans, N, K, M, T(1), dy, lddy, x, ldx, T(1), dW, K);
  if (db) {
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < N; ++j) {
      T s = 0;
      for (int64_t i = 0; i < M; ++i) s += dy[i * lddy + j];
      db[j] += s;
    }
  }
}

template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t n, int64_t V, int64_t D) {
  for (int64_t i = 0; i < n; ++i)
    MS_CHECK(ids[i] >= 0 && ids[i] < V, "token id {} at position {} is outside the vocabulary [0, {})",
             ids[i], i, V);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const T* src = table + static_cast<int64_t>(ids[i]) * D;
    T* dst = out + i * D;
    for (int64_t j = 0; j < D; ++j) dst[j] = src[j];
  }
}

// Rows of dtable are shared by repeated ids: split the work over columns instead.
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t V, int64_t D) {
  (void)V;
  constexpr int64_t CB = 64;
#pragma omp parallel for schedule(static)
  for (int64_t c0 = 0; c0 < D; c0 += CB) {
    int64_t c1 = std::min(D, c0 + CB);
    for (int64_t i = 0; i < n; ++i) {
      T* dst = dtable + static_cast<int64_t>(ids[i]) * D;
      const T* src = dout + i * D;
      for (int64_t j = c0; j < c1; ++j) dst[j] += src[j];
    }
  }
}

#define INST(T)                                                                                  \
  template void linear_forward<T>(T*, int64_t, const T*, int64_t, const T*, const T*, int64_t,   \
                                  int64_t, int64_t);                                             \
  template void linear_backward<T>(T*, int64_t, T*, T*, const T*, int64_t, const T*, int64_t,    \
                                   const T*, int64_t, int64_t, int64_t);                         \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int64_t, int64_t, int64_t);  \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
