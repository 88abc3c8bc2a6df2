// CPU reference kernels: forward and backward of every op the models use.
//
// Conventions (llm.c style):
//  - Raw pointers plus sizes; tensors are row-major, tokens are rows: an activation
//    is [batch*len, channels] with a row stride `ld` (elements) so that a kernel can
//    read one half of a wider buffer (e.g. x and z of in_proj's output) in place.
//  - Every backward ACCUMULATES (+=) into its gradient outputs; callers zero them.
//    A null gradient pointer means "not needed".
//  - Templated on the scalar: float is what the model runs; double exists so the
//    finite-difference gradient checks can be tight.
//  - OpenMP over rows / (batch, channel) blocks. No allocation per token.
#pragma once
#include <cstdint>
#include <type_traits>

#include "mambaseq/rng.h"

namespace mambaseq::cpu {

// ---- Linear ------------------------------------------------------------------------
// y[M,N] = x[M,K] · W[N,K]ᵀ + b[N]          (W in PyTorch layout: out × in)
template <typename T>
void linear_forward(T* y, int64_t ldy, const T* x, int64_t ldx, const T* W, const T* b,
                    int64_t M, int64_t K, int64_t N);
// dx += dy·W ; dW += dyᵀ·x ; db += Σ_rows dy
template <typename T>
void linear_backward(T* dx, int64_t lddx, T* dW, T* db, const T* dy, int64_t lddy, const T* x,
                     int64_t ldx, const T* W, int64_t M, int64_t K, int64_t N);

// ---- Embedding ---------------------------------------------------------------------
// out[i,:] = table[ids[i],:]; an id outside [0,V) is an error naming it.
template <typename T>
void embedding_forward(T* out, const int32_t* ids, const T* table, int64_t n, int64_t V, int64_t D);
template <typename T>
void embedding_backward(T* dtable, const T* dout, const int32_t* ids, int64_t n, int64_t V, int64_t D);

// ---- Norms -------------------------------------------------------------------------
// RMSNorm: y = x · rstd · w,  rstd = 1/sqrt(mean(x²) + eps)         rstd: [M]
template <typename T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t M, int64_t D, double eps);
template <typename T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd, int64_t M,
                      int64_t D);
// LayerNorm: y = (x − mean) · rstd · w + b                          mean, rstd: [M]
template <typename T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* w, const T* b, int64_t M,
                       int64_t D, double eps);
template <typename T>
void layernorm_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* mean,
                        const T* rstd, int64_t M, int64_t D);

// ---- Depthwise causal conv1d -------------------------------------------------------
// out[b,t,c] = bias[c] + Σ_k w[c,k] · x[b, t−(K−1)+k, c]   (zero left padding)
// x: [batch, len, C] with row stride ldx; out: [batch, len, C] contiguous; w: [C, K].
template <typename T>
void conv1d_forward(T* out, const T* x, int64_t ldx, const T* w, const T* bias, int64_t batch,
                    int64_t len, int64_t C, int64_t K);
template <typename T>
void conv1d_backward(T* dx, int64_t lddx, T* dw, T* dbias, const T* dout, const T* x, int64_t ldx,
                     const T* w, int64_t batch, int64_t len, int64_t C, int64_t K);

// The same conv for chunked prefill and the fused mixer: an optional initial state
// (the K−1 inputs before t = 0, oldest first; zeros when null), an optional final state
// out (the last K−1 inputs, reaching into the initial state when len < K−1), and an
// optional SiLU on the output:  out = act(pre),  pre = bias + Σ_k w[c,k]·x̃[b, t−(K−1)+k, c]
// with x̃ = init_state ‖ x.
template <typename T>
struct Conv1dParams {
  int64_t batch = 0, len = 0, C = 0, K = 0;
  const T* x = nullptr;  // [batch, len, C], row stride ldx
  int64_t ldx = 0;
  const T* w = nullptr;           // [C, K]
  const T* bias = nullptr;        // [C] or null
  const T* init_state = nullptr;  // [batch, C, K−1] or null
  bool silu = false;
};
// out: [batch, len, C] contiguous; final_state: [batch, C, K−1] or null.
template <typename T>
void conv1d_forward(const Conv1dParams<T>& p, std::type_identity_t<T>* out,
                    std::type_identity_t<T>* final_state);
// Accumulates dx (stride lddx), dw, dbias and dinit_state ([batch, C, K−1]); any may be null.
template <typename T>
void conv1d_backward(const Conv1dParams<T>& p, const std::type_identity_t<T>* dout,
                     std::type_identity_t<T>* dx, int64_t lddx, std::type_identity_t<T>* dw,
                     std::type_identity_t<T>* dbias, std::type_identity_t<T>* dinit_state);

// ---- Elementwise -------------------------------------------------------------------
// silu(x) = x·σ(x); softplus(x) = log(1+eˣ) (= x above 20, as PyTorch).
// Strided versions work on [M, C] views with row strides.
template <typename T>
void silu_forward(T* y, int64_t ldy, const T* x, int64_t ldx, int64_t M, int64_t C);
template <typename T>
void silu_backward(T* dx, int64_t lddx, const T* dy, int64_t lddy, const T* x, int64_t ldx,
                   int64_t M, int64_t C);
template <typename T>
void softplus_forward(T* y, const T* x, int64_t n);
template <typename T>
void softplus_backward(T* dx, const T* dy, const T* x, int64_t n);
// Gating: out = y ⊙ silu(z)
template <typename T>
void gate_forward(T* out, const T* y, const T* z, int64_t ldz, int64_t M, int64_t C);
template <typename T>
void gate_backward(T* dy, T* dz, int64_t lddz, const T* dout, const T* y, const T* z, int64_t ldz,
                   int64_t M, int64_t C);
// Residual add: out = a + b ; backward: da += dout, db += dout
template <typename T>
void add_forward(T* out, const T* a, const T* b, int64_t n);
template <typename T>
void add_backward(T* da, T* db, const T* dout, int64_t n);
// Dropout (inverted): keep[i] ∈ {0, 1/(1−p)}; out = x ⊙ keep. p = 0 → keep ≡ 1.
template <typename T>
void dropout_forward(T* out, T* keep, const T* x, int64_t n, double p, Rng& rng);
template <typename T>
void dropout_backward(T* dx, const T* dout, const T* keep, int64_t n);

// ---- Pooling -----------------------------------------------------------------------
// out[b,:] = mean over t with mask[b,t] ≠ 0 of x[b,t,:]; a row without tokens is an error.
template <typename T>
void mean_pool_forward(T* out, const T* x, const uint8_t* mask, int64_t batch, int64_t len,
                       int64_t D);
template <typename T>
void mean_pool_backward(T* dx, const T* dout, const uint8_t* mask, int64_t batch, int64_t len,
                        int64_t D);

// ---- Losses ------------------------------------------------------------------------
// Softmax cross-entropy over rows of logits [M,V]; targets equal to ignore_index are
// skipped. Returns the mean over counted rows (0 if none); *count gets how many.
template <typename T>
double cross_entropy_forward(const T* logits, const int32_t* targets, int64_t M, int64_t V,
                             int32_t ignore_index, int64_t* count);
// dlogits += scale · (softmax − onehot) on counted rows (scale = dloss / count).
template <typename T>
void cross_entropy_backward(T* dlogits, const T* logits, const int32_t* targets, int64_t M,
                            int64_t V, int32_t ignore_index, double scale);
// MSE = mean((pred − target)²) ; dpred += scale · 2(pred − target)/n
template <typename T>
double mse_forward(const T* pred, const T* target, int64_t n);
template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, int64_t n, double scale);

// ---- Selective scan (S6) -----------------------------------------------------------
// For each (b, c), over t = 0..len−1 with state h ∈ R^N (kept in a small buffer):
//   δ   = softplus(delta[b,t,c] + delta_bias[c])      (softplus/bias optional)
//   h   = exp(δ·A[c,:]) ⊙ h + δ·B[b,t,:]·u[b,t,c]
//   y   = ⟨h, C[b,t,:]⟩ + D[c]·u[b,t,c]
//   out = y · silu(z[b,t,c])                           (gate optional)
// B and C are per token, shared by all channels, read with row stride bc_ld
// (they sit inside x_proj's output). O(len) time; no [batch,len,C,N] tensor.
// Groups: with ngroups > 1, channel c uses group g = c / (dim/ngroups), whose B and C
// are columns g·N .. g·N+N−1 of the row (so a row holds ngroups·N values of each).
template <typename T>
struct ScanParams {
  int64_t batch = 0, len = 0, dim = 0, dstate = 0;
  const T* u = nullptr;           // [batch, len, dim], stride u_ld
  const T* delta = nullptr;       // [batch, len, dim], stride delta_ld
  const T* A = nullptr;           // [dim, dstate]
  const T* B = nullptr;           // [batch, len, dstate], stride bc_ld
  const T* C = nullptr;           // [batch, len, dstate], stride bc_ld
  const T* D = nullptr;           // [dim] or null
  const T* z = nullptr;           // [batch, len, dim], stride z_ld, or null
  const T* delta_bias = nullptr;  // [dim] or null
  bool delta_softplus = false;
  int64_t u_ld = 0, delta_ld = 0, bc_ld = 0, z_ld = 0;
  const T* h0 = nullptr;  // [batch, dim, dstate] initial state or null (zeros)
  int64_t ngroups = 1;    // B/C groups; must divide dim
};

// out: [batch, len, dim] contiguous; h_final: [batch, dim, dstate] or null.
template <typename T>
void selective_scan_forward(const ScanParams<T>& p, std::type_identity_t<T>* out,
                            std::type_identity_t<T>* h_final);

template <typename T>
struct ScanGrads {
  T* du = nullptr;           // stride du_ld
  T* ddelta = nullptr;       // stride ddelta_ld (gradient w.r.t. delta before bias/softplus)
  T* dA = nullptr;           // [dim, dstate]
  T* dB = nullptr;           // stride dbc_ld (ngroups·dstate columns)
  T* dC = nullptr;           // stride dbc_ld
  T* dD = nullptr;           // [dim] (needed when D given)
  T* dz = nullptr;           // stride dz_ld (needed when z given)
  T* ddelta_bias = nullptr;  // [dim] (needed when delta_bias given)
  T* dh0 = nullptr;          // [batch, dim, dstate] or null
  int64_t du_ld = 0, ddelta_ld = 0, dbc_ld = 0, dz_ld = 0;
};

// Recomputes the states chunk by chunk (checkpoints every `chunk` steps in a per-thread
// buffer) and runs the reverse recurrence; accumulates into every non-null gradient.
template <typename T>
void selective_scan_backward(const ScanParams<T>& p, const std::type_identity_t<T>* dout,
                             const ScanGrads<T>& g,
                             int64_t chunk = 64);

// ---- Single-token steps (recurrent inference) ----------------------------------------
// conv_state: [batch, C, K−1], the last K−1 inputs of each channel, oldest first.
//   out[b,c] = bias[c] + Σ_{k<K−1} w[c,k]·state[b,c,k] + w[c,K−1]·x[b,c]
// then the state shifts left by one and x is appended. x: [batch, C] with row stride ldx.
template <typename T>
void conv1d_step(T* out, T* conv_state, const T* x, int64_t ldx, const T* w, const T* bias, int64_t batch,
                 int64_t C, int64_t K);
// One scan step with p.len == 1: h [batch, dim, dstate] is advanced in place (p.h0 is
// ignored; h is the state), out [batch, dim] gets the (gated) output. Same arithmetic
// as selective_scan_forward, so prefill + steps equals the full forward.
template <typename T>
void selective_scan_step(const ScanParams<T>& p, T* h, std::type_identity_t<T>* out);

}  // namespace mambaseq::cpu
