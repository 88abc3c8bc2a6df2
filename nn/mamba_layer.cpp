// One Mamba block: norm, then the mixer (reference/mamba.md, "One mixer layer").
//
//   xz = in_proj(norm(x))           x | z split, each Di wide
//   u  = SiLU(conv1d(x))            depthwise causal, kernel K
//   dt_low | B | C = x_proj(u)
//   y  = scan(u, δ = softplus(dt_proj(dt_low) + b), A = −exp(A_log), B, C, D) · SiLU(z)
//   out = out_proj(y)
#include <cmath>

#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/kernels_cpu_extra.h"
#include "mambaseq/model.h"

namespace mambaseq {

namespace {
std::string mixer_prefix(int index, bool rev) {
  return "backbone.layers." + std::to_string(index) + (rev ? ".mixer_rev." : ".mixer.");
}
std::unique_ptr<Param> maybe_param(bool on, std::string name, Shape s, bool decay) {
  return on ? std::make_unique<Param>(std::move(name), std::move(s), decay) : nullptr;
}
float* grad_or_null(const std::unique_ptr<Param>& p) { return p ? p->g.data() : nullptr; }
const float* value_or_null(const std::unique_ptr<Param>& p) { return p ? p->w.data() : nullptr; }
void uniform_fill(Tensor& t, Rng& rng, double bound) {
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.uniform(-bound, bound));
}
}  // namespace

void MixerActs::resize(int64_t M, const MambaConfig& c) {
  const int64_t D = c.d_model, Di = c.d_inner(), E = c.dt_rank_value() + 2 * c.d_state;
  xn.resize({M, D});
  mean.resize({M});
  rstd.resize({M});
  xz.resize({M, 2 * Di});
  xc.resize({M, Di});
  u.resize({M, Di});
  dbc.resize({M, E});
  dt.resize({M, Di});
  yg.resize({M, Di});
  if (c.bidirectional) {
    if (!rev) rev = std::make_unique<MixerActs>();
    MambaConfig one = c;  // the reversed mixer's own activations (no third direction)
    one.bidirectional = false;
    rev->resize(M, one);
    y_rev.resize({M, D});
    if (c.bidir_combine == "ew_multiply") y_fwd.resize({M, D});
  }
}

void MixerGradScratch::resize(int64_t M, const MambaConfig& c) {
  const int64_t D = c.d_model, Di = c.d_inner(), E = c.dt_rank_value() + 2 * c.d_state;
  d_xn.resize({M, D});
  d_xz.resize({M, 2 * Di});
  d_xc.resize({M, Di});
  d_u.resize({M, Di});
  d_dbc.resize({M, E});
  d_dt.resize({M, Di});
  d_yg.resize({M, Di});
  d_A.resize({Di, c.d_state});
  if (c.bidirectional)
    for (Tensor* t : {&d_fwd, &d_rev, &d_xn_rev}) t->resize({M, D});
}

MambaLayer::MambaLayer(const MambaConfig& c, int index) : MambaLayer(c, index, false) {}

// is_rev: the reversed mixer of a bidirectional block, named mixer_rev.*.
MambaLayer::MambaLayer(const MambaConfig& c, int index, bool is_rev)
    : cfg(c),
      norm_w("backbone.layers." + std::to_string(index) + (is_rev ? ".mixer_rev.unused_norm" : ".norm.weight"),
             {c.d_model}, false),
      in_w(mixer_prefix(index, is_rev) + "in_proj.weight", {2 * c.d_inner(), c.d_model}),
      conv_w(mixer_prefix(index, is_rev) + "conv1d.weight", {c.d_inner(), 1, c.d_conv}),
      x_w(mixer_prefix(index, is_rev) + "x_proj.weight", {c.dt_rank_value() + 2 * c.d_state, c.d_inner()}),
      dt_w(mixer_prefix(index, is_rev) + "dt_proj.weight", {c.d_inner(), c.dt_rank_value()}),
      dt_b(mixer_prefix(index, is_rev) + "dt_proj.bias", {c.d_inner()}, false),
      A_log(mixer_prefix(index, is_rev) + "A_log", {c.d_inner(), c.d_state}, false),
      Dp(mixer_prefix(index, is_rev) + "D", {c.d_inner()}, false),
      out_w(mixer_prefix(index, is_rev) + "out_proj.weight", {c.d_model, c.d_inner()}),
      is_rev_(is_rev) {
  const std::string pre = "backbone.layers." + std::to_string(index), mix = mixer_prefix(index, is_rev);
  norm_b = maybe_param(c.norm == NormKind::Layer && !is_rev, pre + ".norm.bias", {c.d_model}, false);
  in_b = maybe_param(c.use_bias, mix + "in_proj.bias", {2 * c.d_inner()}, false);
  conv_b = maybe_param(c.use_conv_bias, mix + "conv1d.bias", {c.d_inner()}, false);
  out_b = maybe_param(c.use_bias, mix + "out_proj.bias", {c.d_model}, false);
  A_.resize({c.d_inner(), c.d_state});
  if (c.bidirectional && !is_rev) rev.reset(new MambaLayer(c, index, true));
}

std::vector<Param*> MambaLayer::params() {
  std::vector<Param*> v;
  if (!is_rev_) v.push_back(&norm_w);
  if (norm_b) v.push_back(norm_b.get());
  v.push_back(&in_w);
  if (in_b) v.push_back(in_b.get());
  v.push_back(&conv_w);
  if (conv_b) v.push_back(conv_b.get());
  v.insert(v.end(), {&x_w, &dt_w, &dt_b, &A_log, &Dp, &out_w});
  if (out_b) v.push_back(out_b.get());
  if (rev)
    for (Param* p : rev->params()) v.push_back(p);
  return v;
}

// The reference initialisation (mamba_ssm defaults): PyTorch's default Linear/Conv1d
// init U(±1/sqrt(fan_in)), zero projection biases, S4D-real A, D = 1, dt from a
// log-uniform range through an inverse softplus, out_proj scaled by 1/sqrt(n_layer).
void MambaLayer::init(Rng& rng) {
  const int64_t D = cfg.d_model, Di = cfg.d_inner(), N = cfg.d_state, R = cfg.dt_rank_value();
  norm_w.w.fill(1.0f);
  if (norm_b) norm_b->w.zero();
  uniform_fill(in_w.w, rng, 1.0 / std::sqrt(double(D)));
  if (in_b) in_b->w.zero();
  uniform_fill(conv_w.w, rng, 1.0 / std::sqrt(double(cfg.d_conv)));
  if (conv_b) uniform_fill(conv_b->w, rng, 1.0 / std::sqrt(double(cfg.d_conv)));
  uniform_fill(x_w.w, rng, 1.0 / std::sqrt(double(Di)));
  const double s = std::pow(double(R), -0.5) * cfg.dt_scale;
  if (cfg.dt_init_random) uniform_fill(dt_w.w, rng, s);
  else dt_w.w.fill(static_cast<float>(s));
  for (int64_t c = 0; c < Di; ++c) {
    double dt = std::exp(rng.uniform() * (std::log(cfg.dt_max) - std::log(cfg.dt_min)) + std::log(cfg.dt_min));
    dt = std::max(dt, cfg.dt_init_floor);
    dt_b.w[c] = static_cast<float>(dt + std::log(-std::expm1(-dt)));  // inverse softplus
  }
  for (int64_t c = 0; c < Di; ++c)
    for (int64_t n = 0; n < N; ++n) A_log.w[c * N + n] = static_cast<float>(std::log(double(n + 1)));
  Dp.w.fill(1.0f);
  double bound = 1.0 / std::sqrt(double(Di));
  uniform_fill(out_w.w, rng, bound);
  if (cfg.rescale_prenorm_residual)
    for (int64_t i = 0; i < out_w.w.numel(); ++i) out_w.w[i] /= static_cast<float>(std::sqrt(double(cfg.n_layer)));
  if (out_b) out_b->w.zero();
  if (rev) rev->init(rng);  // drawn last, so unidirectional models initialise exactly as before
}

void MambaLayer::norm_forward(const float* x, int64_t M, MixerActs& a) {
  if (cfg.norm == NormKind::RMS)
    cpu::rmsnorm_forward<float>(a.xn.data(), a.rstd.data(), x, norm_w.w.data(), M, cfg.d_model, cfg.norm_eps);
  else
    cpu::layernorm_forward<float>(a.xn.data(), a.mean.data(), a.rstd.data(), x, norm_w.w.data(), norm_b->w.data(),
                           M, cfg.d_model, cfg.norm_eps);
}

namespace {
cpu::ScanParams<float> scan_params(const MambaLayer& l, const MixerActs& a, const Tensor& A, int64_t batch,
                                   int64_t len) {
  const MambaConfig& c = l.cfg;
  const int64_t Di = c.d_inner(), N = c.d_state, R = c.dt_rank_value();
  cpu::ScanParams<float> p;
  p.batch = batch;
  p.len = len;
  p.dim = Di;
  p.dstate = N;
  p.u = a.u.data();
  p.u_ld = Di;
  p.delta = a.dt.data();
  p.delta_ld = Di;
  p.A = A.data();
  p.B = a.dbc.data() + R;
  p.C = a.dbc.data() + R + N;
  p.bc_ld = R + 2 * N;
  p.D = l.Dp.w.data();
  p.z = a.xz.data() + Di;
  p.z_ld = 2 * Di;
  p.delta_bias = l.dt_b.w.data();
  p.delta_softplus = true;
  return p;
}
}  // namespace

void MambaLayer::forward(const float* x, float* out, int64_t batch, int64_t len, MixerActs& a,
                         const int64_t* lens) {
  const int64_t M = batch * len, D = cfg.d_model;
  a.resize(M, cfg);
  norm_forward(x, M, a);
  if (!rev) {
    mixer_forward(out, batch, len, a);
    return;
  }
  std::vector<int64_t> full;
  if (!lens) full.assign(batch, len), lens = full.data();
  MixerActs& ra = *a.rev;
  cpu::reverse_within_length<float>(ra.xn.data(), a.xn.data(), lens, batch, len, D, false);
  if (cfg.bidir_combine == "add") {  // out = y_fwd + R(y_rev)
    mixer_forward(out, batch, len, a);
    rev->mixer_forward(a.y_rev.data(), batch, len, ra);
    cpu::reverse_within_length<float>(out, a.y_rev.data(), lens, batch, len, D, true);
  } else {  // ew_multiply: out = y_fwd ⊙ R(y_rev); out is scratch for the reversed output
    mixer_forward(a.y_fwd.data(), batch, len, a);
    rev->mixer_forward(out, batch, len, ra);
    cpu::reverse_within_length<float>(a.y_rev.data(), out, lens, batch, len, D, false);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M * D; ++i) out[i] = a.y_fwd[i] * a.y_rev[i];
  }
}

void MambaLayer::mixer_forward(float* out, int64_t batch, int64_t len, MixerActs& a) {
  const int64_t M = batch * len, D = cfg.d_model, Di = cfg.d_inner(), N = cfg.d_state;
  const int64_t R = cfg.dt_rank_value(), E = R + 2 * N, K = cfg.d_conv;
  cpu::linear_forward<float>(a.xz.data(), 2 * Di, a.xn.data(), D, in_w.w.data(), value_or_null(in_b), M, D, 2 * Di);
  cpu::conv1d_forward<float>(a.xc.data(), a.xz.data(), 2 * Di, conv_w.w.data(), value_or_null(conv_b), batch, len, Di, K);
  cpu::silu_forward<float>(a.u.data(), Di, a.xc.data(), Di, M, Di);
  cpu::linear_forward<float>(a.dbc.data(), E, a.u.data(), Di, x_w.w.data(), nullptr, M, Di, E);
  cpu::linear_forward<float>(a.dt.data(), Di, a.dbc.data(), E, dt_w.w.data(), nullptr, M, R, Di);
  for (int64_t i = 0; i < A_.numel(); ++i) A_[i] = -std::exp(A_log.w[i]);
  cpu::selective_scan_forward<float>(scan_params(*this, a, A_, batch, len), a.yg.data(), nullptr);
  cpu::linear_forward<float>(out, D, a.yg.data(), Di, out_w.w.data(), value_or_null(out_b), M, Di, D);
}

// dout and dx may be the same buffer: dout is consumed by the mixers' backward (out_proj
// first) before the norm's backward adds into dx.
void MambaLayer::backward(const float* dout, float* dx, const float* x, int64_t batch, int64_t len,
                          const MixerActs& a, MixerGradScratch& s, const int64_t* lens) {
  const int64_t M = batch * len, D = cfg.d_model;
  s.resize(M, cfg);
  const float* d_fwd = dout;
  if (rev) {
    std::vector<int64_t> full;
    if (!lens) full.assign(batch, len), lens = full.data();
    if (cfg.bidir_combine == "add") {
      cpu::reverse_within_length<float>(s.d_rev.data(), dout, lens, batch, len, D, false);
    } else {  // ∂y_fwd = dout ⊙ R(y_rev) ; ∂y_rev = R(dout ⊙ y_fwd)
      d_fwd = s.d_fwd.data();
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < M * D; ++i) {
        s.d_fwd[i] = dout[i] * a.y_rev[i];
        s.d_xn_rev[i] = dout[i] * a.y_fwd[i];
      }
      cpu::reverse_within_length<float>(s.d_rev.data(), s.d_xn_rev.data(), lens, batch, len, D, false);
    }
    rev->mixer_backward(s.d_rev.data(), batch, len, *a.rev, s);
    cpu::reverse_within_length<float>(s.d_xn_rev.data(), s.d_xn.data(), lens, batch, len, D, false);
  }
  mixer_backward(d_fwd, batch, len, a, s);
  if (rev) cpu::add_backward<float>(s.d_xn.data(), nullptr, s.d_xn_rev.data(), M * D);  // d_xn += R(∂xn_rev)
  if (cfg.norm == NormKind::RMS)
    cpu::rmsnorm_backward<float>(dx, norm_w.g.data(), s.d_xn.data(), x, norm_w.w.data(), a.rstd.data(), M, D);
  else
    cpu::layernorm_backward<float>(dx, norm_w.g.data(), norm_b->g.data(), s.d_xn.data(), x, norm_w.w.data(),
                                   a.mean.data(), a.rstd.data(), M, D);
}

void MambaLayer::mixer_backward(const float* dout, int64_t batch, int64_t len, const MixerActs& a,
                                MixerGradScratch& s) {
  const int64_t M = batch * len, D = cfg.d_model, Di = cfg.d_inner(), N = cfg.d_state;
  const int64_t R = cfg.dt_rank_value(), E = R + 2 * N, K = cfg.d_conv;
  for (Tensor* t : {&s.d_xn, &s.d_xz, &s.d_xc, &s.d_u, &s.d_dbc, &s.d_dt, &s.d_yg, &s.d_A}) t->zero();

  cpu::linear_backward<float>(s.d_yg.data(), Di, out_w.g.data(), grad_or_null(out_b), dout, D, a.yg.data(), Di,
                       out_w.w.data(), M, Di, D);
  cpu::ScanGrads<float> g;
  g.du = s.d_u.data();
  g.du_ld = Di;
  g.ddelta = s.d_dt.data();
  g.ddelta_ld = Di;
  g.dA = s.d_A.data();
  g.dB = s.d_dbc.data() + R;
  g.dC = s.d_dbc.data() + R + N;
  g.dbc_ld = E;
  g.dD = Dp.g.data();
  g.dz = s.d_xz.data() + Di;
  g.dz_ld = 2 * Di;
  g.ddelta_bias = dt_b.g.data();
  cpu::selective_scan_backward<float>(scan_params(*this, a, A_, batch, len), s.d_yg.data(), g);
  for (int64_t i = 0; i < A_.numel(); ++i) A_log.g[i] += s.d_A[i] * A_[i];  // ∂A/∂A_log = A
  cpu::linear_backward<float>(s.d_dbc.data(), E, dt_w.g.data(), nullptr, s.d_dt.data(), Di, a.dbc.data(), E,
                       dt_w.w.data(), M, R, Di);
  cpu::linear_backward<float>(s.d_u.data(), Di, x_w.g.data(), nullptr, s.d_dbc.data(), E, a.u.data(), Di,
                       x_w.w.data(), M, Di, E);
  cpu::silu_backward<float>(s.d_xc.data(), Di, s.d_u.data(), Di, a.xc.data(), Di, M, Di);
  cpu::conv1d_backward<float>(s.d_xz.data(), 2 * Di, conv_w.g.data(), grad_or_null(conv_b), s.d_xc.data(), a.xz.data(),
                       2 * Di, conv_w.w.data(), batch, len, Di, K);
  cpu::linear_backward<float>(s.d_xn.data(), D, in_w.g.data(), grad_or_null(in_b), s.d_xz.data(), 2 * Di, a.xn.data(),
                       D, in_w.w.data(), M, D, 2 * Di);
}

}  // namespace mambaseq
