// Selective scan (S6) on the GPU: forward, backward and the single-token step.
//
//   δ = softplus(delta + bias),  h_t = exp(δ·A) ⊙ h_{t−1} + δ·u·B_t,
//   y_t = ⟨h_t, C_t⟩ + D·u_t,  out_t = y_t·silu(z_t)
//
// Every kernel walks time sequentially per (channel, state): the scan is bound by the
// special-function unit (one exp per state update), and a sequential walk does each exp
// once, with parallelism from channels, state groups and time segments instead of a
// prefix scan across threads (the reference's approach, which costs a block-wide scan per
// state and chunk). Tiles of tokens are staged in shared memory by cp.async.
//
// Forward, dstate ≤ 16, two kernels (api.cpp's fwd_plan picks by channel count):
//  - scan_fwd_q_kernel<T, S>: G = 16/S lanes per channel, S states each, so every exp is
//    computed once with G× the lanes; per-token work (softplus, gate) is shared across the
//    channel's lanes and ⟨h, C⟩ reduce-scattered over them. Used for ~12K–64K channels.
//  - scan_fwd_seq_kernel: one lane per channel holding all 16 (padded) states, so
//    softplus, ⟨h, C⟩ and the gate are done once per element, B/C are broadcast reads, and
//    the time loop only reads shared memory. Used for many channels, and for few channels
//    over long sequences with time segments: pass 1 leaves each segment's local end state
//    (from h = 0) and Σδ; a fold kernel walks the segments once (h ← exp(A·Σδ) ⊙ h + hloc)
//    leaving each segment's true start state; pass 2 starts from it and produces the
//    output (~128K walkers; the exps of all but the last segment are done twice: the
//    price of filling the chip when channels are few).
//  Pass 2 of both takes TG (16-bit types, opt-in): the gate's silu(z) through one tanh.
//
// Forward, dstate > 16 (scan_fwd_kernel): G lanes per channel, S states each; per tile
//   prep:     δ = softplus(delta + bias), δu = δ·u, B/C to f32        (per element)
//   scan:     h ← exp2(δ·A·log2e) ⊙ h + δu·B ; partial y = ⟨h, C⟩     (per lane)
//   epilogue: y = Σ_lanes partial + D·u ; out = y·silu(z)              (per element)
//
// Backward (scan_bwd_kernel, G lanes × S states per channel), chunks of CH tokens (64, or
// 32 for the common shape when the forward checkpoints every 32) from last to first:
//   pass a:  from the chunk's checkpoint (written by the forward), rerun the recurrence
//            and keep the state at every TS-token sub-chunk start (shared memory);
//   pass b:  per sub-chunk of TS tokens (8; 4 in 32-token chunks), last first: rerun its
//            TS steps keeping a_t = exp(δA) and h_t in registers, then the adjoint
//            ḡ_t = dy_t·C_t + a_{t+1}·ḡ_{t+1}:
//              dC_t += dy_t·h_t      dB_t += ḡ_t·δu_t      d(δu)_t = Σ ḡ_t·B_t
//              q = ḡ_t·a_t·h_{t−1}:  dδ_t += Σ q·A,  dA += q·δ_t
//            dB/dC are summed over the block's channels in shared memory, then added to
//            global memory with one atomic per (token, state) per block.
// The common shape (dstate 16, 4 states a lane, 128 threads, 32 channels) is compiled with
// those numbers fixed (FN = 16): the channel sums unroll, a thread's two dB/dC outputs and
// two epilogue elements are straight-line code, B/C are [token][B | C] rows; any other
// shape takes FN = 0.
// With time segments (dstate ≤ 16), scan_bwd_seg_kernel first leaves each later
// segment's local adjoint (ḡ ← a_t ⊙ (ḡ + dy_t·C_t) from ḡ = 0, walked backwards; S
// states a lane, fewer where segments are few); scan_fold_kernel<true> folds them once,
// last to first, into the adjoint each earlier segment starts from.
#include <type_traits>

#include "common.cuh"
#include "launch.h"

namespace mambaseq::cuda::detail {

namespace {

// Checkpoints (the state before token t) every p.ck_every tokens: 32 or 64, so they fall
// on tile starts of the 16- and 32-token tiles and on the start or middle of 64-token ones.
__device__ __forceinline__ bool ck_at(const ScanK& p, int t) { return (t & (p.ck_every - 1)) == 0; }
__device__ __forceinline__ float* ck_row(const ScanK& p, int b, int t, int c) {
  return p.ckpt + ((static_cast<int64_t>(b) * p.nck + t / p.ck_every) * p.dim + c) * p.N;
}

// ---- shared-memory layouts ----------------------------------------------------------
struct FwdLayout {
  int raw, raw_sz, bcraw, bcraw_sz, dd, bc, ypart, par, total;
};
__host__ __device__ inline FwdLayout fwd_layout(int es, int NT, int CB, int Tt, int N, int Npad) {
  FwdLayout L{};
  L.raw_sz = align16(3 * Tt * CB * es);  // u | delta | z
  L.bcraw_sz = align16(2 * Tt * N * es);  // B | C
  int off = 0;
  L.raw = off, off += 2 * L.raw_sz;  // double buffer
  L.bcraw = off, off += 2 * L.bcraw_sz;
  L.dd = off, off += align16(Tt * CB * 8);  // (δ, δu)
  L.bc = off, off += align16(Tt * Npad * 8);  // (B, C) as f32 pairs
  L.ypart = off, off += align16(Tt * NT * 4);
  L.par = off, off += align16(2 * CB * 4);  // bias, D
  L.total = off;
  return L;
}

struct BwdLayout {
  int raw, bcraw, dd, dy, bc, sub, part, dbc, par, total;
};
// CH: tokens a chunk (staged together, from one checkpoint), TS: tokens a sub-chunk.
__host__ __device__ inline BwdLayout bwd_layout(int es, int NT, int CB, int N, int Npad, int S, int CH, int TS) {
  BwdLayout L{};
  int off = 0;
  L.raw = off, off += align16(4 * CH * CB * es);  // u | delta | z | dout
  L.bcraw = off, off += align16(2 * CH * N * es);
  L.dd = off, off += align16(CH * CB * 8);
  L.dy = off, off += align16(CH * CB * 4);
  L.bc = off, off += align16(CH * Npad * 8);
  L.sub = off, off += align16((CH / TS) * NT * S * 4);
  L.part = off, off += align16(3 * TS * NT * 4);  // Σ ḡB | Σ qA | ⟨h,C⟩ per lane
  L.dbc = off, off += align16(TS * NT * 2 * S * 4);
  L.par = off, off += align16(4 * CB * 4);  // bias, D, dD, dbias
  L.total = off;
  return L;
}

// Sum of the G partials of one channel (contiguous, 16-byte aligned when G % 4 == 0).
__device__ __forceinline__ float sum_lanes(const float* p, int G) {
  float s = 0.f;
  if ((G & 3) == 0) {
    for (int k = 0; k < G; k += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + k);
      s += (v.x + v.y) + (v.z + v.w);
    }
  } else {
    for (int k = 0; k < G; ++k) s += p[k];
  }
  return s;
}

// A lane's S states n0 .. n0+S−1 of one channel's [N] row of the checkpoints, h_final or a
// segment slot (16-byte accesses when v4: N % 4 == 0 and the buffers 16-byte aligned;
// scalar ones left 32 partly written sectors per warp instruction, ~4× the bytes at the L2).
template <int S>
__device__ __forceinline__ void store_states(float* row, const float (&h)[S], int n0, int N, bool v4) {
  if constexpr (S % 4 == 0) {
    if (v4) {
#pragma unroll
      for (int s = 0; s < S; s += 4)
        if (n0 + s < N) *reinterpret_cast<float4*>(row + n0 + s) = make_float4(h[s], h[s + 1], h[s + 2], h[s + 3]);
      return;
    }
  }
#pragma unroll
  for (int s = 0; s < S; ++s)
    if (n0 + s < N) row[n0 + s] = h[s];
}
template <int S>
__device__ __forceinline__ void load_states(float (&h)[S], const float* row, int n0, int N, bool v4) {
  if constexpr (S % 4 == 0) {
    if (v4) {
#pragma unroll
      for (int s = 0; s < S; s += 4) {
        const float4 v = n0 + s < N ? *reinterpret_cast<const float4*>(row + n0 + s) : make_float4(0.f, 0.f, 0.f, 0.f);
        h[s] = v.x, h[s + 1] = v.y, h[s + 2] = v.z, h[s + 3] = v.w;
      }
      return;
    }
  }
#pragma unroll
  for (int s = 0; s < S; ++s) h[s] = n0 + s < N ? row[n0 + s] : 0.f;
}

// Time segments' slot q of (sequence b, channel c) in ws [batch, P, dim, 17]: the local end
// state (forward) or adjoint (backward) in [0, N), Σδ of the segment at 16.
__device__ __forceinline__ float* ws_slot(const ScanK& p, int b, int q, int c) {
  return p.ws + ((static_cast<int64_t>(b) * p.P + q) * p.dim + c) * 17;
}

// Stage rows [t0, t0+Tt) of a [rows, dim] tensor's channels [c0, c0+CB) into smem
// (zeros outside the sequence or the channel range).
template <typename T>
__device__ __forceinline__ void stage_rows(T* dst, const T* src, int64_t ld, int64_t row0, int t0,
                                           int Tt, int L, int c0, int CB, int dim, bool vec,
                                           int tid, int NT) {
  if (vec) {
    constexpr int V = kVec<T>;
    const int vpr = CB / V, n = Tt * vpr;
    const bool pow2 = (vpr & (vpr - 1)) == 0;
    const int lg = __ffs(vpr) - 1;
    for (int i = tid; i < n; i += NT) {
      const int t = pow2 ? i >> lg : i / vpr, j = i - t * vpr;
      const int cg = c0 + j * V;
      const bool ok = t0 + t < L && cg < dim;
      const T* s = ok ? src + (row0 + t0 + t) * ld + cg : src;
      cp_async16(dst + t * CB + j * V, s, ok);
    }
  } else {
    const int n = Tt * CB;
    for (int i = tid; i < n; i += NT) {
      const int t = i / CB, cl = i - t * CB;
      const bool ok = t0 + t < L && c0 + cl < dim;
      dst[i] = ok ? src[(row0 + t0 + t) * ld + c0 + cl] : from_f<T>(0.f);
    }
  }
}

// B and C rows of the block's group: [Tt][N] each; 16- or 4-byte async copies when the
// rows allow, else element by element.
template <typename T>
__device__ __forceinline__ void stage_bc(T* dstB, T* dstC, const ScanK& p, int64_t row0, int t0,
                                         int Tt, int grp, int tid, int NT) {
  const T* B = static_cast<const T*>(p.B);
  const T* C = static_cast<const T*>(p.C);
  const int N = p.N, L = p.len;
  const int64_t col = static_cast<int64_t>(grp) * N;
  if (p.bc4) {
    const int w = p.bc4 == 2 ? 16 : 4;  // bytes per copy
    const int wpr = N * static_cast<int>(sizeof(T)) / w, n = Tt * wpr;
    const bool pow2 = (wpr & (wpr - 1)) == 0;
    const int lg = __ffs(wpr) - 1;
    for (int i = tid; i < n; i += NT) {
      const int t = pow2 ? i >> lg : i / wpr, k = i - t * wpr;
      const bool ok = t0 + t < L;
      const int64_t off = ok ? ((row0 + t0 + t) * p.bc_ld + col) : 0;
      char* db = reinterpret_cast<char*>(dstB + t * N) + w * k;
      char* dc = reinterpret_cast<char*>(dstC + t * N) + w * k;
      const char* sb = reinterpret_cast<const char*>(B + off) + (ok ? w * k : 0);
      const char* sc = reinterpret_cast<const char*>(C + off) + (ok ? w * k : 0);
      if (w == 16) {
        cp_async16(db, sb, ok);
        cp_async16(dc, sc, ok);
      } else {
        cp_async4(db, sb, ok);
        cp_async4(dc, sc, ok);
      }
    }
  } else {
    const int n = Tt * N;
    for (int i = tid; i < n; i += NT) {
      const int t = i / N, k = i - t * N;
      const bool ok = t0 + t < L;
      const int64_t off = (row0 + t0 + t) * p.bc_ld + col + k;
      dstB[i] = ok ? B[off] : from_f<T>(0.f);
      dstC[i] = ok ? C[off] : from_f<T>(0.f);
    }
  }
}

// B/C to f32 pairs [Tt][Npad] (B_n, C_n), zero for the padding states.
template <typename T>
__device__ __forceinline__ void prep_bc(float2* bc, const T* Bs, const T* Cs, int Tt, int N,
                                        int Npad, int tid, int NT) {
  if ((N & 3) == 0) {
    const int q4 = Npad / 4, n = Tt * q4;
    for (int i = tid; i < n; i += NT) {
      const int t = i / q4, k = (i - t * q4) * 4;
      float b[4] = {0.f, 0.f, 0.f, 0.f}, c[4] = {0.f, 0.f, 0.f, 0.f};
      if (k < N) load4(Bs + t * N + k, b), load4(Cs + t * N + k, c);
      float4* dst = reinterpret_cast<float4*>(bc + t * Npad + k);
      dst[0] = make_float4(b[0], c[0], b[1], c[1]);
      dst[1] = make_float4(b[2], c[2], b[3], c[3]);
    }
  } else {
    const int n = Tt * Npad;
    for (int i = tid; i < n; i += NT) {
      const int t = i / Npad, k = i - t * Npad;
      bc[i] = k < N ? make_float2(to_f(Bs[t * N + k]), to_f(Cs[t * N + k])) : make_float2(0.f, 0.f);
    }
  }
}

template <int S>
__device__ __forceinline__ void load_bc(const float2* row, float (&Bv)[S], float (&Cv)[S]) {
  if constexpr (S == 1) {
    const float2 v = row[0];
    Bv[0] = v.x, Cv[0] = v.y;
  } else {
#pragma unroll
    for (int s = 0; s < S; s += 2) {
      const float4 v = *reinterpret_cast<const float4*>(row + s);
      Bv[s] = v.x, Cv[s] = v.y, Bv[s + 1] = v.z, Cv[s + 1] = v.w;
    }
  }
}

// Per element of a staged tile: (δ, δu), and for the backward dy = dout·silu(z).
// VE consecutive channels per item, all loads before any store (so the loop pipelines).
template <typename T, int VE, bool BWD>
__device__ __forceinline__ void prep_elems(float2* dd, float* dy, const T* ru, const T* rd,
                                           const T* rz, const T* ro, const float* sbias, int Tt,
                                           int CB, int lgCB, int tn, bool softplus, int tid, int NT) {
  const int items = (Tt * CB) / VE;
  for (int q = tid; q < items; q += NT) {
    const int e0 = q * VE, t = e0 >> lgCB, k = e0 & (CB - 1);
    float dv[VE], uv[VE], zv[VE], ov[VE];
    if constexpr (VE == 4) {
      load4(rd + e0, dv), load4(ru + e0, uv);
      if (BWD) {
        load4(ro + e0, ov);
        if (rz) load4(rz + e0, zv);
      }
    } else {
      dv[0] = to_f(rd[e0]), uv[0] = to_f(ru[e0]);
      if (BWD) {
        ov[0] = to_f(ro[e0]);
        if (rz) zv[0] = to_f(rz[e0]);
      }
    }
    float2 r[VE];
    float g[VE];
#pragma unroll
    for (int j = 0; j < VE; ++j) {
      float dt = 0.f, du = 0.f, gy = 0.f;
      if (t < tn) {
        dt = dv[j] + sbias[k + j];
        if (softplus) dt = softplus_f(dt);
        du = dt * uv[j];
        if (BWD) gy = rz ? ov[j] * silu_f(zv[j]) : ov[j];
      }
      r[j] = make_float2(dt, du);
      g[j] = gy;
    }
    if constexpr (VE == 4) {
      float4* o = reinterpret_cast<float4*>(dd + e0);
      o[0] = make_float4(r[0].x, r[0].y, r[1].x, r[1].y);
      o[1] = make_float4(r[2].x, r[2].y, r[3].x, r[3].y);
      if (BWD) *reinterpret_cast<float4*>(dy + e0) = make_float4(g[0], g[1], g[2], g[3]);
    } else {
      dd[e0] = r[0];
      if (BWD) dy[e0] = g[0];
    }
  }
}

// Forward epilogue of a tile: y = Σ lane partials + D·u, gated; one store per element.
template <typename T, int VE>
__device__ __forceinline__ void fwd_epilogue(T* out, int64_t out_ld, int64_t row0, int t0, int c0,
                                             int dim, const float* ypart, const T* ru, const T* rz,
                                             const float* sD, int G, int NT, int CB, int lgCB,
                                             int tn, int tid) {
  const int items = (tn * CB) / VE;
  for (int q = tid; q < items; q += NT) {
    const int e0 = q * VE, t = e0 >> lgCB, k = e0 & (CB - 1);
    float uv[VE], zv[VE], y[VE];
    if constexpr (VE == 4) {
      load4(ru + e0, uv);
      if (rz) load4(rz + e0, zv);
    } else {
      uv[0] = to_f(ru[e0]);
      if (rz) zv[0] = to_f(rz[e0]);
    }
#pragma unroll
    for (int j = 0; j < VE; ++j) {
      y[j] = sum_lanes(ypart + t * NT + (k + j) * G, G) + sD[k + j] * uv[j];
      if (rz) y[j] *= silu_f(zv[j]);
    }
    T* o = out + (row0 + t0 + t) * out_ld + c0 + k;
#pragma unroll
    for (int j = 0; j < VE; ++j)
      if (c0 + k + j < dim) o[j] = from_f<T>(y[j]);
  }
}

// Tokens per register group of the forward scan: the group's inputs are loaded before
// the previous group's partial sums are stored, so shared-memory latency overlaps the
// arithmetic (a store between two loads would otherwise serialise every step).
template <int S>
constexpr int kGroup = 16 / S;

// ---- forward ------------------------------------------------------------------------
template <typename T, int S>
__global__ void __launch_bounds__(256) scan_fwd_kernel(const ScanK p) {
  constexpr int U = kGroup<S>;
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, NT = blockDim.x;
  const int G = p.G, CB = p.CB, Tt = p.Tt, N = p.N, L = p.len, dim = p.dim, Npad = p.Npad;
  const int lgG = __ffs(G) - 1, lgCB = __ffs(CB) - 1;
  const int cl = tid >> lgG, g = tid & (G - 1);
  const int b = blockIdx.y, c0 = blockIdx.x * CB, c = c0 + cl;
  const bool cvalid = c < dim;
  const int grp = c0 / p.dpg;
  const int64_t row0 = static_cast<int64_t>(b) * L;
  const FwdLayout lay = fwd_layout(sizeof(T), NT, CB, Tt, N, Npad);
  float2* dd = reinterpret_cast<float2*>(smem + lay.dd);
  float2* bc = reinterpret_cast<float2*>(smem + lay.bc);
  float* ypart = reinterpret_cast<float*>(smem + lay.ypart);
  float* sbias = reinterpret_cast<float*>(smem + lay.par);
  float* sD = sbias + CB;
  const T* U_ = static_cast<const T*>(p.u);
  const T* Dl = static_cast<const T*>(p.delta);
  const T* Z = static_cast<const T*>(p.z);
  T* out = static_cast<T*>(p.out);
  const bool v4 = (CB & 3) == 0;

  float A2[S], h[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = g * S + s;
    const bool ok = cvalid && n < N;
    A2[s] = ok ? p.A[static_cast<int64_t>(c) * N + n] * kLog2e : 0.f;
    h[s] = ok && p.h0 ? p.h0[(static_cast<int64_t>(b) * dim + c) * N + n] : 0.f;
  }
  for (int i = tid; i < CB; i += NT) {
    const bool ok = c0 + i < dim;
    sbias[i] = ok && p.bias ? p.bias[c0 + i] : 0.f;
    sD[i] = ok && p.D ? p.D[c0 + i] : 0.f;
  }

  auto raw = [&](int tile) { return reinterpret_cast<T*>(smem + lay.raw + (tile & 1) * lay.raw_sz); };
  auto rawbc = [&](int tile) { return reinterpret_cast<T*>(smem + lay.bcraw + (tile & 1) * lay.bcraw_sz); };
  auto issue = [&](int tile) {
    T* ru = raw(tile);
    const int t0 = tile * Tt;
    stage_rows<T>(ru, U_, p.u_ld, row0, t0, Tt, L, c0, CB, dim, p.vec, tid, NT);
    stage_rows<T>(ru + Tt * CB, Dl, p.delta_ld, row0, t0, Tt, L, c0, CB, dim, p.vec, tid, NT);
    if (Z) stage_rows<T>(ru + 2 * Tt * CB, Z, p.z_ld, row0, t0, Tt, L, c0, CB, dim, p.vec, tid, NT);
    T* rb = rawbc(tile);
    stage_bc<T>(rb, rb + Tt * N, p, row0, t0, Tt, grp, tid, NT);
    cp_async_commit();
  };
  auto prep = [&](int tile) {
    const T* ru = raw(tile);
    const int tn = min(Tt, L - tile * Tt);
    if (v4)
      prep_elems<T, 4, false>(dd, nullptr, ru, ru + Tt * CB, nullptr, nullptr, sbias, Tt, CB, lgCB, tn, p.softplus, tid, NT);
    else
      prep_elems<T, 1, false>(dd, nullptr, ru, ru + Tt * CB, nullptr, nullptr, sbias, Tt, CB, lgCB, tn, p.softplus, tid, NT);
    const T* rb = rawbc(tile);
    prep_bc<T>(bc, rb, rb + Tt * N, Tt, N, Npad, tid, NT);
  };

  const int ntiles = (L + Tt - 1) / Tt;
  issue(0);
  cp_async_wait<0>();
  __syncthreads();
  prep(0);
  __syncthreads();
  const float2* bcl = bc + g * S;
  for (int tile = 0; tile < ntiles; ++tile) {
    const int t0 = tile * Tt, tn = min(Tt, L - t0);
    if (tile + 1 < ntiles) issue(tile + 1);  // lands while this tile is scanned

    if (p.ckpt && ck_at(p, t0) && cvalid) store_states<S>(ck_row(p, b, t0, c), h, g * S, N, p.ck4);

    // scan: sequential in time, S independent recurrences per lane, U tokens a group.
    // Tokens past the end carry δ = 0 and B = C = 0: they leave h unchanged.
    float2 d[U];
    float Bv[U][S], Cv[U][S];
#pragma unroll
    for (int u = 0; u < U; ++u) d[u] = dd[u * CB + cl], load_bc<S>(bcl + u * Npad, Bv[u], Cv[u]);
    for (int g0 = 0; g0 < tn; g0 += U) {
      if (p.ckpt && g0 > 0 && ck_at(p, g0) && cvalid)  // tiles longer than the interval
        store_states<S>(ck_row(p, b, t0 + g0, c), h, g * S, N, p.ck4);
      float acc[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        float a = 0.f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          h[s] = fmaf(ex2(d[u].x * A2[s]), h[s], d[u].y * Bv[u][s]);
          a = fmaf(h[s], Cv[u][s], a);
        }
        acc[u] = a;
      }
      if (g0 + U < tn) {
#pragma unroll
        for (int u = 0; u < U; ++u)
          d[u] = dd[(g0 + U + u) * CB + cl], load_bc<S>(bcl + (g0 + U + u) * Npad, Bv[u], Cv[u]);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) ypart[(g0 + u) * NT + tid] = acc[u];
    }
    cp_async_wait<0>();
    __syncthreads();  // partials complete; the next tile's data visible

    const T* ru = raw(tile);
    if (v4)
      fwd_epilogue<T, 4>(out, p.out_ld, row0, t0, c0, dim, ypart, ru, Z ? ru + 2 * Tt * CB : nullptr, sD, G, NT, CB, lgCB, tn, tid);
    else
      fwd_epilogue<T, 1>(out, p.out_ld, row0, t0, c0, dim, ypart, ru, Z ? ru + 2 * Tt * CB : nullptr, sD, G, NT, CB, lgCB, tn, tid);
    if (tile + 1 < ntiles) prep(tile + 1);
    __syncthreads();  // dd/bc ready for the next scan; this tile's buffers free for issue()
  }

  if (p.h_final && cvalid) store_states<S>(p.h_final + (static_cast<int64_t>(b) * dim + c) * N, h, g * S, N, p.ck4);
}

// ---- forward, G lanes per channel, S = 16/G states per lane ----------------------------
// For dstate ≤ 16 (padded to 16). Lane (channel, state group q) keeps S states in
// registers, so every exp is computed once per state update. A warp holds W = 32/G
// channels. Tokens go in groups of U = 8: lane q prepares k = U/G of them (δ, δu, and
// keeps u, z), hands (δ, δu) to its channel's lanes through a per-warp shared buffer,
// all lanes run the U updates on their states (B/C of their group broadcast from shared
// memory as 16-byte loads), and the U partial ⟨h, C⟩ are reduce-scattered over the G
// lanes so that lane q finishes its own k tokens (D skip, gate, store).
// Time segments (few channels, long sequences): pass 1 leaves each segment's local end
// state (from h = 0) and Σδ in ws; scan_fold_kernel<false> turns those into start states.
constexpr int kQN = 16;  // padded states per channel
constexpr int kQT = 64;  // tile tokens (checkpoints fall on tile starts and, every 32, in the middle)
constexpr int kQU = 8;   // tokens per group

struct QLayout {
  int raw, raw_sz, bcraw, bcraw_sz, bcf, wbuf, total;
};
__host__ __device__ inline QLayout q_layout(int es, int CB, int N, int nwarps) {
  QLayout L{};
  L.raw_sz = align16(3 * kQT * CB * es);  // delta | u | z
  L.bcraw_sz = align16(2 * kQT * N * es);
  int off = 0;
  L.raw = off, off += 2 * L.raw_sz;
  L.bcraw = off, off += 2 * L.bcraw_sz;
  L.bcf = off, off += 2 * kQT * 2 * kQN * 4;  // f32 [token][G blocks of (B×S, C×S)], double buffered
  L.wbuf = off, off += nwarps * kQU * 32 * 8;  // per warp (δ, δu) [U][channels of the warp] (≤ 32 channels)
  L.total = off;
  return L;
}

// B/C rows of a tile to f32, lane group q's 2S values contiguous: [B_qS..qS+S−1, C_qS..].
template <typename T, int S>
__device__ __forceinline__ void prep_bc_q(float* dst, const T* Bs, const T* Cs, int N, int tid, int NT) {
  for (int i = tid; i < kQT * kQN; i += NT) {
    const int t = i / kQN, n = i - t * kQN;
    float b = 0.f, c = 0.f;
    if (n < N) b = to_f(Bs[t * N + n]), c = to_f(Cs[t * N + n]);
    float* d = dst + t * 2 * kQN + (n / S) * 2 * S + (n % S);
    d[0] = b, d[S] = c;
  }
}

// The gate's silu(z): exact, or (TG: 16-bit types, MAMBASEQ_SCAN_TANH=1) through one tanh op.
template <bool TG>
__device__ __forceinline__ float gate_silu(float z) {
  if constexpr (TG) return silu_of_half(0.5f * z);
  return silu_f(z);
}

template <typename T, int S, int PASS, bool TG = false>
__global__ void __launch_bounds__(128) scan_fwd_q_kernel(const ScanK p) {
  constexpr int G = kQN / S, W = 32 / G, K = kQU / G;
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, NT = blockDim.x, CB = NT / G;
  const int warp = tid >> 5, lane = tid & 31, chw = lane / G, q = lane % G;
  const int cb = warp * W + chw;  // channel within the block
  const int N = p.N, L = p.len, dim = p.dim;
  const int c0 = blockIdx.x * CB, c = c0 + cb, seg = blockIdx.y, b = blockIdx.z;
  const bool cvalid = c < dim;
  const int grp = c0 / p.dpg;
  const int64_t row0 = static_cast<int64_t>(b) * L;
  const int s0 = seg * p.Lseg, s1 = min(L, s0 + p.Lseg);
  const QLayout lay = q_layout(sizeof(T), CB, N, NT / 32);
  const T* Dl = static_cast<const T*>(p.delta);
  const T* U_ = static_cast<const T*>(p.u);
  const T* Z = PASS == 2 ? static_cast<const T*>(p.z) : nullptr;
  T* out = static_cast<T*>(p.out);
  float2* wb = reinterpret_cast<float2*>(smem + lay.wbuf) + warp * kQU * 32;

  float A2[S], h[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = q * S + s;
    A2[s] = cvalid && n < N ? p.A[static_cast<int64_t>(c) * N + n] * kLog2e : 0.f;
    h[s] = 0.f;
  }
  const float bias = cvalid && p.bias ? p.bias[c] : 0.f;
  const float Dv = cvalid && p.D ? p.D[c] : 0.f;
  float dsum = 0.f;
  if (PASS == 2) {
    if (seg > 0) {  // start state left by scan_fold_kernel<false>
      load_states<S>(h, ws_slot(p, b, seg - 1, cvalid ? c : 0), q * S, N, false);
    } else if (cvalid && p.h0) {
#pragma unroll
      for (int s = 0; s < S; ++s)
        if (q * S + s < N) h[s] = p.h0[(static_cast<int64_t>(b) * dim + c) * N + q * S + s];
    }
  }

  auto raw = [&](int i) { return reinterpret_cast<T*>(smem + lay.raw + (i & 1) * lay.raw_sz); };
  auto rawbc = [&](int i) { return reinterpret_cast<T*>(smem + lay.bcraw + (i & 1) * lay.bcraw_sz); };
  auto bcf = [&](int i) { return reinterpret_cast<float*>(smem + lay.bcf + (i & 1) * kQT * 2 * kQN * 4); };
  auto issue = [&](int i) {
    T* r = raw(i);
    const int t0 = s0 + i * kQT;
    stage_rows<T>(r, Dl, p.delta_ld, row0, t0, kQT, s1, c0, CB, dim, p.vec, tid, NT);
    stage_rows<T>(r + kQT * CB, U_, p.u_ld, row0, t0, kQT, s1, c0, CB, dim, p.vec, tid, NT);
    if (Z) stage_rows<T>(r + 2 * kQT * CB, Z, p.z_ld, row0, t0, kQT, s1, c0, CB, dim, p.vec, tid, NT);
    T* rb = rawbc(i);
    ScanK qk = p;
    qk.len = s1;  // stage_bc zero-fills rows at or past len
    stage_bc<T>(rb, rb + kQT * N, qk, row0, t0, kQT, grp, tid, NT);
    cp_async_commit();
  };
  auto prep = [&](int i) {
    const T* rb = rawbc(i);
    prep_bc_q<T, S>(bcf(i), rb, rb + kQT * N, N, tid, NT);
  };

  const int ntiles = (s1 - s0 + kQT - 1) / kQT;
  issue(0);
  cp_async_wait<0>();
  __syncthreads();
  prep(0);
  __syncthreads();
  for (int i = 0; i < ntiles; ++i) {
    const int t0 = s0 + i * kQT, tn = min(kQT, s1 - t0);
    if (i + 1 < ntiles) issue(i + 1);
    if (PASS == 2 && p.ckpt && ck_at(p, t0) && cvalid) store_states<S>(ck_row(p, b, t0, c), h, q * S, N, p.ck4);
    const T* rd = raw(i);
    const T* ru = rd + kQT * CB;
    const T* rz = rd + 2 * kQT * CB;
    const float* bct = bcf(i) + q * 2 * S;
    float ys[kQT / G];  // this lane's outputs of the tile, stored after its last token
    constexpr int NG = kQT / kQU;
    float uk[NG][K], zk[NG][K];
    // prep of group g: this lane's K tokens (δ, δu) into the warp's buffer g & 1, u and z kept
    auto prep_group = [&](int g) {
      float2* wbg = wb + (g & 1) * kQU * W;
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const int tl = g * kQU + q * K + j;
        float dt = 0.f, du = 0.f;
        uk[g][j] = 0.f, zk[g][j] = 0.f;
        if (tl < tn) {
          dt = to_f(rd[tl * CB + cb]) + bias;
          if (p.softplus) dt = softplus_nb(dt);
          uk[g][j] = to_f(ru[tl * CB + cb]);
          du = dt * uk[g][j];
          if (PASS == 2 && Z) zk[g][j] = to_f(rz[tl * CB + cb]);
        }
        if (PASS == 1) dsum += dt;
        wbg[(q * K + j) * W + chw] = make_float2(dt, du);
      }
    };
    prep_group(0);
    __syncwarp();
#pragma unroll
    for (int g = 0; g < NG; ++g) {
      if (g * kQU >= tn) break;
      // Inside the tile: its middle, with checkpoints every 32 (the general ck_at test here
      // costs the S = 8 kernel 14 registers, 3 → 2 blocks an SM).
      static_assert(kQT == 64 && 32 % kQU == 0, "the q-kernel's checkpoints: tile start and middle");
      if (PASS == 2 && g * kQU == 32 && p.ck_every == 32 && p.ckpt && cvalid)
        store_states<S>(ck_row(p, b, t0 + 32, c), h, q * S, N, p.ck4);
      const float2* wbg = wb + (g & 1) * kQU * W;
      float y[kQU];
#pragma unroll
      for (int t = 0; t < kQU; ++t) {
        const float2 d = wbg[t * W + chw];
        const float* r = bct + (g * kQU + t) * 2 * kQN;
        // (B×S, C×S) of this lane's states; pass 1 needs only B (S ≥ 4: C not loaded)
        constexpr int NV = (PASS == 1 && S >= 4) ? S : 2 * S;
        float v[2 * S];
#pragma unroll
        for (int e = 0; e < NV; e += 4) {
          const float4 x4 = *reinterpret_cast<const float4*>(r + e);
          v[e] = x4.x, v[e + 1] = x4.y, v[e + 2] = x4.z, v[e + 3] = x4.w;
        }
        float a = 0.f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          h[s] = fmaf(ex2(d.x * A2[s]), h[s], d.y * v[s]);
          if (PASS == 2) a = fmaf(h[s], v[S + s], a);
        }
        y[t] = a;
      }
      // the next group's prep overlaps this group's updates (other buffer)
      if (g + 1 < NG && (g + 1) * kQU < tn) prep_group(g + 1);
      __syncwarp();
      if (PASS == 2) {
        // reduce-scatter over the G lanes: lane q ends with tokens q·K .. q·K+K−1
        int n = kQU;
#pragma unroll
        for (int m = G / 2; m >= 1; m /= 2) {
          const bool up = (q & m) != 0;
#pragma unroll
          for (int j = 0; j < kQU / 2; ++j) {
            if (j < n / 2) {
              const float send = up ? y[j] : y[j + n / 2];
              const float keep = up ? y[j + n / 2] : y[j];
              y[j] = keep + __shfl_xor_sync(0xffffffffu, send, m);
            }
          }
          n /= 2;
        }
#pragma unroll
        for (int j = 0; j < K; ++j) {
          float v = fmaf(Dv, uk[g][j], y[j]);
          if (Z) v *= gate_silu<TG>(zk[g][j]);
          ys[g * K + j] = v;
        }
      }
    }
    if (PASS == 2 && cvalid) {
#pragma unroll
      for (int g = 0; g < kQT / kQU; ++g)
#pragma unroll
        for (int j = 0; j < K; ++j) {
          const int tl = g * kQU + q * K + j;
          if (tl < tn) out[(row0 + t0 + tl) * p.out_ld + c] = from_f<T>(ys[g * K + j]);
        }
    }
    if (i + 1 < ntiles) {
      cp_async_wait<0>();
      __syncthreads();  // tile i+1 landed; everyone is done with bcf(i+1)'s old contents
      prep(i + 1);
      __syncthreads();
    }
  }
  if (PASS == 1) {
#pragma unroll
    for (int m = G / 2; m >= 1; m /= 2) dsum += __shfl_xor_sync(0xffffffffu, dsum, m);
    if (!cvalid) return;
    float* w = ws_slot(p, b, seg, c);
    store_states<S>(w, h, q * S, N, false);
    if (q == 0) w[16] = dsum;
  } else if (p.h_final && seg == p.P - 1 && cvalid) {
    store_states<S>(p.h_final + (static_cast<int64_t>(b) * dim + c) * N, h, q * S, N, p.ck4);
  }
}

// ---- lane-per-channel helpers for the backward's segment pass -------------------------
constexpr int kSeqN = 16;  // states per lane
constexpr int kSeqT = 16;  // tile tokens (small tiles: more blocks fit in shared memory)

struct SeqLayout {
  int raw, raw_sz, bcraw, bcraw_sz, bcf, total;
};
__host__ __device__ inline SeqLayout seq_layout(int es, int CW, int N) {
  SeqLayout L{};
  L.raw_sz = align16(3 * kSeqT * CW * es);  // delta | u | z
  L.bcraw_sz = align16(2 * kSeqT * N * es);
  int off = 0;
  L.raw = off, off += 2 * L.raw_sz;
  L.bcraw = off, off += 2 * L.bcraw_sz;
  L.bcf = off, off += 2 * kSeqT * kSeqN * 8;  // (B, C) f32 pairs, double buffered
  L.total = off;
  return L;
}
// ---- forward, one lane per channel (all 16 states in it) ------------------------------
// The same two passes with G = 1: per-element work once per lane, B/C broadcast, no
// partial sums; the best shape where channels are many (or segments are needed anyway).
template <typename T>
__device__ __forceinline__ void st_global(T* p, float v) {
  if constexpr (sizeof(T) == 4) {
    asm volatile("st.global.f32 [%0], %1;" ::"l"(p), "f"(v));
  } else {
    const T x = from_f<T>(v);
    asm volatile("st.global.b16 [%0], %1;" ::"l"(p), "h"(*reinterpret_cast<const unsigned short*>(&x)));
  }
}

// pass = 1: local end state and Σδ of segment p (from h = 0), into ws.
// pass = 2: the output, from the folded start state.
template <typename T, int PASS, bool TG = false>
__global__ void __launch_bounds__(128) scan_fwd_seq_kernel(const ScanK p) {
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, CW = blockDim.x;
  const int N = p.N, L = p.len, dim = p.dim;
  const int c0 = blockIdx.x * CW, c = c0 + tid, seg = blockIdx.y, b = blockIdx.z;
  const bool cvalid = c < dim;
  const int grp = c0 / p.dpg;
  const int64_t row0 = static_cast<int64_t>(b) * L;
  const int s0 = seg * p.Lseg, s1 = min(L, s0 + p.Lseg);
  const SeqLayout lay = seq_layout(sizeof(T), CW, N);
  const T* Dl = static_cast<const T*>(p.delta);
  const T* U_ = static_cast<const T*>(p.u);
  const T* Z = PASS == 2 ? static_cast<const T*>(p.z) : nullptr;
  T* out = static_cast<T*>(p.out);
  float A2[kSeqN], h[kSeqN];
#pragma unroll
  for (int n = 0; n < kSeqN; ++n) {
    A2[n] = cvalid && n < N ? p.A[static_cast<int64_t>(c) * N + n] * kLog2e : 0.f;
    h[n] = 0.f;
  }
  const float bias = cvalid && p.bias ? p.bias[c] : 0.f;
  const float Dv = cvalid && p.D ? p.D[c] : 0.f;
  float dsum = 0.f;
  if (PASS == 2) {
    if (seg > 0) {  // start state left by scan_fold_kernel<false>
      load_states<kSeqN>(h, ws_slot(p, b, seg - 1, cvalid ? c : 0), 0, N, false);
    } else if (cvalid && p.h0) {
#pragma unroll
      for (int n = 0; n < kSeqN; ++n)
        if (n < N) h[n] = p.h0[(static_cast<int64_t>(b) * dim + c) * N + n];
    }
  }

  auto raw = [&](int i) { return reinterpret_cast<T*>(smem + lay.raw + (i & 1) * lay.raw_sz); };
  auto rawbc = [&](int i) { return reinterpret_cast<T*>(smem + lay.bcraw + (i & 1) * lay.bcraw_sz); };
  auto bcf = [&](int i) { return reinterpret_cast<float2*>(smem + lay.bcf + (i & 1) * kSeqT * kSeqN * 8); };
  auto issue = [&](int i) {
    T* r = raw(i);
    const int t0 = s0 + i * kSeqT;
    const int lim = s1;  // rows past the segment are zero-filled
    stage_rows<T>(r, Dl, p.delta_ld, row0, t0, kSeqT, lim, c0, CW, dim, p.vec, tid, CW);
    stage_rows<T>(r + kSeqT * CW, U_, p.u_ld, row0, t0, kSeqT, lim, c0, CW, dim, p.vec, tid, CW);
    if (Z) stage_rows<T>(r + 2 * kSeqT * CW, Z, p.z_ld, row0, t0, kSeqT, lim, c0, CW, dim, p.vec, tid, CW);
    T* rb = rawbc(i);
    ScanK q = p;
    q.len = lim;  // stage_bc zero-fills rows at or past len
    stage_bc<T>(rb, rb + kSeqT * N, q, row0, t0, kSeqT, grp, tid, CW);
    cp_async_commit();
  };
  auto prep = [&](int i) {
    const T* rb = rawbc(i);
    prep_bc<T>(bcf(i), rb, rb + kSeqT * N, kSeqT, N, kSeqN, tid, CW);
  };

  const int ntiles = (s1 - s0 + kSeqT - 1) / kSeqT;
  issue(0);
  cp_async_wait<0>();
  __syncthreads();
  prep(0);
  __syncthreads();
  for (int i = 0; i < ntiles; ++i) {
    const int t0 = s0 + i * kSeqT, tn = min(kSeqT, s1 - t0);
    if (i + 1 < ntiles) issue(i + 1);
    if (PASS == 2 && p.ckpt && ck_at(p, t0) && cvalid) store_states<kSeqN>(ck_row(p, b, t0, c), h, 0, N, p.ck4);
    const T* rd = raw(i);
    const T* ru = rd + kSeqT * CW;
    const T* rz = rd + 2 * kSeqT * CW;
    const float4* bc4 = reinterpret_cast<const float4*>(bcf(i));
    // The tile's outputs stay in registers until its last token: a store inside the loop
    // would keep the next token's shared-memory loads from being issued early.
    float ys[kSeqT];
#pragma unroll
    for (int t = 0; t < kSeqT; ++t) {
      if (t >= tn) break;
      float dt = to_f(rd[t * CW + tid]) + bias;
      if (p.softplus) dt = softplus_f(dt);
      const float uu = to_f(ru[t * CW + tid]);
      const float du = dt * uu;
      float y = 0.f;
#pragma unroll
      for (int n = 0; n < kSeqN; n += 2) {
        const float4 v = bc4[t * (kSeqN / 2) + n / 2];  // (B_n, C_n, B_n+1, C_n+1), broadcast
        h[n] = fmaf(ex2(dt * A2[n]), h[n], du * v.x);
        h[n + 1] = fmaf(ex2(dt * A2[n + 1]), h[n + 1], du * v.z);
        if (PASS == 2) y = fmaf(h[n], v.y, fmaf(h[n + 1], v.w, y));
      }
      if (PASS == 1) {
        dsum += dt;
      } else {
        y = fmaf(Dv, uu, y);
        if (Z) y *= gate_silu<TG>(to_f(rz[t * CW + tid]));
        ys[t] = y;
      }
    }
    if (PASS == 2 && cvalid) {
#pragma unroll
      for (int t = 0; t < kSeqT; ++t)
        if (t < tn) st_global(out + (row0 + t0 + t) * p.out_ld + c, ys[t]);
    }
    if (i + 1 < ntiles) {
      cp_async_wait<0>();
      __syncthreads();  // tile i+1 landed; everyone is done with bcf(i+1)'s old contents
      prep(i + 1);
      __syncthreads();
    }
  }
  if (!cvalid) return;
  if (PASS == 1) {
    float* w = ws_slot(p, b, seg, c);
    store_states<kSeqN>(w, h, 0, N, false);
    w[16] = dsum;
  } else if (p.h_final && seg == p.P - 1) {
    store_states<kSeqN>(p.h_final + (static_cast<int64_t>(b) * dim + c) * N, h, 0, N, p.ck4);
  }
}


// Backward, first pass for time segments: the local adjoint of segment q ≥ 1, i.e. the
// gradient w.r.t. the state before its first token from its own outputs alone
// (ḡ ← a_t ⊙ (ḡ + dy_t·C_t), walked last token to first from ḡ = 0), and Σδ.
// Lane = (channel, S of its 16 padded states), G = 16/S lanes a channel, CW = 128/G
// channels a block. The states need nothing from each other here, so every lane does
// the per-token work (softplus, dy) itself: S < 16 buys warps where the segments are few
// (one segment of 8·1536 channels is only 384 warps at S = 16: 1 a scheduler, 290 µs).
template <typename T, int S>
__global__ void __launch_bounds__(128) scan_bwd_seg_kernel(const ScanK p) {
  constexpr int G = kSeqN / S;
  extern __shared__ __align__(16) unsigned char smem[];
  const int tid = threadIdx.x, NT = blockDim.x, CW = NT / G;
  const int cl = tid / G, q = tid % G;
  const int N = p.N, L = p.len, dim = p.dim;
  const int c0 = blockIdx.x * CW, c = c0 + cl, seg = blockIdx.y + 1, b = blockIdx.z;
  const bool cvalid = c < dim;
  const int grp = c0 / p.dpg;
  const int64_t row0 = static_cast<int64_t>(b) * L;
  const int s0 = seg * p.Lseg, s1 = min(L, s0 + p.Lseg);
  const SeqLayout lay = seq_layout(sizeof(T), CW, N);
  const bool vec = p.vec && (CW * static_cast<int>(sizeof(T))) % 16 == 0;  // 16-byte rows of CW channels
  const T* Dl = static_cast<const T*>(p.delta);
  const T* Z = static_cast<const T*>(p.z);
  const T* DO = static_cast<const T*>(p.dout);
  float A2[S], gr[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = q * S + s;
    A2[s] = cvalid && n < N ? p.A[static_cast<int64_t>(c) * N + n] * kLog2e : 0.f;
    gr[s] = 0.f;
  }
  const float bias = cvalid && p.bias ? p.bias[c] : 0.f;
  float dsum = 0.f;
  auto raw = [&](int i) { return reinterpret_cast<T*>(smem + lay.raw + (i & 1) * lay.raw_sz); };
  auto rawbc = [&](int i) { return reinterpret_cast<T*>(smem + lay.bcraw + (i & 1) * lay.bcraw_sz); };
  auto bcf = [&](int i) { return reinterpret_cast<float2*>(smem + lay.bcf + (i & 1) * kSeqT * kSeqN * 8); };
  const int ntiles = (s1 - s0 + kSeqT - 1) / kSeqT;
  // Tiles are walked last to first; j counts them (buffers alternate on j).
  auto issue = [&](int j) {
    const int i = ntiles - 1 - j;
    T* r = raw(j);
    const int t0 = s0 + i * kSeqT;
    stage_rows<T>(r, Dl, p.delta_ld, row0, t0, kSeqT, s1, c0, CW, dim, vec, tid, NT);
    stage_rows<T>(r + kSeqT * CW, DO, p.dout_ld, row0, t0, kSeqT, s1, c0, CW, dim, vec, tid, NT);
    if (Z) stage_rows<T>(r + 2 * kSeqT * CW, Z, p.z_ld, row0, t0, kSeqT, s1, c0, CW, dim, vec, tid, NT);
    T* rb = rawbc(j);
    ScanK qk = p;
    qk.len = s1;
    stage_bc<T>(rb, rb + kSeqT * N, qk, row0, t0, kSeqT, grp, tid, NT);
    cp_async_commit();
  };
  auto prep = [&](int j) {
    const T* rb = rawbc(j);
    prep_bc<T>(bcf(j), rb, rb + kSeqT * N, kSeqT, N, kSeqN, tid, NT);
  };
  issue(0);
  cp_async_wait<0>();
  __syncthreads();
  prep(0);
  __syncthreads();
  for (int j = 0; j < ntiles; ++j) {
    const int i = ntiles - 1 - j;
    const int t0 = s0 + i * kSeqT, tn = min(kSeqT, s1 - t0);
    if (j + 1 < ntiles) issue(j + 1);
    const T* rd = raw(j);
    const T* ro = rd + kSeqT * CW;
    const T* rz = rd + 2 * kSeqT * CW;
    const float2* bcl = bcf(j) + q * S;
#pragma unroll 2
    for (int t = tn - 1; t >= 0; --t) {
      float dt = to_f(rd[t * CW + cl]) + bias;
      if (p.softplus) dt = softplus_f(dt);
      float dyv = to_f(ro[t * CW + cl]);
      if (Z) dyv *= silu_f(to_f(rz[t * CW + cl]));
      dsum += dt;
      float Bv[S], Cv[S];
      load_bc<S>(bcl + t * kSeqN, Bv, Cv);
#pragma unroll
      for (int s = 0; s < S; ++s) gr[s] = ex2(dt * A2[s]) * fmaf(dyv, Cv[s], gr[s]);
    }
    if (j + 1 < ntiles) {
      cp_async_wait<0>();
      __syncthreads();
      prep(j + 1);
      __syncthreads();
    }
  }
  if (!cvalid) return;
  float* w = ws_slot(p, b, seg, c);
  store_states<S>(w, gr, q * S, N, false);
  if (q == 0) w[16] = dsum;
}

// ---- backward -----------------------------------------------------------------------
__host__ __device__ constexpr int ilog2c(int x) { return x <= 1 ? 0 : 1 + ilog2c(x >> 1); }

// FN = 0: shape from the launch (p.G, p.CB, p.N, blockDim). FN = 16: the common shape
// fixed at compile time (N = Npad = 16, G = 16/S lanes a channel, 128 threads, CB =
// 128/G channels), so the dB/dC channel sums, the lane sums of the epilogue and the index
// math are unrolled with constant strides instead of run-time loops and divisions.
template <typename T, int S, int FN, int CH, int TS>
__global__ void __launch_bounds__(FN > 0 && CH == 32 ? 128 : 256, FN > 0 && CH == 32 ? 3 : 1) scan_bwd_kernel(const ScanK p) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr bool FX = FN > 0;
  constexpr int FG = FX ? FN / S : 1, FNT = 128, FCB = FNT / FG;
  const int tid = threadIdx.x;
  const int NT = FX ? FNT : static_cast<int>(blockDim.x);
  const int G = FX ? FG : p.G, CB = FX ? FCB : p.CB, N = FX ? FN : p.N, L = p.len, dim = p.dim,
            Npad = FX ? FN : p.Npad;
  const int lgG = FX ? ilog2c(FG) : __ffs(G) - 1, lgCB = FX ? ilog2c(FCB) : __ffs(CB) - 1;
  const int cl = tid >> lgG, g = tid & (G - 1);
  const int b = blockIdx.y, c0 = blockIdx.x * CB, c = c0 + cl, seg = blockIdx.z;
  const bool cvalid = c < dim;
  const int grp = c0 / p.dpg;
  const int64_t row0 = static_cast<int64_t>(b) * L;
  const BwdLayout lay = bwd_layout(sizeof(T), NT, CB, N, Npad, S, CH, TS);
  T* ru = reinterpret_cast<T*>(smem + lay.raw);
  T* rd = ru + CH * CB;
  T* rz = ru + 2 * CH * CB;
  T* ro = ru + 3 * CH * CB;
  T* rb = reinterpret_cast<T*>(smem + lay.bcraw);
  float2* dd = reinterpret_cast<float2*>(smem + lay.dd);
  float* dy = reinterpret_cast<float*>(smem + lay.dy);
  float2* bc = reinterpret_cast<float2*>(smem + lay.bc);
  float* sub = reinterpret_cast<float*>(smem + lay.sub);
  float* part_r = reinterpret_cast<float*>(smem + lay.part);
  float* part_q = part_r + TS * NT;
  float* part_y = part_q + TS * NT;
  float* dbc = reinterpret_cast<float*>(smem + lay.dbc);
  float* sbias = reinterpret_cast<float*>(smem + lay.par);
  float* sD = sbias + CB;
  float* sdD = sD + CB;
  float* sdbias = sdD + CB;
  const T* U_ = static_cast<const T*>(p.u);
  const T* Dl = static_cast<const T*>(p.delta);
  const T* Z = static_cast<const T*>(p.z);
  const T* DO = static_cast<const T*>(p.dout);
  T* DU = static_cast<T*>(p.du);
  T* DDL = static_cast<T*>(p.ddelta);
  T* DZ = static_cast<T*>(p.dz);
  const bool v4 = (CB & 3) == 0;

  float An[S], A2[S], gr[S], dAc[S], dAt[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int n = g * S + s;
    An[s] = cvalid && n < N ? p.A[static_cast<int64_t>(c) * N + n] : 0.f;
    A2[s] = An[s] * kLog2e;
    gr[s] = 0.f, dAc[s] = 0.f, dAt[s] = 0.f;
  }
  for (int i = tid; i < CB; i += NT) {
    const bool ok = c0 + i < dim;
    sbias[i] = ok && p.bias ? p.bias[c0 + i] : 0.f;
    sD[i] = ok && p.D ? p.D[c0 + i] : 0.f;
    sdD[i] = 0.f, sdbias[i] = 0.f;
  }
  // Segment seg starts from the adjoint the later segments send back, their local
  // adjoints (scan_bwd_seg_kernel) folded by scan_fold_kernel<true> into slot seg + 1.
  if (seg + 1 < p.P) load_states<S>(gr, ws_slot(p, b, seg + 1, cvalid ? c : 0), g * S, N, false);
  // Each thread's epilogue items keep one channel column (NT is a multiple of CB).
  float acc_dD[4] = {0.f, 0.f, 0.f, 0.f}, acc_db[4] = {0.f, 0.f, 0.f, 0.f};
  const float2* bcl = bc + g * S;
  // Few, heavy epilogue items idle most threads: use 4 channels an item only when there
  // are enough items for everyone.
  const bool ve4 = v4 && (TS * CB) / 4 >= NT;
  // Fixed shape: 1, 2 or 4 channels an epilogue item (p.bwd_ve; 0 = the default, 1: two
  // items a thread, measured 1-2 % faster than 2 and ~15 % faster than 4). The run-time
  // shape: 4 where there are enough items, else 1.
  const int vsel = FX ? (p.bwd_ve ? p.bwd_ve : 1) : (ve4 ? 4 : 1);
  // Fixed shape: B/C as [token][B 16 | C 16] so a lane's 4 B (and 4 C) are one 16-byte load.
  const float* bcf = reinterpret_cast<const float*>(bc) + g * S;
  // Chunks of CH tokens, each from checkpoint k·CH/ck_every (CH = 32 needs ck_every = 32).
  const int kbeg = seg * (p.Lseg / CH), kend = min((L + CH - 1) / CH, (seg + 1) * (p.Lseg / CH));

  for (int k = kend - 1; k >= kbeg; --k) {
    const int t0 = k * CH, tn = min(CH, L - t0);
    stage_rows<T>(ru, U_, p.u_ld, row0, t0, CH, L, c0, CB, dim, p.vec, tid, NT);
    stage_rows<T>(rd, Dl, p.delta_ld, row0, t0, CH, L, c0, CB, dim, p.vec, tid, NT);
    if (Z) stage_rows<T>(rz, Z, p.z_ld, row0, t0, CH, L, c0, CB, dim, p.vec, tid, NT);
    stage_rows<T>(ro, DO, p.dout_ld, row0, t0, CH, L, c0, CB, dim, p.vec, tid, NT);
    stage_bc<T>(rb, rb + CH * N, p, row0, t0, CH, grp, tid, NT);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (v4)
      prep_elems<T, 4, true>(dd, dy, ru, rd, Z ? rz : nullptr, ro, sbias, CH, CB, lgCB, tn, p.softplus, tid, NT);
    else
      prep_elems<T, 1, true>(dd, dy, ru, rd, Z ? rz : nullptr, ro, sbias, CH, CB, lgCB, tn, p.softplus, tid, NT);
    if constexpr (FX) {
      static_assert(!FX || (FN == 16 && S == 4), "fixed shape: N 16, 4 states a lane");
      const T* rc = rb + CH * N;
      for (int i = tid; i < CH * 4; i += NT) {
        const int t = i >> 2, k4 = (i & 3) * 4;
        float bv[4], cv[4];
        load4(rb + t * 16 + k4, bv), load4(rc + t * 16 + k4, cv);
        float4* dst = reinterpret_cast<float4*>(reinterpret_cast<float*>(bc) + t * 32 + k4);
        dst[0] = make_float4(bv[0], bv[1], bv[2], bv[3]);
        dst[4] = make_float4(cv[0], cv[1], cv[2], cv[3]);
      }
    } else {
      prep_bc<T>(bc, rb, rb + CH * N, CH, N, Npad, tid, NT);
    }
    __syncthreads();

    // pass a: states at the sub-chunk starts (each lane reads back only its own).
    {
      float h[S];
      load_states<S>(h, p.ckpt_in + ((static_cast<int64_t>(b) * p.nck + k * (CH / p.ck_every)) * dim + (cvalid ? c : 0)) * N, g * S, cvalid ? N : 0, p.ck4);
      for (int tb = 0; tb < tn; tb += TS) {
        float2 d[TS];
        float Bv[TS][S], Cv[TS][S];
#pragma unroll
        for (int t = 0; t < TS; ++t) {
          d[t] = dd[(tb + t) * CB + cl];
          if constexpr (FX) {
            const float4 v = *reinterpret_cast<const float4*>(bcf + (tb + t) * 32);
            Bv[t][0] = v.x, Bv[t][1] = v.y, Bv[t][2] = v.z, Bv[t][3] = v.w;
          } else {
            load_bc<S>(bcl + (tb + t) * Npad, Bv[t], Cv[t]);
          }
        }
#pragma unroll
        for (int s = 0; s < S; ++s) sub[((tb / TS) * NT + tid) * S + s] = h[s];
        if (tb + TS >= tn) break;  // the state after the last sub-chunk is not needed
#pragma unroll
        for (int t = 0; t < TS; ++t)
#pragma unroll
          for (int s = 0; s < S; ++s) h[s] = fmaf(ex2(d[t].x * A2[s]), h[s], d[t].y * Bv[t][s]);
      }
    }

    // pass b: sub-chunks last to first.
    for (int j = (tn + TS - 1) / TS - 1; j >= 0; --j) {
      const int tb = j * TS;
      float hh[TS + 1][S], aa[TS][S];
      float2 d[TS];
      float dyv[TS], Bv[TS][S], Cv[TS][S];
#pragma unroll
      for (int t = 0; t < TS; ++t) {
        d[t] = dd[(tb + t) * CB + cl], dyv[t] = dy[(tb + t) * CB + cl];
        if constexpr (FX) {
          const float4 vb = *reinterpret_cast<const float4*>(bcf + (tb + t) * 32);
          const float4 vc = *reinterpret_cast<const float4*>(bcf + (tb + t) * 32 + 16);
          Bv[t][0] = vb.x, Bv[t][1] = vb.y, Bv[t][2] = vb.z, Bv[t][3] = vb.w;
          Cv[t][0] = vc.x, Cv[t][1] = vc.y, Cv[t][2] = vc.z, Cv[t][3] = vc.w;
        } else {
          load_bc<S>(bcl + (tb + t) * Npad, Bv[t], Cv[t]);
        }
      }
#pragma unroll
      for (int s = 0; s < S; ++s) hh[0][s] = sub[(j * NT + tid) * S + s];
#pragma unroll
      for (int t = 0; t < TS; ++t)
#pragma unroll
        for (int s = 0; s < S; ++s) {
          aa[t][s] = ex2(d[t].x * A2[s]);
          hh[t + 1][s] = fmaf(aa[t][s], hh[t][s], d[t].y * Bv[t][s]);
        }
      // Outputs stay in registers until the loop ends: no store between the loads.
      float o_r[TS], o_q[TS], o_y[TS], o_bc[TS][2 * S];
#pragma unroll
      for (int t = TS - 1; t >= 0; --t) {
        float r = 0.f, q_sum = 0.f, yp = 0.f;
#pragma unroll
        for (int s = 0; s < S; ++s) {
          const float gb = fmaf(dyv[t], Cv[t][s], gr[s]);
          yp = fmaf(hh[t + 1][s], Cv[t][s], yp);
          o_bc[t][2 * s] = gb * d[t].y;
          o_bc[t][2 * s + 1] = dyv[t] * hh[t + 1][s];
          r = fmaf(gb, Bv[t][s], r);
          const float q = gb * aa[t][s] * hh[t][s];
          q_sum = fmaf(q, An[s], q_sum);
          dAc[s] = fmaf(q, d[t].x, dAc[s]);
          gr[s] = aa[t][s] * gb;
        }
        o_r[t] = r, o_q[t] = q_sum, o_y[t] = yp;
      }
#pragma unroll
      for (int t = 0; t < TS; ++t) {
        part_r[t * NT + tid] = o_r[t];
        part_q[t * NT + tid] = o_q[t];
        part_y[t * NT + tid] = o_y[t];
        float* dst = dbc + (t * NT + tid) * 2 * S;
        if constexpr (S == 1) {
          *reinterpret_cast<float2*>(dst) = make_float2(o_bc[t][0], o_bc[t][1]);
        } else {
#pragma unroll
          for (int s = 0; s < 2 * S; s += 4)
            *reinterpret_cast<float4*>(dst + s) = make_float4(o_bc[t][s], o_bc[t][s + 1], o_bc[t][s + 2], o_bc[t][s + 3]);
        }
      }
      __syncthreads();

      // dB, dC: sum over the block's channels, one atomic per (token, state).
      if (FX && p.bwd_ilp) {
        // Fixed shape, both of a thread's outputs in one straight-line block (loads of the
        // second overlap the first's sums), the atomic predicated instead of a branch.
        constexpr int IT = FX ? TS * 2 * FN / FNT : 1, str = FG * 2 * S, FNc = FX ? FN : 16;
        float sums[IT];
        const float* srcs[IT];
#pragma unroll
        for (int m = 0; m < IT; ++m) {
          const int o = tid + m * FNT;
          const int t = o / (2 * FNc), rem = o - t * 2 * FNc, n = rem >> 1, which = rem & 1;
          const int gg = n / S, ss = n - gg * S;
          srcs[m] = dbc + (t * FNT + gg) * 2 * S + 2 * ss + which;
        }
        float a[IT][4];
#pragma unroll
        for (int m = 0; m < IT; ++m) a[m][0] = a[m][1] = a[m][2] = a[m][3] = 0.f;
#pragma unroll
        for (int l = 0; l < FCB; l += 4)
#pragma unroll
          for (int m = 0; m < IT; ++m) {
            a[m][0] += srcs[m][l * str], a[m][1] += srcs[m][(l + 1) * str];
            a[m][2] += srcs[m][(l + 2) * str], a[m][3] += srcs[m][(l + 3) * str];
          }
#pragma unroll
        for (int m = 0; m < IT; ++m) sums[m] = (a[m][0] + a[m][1]) + (a[m][2] + a[m][3]);
#pragma unroll
        for (int m = 0; m < IT; ++m) {
          const int o = tid + m * FNT;
          const int t = o / (2 * FNc), rem = o - t * 2 * FNc, n = rem >> 1, which = rem & 1;
          const int tg = t0 + tb + t;
          if (tg < L)
            atomicAdd((which ? p.dC : p.dB) + (row0 + tg) * p.dbc_ld + static_cast<int64_t>(grp) * FNc + n, sums[m]);
        }
      } else
      for (int o = tid; o < TS * 2 * N; o += NT) {
        const int t = o / (2 * N), rem = o - t * 2 * N, n = rem >> 1, which = rem & 1;
        const int tg = t0 + tb + t;
        if (tg >= L) continue;
        const int gg = n / S, ss = n - gg * S;
        const float* src = dbc + (t * NT + gg) * 2 * S + 2 * ss + which;
        float sum = 0.f;
        if constexpr (FX) {
          constexpr int str = FG * 2 * S;
          float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll
          for (int l = 0; l < FCB; l += 4) {
            a0 += src[l * str], a1 += src[(l + 1) * str];
            a2 += src[(l + 2) * str], a3 += src[(l + 3) * str];
          }
          sum = (a0 + a1) + (a2 + a3);
        } else {
          for (int l = 0; l < CB; ++l) sum += src[l * G * 2 * S];
        }
        float* gdst = (which ? p.dC : p.dB) + (row0 + tg) * p.dbc_ld + static_cast<int64_t>(grp) * N + n;
        atomicAdd(gdst, sum);
      }

      // epilogue: du, ddelta, dz for the sub-chunk's tokens, VE channels an item.
      auto epi = [&](auto ve_tag) {
        constexpr int VE = decltype(ve_tag)::value;
        const int items = TS * CB / VE;
        for (int qi = tid; qi < items; qi += NT) {
          const int e = qi * VE, t = e >> lgCB, kk = e & (CB - 1);
          const int tg = t0 + tb + t;
          if (tg >= L) continue;
          const int es = (tb + t) * CB + kk;  // element in the chunk arrays
          float uv[VE], dv[VE], zv[VE], ov[VE];
          if constexpr (VE == 4) {
            load4(ru + es, uv), load4(rd + es, dv), load4(ro + es, ov);
            if (Z) load4(rz + es, zv);
          } else if constexpr (VE == 2) {
            load2(ru + es, uv), load2(rd + es, dv), load2(ro + es, ov);
            if (Z) load2(rz + es, zv);
          } else {
            uv[0] = to_f(ru[es]), dv[0] = to_f(rd[es]), ov[0] = to_f(ro[es]);
            if (Z) zv[0] = to_f(rz[es]);
          }
          const int64_t row = row0 + tg;
#pragma unroll
          for (int jj = 0; jj < VE; ++jj) {
            const int ch = kk + jj;
            if (c0 + ch >= dim) continue;
            const float r = sum_lanes(part_r + t * NT + ch * G, G);
            const float qs = sum_lanes(part_q + t * NT + ch * G, G);
            const float dt = dd[es + jj].x, dyj = dy[es + jj];
            DU[row * p.du_ld + c0 + ch] = from_f<T>(fmaf(r, dt, dyj * sD[ch]));
            float ddt = fmaf(r, uv[jj], qs);
            if (p.softplus) ddt *= softplus_grad_f(dv[jj] + sbias[ch]);
            DDL[row * p.ddelta_ld + c0 + ch] = from_f<T>(ddt);
            if (Z) {
              const float y = sum_lanes(part_y + t * NT + ch * G, G) + sD[ch] * uv[jj];
              DZ[row * p.dz_ld + c0 + ch] = from_f<T>(ov[jj] * y * silu_grad_f(zv[jj]));
            }
            acc_dD[jj] = fmaf(dyj, uv[jj], acc_dD[jj]);
            acc_db[jj] += ddt;
          }
        }
      };
      // Fixed shape, one channel an item: a thread's two items as one straight-line block.
      auto epi_fx = [&]() {
        constexpr int IT = FX ? TS * FCB / FNT : 1;
        float uv[IT], dv[IT], zv[IT], ov[IT], r[IT], qs[IT], yv[IT], dt[IT], dyj[IT], sd[IT], sb[IT];
        int es[IT], kk[IT], tg[IT];
#pragma unroll
        for (int m = 0; m < IT; ++m) {
          const int e = tid + m * FNT, t = e >> lgCB;
          kk[m] = e & (FCB - 1), tg[m] = t0 + tb + t;
          es[m] = (tb + t) * FCB + kk[m];
          uv[m] = to_f(ru[es[m]]), dv[m] = to_f(rd[es[m]]), ov[m] = to_f(ro[es[m]]);
          zv[m] = Z ? to_f(rz[es[m]]) : 0.f;
          r[m] = sum_lanes(part_r + t * FNT + kk[m] * FG, FG);
          qs[m] = sum_lanes(part_q + t * FNT + kk[m] * FG, FG);
          yv[m] = Z ? sum_lanes(part_y + t * FNT + kk[m] * FG, FG) : 0.f;
          dt[m] = dd[es[m]].x, dyj[m] = dy[es[m]], sd[m] = sD[kk[m]], sb[m] = sbias[kk[m]];
        }
#pragma unroll
        for (int m = 0; m < IT; ++m) {
          const bool ok = tg[m] < L && c0 + kk[m] < dim;
          const int64_t row = row0 + tg[m];
          const int ch = c0 + kk[m];
          float ddt = fmaf(r[m], uv[m], qs[m]);
          if (p.softplus) ddt *= softplus_grad_f(dv[m] + sb[m]);
          if (ok) {
            DU[row * p.du_ld + ch] = from_f<T>(fmaf(r[m], dt[m], dyj[m] * sd[m]));
            DDL[row * p.ddelta_ld + ch] = from_f<T>(ddt);
            if (Z) DZ[row * p.dz_ld + ch] = from_f<T>(ov[m] * (yv[m] + sd[m] * uv[m]) * silu_grad_f(zv[m]));
          }
          acc_dD[0] = fmaf(ok ? dyj[m] : 0.f, uv[m], acc_dD[0]);
          acc_db[0] += ok ? ddt : 0.f;
        }
      };
      if (FX && p.bwd_ilp && vsel == 1)
        epi_fx();
      else if (vsel == 4)
        epi(std::integral_constant<int, 4>{});
      else if (FX && vsel == 2)
        epi(std::integral_constant<int, 2>{});
      else
        epi(std::integral_constant<int, 1>{});
      __syncthreads();  // part/dbc are rewritten by the next sub-chunk
    }
    // Two-level sums keep dA accurate over long sequences.
#pragma unroll
    for (int s = 0; s < S; ++s) dAt[s] += dAc[s], dAc[s] = 0.f;
  }

  if (cvalid) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      const int n = g * S + s;
      if (n >= N) continue;
      atomicAdd(p.dA + static_cast<int64_t>(c) * N + n, dAt[s]);
      if (p.dh0 && seg == 0) p.dh0[(static_cast<int64_t>(b) * dim + c) * N + n] += gr[s];
    }
  }
  {
    const int ve = vsel;
    const int kk = (tid * ve) & (CB - 1);
    for (int jj = 0; jj < ve; ++jj) {
      atomicAdd(sdD + kk + jj, acc_dD[jj]);
      atomicAdd(sdbias + kk + jj, acc_db[jj]);
    }
  }
  __syncthreads();
  for (int i = tid; i < CB; i += NT) {
    if (c0 + i >= dim) continue;
    if (p.dD) atomicAdd(p.dD + c0 + i, sdD[i]);
    if (p.dbias) atomicAdd(p.dbias + c0 + i, sdbias[i]);
  }
}

// ---- single-token step ----------------------------------------------------------------
// One thread per (sequence, channel); same arithmetic as the scan (δu·B, then the fma).
template <typename T>
__global__ void __launch_bounds__(128) scan_step_kernel(const ScanK p, float* h) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(p.batch) * p.dim) return;
  const int b = static_cast<int>(idx / p.dim), c = static_cast<int>(idx - static_cast<int64_t>(b) * p.dim);
  const int N = p.N;
  const T* U = static_cast<const T*>(p.u);
  const T* Dl = static_cast<const T*>(p.delta);
  const T* B = static_cast<const T*>(p.B) + b * p.bc_ld + static_cast<int64_t>(c / p.dpg) * N;
  const T* C = static_cast<const T*>(p.C) + b * p.bc_ld + static_cast<int64_t>(c / p.dpg) * N;
  float dt = to_f(Dl[b * p.delta_ld + c]) + (p.bias ? p.bias[c] : 0.f);
  if (p.softplus) dt = softplus_f(dt);
  const float uu = to_f(U[b * p.u_ld + c]);
  const float du = dt * uu;
  float* hc = h + idx * N;
  const float* Ac = p.A + static_cast<int64_t>(c) * N;
  float y = 0.f;
  for (int n = 0; n < N; ++n) {
    const float hn = fmaf(ex2(dt * (Ac[n] * kLog2e)), hc[n], du * to_f(B[n]));
    hc[n] = hn;
    y = fmaf(hn, to_f(C[n]), y);
  }
  y += (p.D ? p.D[c] : 0.f) * uu;
  if (p.z) y *= silu_f(to_f(static_cast<const T*>(p.z)[b * p.z_ld + c]));
  static_cast<T*>(p.out)[b * p.out_ld + c] = from_f<T>(y);
}

template <typename Kern>
int set_smem(Kern kern, int bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

// Time segments, folded once in order (thread = (sequence, channel, state)):
//   forward (between its two passes):  h ← exp2(A·log2e·Σδ_q) ⊙ h + hloc_q, q = 0 .. P−2,
//     written over slot q (then the state segment q + 1 starts from);
//   backward (after the segment pass): ḡ ← exp2(A·log2e·Σδ_q) ⊙ ḡ + ḡloc_q, q = P−1 .. 1,
//     written over slot q (then the adjoint segment q − 1 starts from).
// Each block then reads its start instead of folding all other segments itself (O(P)
// exps per state in all instead of O(P²): 12 % of pass 2's exps at P = 64, L = 16K).
template <bool BWD>
__global__ void __launch_bounds__(128) scan_fold_kernel(const ScanK p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * 128 + threadIdx.x;
  const int N = p.N, dim = p.dim;
  if (i >= static_cast<int64_t>(p.batch) * dim * N) return;
  const int n = static_cast<int>(i % N);
  const int64_t bc = i / N;
  const int c = static_cast<int>(bc % dim), b = static_cast<int>(bc / dim);
  const float A2 = p.A[static_cast<int64_t>(c) * N + n] * kLog2e;
  float h = !BWD && p.h0 ? p.h0[bc * N + n] : 0.f;
  for (int k = 0; k + 1 < p.P; ++k) {
    const int q = BWD ? p.P - 1 - k : k;
    float* w = ws_slot(p, b, q, c);
    h = fmaf(ex2(w[16] * A2), h, w[n]);
    w[n] = h;
  }
}
template <bool BWD>
int launch_fold(const ScanK& k, cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(k.batch) * k.dim * k.N;
  scan_fold_kernel<BWD><<<static_cast<unsigned>((n + 127) / 128), 128, 0, s>>>(k);
  return cudaGetLastError();
}

// Pass 2 of a forward: the tanh-gated kernel where k.tanh_gate (api.cpp sets it for 16-bit
// types only; for f32 both arguments are the exact kernel).
int launch_pass2(void (*exact)(ScanK), void (*tanh)(ScanK), dim3 grid, int threads, int smem, const ScanK& k,
                 cudaStream_t s) {
  const auto kern = k.tanh_gate ? tanh : exact;
  if (int e = set_smem(kern, smem)) return e;
  kern<<<grid, threads, smem, s>>>(k);
  return cudaGetLastError();
}
template <typename T, int S>
int launch_q_s(const ScanK& k, cudaStream_t s) {
  constexpr int G = kQN / S;
  const int NT = k.CW * G;
  const int smem = q_layout(sizeof(T), k.CW, k.N, NT / 32).total;
  const unsigned gx = (k.dim + k.CW - 1) / k.CW;
  if (k.P > 1) {
    if (int e = set_smem(scan_fwd_q_kernel<T, S, 1>, smem)) return e;
    scan_fwd_q_kernel<T, S, 1><<<dim3(gx, k.P - 1, k.batch), NT, smem, s>>>(k);
    if (int e = launch_fold<false>(k, s)) return e;
  }
  return launch_pass2(scan_fwd_q_kernel<T, S, 2>, scan_fwd_q_kernel<T, S, 2, sizeof(T) == 2>, dim3(gx, k.P, k.batch), NT,
                      smem, k, s);
}
template <typename T>
int launch_seq16(const ScanK& k, cudaStream_t s) {
  const int smem = seq_layout(sizeof(T), k.CW, k.N).total;
  const unsigned gx = (k.dim + k.CW - 1) / k.CW;
  if (k.P > 1) {
    if (int e = set_smem(scan_fwd_seq_kernel<T, 1>, smem)) return e;
    scan_fwd_seq_kernel<T, 1><<<dim3(gx, k.P - 1, k.batch), k.CW, smem, s>>>(k);
    if (int e = launch_fold<false>(k, s)) return e;
  }
  return launch_pass2(scan_fwd_seq_kernel<T, 2>, scan_fwd_seq_kernel<T, 2, sizeof(T) == 2>, dim3(gx, k.P, k.batch), k.CW,
                      smem, k, s);
}
template <typename T>
int launch_seq(const ScanK& k, cudaStream_t s) {
  switch (k.S) {
    case 16: return launch_seq16<T>(k, s);
    case 2: return launch_q_s<T, 2>(k, s);
    case 4: return launch_q_s<T, 4>(k, s);
    case 8: return launch_q_s<T, 8>(k, s);
  }
  return cudaErrorInvalidValue;
}

template <typename T, int S>
int launch_fwd(const ScanK& k, cudaStream_t s) {
  if (k.seq) return launch_seq<T>(k, s);
  auto kern = scan_fwd_kernel<T, S>;
  if (k.smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, k.smem);
    if (e != cudaSuccess) return e;
  }
  kern<<<dim3((k.dim + k.CB - 1) / k.CB, k.batch), k.NT, k.smem, s>>>(k);
  return cudaGetLastError();
}
// The segment pass with k.seg_S states a lane (128 threads a block: 128·S/16 channels).
template <typename T, int S>
int launch_bwd_seg_s(const ScanK& k, cudaStream_t s) {
  constexpr int G = kSeqN / S;
  const int CW = std::min(k.CW, 128 / G), NT = CW * G;
  const int smem = seq_layout(sizeof(T), CW, k.N).total;
  if (int e = set_smem(scan_bwd_seg_kernel<T, S>, smem)) return e;
  scan_bwd_seg_kernel<T, S><<<dim3((k.dim + CW - 1) / CW, k.P - 1, k.batch), NT, smem, s>>>(k);
  return cudaGetLastError();
}
template <typename T>
int launch_bwd_seg(const ScanK& k, cudaStream_t s) {
  switch (k.seg_S) {
    case 16: return launch_bwd_seg_s<T, 16>(k, s);
    case 8: return launch_bwd_seg_s<T, 8>(k, s);
    case 4: return launch_bwd_seg_s<T, 4>(k, s);
    case 2: return launch_bwd_seg_s<T, 2>(k, s);
  }
  return cudaErrorInvalidValue;
}
// Main kernel: the fixed shape (N 16, S 4, 128 threads, 32 channels) in 32-token chunks of
// 4-token sub-chunks (k.Tsub = 4, checkpoints every 32: 3 blocks an SM) or 64-token chunks
// of 8 (k.Tsub = 8); any other shape in 64-token chunks of 8.
bool bwd_fixed_shape(const ScanK& k) {
  return k.bwd_fixed && k.S == 4 && k.N == 16 && k.Npad == 16 && k.G == 4 && k.NT == 128 && k.CB == 32;
}
template <typename T, int S>
int launch_bwd(const ScanK& k, cudaStream_t s) {
  auto kern = scan_bwd_kernel<T, S, 0, 64, 8>;
  if constexpr (S == 4)
    if (bwd_fixed_shape(k)) kern = k.Tsub == 4 ? scan_bwd_kernel<T, 4, 16, 32, 4> : scan_bwd_kernel<T, 4, 16, 64, 8>;
  if (k.Tsub != 8 && (S != 4 || !bwd_fixed_shape(k) || k.ck_every != 32)) return cudaErrorInvalidValue;
  if (int e = set_smem(kern, k.smem)) return e;
  if (k.P > 1) {  // local adjoints of segments 1..P−1 first, then their fold
    if (int e = launch_bwd_seg<T>(k, s)) return e;
    if (int e = launch_fold<true>(k, s)) return e;
  }
  kern<<<dim3((k.dim + k.CB - 1) / k.CB, k.batch, k.P), k.NT, k.smem, s>>>(k);
  return cudaGetLastError();
}

template <typename T>
int fwd_by_S(const ScanK& k, cudaStream_t s) {
  switch (k.S) {
    case 2: return launch_fwd<T, 2>(k, s);
    case 4: return launch_fwd<T, 4>(k, s);
    case 8: return launch_fwd<T, 8>(k, s);
    case 16: return launch_fwd<T, 16>(k, s);
  }
  return cudaErrorInvalidValue;
}
template <typename T>
int bwd_by_S(const ScanK& k, cudaStream_t s) {
  switch (k.S) {
    case 1: return launch_bwd<T, 1>(k, s);
    case 2: return launch_bwd<T, 2>(k, s);
    case 4: return launch_bwd<T, 4>(k, s);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int scan_fwd_smem(int es, int NT, int CB, int Tt, int N, int Npad) {
  return fwd_layout(es, NT, CB, Tt, N, Npad).total;
}
int scan_bwd_smem(int es, int NT, int CB, int Tsub, int N, int Npad, int S) {
  return bwd_layout(es, NT, CB, N, Npad, S, Tsub == 4 ? 32 : 64, Tsub).total;
}
bool scan_bwd_fixed_shape(const ScanK& k) { return bwd_fixed_shape(k); }

int scan_seq_smem(int es, int CW, int N) { return seq_layout(es, CW, N).total; }
int scan_q_smem(int es, int CB, int N, int S) { return q_layout(es, CB, N, CB * (kQN / S) / 32).total; }

int scan_fwd_launch(const ScanK& k, cudaStream_t s) {
  switch (k.dtype) {
    case 0: return fwd_by_S<float>(k, s);
    case 1: return fwd_by_S<__half>(k, s);
    case 2: return fwd_by_S<__nv_bfloat16>(k, s);
  }
  return cudaErrorInvalidValue;
}
int scan_bwd_launch(const ScanK& k, cudaStream_t s) {
  switch (k.dtype) {
    case 0: return bwd_by_S<float>(k, s);
    case 1: return bwd_by_S<__half>(k, s);
    case 2: return bwd_by_S<__nv_bfloat16>(k, s);
  }
  return cudaErrorInvalidValue;
}
int scan_step_launch(const ScanK& k, cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(k.batch) * k.dim;
  const unsigned blocks = static_cast<unsigned>((n + 127) / 128);
  switch (k.dtype) {
    case 0: scan_step_kernel<float><<<blocks, 128, 0, s>>>(k, k.h_final); break;
    case 1: scan_step_kernel<__half><<<blocks, 128, 0, s>>>(k, k.h_final); break;
    case 2: scan_step_kernel<__nv_bfloat16><<<blocks, 128, 0, s>>>(k, k.h_final); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace mambaseq::cuda::detail
