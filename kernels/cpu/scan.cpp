// Selective scan (S6), forward and backward.
//
//   δ_t = softplus(delta_t + bias)            h_t = exp(δ_t·A) ⊙ h_{t−1} + δ_t·B_t·u_t
//   y_t = ⟨h_t, C_t⟩ + D·u_t                   out_t = y_t · silu(z_t)
//
// Work split: (batch, block of CB channels) per task; the state of a block is CB×N
// numbers in a per-thread buffer, so memory is O(len) overall, never len×N per channel.
//
// Backward, per task: pass 1 runs the recurrence once and keeps h only at chunk
// boundaries (len/chunk × CB × N); pass 2 walks the chunks in reverse, recomputes the
// states inside a chunk (chunk × CB × N) and runs the adjoint recurrence
//   g_t = dy_t·C_t + exp(δ_{t+1}·A) ⊙ g_{t+1}      (g = ∂loss/∂h_t)
// from which dδ, dA, dB, dC, du follow step by step.
// B and C are shared by all channels, so dB/dC sum over channels: tasks that share a
// sequence write to per-group partial buffers that are reduced at the end (groups
// exist only when batch < threads; otherwise each task owns a whole sequence).
#include <algorithm>
#include <vector>

#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

namespace {

constexpr int64_t CB = 16;  // channels per block

template <typename T>
void check_params(const ScanParams<T>& p) {
  MS_CHECK(p.batch >= 0 && p.len >= 0 && p.dim > 0 && p.dstate > 0,
           "selective_scan: bad shape batch={} len={} dim={} dstate={}", p.batch, p.len, p.dim,
           p.dstate);
  MS_CHECK(p.u && p.delta && p.A && p.B && p.C, "selective_scan: u, delta, A, B and C are required");
  MS_CHECK(p.ngroups >= 1 && p.dim % p.ngroups == 0,
           "selective_scan: ngroups={} must divide dim={}", p.ngroups, p.dim);
  MS_CHECK(p.u_ld >= p.dim && p.delta_ld >= p.dim && p.bc_ld >= p.ngroups * p.dstate &&
               (!p.z || p.z_ld >= p.dim),
           "selective_scan: a row stride is smaller than the row (u_ld={} delta_ld={} bc_ld={} "
           "z_ld={})",
           p.u_ld, p.delta_ld, p.bc_ld, p.z_ld);
}

// Column offset of channel c's B/C group within a row.
template <typename T>
inline int64_t group_col(const ScanParams<T>& p, int64_t c) {
  return p.ngroups == 1 ? 0 : c / (p.dim / p.ngroups) * p.dstate;
}

// Per-step scalars for channel c at token row r: δ (after bias/softplus), its raw input.
template <typename T>
inline T step_delta(const ScanParams<T>& p, int64_t row, int64_t c, T* raw) {
  T d = p.delta[row * p.delta_ld + c];
  if (p.delta_bias) d += p.delta_bias[c];
  *raw = d;
  return p.delta_softplus ? softplus(d) : d;
}

// One recurrence step for a block of channels: h ← exp(δA)⊙h + δ·B·u.
// Returns nothing; y is computed by the caller from the updated h.
template <typename T>
inline void step_block(const ScanParams<T>& p, int64_t row, int64_t c0, int64_t cn, T* h,
                       T* ys /* [cn] or null: ⟨h,C⟩ + D·u, before the gate */) {
  const int64_t N = p.dstate;
  const T* Bt = p.B + row * p.bc_ld;
  const T* Ct = p.C + row * p.bc_ld;
  for (int64_t c = 0; c < cn; ++c) {
    const int64_t cc = c0 + c;
    T raw;
    const T dt = step_delta(p, row, cc, &raw);
    const T uu = p.u[row * p.u_ld + cc];
    const T* Ac = p.A + cc * N;
    const T* Bc = Bt + group_col(p, cc);
    const T* Cc = Ct + group_col(p, cc);
    T* hc = h + c * N;
    T y = 0;
#pragma omp simd reduction(+ : y)
    for (int64_t n = 0; n < N; ++n) {
      hc[n] = exp_fast(dt * Ac[n]) * hc[n] + dt * Bc[n] * uu;
      y += hc[n] * Cc[n];
    }
    if (ys) ys[c] = y + (p.D ? p.D[cc] * uu : T(0));
  }
}

}  // namespace

template <typename T>
void selective_scan_forward(const ScanParams<T>& p, std::type_identity_t<T>* out,
                            std::type_identity_t<T>* h_final) {
  check_params(p);
  const int64_t N = p.dstate, L = p.len, Cdim = p.dim;
  const int64_t nblk = (Cdim + CB - 1) / CB;
#pragma omp parallel
  {
    std::vector<T> h(CB * N), ys(CB);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < p.batch; ++b)
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t c0 = blk * CB, cn = std::min(CB, Cdim - c0);
        for (int64_t c = 0; c < cn; ++c)
          for (int64_t n = 0; n < N; ++n)
            h[c * N + n] = p.h0 ? p.h0[(b * Cdim + c0 + c) * N + n] : T(0);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t row = b * L + t;
          step_block(p, row, c0, cn, h.data(), ys.data());
          for (int64_t c = 0; c < cn; ++c) {
            T y = ys[c];
            if (p.z) y *= silu(p.z[row * p.z_ld + c0 + c]);
            out[row * Cdim + c0 + c] = y;
          }
        }
        if (h_final)
          for (int64_t c = 0; c < cn; ++c)
            for (int64_t n = 0; n < N; ++n) h_final[(b * Cdim + c0 + c) * N + n] = h[c * N + n];
      }
  }
}

template <typename T>
void selective_scan_backward(const ScanParams<T>& p, const std::type_identity_t<T>* dout,
                             const ScanGrads<T>& g, int64_t chunk) {
  check_params(p);
  MS_CHECK(chunk > 0, "selective_scan_backward: chunk must be positive");
  MS_CHECK(g.du && g.ddelta && g.dA && g.dB && g.dC, "selective_scan_backward: du, ddelta, dA, dB, dC are required");
  MS_CHECK(!p.D || g.dD, "selective_scan_backward: dD is required when D is given");
  MS_CHECK(!p.z || g.dz, "selective_scan_backward: dz is required when z is given");
  MS_CHECK(!p.delta_bias || g.ddelta_bias, "selective_scan_backward: ddelta_bias is required");
  const int64_t N = p.dstate, L = p.len, Cdim = p.dim, Bt = p.batch;
  const int64_t nchunks = (L + chunk - 1) / chunk;

  // Channel groups per sequence: enough tasks to feed every thread.
  const int64_t nthreads = num_threads();
  int64_t G = Bt >= nthreads ? 1 : (nthreads + Bt - 1) / std::max<int64_t>(Bt, 1);
  G = std::max<int64_t>(1, std::min(G, (Cdim + CB - 1) / CB));
  const int64_t per_group = ((Cdim + G - 1) / G + CB - 1) / CB * CB;
  G = (Cdim + per_group - 1) / per_group;
  // Partial dB/dC per (group, sequence) when several groups share a sequence.
  const int64_t W = p.ngroups * N;  // B (or C) columns per row
  std::vector<T> part;
  if (G > 1) part.assign(static_cast<size_t>(G * Bt * L * 2 * W), T(0));
  std::vector<T> pparam(static_cast<size_t>(Bt * Cdim * (N + 2)));  // per-sequence dA | dD | dbias

#pragma omp parallel
  {
    std::vector<T> ckpt(nchunks * CB * N), hs((chunk + 1) * CB * N), gh(CB * N);
    std::vector<T> dA_loc(CB * N), dD_loc(CB), dbias_loc(CB);
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < Bt * G; ++task) {
      const int64_t b = task / G, grp = task % G;
      T* dB_base;
      T* dC_base;
      int64_t dbc_ld;
      if (G > 1) {
        dB_base = part.data() + (grp * Bt + b) * L * 2 * W;
        dC_base = dB_base + W;
        dbc_ld = 2 * W;
      } else {
        dB_base = g.dB + b * L * g.dbc_ld;
        dC_base = g.dC + b * L * g.dbc_ld;
        dbc_ld = g.dbc_ld;
      }
      const int64_t cg0 = grp * per_group, cg1 = std::min(Cdim, cg0 + per_group);
      for (int64_t c0 = cg0; c0 < cg1; c0 += CB) {
        const int64_t cn = std::min(CB, cg1 - c0);
        // Pass 1: states at chunk starts.
        T* h = hs.data();
        for (int64_t c = 0; c < cn; ++c)
          for (int64_t n = 0; n < N; ++n) h[c * N + n] = p.h0 ? p.h0[(b * Cdim + c0 + c) * N + n] : T(0);
        for (int64_t k = 0; k < nchunks; ++k) {
          std::copy(h, h + cn * N, ckpt.data() + k * CB * N);
          const int64_t t1 = std::min(L, (k + 1) * chunk);
          for (int64_t t = k * chunk; t < t1; ++t) step_block<T>(p, b * L + t, c0, cn, h, nullptr);
        }
        // Pass 2: adjoint, chunk by chunk from the end.
        std::fill(gh.begin(), gh.end(), T(0));
        std::fill(dA_loc.begin(), dA_loc.end(), T(0));
        std::fill(dD_loc.begin(), dD_loc.end(), T(0));
        std::fill(dbias_loc.begin(), dbias_loc.end(), T(0));
        for (int64_t k = nchunks - 1; k >= 0; --k) {
          const int64_t t0 = k * chunk, t1 = std::min(L, t0 + chunk);
          // hs[j] = state before step t0+j; hs[j+1] = after it.
          std::copy(ckpt.data() + k * CB * N, ckpt.data() + k * CB * N + cn * N, hs.data());
          for (int64_t t = t0; t < t1; ++t) {
            T* dst = hs.data() + (t - t0 + 1) * CB * N;
            std::copy(dst - CB * N, dst - CB * N + cn * N, dst);
            step_block<T>(p, b * L + t, c0, cn, dst, nullptr);
          }
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const int64_t row = b * L + t;
            const T* Brow = p.B + row * p.bc_ld;
            const T* Crow = p.C + row * p.bc_ld;
            T* dBrow = dB_base + t * dbc_ld;
            T* dCrow = dC_base + t * dbc_ld;
            const T* hcur = hs.data() + (t - t0 + 1) * CB * N;
            const T* hprev = hcur - CB * N;
            for (int64_t c = 0; c < cn; ++c) {
              const int64_t cc = c0 + c;
              const int64_t gcol = group_col(p, cc);
              const T* Btok = Brow + gcol;
              const T* Ctok = Crow + gcol;
              T* dBt = dBrow + gcol;
              T* dCt = dCrow + gcol;
              T raw;
              const T dt = step_delta(p, row, cc, &raw);
              const T uu = p.u[row * p.u_ld + cc];
              const T* Ac = p.A + cc * N;
              const T* hc = hcur + c * N;
              const T* hp = hprev + c * N;
              T* gc = gh.data() + c * N;
              T* dAc = dA_loc.data() + c * N;
              T dy = dout[row * Cdim + cc];
              if (p.z) {
                T y = 0;
                for (int64_t n = 0; n < N; ++n) y += hc[n] * Ctok[n];
                if (p.D) y += p.D[cc] * uu;
                const T zz = p.z[row * p.z_ld + cc];
                g.dz[row * g.dz_ld + cc] += dy * y * silu_grad(zz);
                dy *= silu(zz);
              }
              T du = 0;
              if (p.D) {
                dD_loc[c] += dy * uu;
                du = dy * p.D[cc];
              }
              T ddt = 0;
#pragma omp simd reduction(+ : ddt, du)
              for (int64_t n = 0; n < N; ++n) {
                const T a = exp_fast(dt * Ac[n]);
                const T gn = gc[n] + dy * Ctok[n];
                dCt[n] += dy * hc[n];
                ddt += gn * (Ac[n] * a * hp[n] + Btok[n] * uu);
                dAc[n] += gn * dt * a * hp[n];
                dBt[n] += gn * dt * uu;
                du += gn * dt * Btok[n];
                gc[n] = gn * a;  // becomes ∂loss/∂h_{t−1}
              }
              g.du[row * g.du_ld + cc] += du;
              if (p.delta_softplus) ddt *= softplus_grad(raw);
              g.ddelta[row * g.ddelta_ld + cc] += ddt;
              dbias_loc[c] += ddt;
            }
          }
        }
        if (g.dh0)
          for (int64_t c = 0; c < cn; ++c)
            for (int64_t n = 0; n < N; ++n) g.dh0[(b * Cdim + c0 + c) * N + n] += gh[c * N + n];
        // Parameter gradients are shared by all sequences: keep them per sequence and sum
        // in a fixed order below, so that training is bit-for-bit reproducible.
        for (int64_t c = 0; c < cn; ++c) {
          T* dst = pparam.data() + (b * Cdim + c0 + c) * (N + 2);
          for (int64_t n = 0; n < N; ++n) dst[n] = dA_loc[c * N + n];
          dst[N] = dD_loc[c];
          dst[N + 1] = dbias_loc[c];
        }
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < Cdim; ++c)
    for (int64_t b = 0; b < Bt; ++b) {
      const T* src = pparam.data() + (b * Cdim + c) * (N + 2);
      for (int64_t n = 0; n < N; ++n) g.dA[c * N + n] += src[n];
      if (g.dD && p.D) g.dD[c] += src[N];
      if (g.ddelta_bias && p.delta_bias) g.ddelta_bias[c] += src[N + 1];
    }
  if (G > 1) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t t = 0; t < L; ++t) {
        T* dBt = g.dB + (b * L + t) * g.dbc_ld;
        T* dCt = g.dC + (b * L + t) * g.dbc_ld;
        for (int64_t grp = 0; grp < G; ++grp) {
          const T* src = part.data() + ((grp * Bt + b) * L + t) * 2 * W;
          for (int64_t n = 0; n < W; ++n) {
            dBt[n] += src[n];
            dCt[n] += src[W + n];
          }
        }
      }
  }
}

template void selective_scan_forward<float>(const ScanParams<float>&, float*, float*);
template void selective_scan_forward<double>(const ScanParams<double>&, double*, double*);
template void selective_scan_backward<float>(const ScanParams<float>&, const float*,
                                             const ScanGrads<float>&, int64_t);
template void selective_scan_backward<double>(const ScanParams<double>&, const double*,
                                              const ScanGrads<double>&, int64_t);

}  // namespace mambaseq::cpu
