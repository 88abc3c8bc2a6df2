// Depthwise causal conv1d on the GPU: forward, backward and the single-token step.
//
//   pre[b,t,c] = bias[c] + Σ_k w[c,k]·x̃[b, t−(K−1)+k, c],   x̃ = init_state ‖ x
//   out = silu(pre) or pre
//
// Fast path (widths 2–4, 16-byte aligned rows): a thread owns 8 (or 16) bytes of channels
// and a run of `run` consecutive tokens of one sequence, reads each x row once (plus K−1
// rows of halo, L1/L2 hits) and keeps the K−1 previous inputs in registers; consecutive
// threads take consecutive channel vectors, so every row access is coalesced. Rows are
// requested in batches, the next batch before the current one's outputs are stored. The
// op is memory bound: the floor is one read of x and one write of out.
//
// Backward of the fast path, same ownership (rows arrive through a per-thread cp.async
// ring in shared memory; run lengths from a per-wave cost model in api.cpp): the thread
// recomputes pre (for SiLU) over
// its run plus K−1 tokens of look-ahead and emits
//   dpre = dout·silu'(pre),  dx[j] = Σ_k w[k]·dpre[j+K−1−k],
//   dw[k] += dpre[t]·x̃[t−(K−1)+k],  dbias += dpre[t]
// dw/dbias are summed over the block's runs in shared memory, then one atomic per
// (channel, tap) per block. The first run of a sequence also emits dinit_state.
//
// General path (any width, any alignment): one thread per element, taps read from cache;
// dw/dbias by a separate reduction kernel. Slower, for the rare shapes only.
#include "common.cuh"
#include "launch.h"

namespace mambaseq::cuda::detail {

namespace {

constexpr int kThreads = kConvThreads;
constexpr int kRows = 8;     // forward: rows loaded together before any is used

// x̃ at time j (j may be negative: initial state or zero).
template <typename T>
__device__ __forceinline__ float conv_in(const ConvK& p, int b, int j, int c) {
  if (j >= 0) return to_f(static_cast<const T*>(p.x)[(static_cast<int64_t>(b) * p.len + j) * p.x_ld + c]);
  if (!p.init) return 0.f;
  return to_f(static_cast<const T*>(p.init)[(static_cast<int64_t>(b) * p.C + c) * (p.K - 1) + (p.K - 1) + j]);
}

// 16 bytes of row `t` (t may be negative) of sequence b at channel vector j.
template <typename T, int V>
__device__ __forceinline__ void load_row(const ConvK& p, int b, int t, int c, float (&v)[V]) {
  if (t >= 0) {
    const raw_t<T, V> r = *reinterpret_cast<const raw_t<T, V>*>(static_cast<const T*>(p.x) +
                                                               (static_cast<int64_t>(b) * p.len + t) * p.x_ld + c);
    unpack<T, V>(r, v);
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e) v[e] = conv_in<T>(p, b, t, c + e);
  }
}

// 8 bytes global -> shared, asynchronously (zero-filled when !valid). The "memory" clobber
// keeps the compiler from moving shared-memory reads of the slot past the refill.
__device__ __forceinline__ void cp_async8m(void* smem, const void* gmem, bool valid) {
  const unsigned sa = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(sa), "l"(gmem), "r"(valid ? 8 : 0)
               : "memory");
}

// ACT: the output activation. kActTanh (16-bit types only) is SiLU through tanh from
// halved weights and bias (common.cuh, silu_of_half): pre/2 comes out of the same FMAs.
constexpr int kActNone = 0, kActSilu = 1, kActTanh = 2;
template <int ACT>
constexpr float kActScale = ACT == kActTanh ? 0.5f : 1.f;  // on w and bias

// RING: rows come through a per-thread ring of kRingFwd rows in shared memory filled by
// cp.async (more bytes in flight, no registers held), else register batches.
constexpr int kRingFwd = 16;
template <typename T, int K, int V, bool RING, int ACT>
__global__ void __launch_bounds__(kThreads) conv_fwd_fast(const ConvK p) {
  __shared__ __align__(16) raw_t<T, V> ring[RING ? kRingFwd : 1][kThreads];
  const FastMap m = fast_map(p.C, V, p.len, p.run);
  const int jv = threadIdx.x % m.VB, rr = threadIdx.x / m.VB;
  const int j = blockIdx.x * m.VB + jv, r = blockIdx.y * m.RB + rr, b = blockIdx.z;
  if (j >= m.vpr || r >= m.nruns || rr >= m.RB) return;  // rr: VB need not divide the block
  const int c = j * V;
  const int ts = r * p.run, te = min(p.len, ts + p.run);
  float w[K][V], bias[V];
#pragma unroll
  for (int e = 0; e < V; ++e) {
#pragma unroll
    for (int k = 0; k < K; ++k) w[k][e] = p.w[(c + e) * K + k] * kActScale<ACT>;
    bias[e] = p.bias ? p.bias[c + e] * kActScale<ACT> : 0.f;
  }
  float win[K][V];  // win[0..K−2]: the K−1 previous inputs, oldest first
#pragma unroll
  for (int k = 0; k < K - 1; ++k) load_row<T, V>(p, b, ts - (K - 1) + k, c, win[k]);
  T* out = static_cast<T*>(p.out);
  const T* x = static_cast<const T*>(p.x);
  // Rows come in batches of kRows; the next batch is requested before this batch's
  // outputs are stored (a store would otherwise hold the loads back: they may alias).
  auto fetch = [&](int tc, raw_t<T, V> (&rows)[kRows]) {
#pragma unroll
    for (int i = 0; i < kRows; ++i)
      if (tc + i < te) rows[i] = *reinterpret_cast<const raw_t<T, V>*>(x + (static_cast<int64_t>(b) * p.len + tc + i) * p.x_ld + c);
  };
  auto issue = [&](int t) {  // RING: row t into slot (t − ts) mod kRingFwd
    const bool ok = t < te;
    cp_async8m(&ring[(t - ts) & (kRingFwd - 1)][threadIdx.x],
               x + (static_cast<int64_t>(b) * p.len + (ok ? t : 0)) * p.x_ld + c, ok);
    cp_async_commit();
  };
  raw_t<T, V> cur[kRows], nxt[kRows];
  if constexpr (RING) {
#pragma unroll
    for (int i = 0; i < kRingFwd; ++i) issue(ts + i);
  } else {
    fetch(ts, cur);
  }
  for (int tc = ts; tc < te; tc += kRows) {
    if constexpr (RING) {
      cp_async_wait<kRingFwd - kRows>();
#pragma unroll
      for (int i = 0; i < kRows; ++i) cur[i] = ring[(tc + i - ts) & (kRingFwd - 1)][threadIdx.x];
    } else {
      if (tc + kRows < te) fetch(tc + kRows, nxt);
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
      if (tc + i >= te) break;
      unpack<T, V>(cur[i], win[K - 1]);
      float o[V];
#pragma unroll
      for (int e = 0; e < V; ++e) {
        float acc = bias[e];
#pragma unroll
        for (int k = 0; k < K; ++k) acc = fmaf(w[k][e], win[k][e], acc);
        o[e] = ACT == kActSilu ? silu_f(acc) : ACT == kActTanh ? silu_of_half(acc) : acc;
      }
      *reinterpret_cast<raw_t<T, V>*>(out + (static_cast<int64_t>(b) * p.len + tc + i) * p.out_ld + c) = pack<T, V>(o);
#pragma unroll
      for (int k = 0; k < K - 1; ++k)
#pragma unroll
        for (int e = 0; e < V; ++e) win[k][e] = win[k + 1][e];
    }
    if constexpr (RING) {
#pragma unroll
      for (int i = 0; i < kRows; ++i) issue(tc + kRingFwd + i);
    } else {
#pragma unroll
      for (int i = 0; i < kRows; ++i) cur[i] = nxt[i];
    }
  }
  if constexpr (RING) cp_async_wait<0>();
  if (p.final_state && te == p.len) {
    // win[0..K−2] now holds x̃[len−(K−1) .. len−1] (the loop ran ≥ 1 step: len ≥ 1).
    T* fs = static_cast<T*>(p.final_state);
#pragma unroll
    for (int e = 0; e < V; ++e)
#pragma unroll
      for (int k = 0; k < K - 1; ++k)
        fs[(static_cast<int64_t>(b) * p.C + c + e) * (K - 1) + k] = from_f<T>(win[k][e]);
  }
}

// R: rows of x and dout consumed per batch. Rows come through a per-thread ring of
// D = 16 rows in shared memory filled by cp.async (one commit group per row), so ~D rows
// per thread are in flight without holding registers (the register-buffered version was
// limited by bytes in flight: 158 registers, 12 warps per SM).
// dpre from dout and the recomputed pre-activation (pre/2 with kActTanh). With kActTanh
// the result is 2·dpre: dx then comes out right from the halved weights, and dw/dbias
// are halved once, at the block reduction.
template <int ACT>
__device__ __forceinline__ float act_grad(float g, float acc) {
  if constexpr (ACT == kActTanh) return fmaf(g, silu_grad2m1_of_half(acc), g);
  return g * silu_grad_f(acc);
}
template <typename T, int K, int V, int R, int ACT>
__global__ void __launch_bounds__(kThreads) conv_bwd_fast(const ConvK p) {
  constexpr int kRowsBwd = R, D = 16;
  __shared__ float red[kThreads * (K + 1)];  // per thread, one channel-sum slot at a time
  __shared__ __align__(16) raw_t<T, V> ring[D][2][kThreads];
  const FastMap m = fast_map(p.C, V, p.len, p.run);
  const int jv = threadIdx.x % m.VB, rr = threadIdx.x / m.VB;
  const int j = blockIdx.x * m.VB + jv, r = blockIdx.y * m.RB + rr, b = blockIdx.z;
  const bool active = j < m.vpr && r < m.nruns && rr < m.RB;
  const int c = (active ? j : 0) * V;
  float gw[K][V], gb[V];
#pragma unroll
  for (int e = 0; e < V; ++e) {
    gb[e] = 0.f;
#pragma unroll
    for (int k = 0; k < K; ++k) gw[k][e] = 0.f;
  }
  if (active) {
    const int ts = r * p.run, te = min(p.len, ts + p.run);
    // Row t of this sequence at this thread's channels: base + t·ld (32-bit strides,
    // checked on the host, so one wide multiply-add a row instead of 64-bit arithmetic).
    const int64_t seq0 = static_cast<int64_t>(b) * p.len;
    const int xld = static_cast<int>(p.x_ld), gld = static_cast<int>(p.dout_ld), dld = static_cast<int>(p.dx_ld);
    const T* xb = static_cast<const T*>(p.x) + seq0 * p.x_ld + c;
    const T* gbase = static_cast<const T*>(p.dout) + seq0 * p.dout_ld + c;
    const int tlast = te + K - 1;  // exclusive: dpre is needed up to te+K−2
    auto issue = [&](int t) {  // row t into ring slot (t − ts) mod D
      const int sl = (t - ts) & (D - 1);
      const bool ok = t < tlast && t < p.len;
      const int tt = ok ? t : 0;
      cp_async8m(&ring[sl][0][threadIdx.x], xb + static_cast<int64_t>(tt) * xld, ok);
      cp_async8m(&ring[sl][1][threadIdx.x], gbase + static_cast<int64_t>(tt) * gld, ok);
      cp_async_commit();
    };
#pragma unroll
    for (int i = 0; i < D; ++i) issue(ts + i);
    float w[K][V], bias[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
#pragma unroll
      for (int k = 0; k < K; ++k) w[k][e] = p.w[(c + e) * K + k] * kActScale<ACT>;
      bias[e] = p.bias ? p.bias[c + e] * kActScale<ACT> : 0.f;
    }
    float win[K][V], hist[K][V];  // inputs x̃[t−K+1..t]; dpre[t−K+1..t] (newest last)
#pragma unroll
    for (int k = 0; k < K - 1; ++k) load_row<T, V>(p, b, ts - (K - 1) + k, c, win[k]);
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
      for (int e = 0; e < V; ++e) hist[k][e] = 0.f;
    T* dxb = static_cast<T*>(p.dx) + seq0 * p.dx_ld + c;
    // First run of the sequence: dx̃ at j < 0 goes to dinit_state.
    const int jfirst = (ts == 0 && p.dinit) ? -(K - 1) : ts;
    for (int tc = ts; tc < tlast; tc += kRowsBwd) {
      cp_async_wait<D - R>();  // rows tc .. tc+R−1 landed
      raw_t<T, V> xr[kRowsBwd], gr[kRowsBwd];
#pragma unroll
      for (int i = 0; i < kRowsBwd; ++i) {
        const int sl = (tc + i - ts) & (D - 1);
        xr[i] = ring[sl][0][threadIdx.x], gr[i] = ring[sl][1][threadIdx.x];
      }
      if (p.interior && tc >= ts + K - 1 && tc + kRowsBwd <= te) {
        // Interior batch: every row is inside the run and the sequence and every dx row
        // it completes is this run's: no per-row conditions (they cost ~half the
        // instructions of a row: branches, predicates, reconvergence).
        T* drow = dxb + static_cast<int64_t>(tc - (K - 1)) * dld;
#pragma unroll
        for (int i = 0; i < kRowsBwd; ++i) {
          unpack<T, V>(xr[i], win[K - 1]);
          float g[V], dp[V];
          unpack<T, V>(gr[i], g);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float d = g[e];
            if constexpr (ACT != kActNone) {
              float acc = fmaf(w[K - 1][e], win[K - 1][e], bias[e]);
#pragma unroll
              for (int k = 0; k < K - 1; ++k) acc = fmaf(w[k][e], win[k][e], acc);
              d = act_grad<ACT>(d, acc);
            }
            dp[e] = d;
            gb[e] += d;
#pragma unroll
            for (int k = 0; k < K; ++k) gw[k][e] = fmaf(d, win[k][e], gw[k][e]);
          }
#pragma unroll
          for (int k = 0; k < K - 1; ++k)
#pragma unroll
            for (int e = 0; e < V; ++e) hist[k][e] = hist[k + 1][e], win[k][e] = win[k + 1][e];
#pragma unroll
          for (int e = 0; e < V; ++e) hist[K - 1][e] = dp[e];
          float o[V];
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float acc = w[0][e] * hist[K - 1][e];
#pragma unroll
            for (int k = 1; k < K; ++k) acc = fmaf(w[k][e], hist[K - 1 - k][e], acc);
            o[e] = acc;
          }
          *reinterpret_cast<raw_t<T, V>*>(drow + static_cast<int64_t>(i) * dld) = pack<T, V>(o);
        }
#pragma unroll
        for (int i = 0; i < kRowsBwd; ++i) issue(tc + D + i);  // refill this batch's slots
        continue;
      }
#pragma unroll
      for (int i = 0; i < kRowsBwd; ++i) {
        const int t = tc + i;
        if (t >= tlast) break;
        float dp[V];
        if (t < p.len) {
          unpack<T, V>(xr[i], win[K - 1]);
          float g[V];
          unpack<T, V>(gr[i], g);
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float d = g[e];
            if constexpr (ACT != kActNone) {
              float acc = bias[e];
#pragma unroll
              for (int k = 0; k < K; ++k) acc = fmaf(w[k][e], win[k][e], acc);
              d = act_grad<ACT>(d, acc);
            }
            dp[e] = d;
            if (t < te) {
              gb[e] += d;
#pragma unroll
              for (int k = 0; k < K; ++k) gw[k][e] = fmaf(d, win[k][e], gw[k][e]);
            }
          }
        } else {
#pragma unroll
          for (int e = 0; e < V; ++e) dp[e] = 0.f;
        }
#pragma unroll
        for (int k = 0; k < K - 1; ++k)
#pragma unroll
          for (int e = 0; e < V; ++e) hist[k][e] = hist[k + 1][e], win[k][e] = win[k + 1][e];
#pragma unroll
        for (int e = 0; e < V; ++e) hist[K - 1][e] = dp[e];
        // dx̃[jj] = Σ_k w[k]·dpre[jj+K−1−k], complete once dpre[t = jj+K−1] is known.
        const int jj = t - (K - 1);
        if (jj >= jfirst && jj < te) {
          float o[V];
#pragma unroll
          for (int e = 0; e < V; ++e) {
            float acc = 0.f;
#pragma unroll
            for (int k = 0; k < K; ++k) acc = fmaf(w[k][e], hist[K - 1 - k][e], acc);
            o[e] = acc;
          }
          if (jj >= 0) {
            *reinterpret_cast<raw_t<T, V>*>(dxb + static_cast<int64_t>(jj) * dld) = pack<T, V>(o);
          } else {
            T* di = static_cast<T*>(p.dinit);
#pragma unroll
            for (int e = 0; e < V; ++e)
              di[(static_cast<int64_t>(b) * p.C + c + e) * (K - 1) + (K - 1) + jj] = from_f<T>(o[e]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kRowsBwd; ++i) issue(tc + D + i);  // refill this batch's slots
    }
    cp_async_wait<0>();
  }
  // Block reduction over the runs sharing a channel vector, one channel at a time.
#pragma unroll
  for (int e = 0; e < V; ++e) {
#pragma unroll
    for (int k = 0; k < K; ++k) red[k * kThreads + threadIdx.x] = gw[k][e] * kActScale<ACT>;
    red[K * kThreads + threadIdx.x] = gb[e] * kActScale<ACT>;
    __syncthreads();
    for (int i = threadIdx.x; i < (K + 1) * m.VB; i += kThreads) {
      const int k = i / m.VB, v = i - k * m.VB;
      const int jj = blockIdx.x * m.VB + v;
      if (jj >= m.vpr) continue;
      float s = 0.f;
      for (int q = 0; q < m.RB; ++q) s += red[k * kThreads + q * m.VB + v];
      const int ch = jj * V + e;
      if (k < K) {
        if (p.dw) atomicAdd(p.dw + ch * K + k, s);
      } else if (p.dbias) {
        atomicAdd(p.dbias + ch, s);
      }
    }
    __syncthreads();
  }
}

// ---- general path ----------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ float conv_pre(const ConvK& p, int b, int t, int c) {
  float acc = p.bias ? p.bias[c] : 0.f;
  for (int k = 0; k < p.K; ++k) acc = fmaf(p.w[static_cast<int64_t>(c) * p.K + k], conv_in<T>(p, b, t - (p.K - 1) + k, c), acc);
  return acc;
}
template <typename T>
__device__ __forceinline__ float conv_dpre(const ConvK& p, int b, int t, int c) {
  float d = to_f(static_cast<const T*>(p.dout)[(static_cast<int64_t>(b) * p.len + t) * p.dout_ld + c]);
  if (p.silu) d *= silu_grad_f(conv_pre<T>(p, b, t, c));
  return d;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) conv_fwd_gen(const ConvK p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t rows = static_cast<int64_t>(p.batch) * p.len;
  if (i >= rows * p.C) return;
  const int64_t row = i / p.C;
  const int c = static_cast<int>(i - row * p.C);
  const int b = static_cast<int>(row / p.len), t = static_cast<int>(row - static_cast<int64_t>(b) * p.len);
  const float v = conv_pre<T>(p, b, t, c);
  static_cast<T*>(p.out)[row * p.out_ld + c] = from_f<T>(p.silu ? silu_f(v) : v);
}

// final_state[b,c,i] = x̃[len−(K−1)+i]
template <typename T>
__global__ void __launch_bounds__(kThreads) conv_final_gen(const ConvK p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int W = p.K - 1;
  if (i >= static_cast<int64_t>(p.batch) * p.C * W) return;
  const int k = static_cast<int>(i % W);
  const int64_t bc = i / W;
  const int c = static_cast<int>(bc % p.C), b = static_cast<int>(bc / p.C);
  static_cast<T*>(p.final_state)[i] = from_f<T>(conv_in<T>(p, b, p.len - W + k, c));
}

// dx̃[j] for j ∈ [−(K−1), len): one thread per element.
template <typename T>
__global__ void __launch_bounds__(kThreads) conv_bwd_dx_gen(const ConvK p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int W = p.K - 1;
  const int64_t span = p.len + W;
  if (i >= static_cast<int64_t>(p.batch) * span * p.C) return;
  const int c = static_cast<int>(i % p.C);
  const int64_t bj = i / p.C;
  const int b = static_cast<int>(bj / span), j = static_cast<int>(bj % span) - W;
  if (j < 0 && !p.dinit) return;
  if (j >= 0 && !p.dx) return;
  float acc = 0.f;
  for (int k = 0; k < p.K; ++k) {
    const int t = j + W - k;
    if (t >= 0 && t < p.len) acc = fmaf(p.w[static_cast<int64_t>(c) * p.K + k], conv_dpre<T>(p, b, t, c), acc);
  }
  if (j >= 0)
    static_cast<T*>(p.dx)[(static_cast<int64_t>(b) * p.len + j) * p.dx_ld + c] = from_f<T>(acc);
  else
    static_cast<T*>(p.dinit)[(static_cast<int64_t>(b) * p.C + c) * W + W + j] = from_f<T>(acc);
}

// dw[c,k] (k < K) and dbias[c] (k = K): thread (c, k) sums over a slice of the rows.
template <typename T>
__global__ void __launch_bounds__(kThreads) conv_bwd_dw_gen(const ConvK p, int rows_per_slice) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(p.C) * (p.K + 1)) return;
  const int c = static_cast<int>(i % p.C), k = static_cast<int>(i / p.C);
  const int64_t rows = static_cast<int64_t>(p.batch) * p.len;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_slice;
  const int64_t r1 = r0 + rows_per_slice < rows ? r0 + rows_per_slice : rows;
  float acc = 0.f;
  for (int64_t row = r0; row < r1; ++row) {
    const int b = static_cast<int>(row / p.len), t = static_cast<int>(row - static_cast<int64_t>(b) * p.len);
    const float d = conv_dpre<T>(p, b, t, c);
    acc = fmaf(d, k < p.K ? conv_in<T>(p, b, t - (p.K - 1) + k, c) : 1.f, acc);
  }
  if (k < p.K) {
    if (p.dw) atomicAdd(p.dw + static_cast<int64_t>(c) * p.K + k, acc);
  } else if (p.dbias) {
    atomicAdd(p.dbias + c, acc);
  }
}

// ---- step ------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(kThreads) conv_step_kernel(const ConvK p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= static_cast<int64_t>(p.batch) * p.C) return;
  const int b = static_cast<int>(i / p.C), c = static_cast<int>(i - static_cast<int64_t>(b) * p.C);
  const int W = p.K - 1;
  T* st = static_cast<T*>(p.state) + i * W;
  const float* w = p.w + static_cast<int64_t>(c) * p.K;
  const float xc = to_f(static_cast<const T*>(p.x)[b * p.x_ld + c]);
  float acc = p.bias ? p.bias[c] : 0.f;
  for (int k = 0; k < W; ++k) acc = fmaf(w[k], to_f(st[k]), acc);
  acc = fmaf(w[W], xc, acc);
  for (int k = 0; k + 1 < W; ++k) st[k] = st[k + 1];
  if (W > 0) st[W - 1] = from_f<T>(xc);
  static_cast<T*>(p.out)[b * p.out_ld + c] = from_f<T>(p.silu ? silu_f(acc) : acc);
}

// 8 bytes of channels a thread (16 measured slower: fewer threads, more registers); the
// forward optionally 4 (k.narrow: twice the threads at fewer registers each).
template <typename T>
constexpr int kV8 = kVec<T> / 2;
template <typename T>
constexpr int kV4 = kVec<T> / 4;
// The launch's activation (api.cpp sets k.tanh for 16-bit types only).
int conv_act(const ConvK& k) { return !k.silu ? kActNone : (k.tanh ? kActTanh : kActSilu); }
using ConvKernel = void (*)(const ConvK);
// One kernel per activation; the tanh form is compiled for 16-bit types only (f32 asked
// for it gets the exact SiLU).
template <typename T>
constexpr int kTanhOr = sizeof(T) == 2 ? kActTanh : kActSilu;
template <typename T, int K, int V, int R>
ConvKernel bwd_kernel(int act) {
  return act == kActTanh ? conv_bwd_fast<T, K, V, R, kTanhOr<T>>
         : act == kActSilu ? conv_bwd_fast<T, K, V, R, kActSilu>
                           : conv_bwd_fast<T, K, V, R, kActNone>;
}
template <typename T, int K, int V, bool RING>
ConvKernel fwd_kernel(int act) {
  return act == kActTanh ? conv_fwd_fast<T, K, V, RING, kTanhOr<T>>
         : act == kActSilu ? conv_fwd_fast<T, K, V, RING, kActSilu>
                           : conv_fwd_fast<T, K, V, RING, kActNone>;
}
// The fast-path kernel for a launch (direction, batch rows / ring / narrow, activation).
template <typename T, int K>
ConvKernel fast_kernel(const ConvK& k, bool bwd) {
  constexpr int V8 = kV8<T>, V4 = kV4<T>;
  const int act = conv_act(k);
  if (bwd) return k.rows_bwd == 8 ? bwd_kernel<T, K, V8, 8>(act) : bwd_kernel<T, K, V8, 4>(act);
  if (k.narrow) return fwd_kernel<T, K, V4, false>(act);
  return k.ring ? fwd_kernel<T, K, V8, true>(act) : fwd_kernel<T, K, V8, false>(act);
}
template <typename T, int K>
int fast_launch(const ConvK& k, cudaStream_t s, bool bwd) {
  const FastMap m = fast_map(k.C, !bwd && k.narrow ? kV4<T> : kV8<T>, k.len, k.run);
  const dim3 grid(m.groups(), m.run_groups(), k.batch);
  fast_kernel<T, K>(k, bwd)<<<grid, kThreads, 0, s>>>(k);
  return cudaGetLastError();
}

template <typename T>
int conv_dispatch(const ConvK& k, cudaStream_t s, bool bwd) {
  if (k.vec && k.K >= 2 && k.K <= 4) {
    switch (k.K) {
      case 2: return fast_launch<T, 2>(k, s, bwd);
      case 3: return fast_launch<T, 3>(k, s, bwd);
      case 4: return fast_launch<T, 4>(k, s, bwd);
    }
  }
  const int64_t rows = static_cast<int64_t>(k.batch) * k.len;
  if (!bwd) {
    const int64_t n = rows * k.C;
    if (n > 0) conv_fwd_gen<T><<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, s>>>(k);
    if (k.final_state && k.K > 1) {
      const int64_t nf = static_cast<int64_t>(k.batch) * k.C * (k.K - 1);
      conv_final_gen<T><<<static_cast<unsigned>((nf + kThreads - 1) / kThreads), kThreads, 0, s>>>(k);
    }
    return cudaGetLastError();
  }
  const int64_t nx = static_cast<int64_t>(k.batch) * (k.len + k.K - 1) * k.C;
  conv_bwd_dx_gen<T><<<static_cast<unsigned>((nx + kThreads - 1) / kThreads), kThreads, 0, s>>>(k);
  const int64_t nw = static_cast<int64_t>(k.C) * (k.K + 1);
  const int slice = 256;
  const unsigned slices = static_cast<unsigned>((rows + slice - 1) / slice);
  if (rows > 0)
    conv_bwd_dw_gen<T><<<dim3(static_cast<unsigned>((nw + kThreads - 1) / kThreads), slices), kThreads, 0, s>>>(k, slice);
  return cudaGetLastError();
}

template <typename T, int K>
int fast_occupancy(const ConvK& k, bool bwd) {
  int n = 0;
  const cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fast_kernel<T, K>(k, bwd), kThreads, 0);
  return e == cudaSuccess ? n : 0;
}
template <typename T>
int fast_occupancy_k(const ConvK& k, bool bwd) {
  switch (k.K) {
    case 2: return fast_occupancy<T, 2>(k, bwd);
    case 3: return fast_occupancy<T, 3>(k, bwd);
    case 4: return fast_occupancy<T, 4>(k, bwd);
  }
  return 0;
}

}  // namespace

// Blocks of the fast path resident at once on the current device (0 if unknown); cached
// per (dtype, width, direction, variant).
int conv_fast_capacity(const ConvK& k, bool bwd) {
  if (k.K < 2 || k.K > 4 || k.dtype < 0 || k.dtype > 2) return 0;
  static int cache[3][5][24] = {};
  const int variant = bwd ? (k.rows_bwd == 8 ? 1 : 0) : (k.narrow ? 2 : (k.ring ? 1 : 0));
  const int act = conv_act(k);
  int& c = cache[k.dtype][k.K][act * 8 + (bwd ? 4 : 0) + variant];
  if (c == 0) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 0;
    int per = 0;
    switch (k.dtype) {
      case 0: per = fast_occupancy_k<float>(k, bwd); break;
      case 1: per = fast_occupancy_k<__half>(k, bwd); break;
      case 2: per = fast_occupancy_k<__nv_bfloat16>(k, bwd); break;
    }
    c = per * sms;
  }
  return c;
}

int conv_fwd_launch(const ConvK& k, cudaStream_t s) {
  switch (k.dtype) {
    case 0: return conv_dispatch<float>(k, s, false);
    case 1: return conv_dispatch<__half>(k, s, false);
    case 2: return conv_dispatch<__nv_bfloat16>(k, s, false);
  }
  return cudaErrorInvalidValue;
}
int conv_bwd_launch(const ConvK& k, cudaStream_t s) {
  switch (k.dtype) {
    case 0: return conv_dispatch<float>(k, s, true);
    case 1: return conv_dispatch<__half>(k, s, true);
    case 2: return conv_dispatch<__nv_bfloat16>(k, s, true);
  }
  return cudaErrorInvalidValue;
}
int conv_step_launch(const ConvK& k, cudaStream_t s) {
  const int64_t n = static_cast<int64_t>(k.batch) * k.C;
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  switch (k.dtype) {
    case 0: conv_step_kernel<float><<<blocks, kThreads, 0, s>>>(k); break;
    case 1: conv_step_kernel<__half><<<blocks, kThreads, 0, s>>>(k); break;
    case 2: conv_step_kernel<__nv_bfloat16><<<blocks, kThreads, 0, s>>>(k); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace mambaseq::cuda::detail
