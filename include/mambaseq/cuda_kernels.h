// CUDA kernels for the Mamba mixer's core: selective scan and depthwise causal conv1d,
// forward and backward, and the single-token steps for generation.
//
// A narrow interface for the GPU backend: device pointers, shapes, row strides, a dtype
// and a stream. The layout is the CPU kernels' (kernels_cpu.h): token-major
// [batch*len, channels] with a row stride, so x and z are read in place from in_proj's
// output and B, C from x_proj's output.
//
// Dtypes: activations (u, delta, z, B, C, x, out and their gradients) are f32, f16 or
// bf16; parameters (A, D, delta_bias, conv weight and bias) and states are f32; the
// arithmetic is f32 throughout.
//
// Gradient conventions (differ from the CPU kernels on purpose):
//  - activation gradients (du, ddelta, dz, dx, dinit_state) are WRITTEN, in the
//    activation dtype: a read-modify-write of bf16 would cost bandwidth and precision;
//  - f32 gradients (dA, dB, dC, dD, ddelta_bias, dh0, conv dw, dbias) are ACCUMULATED
//    (+=) with atomics, so the caller zeroes them and the sums are not bit-reproducible
//    run to run (the order of float additions varies).
//
// Every entry point validates its arguments and throws mambaseq::Error naming the
// kernel and the shape (bad shape, dtype, null or misaligned pointer, launch failure).
// Kernels are asynchronous on `stream`; errors from a running kernel surface at the
// caller's next synchronisation. Nothing here falls back to the CPU.
#pragma once
#include <cstdint>

struct CUstream_st;

namespace mambaseq::cuda {

using Stream = CUstream_st*;  // == cudaStream_t

enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };
const char* dtype_name(DType t);
int dtype_size(DType t);

// True when the CUDA runtime sees at least one device.
bool device_available();

// ---- Selective scan (S6) -----------------------------------------------------------
//   δ   = softplus(delta + delta_bias)               (bias and softplus optional)
//   h_t = exp(δ·A) ⊙ h_{t−1} + δ·B_t·u_t              (h ∈ R^dstate per channel, f32)
//   y_t = ⟨h_t, C_t⟩ + D·u_t,   out_t = y_t · silu(z_t)   (D and z optional)
// B and C are per token, shared by all channels of a group: channel c uses group
// g = c / (dim/ngroups), columns g·dstate .. g·dstate+dstate−1 of its row.
constexpr int64_t kScanChunk = 64;  // the default checkpoint interval and the longest one
struct ScanArgs {
  DType dtype = DType::bf16;
  int64_t batch = 0, len = 0, dim = 0, dstate = 0, ngroups = 1;  // dstate ≤ 64
  const void* u = nullptr;      // [batch*len, dim], row stride u_ld
  int64_t u_ld = 0;
  const void* delta = nullptr;  // [batch*len, dim], row stride delta_ld
  int64_t delta_ld = 0;
  const float* A = nullptr;     // [dim, dstate]
  const void* B = nullptr;      // [batch*len, ngroups*dstate], row stride bc_ld
  const void* C = nullptr;      // same layout as B
  int64_t bc_ld = 0;
  const float* D = nullptr;     // [dim] or null
  const void* z = nullptr;      // [batch*len, dim], row stride z_ld, or null
  int64_t z_ld = 0;
  const float* delta_bias = nullptr;  // [dim] or null
  bool delta_softplus = false;
  const float* h0 = nullptr;    // [batch, dim, dstate] initial state or null (zeros)
  // Tokens between the checkpoints the forward leaves for the backward: kScanChunk, or 32
  // (twice the checkpoint memory; the backward's common shape then runs in 32-token chunks
  // at 3 blocks an SM). The forward and backward of one step must be given the same value.
  int64_t ckpt_chunk = kScanChunk;
};

// The backward recomputes states from checkpoints the forward leaves every
// a.ckpt_chunk tokens: [batch, ceil(len/ckpt_chunk), dim, dstate] f32.
int64_t scan_checkpoint_floats(const ScanArgs& a);

// Scratch for splitting long sequences into time segments (0 when none is needed). A
// call given no workspace allocates its own (stream-ordered) when it needs one.
int64_t scan_workspace_floats(const ScanArgs& a);

// out: [batch*len, dim] at row stride out_ld (activation dtype).
// h_final: [batch, dim, dstate] or null. checkpoints: null, or
// scan_checkpoint_floats(a) floats for a later selective_scan_bwd.
void selective_scan_fwd(const ScanArgs& a, void* out, int64_t out_ld, float* h_final,
                        float* checkpoints, Stream stream = nullptr, float* workspace = nullptr);

struct ScanGrads {
  void* du = nullptr;      // written, row stride du_ld
  int64_t du_ld = 0;
  void* ddelta = nullptr;  // written: the gradient w.r.t. delta (before bias/softplus)
  int64_t ddelta_ld = 0;
  void* dz = nullptr;      // written; required when z is given
  int64_t dz_ld = 0;
  float* dA = nullptr;           // [dim, dstate], accumulated
  float* dB = nullptr;           // [batch*len, ngroups*dstate] at row stride dbc_ld, accumulated
  float* dC = nullptr;           // same layout as dB, accumulated
  int64_t dbc_ld = 0;
  float* dD = nullptr;           // [dim], accumulated; required when D is given
  float* ddelta_bias = nullptr;  // [dim], accumulated; required when delta_bias is given
  float* dh0 = nullptr;          // [batch, dim, dstate], accumulated, or null
};

// dout: [batch*len, dim] at row stride dout_ld; checkpoints from selective_scan_fwd on
// the same arguments.
void selective_scan_bwd(const ScanArgs& a, const void* dout, int64_t dout_ld,
                        const float* checkpoints, const ScanGrads& g, Stream stream = nullptr,
                        float* workspace = nullptr);

// One token per sequence (a.len must be 1): h [batch, dim, dstate] f32 is advanced in
// place (a.h0 is ignored), out [batch, dim] at row stride out_ld gets the gated output.
// Same arithmetic as the scan, so prefill + steps reproduces the full forward.
void selective_scan_step(const ScanArgs& a, float* h, void* out, int64_t out_ld,
                         Stream stream = nullptr);

// ---- Depthwise causal conv1d -------------------------------------------------------
//   pre[b,t,c] = bias[c] + Σ_k w[c,k]·x̃[b, t−(K−1)+k, c],   x̃ = init_state ‖ x
//   out = silu(pre) if silu else pre
// Widths 2–4 take the fast path; larger widths a slower general one.
struct Conv1dArgs {
  DType dtype = DType::bf16;
  int64_t batch = 0, len = 0, channels = 0, width = 0;
  const void* x = nullptr;           // [batch*len, channels], row stride x_ld
  int64_t x_ld = 0;
  const float* w = nullptr;          // [channels, width]
  const float* bias = nullptr;       // [channels] or null
  const void* init_state = nullptr;  // [batch, channels, width−1] (oldest first) or null
  bool silu = false;
};

// out: [batch*len, channels] at row stride out_ld; final_state: [batch, channels,
// width−1], the last width−1 inputs of x̃, or null.
void conv1d_fwd(const Conv1dArgs& a, void* out, int64_t out_ld, void* final_state,
                Stream stream = nullptr);
// dx (written, row stride dx_ld), dw [channels, width] and dbias (accumulated, f32),
// dinit_state [batch, channels, width−1] (written) or null.
void conv1d_bwd(const Conv1dArgs& a, const void* dout, int64_t dout_ld, void* dx, int64_t dx_ld,
                float* dw, float* dbias, void* dinit_state, Stream stream = nullptr);

// One token per sequence (a.len must be 1, a.init_state is ignored): x [batch, channels]
// at row stride x_ld; conv_state [batch, channels, width−1] in the activation dtype is
// shifted in place; out [batch, channels] at row stride out_ld.
void conv1d_step(const Conv1dArgs& a, void* conv_state, void* out, int64_t out_ld,
                 Stream stream = nullptr);

}  // namespace mambaseq::cuda
