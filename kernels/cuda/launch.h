// Internal: the plain structs the host code (api.cpp, compiled by the C++ compiler) hands
// to the launchers in the .cu files. No CUDA or fmt headers here: nvcc cannot parse fmt,
// and the error messages are built on the host side.
#pragma once
#include <cstdint>

struct CUstream_st;

#ifdef __CUDACC__
#define MAMBASEQ_HD __host__ __device__
#else
#define MAMBASEQ_HD
#endif

namespace mambaseq::cuda::detail {

// The conv fast path's grid (kernels and host run rules alike): a row's vpr channel
// vectors of V elements, VB of them × RB runs of `run` tokens a block; grid (vector
// groups, run groups, batch). VB ≥ 1 even for rows narrower than one vector: the host's
// run rules ask before knowing whether the fast path applies.
constexpr int kConvThreads = 128;
struct FastMap {
  int VB, RB, vpr, nruns;
  MAMBASEQ_HD int groups() const { return (vpr + VB - 1) / VB; }
  MAMBASEQ_HD int run_groups() const { return (nruns + RB - 1) / RB; }
};
MAMBASEQ_HD inline FastMap fast_map(int C, int V, int len, int run) {
  FastMap m;
  m.vpr = C / V;
  m.VB = m.vpr < 1 ? 1 : (m.vpr < 32 ? m.vpr : 32);
  m.RB = kConvThreads / m.VB;
  m.nruns = (len + run - 1) / run;
  return m;
}

// One launch of the scan forward or backward; every field is filled by api.cpp.
struct ScanK {
  int dtype = 0;                          // DType as int
  int batch = 0, len = 0, dim = 0, N = 0;  // N = dstate
  int S = 0, G = 0, Npad = 0;             // states per lane, lanes per channel, S·G ≥ N
  int NT = 0, CB = 0, Tt = 0, Tsub = 0;   // threads, channels per block, tile, bwd sub-chunk
  int dpg = 0;                            // channels per B/C group
  // Time segments: P blocks walk one sequence's channels in parallel, each over Lseg
  // tokens; a first pass leaves each segment's local end state (forward) or local
  // adjoint (backward) in ws [batch, P, dim, 17]; the forward's fold kernel turns them
  // into start states in place, the backward's segments fold them themselves.
  int P = 1, Lseg = 0;
  bool seq = false;                       // forward, dstate <= 16: 16/S lanes per channel, S states each
  int CW = 0;                             // channels per block of those kernels (bwd segment pass: at most)
  int seg_S = 16;                         // bwd segment pass: states per lane (16, 8, 4, 2)
  float* ws = nullptr;
  int nck = 0;                            // checkpoint chunks = ceil(len / ck_every)
  int ck_every = 64;                      // tokens between checkpoints (ScanArgs::ckpt_chunk: 32 or 64)
  int smem = 0;                           // dynamic shared memory bytes
  bool vec = false;     // 16-byte path for the [rows, dim] tensors, else element by element
  int bc4 = 0;          // B/C rows: 2 = 16-byte, 1 = 4-byte async copies, 0 = element by element
  bool softplus = false;
  const void *u = nullptr, *delta = nullptr, *B = nullptr, *C = nullptr, *z = nullptr;
  int64_t u_ld = 0, delta_ld = 0, bc_ld = 0, z_ld = 0;
  const float *A = nullptr, *D = nullptr, *bias = nullptr, *h0 = nullptr;
  // forward outputs
  void* out = nullptr;
  int64_t out_ld = 0;
  float* h_final = nullptr;
  float* ckpt = nullptr;
  const float* ckpt_in = nullptr;
  bool ck4 = false;  // checkpoints and h_final by 16-byte accesses (N % 4 == 0, 16-byte aligned)
  bool tanh_gate = false;  // q/seq forward, 16-bit types: the gate's silu(z) through one tanh op
  // backward
  const void* dout = nullptr;
  int64_t dout_ld = 0;
  void *du = nullptr, *ddelta = nullptr, *dz = nullptr;
  int64_t du_ld = 0, ddelta_ld = 0, dz_ld = 0;
  float *dA = nullptr, *dB = nullptr, *dC = nullptr, *dD = nullptr, *dbias = nullptr,
        *dh0 = nullptr;
  int64_t dbc_ld = 0;
  bool bwd_fixed = true;  // compile-time-shaped backward where the shape matches (N 16, S 4, 128 threads)
  bool bwd_ilp = true;    // that kernel's channel sums and epilogue as straight-line blocks
  int bwd_ve = 0;         // that kernel's channels per epilogue item (1, 2, 4; 0 = default)
};

struct ConvK {
  int dtype = 0;
  int batch = 0, len = 0, C = 0, K = 0;
  bool vec = false;  // 16-byte rows (fast path, widths 2–4)
  bool silu = false;
  int run = 0;       // tokens per thread (fast path)
  bool ring = false;  // forward fast path: rows through a cp.async ring in shared memory
  bool narrow = false;  // forward fast path: 4 bytes of channels a thread instead of 8 (no ring)
  bool tanh = false;    // fast paths, 16-bit types: SiLU and its gradient through one tanh (MUFU) op
  int rows_bwd = 4;  // backward fast path: rows requested together (4 or 8)
  bool interior = true;  // backward fast path: condition-free code for interior row batches
  const void* x = nullptr;
  int64_t x_ld = 0;
  const float *w = nullptr, *bias = nullptr;
  const void* init = nullptr;
  void* out = nullptr;
  int64_t out_ld = 0;
  void* final_state = nullptr;
  const void* dout = nullptr;
  int64_t dout_ld = 0;
  void* dx = nullptr;
  int64_t dx_ld = 0;
  float *dw = nullptr, *dbias = nullptr;
  void* dinit = nullptr;
  void* state = nullptr;  // step
};

// Shared-memory bytes of a scan block (host and device agree through these).
int scan_fwd_smem(int dtype_size, int NT, int CB, int Tt, int N, int Npad);
// Tsub = 4: 32-token chunks (the fixed shape with ck_every 32 only, scan_bwd_fixed_shape),
// 8: 64-token chunks.
int scan_bwd_smem(int dtype_size, int NT, int CB, int Tsub, int N, int Npad, int S);
bool scan_bwd_fixed_shape(const ScanK& k);
int scan_seq_smem(int dtype_size, int CW, int N);
int scan_q_smem(int dtype_size, int CB, int N, int S);

// Launchers: return a cudaError_t value (0 = success).
int scan_fwd_launch(const ScanK& k, CUstream_st* s);
int scan_bwd_launch(const ScanK& k, CUstream_st* s);
int scan_step_launch(const ScanK& k, CUstream_st* s);
int conv_fwd_launch(const ConvK& k, CUstream_st* s);
int conv_bwd_launch(const ConvK& k, CUstream_st* s);
int conv_step_launch(const ConvK& k, CUstream_st* s);
int conv_fast_capacity(const ConvK& k, bool bwd);  // resident blocks of the fast path, or 0

}  // namespace mambaseq::cuda::detail
