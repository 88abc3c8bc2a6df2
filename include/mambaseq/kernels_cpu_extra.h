// CPU kernels of the baselines (CNN, Transformer) and the bidirectional Mamba.
// Same conventions as kernels_cpu.h: raw pointers plus sizes, activations are
// [batch*len, channels] rows, every backward ACCUMULATES (+=) into its gradient outputs
// (null = not needed), templated on float/double so that the finite-difference checks
// can run in double.
#pragma once
#include <cstdint>

namespace mambaseq::cpu {

// ---- Dense Conv1d, 'same' padding (PyTorch nn.Conv1d, odd K, stride 1) -------------------
// out[b,t,o] = bias[o] + Σ_k Σ_i W[o,i,k] · x[b, t+k−K/2, i]     (zero outside [0, len))
// x: [batch, len, Cin]; W: [Cout, Cin, K] (PyTorch layout); out: [batch, len, Cout].
// Computed as K shifted GEMMs over the whole batch laid out with K−1 zero rows between
// sequences, so each tap is one large matrix product. ws: conv_dense_workspace() elements.
int64_t conv_dense_workspace(int64_t batch, int64_t len, int64_t Cin, int64_t Cout, int64_t K);
template <typename T>
void conv_dense_forward(T* out, const T* x, const T* W, const T* bias, int64_t batch, int64_t len,
                        int64_t Cin, int64_t Cout, int64_t K, T* ws);
// dx += Σ_k shift(dout)·W_k ; dW[:,:,k] += shift(dout)ᵀ·x ; dbias += Σ_rows dout
template <typename T>
void conv_dense_backward(T* dx, T* dW, T* dbias, const T* dout, const T* x, const T* W, int64_t batch,
                         int64_t len, int64_t Cin, int64_t Cout, int64_t K, T* ws);

// ---- BatchNorm1d over rows (PyTorch nn.BatchNorm1d on [batch, C, len]) ----------------
// x: [M, C] (M = batch·len rows). mask: [M] (1 = row counts) or null (all rows).
// Training (batch_stats): μ, σ² over the counted rows (biased σ² normalises), then
//   running_mean ← (1−m)·running_mean + m·μ ; running_var ← (1−m)·running_var + m·σ²·n/(n−1)
// Eval: μ, σ² = the running statistics. y = (x − μ)/sqrt(σ² + eps)·w + b on counted
// rows; rows with mask 0 get y = 0. mean/rstd [C] receive the μ and 1/sqrt(σ²+eps) used.
template <typename T>
void batchnorm_forward(T* y, T* mean, T* rstd, T* running_mean, T* running_var, const T* x, const T* w,
                       const T* b, const uint8_t* mask, int64_t M, int64_t C, bool batch_stats, double momentum,
                       double eps);
// batch_stats: dx += rstd/n·(n·ĝ − Σĝ − x̂·Σĝx̂), ĝ = dy·w ; else dx += dy·w·rstd.
// dw += Σ dy·x̂ ; db += Σ dy (counted rows only).
template <typename T>
void batchnorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean, const T* rstd,
                        const uint8_t* mask, int64_t M, int64_t C, bool batch_stats);

// ---- MaxPool1d (kernel k, stride s, no padding, floor mode) ----------------------------
// Lout = (len − k)/s + 1. out[b,j,c] = max_{0≤i<k} x[b, j·s+i, c]; idx gets the winning
// t (the first on ties, as PyTorch). x: [batch, len, C], out/idx: [batch, Lout, C].
int64_t maxpool_out_len(int64_t len, int64_t k, int64_t s);
template <typename T>
void maxpool_forward(T* out, int32_t* idx, const T* x, int64_t batch, int64_t len, int64_t C, int64_t k,
                     int64_t s);
// dx[b, idx, c] += dout[b, j, c]
template <typename T>
void maxpool_backward(T* dx, const T* dout, const int32_t* idx, int64_t batch, int64_t len, int64_t C,
                      int64_t k, int64_t s);

// ---- Reversal within each sequence's length (bidirectional Mamba) ---------------------
// dst[b,t] = src[b, n_b−1−t] for t < n_b, dst[b,t] = src[b,t] beyond (padding stays at
// the end). A permutation that is its own inverse, so the backward is the same call.
// accumulate: dst += instead of =. src and dst must not overlap. rows are D wide.
template <typename T>
void reverse_within_length(T* dst, const T* src, const int64_t* lens, int64_t batch, int64_t len, int64_t D,
                           bool accumulate);

// ---- Multi-head scaled-dot-product attention with key padding mask --------------------
// Per sequence b and head h (dh = D/H, q/k/v columns h·dh.. of the three D-wide blocks):
//   S = QKᵀ/sqrt(dh);  S[:, j] = −∞ where key_mask[b,j] = 0;  P = softmax_rows(S)
//   O = (P ⊙ keep/(1−p)) V          (keep: counter-based Bernoulli(1−p) from seed, so the
//                                    backward regenerates it instead of storing it)
// Only lse = logsumexp rows of S [batch, H, len] is kept: the backward recomputes S
// (one extra GEMM) instead of holding a [batch, H, len, len] tensor per layer.
template <typename T>
struct AttnParams {
  int64_t batch = 0, len = 0, heads = 0, head_dim = 0;
  const T* qkv = nullptr;  // [batch, len, 3D] rows: q | k | v, row stride ld_qkv
  int64_t ld_qkv = 0;
  const uint8_t* key_mask = nullptr;  // [batch, len] 1 = real key; null = all real
  double dropout = 0.0;               // on P (training only)
  uint64_t seed = 0;
};
// Scratch elements the caller provides (reused across layers; sized once per batch shape).
int64_t attention_workspace(int64_t batch, int64_t heads, int64_t len);
// out: [batch, len, D] (row stride ld_out); lse: [batch, H, len]. A sequence without any
// real key is an Error naming it.
template <typename T>
void attention_forward(const AttnParams<T>& p, T* out, int64_t ld_out, T* lse, T* ws);
// dqkv += ∂/∂qkv (q, k, v blocks, row stride ld_dqkv).
template <typename T>
void attention_backward(const AttnParams<T>& p, const T* dout, int64_t ld_dout, const T* lse, T* dqkv,
                        int64_t ld_dqkv, T* ws);

// ---- Activations ------------------------------------------------------------------
// relu(x) = max(x, 0); backward uses the output (y > 0 ⇔ x > 0), so x need not be kept.
template <typename T>
void relu_forward(T* y, const T* x, int64_t n);
template <typename T>
void relu_backward(T* dx, const T* dy, const T* y, int64_t n);
// gelu(x) = x·Φ(x) (exact, erf), PyTorch's default 'gelu'.
template <typename T>
void gelu_forward(T* y, const T* x, int64_t n);
template <typename T>
void gelu_backward(T* dx, const T* dy, const T* x, int64_t n);

// Inverted dropout with a counter-based mask: keep[i] = (u(seed, i) ≥ p)/(1−p), drawn in
// parallel and independent of the thread count. p = 0 → keep ≡ 1. Backward: cpu::dropout_backward.
template <typename T>
void dropout_hashed_forward(T* out, T* keep, const T* x, int64_t n, double p, uint64_t seed);

}  // namespace mambaseq::cpu
