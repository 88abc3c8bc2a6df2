// Single-token steps for generation: O(1) work and memory per token.
#include "common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq::cpu {

// out = bias + Σ_k w[:,k]·window[k], window = state ‖ x ; then state ← window[1:]
template <typename T>
void conv1d_step(T* out, T* conv_state, const T* x, int64_t ldx, const T* w, const T* bias, int64_t batch,
                 int64_t C, int64_t K) {
#pragma omp parallel for collapse(2) schedule(static) if (batch * C > 4096)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < C; ++c) {
      T* st = conv_state + (b * C + c) * (K - 1);
      const T xc = x[b * ldx + c];
      T acc = bias ? bias[c] : T(0);
      for (int64_t k = 0; k < K - 1; ++k) acc += w[c * K + k] * st[k];
      acc += w[c * K + K - 1] * xc;
      for (int64_t k = 0; k + 1 < K - 1; ++k) st[k] = st[k + 1];
      if (K > 1) st[K - 2] = xc;
      out[b * C + c] = acc;
    }
}

// h ← exp(δA)⊙h + δ·B·u ; y = ⟨h, C⟩ + D·u ; out = y·silu(z)
template <typename T>
void selective_scan_step(const ScanParams<T>& p, T* h, std::type_identity_t<T>* out) {
  MS_CHECK(p.len == 1, "selective_scan_step: len must be 1, got {}", p.len);
  MS_CHECK(p.ngroups >= 1 && p.dim % p.ngroups == 0,
           "selective_scan_step: ngroups={} must divide dim={}", p.ngroups, p.dim);
  const int64_t N = p.dstate, Cdim = p.dim;
#pragma omp parallel for collapse(2) schedule(static) if (p.batch * Cdim > 4096)
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t c = 0; c < Cdim; ++c) {
      T dt = p.delta[b * p.delta_ld + c] + (p.delta_bias ? p.delta_bias[c] : T(0));
      if (p.delta_softplus) dt = softplus(dt);
      const T uu = p.u[b * p.u_ld + c];
      const int64_t gcol = p.ngroups == 1 ? 0 : c / (Cdim / p.ngroups) * N;
      const T* Bt = p.B + b * p.bc_ld + gcol;
      const T* Ct = p.C + b * p.bc_ld + gcol;
      const T* Ac = p.A + c * N;
      T* hc = h + (b * Cdim + c) * N;
      T y = 0;
#pragma omp simd reduction(+ : y)
      for (int64_t n = 0; n < N; ++n) {
        hc[n] = exp_fast(dt * Ac[n]) * hc[n] + dt * Bt[n] * uu;
        y += hc[n] * Ct[n];
      }
      if (p.D) y += p.D[c] * uu;
      if (p.z) y *= silu(p.z[b * p.z_ld + c]);
      out[b * Cdim + c] = y;
    }
}

#define INST(T)                                                                                        \
  template void conv1d_step<T>(T*, T*, const T*, int64_t, const T*, const T*, int64_t, int64_t, int64_t); \
  template void selective_scan_step<T>(const ScanParams<T>&, T*, T*);
MS_INSTANTIATE_FLOAT_DOUBLE(INST)
#undef INST

}  // namespace mambaseq::cpu
