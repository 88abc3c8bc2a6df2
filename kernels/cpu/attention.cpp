// Multi-head scaled-dot-product attention with a key padding mask (PyTorch
// nn.MultiheadAttention's core with key_padding_mask and dropout on the weights).
//
// For a (sequence b, head h) pair g, with Q, K, V the [len, dh] column slices of qkv:
//   forward:  S = s·QKᵀ (s = 1/sqrt(dh)), masked keys −∞, P = softmax(S), lse = log Σ e^S,
//             Pd = P ⊙ keep, O = Pd·V
//   backward: dV += Pdᵀ·dO ; dP = (dO·Vᵀ) ⊙ keep ; dS = P ⊙ (dP − rowsum(dP ⊙ P))
//             dQ += s·dS·K ; dK += s·dSᵀ·Q
// Pairs are processed in chunks whose [len, len] matrices fit the workspace: the GEMMs
// of a chunk run one after another (BLAS threads each one), the row-wise softmax work
// of the whole chunk runs as one OpenMP loop. No [batch, H, len, len] tensor is kept:
// the backward recomputes S from Q, K and the stored lse.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "hash_uniform.h"
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

constexpr int64_t kChunkElems = int64_t(1) << 23;  // 8M elements (32 MB in fp32) of [len, len] matrices

// (batch, head) pairs per chunk: two [len, len] matrices per pair.
int64_t chunk_pairs(int64_t batch, int64_t heads, int64_t len) {
  return std::clamp<int64_t>(kChunkElems / std::max<int64_t>(1, 2 * len * len), 1, batch * heads);
}

template <typename T>
void check(const AttnParams<T>& p) {
  MS_CHECK(p.batch > 0 && p.len > 0 && p.heads > 0 && p.head_dim > 0,
           "attention: bad shape batch={} len={} heads={} head_dim={}", p.batch, p.len, p.heads, p.head_dim);
  MS_CHECK(p.ld_qkv >= 3 * p.heads * p.head_dim, "attention: qkv row stride {} is below 3·D = {}", p.ld_qkv,
           3 * p.heads * p.head_dim);
  MS_CHECK(p.dropout >= 0 && p.dropout < 1, "attention: dropout must be in [0, 1), got {}", p.dropout);
  if (p.key_mask)
    for (int64_t b = 0; b < p.batch; ++b) {
      bool any = false;
      for (int64_t t = 0; t < p.len && !any; ++t) any = p.key_mask[b * p.len + t] != 0;
      MS_CHECK(any, "attention: sequence {} of the batch has no non-padding key", b);
    }
}

// keep/(1−p) for weight (g, i, j), g = b·H + h; the counter is its index in [batch, H, len, len].
template <typename T>
inline T keep_scale(const AttnParams<T>& p, int64_t g, int64_t i, int64_t j) {
  if (p.dropout == 0.0) return T(1);
  const uint64_t idx = (uint64_t(g) * p.len + i) * p.len + j;
  return hash_uniform(p.seed, idx) >= p.dropout ? static_cast<T>(1.0 / (1.0 - p.dropout)) : T(0);
}
}  // namespace

int64_t attention_workspace(int64_t batch, int64_t heads, int64_t len) {
  return 2 * chunk_pairs(batch, heads, len) * len * len;
}

template <typename T>
void attention_forward(const AttnParams<T>& p, T* out, int64_t ld_out, T* lse, T* ws) {
  check(p);
  const int64_t L = p.len, H = p.heads, dh = p.head_dim, D = H * dh, ld = p.ld_qkv;
  const int64_t G = chunk_pairs(p.batch, H, L), pairs = p.batch * H;
  const T scale = static_cast<T>(1.0 / std::sqrt(double(dh)));
  for (int64_t g0 = 0; g0 < pairs; g0 += G) {
    const int64_t g1 = std::min(pairs, g0 + G);
    for (int64_t g = g0; g < g1; ++g) {
      const T* Q = p.qkv + (g / H) * L * ld + (g % H) * dh;
      gemm(CblasNoTrans, CblasTrans, L, L, dh, scale, Q, ld, Q + D, ld, T(0), ws + (g - g0) * L * L, L);
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (g1 - g0) * L; ++r) {
      const int64_t g = g0 + r / L, i = r % L, b = g / H;
      const uint8_t* km = p.key_mask ? p.key_mask + b * L : nullptr;
      T* s = ws + r * L;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < L; ++j)
        if (!km || km[j]) mx = std::max(mx, double(s[j]));
      double sum = 0;
      for (int64_t j = 0; j < L; ++j) {
        const double e = (!km || km[j]) ? std::exp(double(s[j]) - mx) : 0.0;
        s[j] = static_cast<T>(e);
        sum += e;
      }
      lse[g * L + i] = static_cast<T>(mx + std::log(sum));
      const T inv = static_cast<T>(1.0 / sum);
      for (int64_t j = 0; j < L; ++j) s[j] *= inv * keep_scale(p, g, i, j);
    }
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b = g / H, h = g % H;
      const T* V = p.qkv + b * L * ld + 2 * D + h * dh;
      gemm(CblasNoTrans, CblasNoTrans, L, dh, L, T(1), ws + (g - g0) * L * L, L, V, ld, T(0),
           out + b * L * ld_out + h * dh, ld_out);
    }
  }
}

template <typename T>
void attention_backward(const AttnParams<T>& p, const T* dout, int64_t ld_dout, const T* lse, T* dqkv,
                        int64_t ld_dqkv, T* ws) {
  check(p);
  const int64_t L = p.len, H = p.heads, dh = p.head_dim, D = H * dh, ld = p.ld_qkv;
  const int64_t G = chunk_pairs(p.batch, H, L), pairs = p.batch * H;
  const T scale = static_cast<T>(1.0 / std::sqrt(double(dh)));
  T* A = ws;               // S, then Pd          [G, L, L]
  T* Bm = ws + G * L * L;  // dO·Vᵀ, then s·dS   [G, L, L]
  for (int64_t g0 = 0; g0 < pairs; g0 += G) {
    const int64_t g1 = std::min(pairs, g0 + G);
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b = g / H, h = g % H;
      const T* Q = p.qkv + b * L * ld + h * dh;
      const T* dO = dout + b * L * ld_dout + h * dh;
      gemm(CblasNoTrans, CblasTrans, L, L, dh, scale, Q, ld, Q + D, ld, T(0), A + (g - g0) * L * L, L);
      gemm(CblasNoTrans, CblasTrans, L, L, dh, T(1), dO, ld_dout, Q + 2 * D, ld, T(0), Bm + (g - g0) * L * L, L);
    }
#pragma omp parallel
    {
      std::vector<T> keep(L);  // one row of the dropout mask, drawn once per row
#pragma omp for schedule(static)
      for (int64_t r = 0; r < (g1 - g0) * L; ++r) {
        const int64_t g = g0 + r / L, i = r % L, b = g / H;
        const uint8_t* km = p.key_mask ? p.key_mask + b * L : nullptr;
        T* s = A + r * L;
        T* d = Bm + r * L;
        const double m = lse[g * L + i];
        double rsum = 0;
        for (int64_t j = 0; j < L; ++j) {
          const T pj = (!km || km[j]) ? static_cast<T>(std::exp(double(s[j]) - m)) : T(0);
          keep[j] = keep_scale(p, g, i, j);
          s[j] = pj;        // P for now
          d[j] *= keep[j];  // dP
          rsum += double(d[j]) * pj;
        }
        const T rs = static_cast<T>(rsum);
        for (int64_t j = 0; j < L; ++j) {
          d[j] = scale * s[j] * (d[j] - rs);  // s·dS
          s[j] *= keep[j];                    // Pd
        }
      }
    }
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t b = g / H, h = g % H;
      const T* Q = p.qkv + b * L * ld + h * dh;
      const T* dO = dout + b * L * ld_dout + h * dh;
      T* dQ = dqkv + b * L * ld_dqkv + h * dh;
      gemm(CblasTrans, CblasNoTrans, L, dh, L, T(1), A + (g - g0) * L * L, L, dO, ld_dout, T(1), dQ + 2 * D,
           ld_dqkv);                                                                                      // dV
      gemm(CblasNoTrans, CblasNoTrans, L, dh, L, T(1), Bm + (g - g0) * L * L, L, Q + D, ld, T(1), dQ, ld_dqkv);  // dQ
      gemm(CblasTrans, CblasNoTrans, L, dh, L, T(1), Bm + (g - g0) * L * L, L, Q, ld, T(1), dQ + D, ld_dqkv);  // dK
    }
  }
}

#define INST(T)                                                                                          \
  template void attention_forward<T>(const AttnParams<T>&, T*, int64_t, T*, T*);                         \
  template void attention_backward<T>(const AttnParams<T>&, const T*, int64_t, const T*, T*, int64_t, T*);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
