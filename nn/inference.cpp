// Recurrent inference, chunked prefill, scoring and embeddings (include/mambaseq/inference.h).
// The parallel paths (prefill, scoring, embeddings) call the kernels the training forward
// uses (kernels_cpu.h); the single-token step does the same arithmetic with the step
// kernels' formulas (kernels/cpu/step.cpp), on this thread for narrow batches, and its
// products through BLAS. The two agree to rounding (tests/test_inference.cpp: < 1e-6).
#include "mambaseq/inference.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "kernels/cpu/common.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq {

namespace {
const float* value_or_null(const std::unique_ptr<Param>& p) { return p ? p->w.data() : nullptr; }

// y[M,N] = x[M,K]·Wᵀ + b. One row is a GEMV: sgemm with M = 1 would pack all of W
// for a single row, which costs more memory traffic than the product itself.
void linear(float* y, int64_t ldy, const float* x, int64_t ldx, const float* W, const float* b, int64_t M,
            int64_t K, int64_t N) {
  if (M == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, W, K, x, 1, 0.0f, y, 1);
    if (b)
      for (int64_t j = 0; j < N; ++j) y[j] += b[j];
    return;
  }
  cpu::linear_forward<float>(y, ldy, x, ldx, W, b, M, K, N);
}

// Output columns [n0, n1) of the same product, through single-threaded BLAS.
void linear_cols(float* y, int64_t ldy, const float* x, int64_t ldx, const float* W, const float* b, int64_t M,
                 int64_t K, int64_t n0, int64_t n1) {
  if (n1 <= n0) return;
  if (M == 1)
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n1 - n0, K, 1.0f, W + n0 * K, K, x, 1, 0.0f, y + n0, 1);
  else
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n1 - n0, K, 1.0f, x, ldx, W + n0 * K, K, 0.0f, y + n0,
                ldy);
  if (b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = n0; j < n1; ++j) y[i * ldy + j] += b[j];
}

// The step's products. OpenBLAS's own threads are switched off for the step (BlasOneThread)
// because its threaded GEMM driver mallocs a job table on every call; the columns are
// split over OpenMP threads instead (a team of the usual size, which libgomp reuses
// without allocating), each running single-threaded BLAS on its slice.
void step_linear(float* y, int64_t ldy, const float* x, int64_t ldx, const float* W, const float* b, int64_t M,
                 int64_t K, int64_t N) {
  const int nt = omp_get_max_threads();
  if (nt == 1 || M * N * K < (int64_t{1} << 18)) {
    linear_cols(y, ldy, x, ldx, W, b, M, K, 0, N);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = ((N + T - 1) / T + 15) / 16 * 16;  // whole cache lines of y
    linear_cols(y, ldy, x, ldx, W, b, M, K, std::min(N, t * per), std::min(N, (t + 1) * per));
  }
}

// Sets the OpenMP thread count for one scope.
class OmpThreads {
 public:
  explicit OmpThreads(int n) : saved_(omp_get_max_threads()), n_(n) {
    if (n_ != saved_) omp_set_num_threads(n_);
  }
  ~OmpThreads() {
    if (n_ != saved_) omp_set_num_threads(saved_);
  }

 private:
  int saved_, n_;
};

class BlasOneThread {
 public:
  BlasOneThread() : saved_(openblas_get_num_threads()) {
    if (saved_ != 1) openblas_set_num_threads(1);
  }
  ~BlasOneThread() {
    if (saved_ != 1) openblas_set_num_threads(saved_);
  }

 private:
  int saved_;
};

void norm(const MambaConfig& c, float* y, float* mean, float* rstd, const float* x, const Param& w,
          const std::unique_ptr<Param>& b, int64_t M) {
  if (c.norm == NormKind::RMS)
    cpu::rmsnorm_forward<float>(y, rstd, x, w.w.data(), M, c.d_model, c.norm_eps);
  else
    cpu::layernorm_forward<float>(y, mean, rstd, x, w.w.data(), b->w.data(), M, c.d_model, c.norm_eps);
}

// The step's small ops, on the calling thread, with the kernels' arithmetic (norm.cpp,
// elementwise.cpp, step.cpp). Why not the kernels: an OpenMP region that runs on one thread
// (the step kernels' `if` clauses below 4096 rows·channels, or OMP_NUM_THREADS=1) makes
// libgomp allocate and free a team, i.e. heap traffic per layer per token; and these ops
// are a few thousand flops, less than a parallel region's wake-up.
namespace serial {
void embed(float* out, const int32_t* ids, const float* table, int64_t B, int64_t V, int64_t D) {
  for (int64_t i = 0; i < B; ++i) {
    MS_CHECK(ids[i] >= 0 && ids[i] < V, "token id {} (sequence {}) is outside the vocabulary [0, {})", ids[i], i, V);
    std::copy_n(table + static_cast<int64_t>(ids[i]) * D, D, out + i * D);
  }
}
void norm(const MambaConfig& c, float* y, const float* x, const Param& w, const std::unique_ptr<Param>& b,
          int64_t M) {
  const int64_t D = c.d_model;
  const float* g = w.w.data();
  for (int64_t i = 0; i < M; ++i) {
    const float* xi = x + i * D;
    float* yi = y + i * D;
    if (c.norm == NormKind::RMS) {
      double ss = 0;
      for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(xi[j]) * xi[j];
      const float r = static_cast<float>(1.0 / std::sqrt(ss / D + c.norm_eps));
      for (int64_t j = 0; j < D; ++j) yi[j] = xi[j] * r * g[j];
    } else {
      double s = 0;
      for (int64_t j = 0; j < D; ++j) s += xi[j];
      const double mu = s / D;
      double v = 0;
      for (int64_t j = 0; j < D; ++j) v += (xi[j] - mu) * (xi[j] - mu);
      const float r = static_cast<float>(1.0 / std::sqrt(v / D + c.norm_eps));
      const float* bb = b->w.data();
      for (int64_t j = 0; j < D; ++j) yi[j] = (xi[j] - static_cast<float>(mu)) * r * g[j] + bb[j];
    }
  }
}
void silu(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = cpu::silu(x[i]);
}
void add(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
void conv_step(float* out, float* state, const float* x, int64_t ldx, const float* w, const float* bias, int64_t B,
               int64_t C, int64_t K) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      float* st = state + (b * C + c) * (K - 1);
      const float xc = x[b * ldx + c];
      float acc = bias ? bias[c] : 0.0f;
      for (int64_t k = 0; k < K - 1; ++k) acc += w[c * K + k] * st[k];
      acc += w[c * K + K - 1] * xc;
      for (int64_t k = 0; k + 1 < K - 1; ++k) st[k] = st[k + 1];
      if (K > 1) st[K - 2] = xc;
      out[b * C + c] = acc;
    }
}
void scan_step(const cpu::ScanParams<float>& p, float* h, float* out) {
  const int64_t N = p.dstate, Cdim = p.dim;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t c = 0; c < Cdim; ++c) {
      float dt = p.delta[b * p.delta_ld + c] + p.delta_bias[c];
      dt = cpu::softplus(dt);
      const float uu = p.u[b * p.u_ld + c];
      const float* Bt = p.B + b * p.bc_ld;
      const float* Ct = p.C + b * p.bc_ld;
      const float* Ac = p.A + c * N;
      float* hc = h + (b * Cdim + c) * N;
      float y = 0;
#pragma omp simd reduction(+ : y)
      for (int64_t n = 0; n < N; ++n) {
        hc[n] = cpu::exp_fast(dt * Ac[n]) * hc[n] + dt * Bt[n] * uu;
        y += hc[n] * Ct[n];
      }
      y += p.D[c] * uu;
      y *= cpu::silu(p.z[b * p.z_ld + c]);
      out[b * Cdim + c] = y;
    }
}
}  // namespace serial

// Grow-only resize that does nothing (and so allocates nothing) when the size fits.
void fit(Tensor& t, int64_t rows, int64_t cols) {
  if (t.ndim() != 2 || t.dim(0) != rows || t.dim(1) != cols) t.resize({rows, cols});
}
}  // namespace

// ---- state ------------------------------------------------------------------------------

InferenceState::InferenceState(const MambaConfig& c, int64_t b) : batch(b) {
  MS_CHECK(b > 0, "inference state: batch must be positive, got {}", b);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    conv.emplace_back(Shape{b, c.d_inner(), c.d_conv - 1});
    ssm.emplace_back(Shape{b, c.d_inner(), c.d_state});
  }
  pos.assign(b, 0);
}

void InferenceState::reset() {
  for (auto& t : conv) t.zero();
  for (auto& t : ssm) t.zero();
  std::fill(pos.begin(), pos.end(), 0);
}

void InferenceState::reset_row(int64_t r) {
  MS_CHECK(r >= 0 && r < batch, "inference state: row {} outside the batch of {}", r, batch);
  for (auto* v : {&conv, &ssm})
    for (auto& t : *v) {
      const int64_t n = t.numel() / batch;
      std::fill(t.data() + r * n, t.data() + (r + 1) * n, 0.0f);
    }
  pos[r] = 0;
}

int64_t InferenceState::bytes() const {
  int64_t b = 0;
  for (auto& t : conv) b += t.bytes();
  for (auto& t : ssm) b += t.bytes();
  return b + static_cast<int64_t>(pos.size() * sizeof(int64_t));
}

// ---- engine -----------------------------------------------------------------------------

InferenceEngine::InferenceEngine(Model& model, int64_t max_chunk_tokens)
    : model_(model), max_chunk_tokens_(max_chunk_tokens) {
  MS_CHECK(max_chunk_tokens > 0, "inference: max_chunk_tokens must be positive, got {}", max_chunk_tokens);
  // A reversed scan needs the whole sequence first: there is no state to carry token by
  // token, and running only the forward half would give silently wrong outputs.
  MS_CHECK(!model.cfg.mamba.bidirectional,
           "inference: this model is bidirectional (every block also scans the reversed sequence), so it cannot "
           "be prefilled or stepped token by token; use `eval` or `predict`, which run whole sequences");
  refresh();
}

void InferenceEngine::refresh() {
  A_.clear();
  for (auto& l : model_.backbone.layers) {
    Tensor A(l->A_log.w.shape());
    for (int64_t i = 0; i < A.numel(); ++i) A[i] = -std::exp(l->A_log.w[i]);  // as MambaLayer::forward
    A_.push_back(std::move(A));
  }
}

const Param& InferenceEngine::lm_weight() const {
  MS_CHECK(model_.cfg.head == HeadKind::LM, "this model has a {} head; logits need a language-model head",
           head_name(model_.cfg.head));
  return model_.head_w ? *model_.head_w : model_.backbone.embedding;
}

int64_t InferenceEngine::vocab_rows() const { return lm_weight().w.dim(0); }

void InferenceEngine::lm_logits(const float* hidden, int64_t M, float* out) {
  const Param& W = lm_weight();
  const int64_t V = W.w.dim(0), D = d_model();
  linear(out, V, hidden, D, W.w.data(), nullptr, M, D, V);
}

int64_t InferenceEngine::buffer_bytes() const {
  int64_t b = 0;
  for (const Tensor* t : {&res_[0], &res_[1], &xn_, &mean_, &rstd_, &xz_, &xext_, &xcext_, &u_, &dbc_, &dt_, &yg_,
                          &mix_, &hidden_, &hbuf_, &sx_, &sxn_, &sxz_, &sxc_, &su_, &sdbc_, &sdt_,
                          &syg_, &smix_, &shid_, &slogits_})
    b += t->bytes();
  for (auto& a : A_) b += a.bytes();
  return b;
}

const Tensor& InferenceEngine::forward_chunk(InferenceState& st, const int32_t* ids, int64_t g, int64_t len,
                                             const int64_t* rows) {
  const MambaConfig& c = model_.cfg.mamba;
  MS_CHECK(g > 0 && len > 0, "inference: empty chunk ({} sequences x {} tokens)", g, len);
  MS_CHECK(static_cast<int64_t>(st.conv.size()) == c.n_layer, "inference: the state has {} layers, the model {}",
           st.conv.size(), c.n_layer);
  MS_CHECK(rows || g <= st.batch, "inference: chunk of {} sequences for a state of {}", g, st.batch);
  auto row = [&](int64_t j) { return rows ? rows[j] : j; };
  for (int64_t j = 0; j < g; ++j)
    MS_CHECK(row(j) >= 0 && row(j) < st.batch, "inference: row {} outside the state's batch of {}", row(j), st.batch);

  const int64_t M = g * len, D = c.d_model, Di = c.d_inner(), N = c.d_state, R = c.dt_rank_value();
  const int64_t E = R + 2 * N, K = c.d_conv, W1 = K - 1, Lx = len + W1;
  for (Tensor* t : {&res_[0], &res_[1], &xn_, &mix_, &hidden_}) fit(*t, M, D);
  fit(mean_, M, 1);
  fit(rstd_, M, 1);
  fit(xz_, M, 2 * Di);
  fit(xext_, g * Lx, Di);
  fit(xcext_, g * Lx, Di);
  for (Tensor* t : {&u_, &dt_, &yg_}) fit(*t, M, Di);
  fit(dbc_, M, E);
  fit(hbuf_, g, Di * N);

  const Backbone& bb = model_.backbone;
  cpu::embedding_forward<float>(res_[0].data(), ids, bb.embedding.w.data(), M, bb.embedding.w.dim(0), D);
  for (size_t l = 0; l < bb.layers.size(); ++l) {
    const MambaLayer& L = *bb.layers[l];
    const float* in = res_[l % 2].data();
    float* out = res_[(l + 1) % 2].data();
    norm(c, xn_.data(), mean_.data(), rstd_.data(), in, L.norm_w, L.norm_b, M);
    cpu::linear_forward<float>(xz_.data(), 2 * Di, xn_.data(), D, L.in_w.w.data(), value_or_null(L.in_b), M, D,
                               2 * Di);
    // Conv input per sequence: its saved window, then this chunk's x half.
    float* cs = st.conv[l].data();
    for (int64_t j = 0; j < g; ++j) {
      float* xe = xext_.data() + j * Lx * Di;
      const float* s = cs + row(j) * Di * W1;
      for (int64_t k = 0; k < W1; ++k)
        for (int64_t ch = 0; ch < Di; ++ch) xe[k * Di + ch] = s[ch * W1 + k];
      for (int64_t t = 0; t < len; ++t)
        std::copy_n(xz_.data() + (j * len + t) * 2 * Di, Di, xe + (W1 + t) * Di);
    }
    cpu::conv1d_forward<float>(xcext_.data(), xext_.data(), Di, L.conv_w.w.data(), value_or_null(L.conv_b), g, Lx,
                               Di, K);
    for (int64_t j = 0; j < g; ++j) {
      cpu::silu_forward<float>(u_.data() + j * len * Di, Di, xcext_.data() + (j * Lx + W1) * Di, Di, len, Di);
      // The new window: the last K−1 conv inputs (old state included when len < K−1).
      const float* xe = xext_.data() + j * Lx * Di;
      float* s = cs + row(j) * Di * W1;
      for (int64_t k = 0; k < W1; ++k)
        for (int64_t ch = 0; ch < Di; ++ch) s[ch * W1 + k] = xe[(len + k) * Di + ch];
    }
    cpu::linear_forward<float>(dbc_.data(), E, u_.data(), Di, L.x_w.w.data(), nullptr, M, Di, E);
    cpu::linear_forward<float>(dt_.data(), Di, dbc_.data(), E, L.dt_w.w.data(), nullptr, M, R, Di);
    float* hs = st.ssm[l].data();
    for (int64_t j = 0; j < g; ++j) std::copy_n(hs + row(j) * Di * N, Di * N, hbuf_.data() + j * Di * N);
    cpu::ScanParams<float> p;
    p.batch = g;
    p.len = len;
    p.dim = Di;
    p.dstate = N;
    p.u = u_.data();
    p.u_ld = Di;
    p.delta = dt_.data();
    p.delta_ld = Di;
    p.A = A_[l].data();
    p.B = dbc_.data() + R;
    p.C = dbc_.data() + R + N;
    p.bc_ld = E;
    p.D = L.Dp.w.data();
    p.z = xz_.data() + Di;
    p.z_ld = 2 * Di;
    p.delta_bias = L.dt_b.w.data();
    p.delta_softplus = true;
    p.h0 = hbuf_.data();
    // In place is safe: each (sequence, channel block) task reads its h0 before writing h_final.
    cpu::selective_scan_forward<float>(p, yg_.data(), hbuf_.data());
    for (int64_t j = 0; j < g; ++j) std::copy_n(hbuf_.data() + j * Di * N, Di * N, hs + row(j) * Di * N);
    cpu::linear_forward<float>(mix_.data(), D, yg_.data(), Di, L.out_w.w.data(), value_or_null(L.out_b), M, Di, D);
    cpu::add_forward<float>(out, in, mix_.data(), M * D);
  }
  norm(c, hidden_.data(), mean_.data(), rstd_.data(), res_[bb.layers.size() % 2].data(), bb.normf_w, bb.normf_b, M);
  for (int64_t j = 0; j < g; ++j) st.pos[row(j)] += len;
  return hidden_;
}

void InferenceEngine::prefill(InferenceState& st, const std::vector<std::vector<int32_t>>& prompts, Tensor& logits) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  MS_CHECK(B == st.batch, "prefill: {} prompts for a state of batch {}", B, st.batch);
  const int64_t V = vocab_rows(), D = d_model();
  fit(logits, B, V);
  std::map<int64_t, std::vector<int64_t>> by_len;  // equal lengths run as one batch
  for (int64_t b = 0; b < B; ++b) {
    MS_CHECK(!prompts[b].empty(), "prefill: prompt {} is empty (a prompt needs at least one token)", b);
    by_len[static_cast<int64_t>(prompts[b].size())].push_back(b);
  }
  std::vector<int32_t> ids;
  std::vector<float> last;
  for (const auto& [L, rows] : by_len) {
    const int64_t g = static_cast<int64_t>(rows.size());
    const int64_t T = std::max<int64_t>(1, std::min(L, max_chunk_tokens_ / g));
    for (int64_t c0 = 0; c0 < L; c0 += T) {
      const int64_t n = std::min(T, L - c0);
      ids.resize(g * n);
      for (int64_t j = 0; j < g; ++j) std::copy_n(prompts[rows[j]].data() + c0, n, ids.data() + j * n);
      const Tensor& h = forward_chunk(st, ids.data(), g, n, rows.data());
      if (c0 + n == L) {
        last.resize(g * D);
        for (int64_t j = 0; j < g; ++j) std::copy_n(h.data() + (j * n + n - 1) * D, D, last.data() + j * D);
        Tensor out({g, V});
        lm_logits(last.data(), g, out.data());
        for (int64_t j = 0; j < g; ++j) std::copy_n(out.data() + j * V, V, logits.data() + rows[j] * V);
      }
    }
  }
}

void InferenceEngine::ensure_step_buffers(int64_t B) {
  if (B == step_batch_) return;
  const MambaConfig& c = model_.cfg.mamba;
  const int64_t D = c.d_model, Di = c.d_inner(), E = c.dt_rank_value() + 2 * c.d_state;
  for (Tensor* t : {&sx_, &sxn_, &smix_, &shid_}) t->resize({B, D});
  sxz_.resize({B, 2 * Di});
  for (Tensor* t : {&sxc_, &su_, &sdt_, &syg_}) t->resize({B, Di});
  sdbc_.resize({B, E});
  slogits_.resize({B, vocab_rows()});
  step_batch_ = B;
}

// The hot loop of generation: fixed buffers, GEMV (batch 1) or a small GEMM through BLAS
// split over threads, the small ops on this thread, the conv/scan step kernels when a
// batch is wide enough for their threads. Allocates nothing (tests/test_inference.cpp).
Tensor& InferenceEngine::step(InferenceState& st, const int32_t* ids) {
  const MambaConfig& c = model_.cfg.mamba;
  const int64_t B = st.batch, D = c.d_model, Di = c.d_inner(), N = c.d_state, R = c.dt_rank_value();
  const int64_t E = R + 2 * N, K = c.d_conv;
  MS_CHECK(static_cast<int64_t>(st.conv.size()) == c.n_layer, "inference: the state has {} layers, the model {}",
           st.conv.size(), c.n_layer);
  ensure_step_buffers(B);
  BlasOneThread blas_guard;
  // Thread count: fixed, or timed over the first steps at this batch size (step_threads).
  const int maxt = omp_get_max_threads();
  int use = step_threads_ > 0 ? std::min(step_threads_, maxt) : maxt;
  const bool tuning = step_threads_ == 0 && maxt > 1 && (tune_.batch != B || tune_.chosen == 0);
  if (step_threads_ == 0 && maxt > 1) {
    if (tune_.batch != B) tune_ = Tune{B, -1};  // the first step sizes buffers: not timed
    use = tune_.chosen ? tune_.chosen : (tune_.phase < 3 ? maxt : 1);
  }
  OmpThreads omp_guard(use);
  const auto t0 = std::chrono::steady_clock::now();
  // The kernels' own threshold for running threads (kernels/cpu/step.cpp).
  const bool threaded = use > 1 && B * Di > 4096;
  const Backbone& bb = model_.backbone;
  serial::embed(sx_.data(), ids, bb.embedding.w.data(), B, bb.embedding.w.dim(0), D);
  for (size_t l = 0; l < bb.layers.size(); ++l) {
    const MambaLayer& L = *bb.layers[l];
    serial::norm(c, sxn_.data(), sx_.data(), L.norm_w, L.norm_b, B);
    step_linear(sxz_.data(), 2 * Di, sxn_.data(), D, L.in_w.w.data(), value_or_null(L.in_b), B, D, 2 * Di);
    if (threaded)
      cpu::conv1d_step<float>(sxc_.data(), st.conv[l].data(), sxz_.data(), 2 * Di, L.conv_w.w.data(),
                              value_or_null(L.conv_b), B, Di, K);
    else
      serial::conv_step(sxc_.data(), st.conv[l].data(), sxz_.data(), 2 * Di, L.conv_w.w.data(),
                        value_or_null(L.conv_b), B, Di, K);
    serial::silu(su_.data(), sxc_.data(), B * Di);
    step_linear(sdbc_.data(), E, su_.data(), Di, L.x_w.w.data(), nullptr, B, Di, E);
    // dt_low sits at the start of each dbc row (stride E).
    step_linear(sdt_.data(), Di, sdbc_.data(), E, L.dt_w.w.data(), nullptr, B, R, Di);
    cpu::ScanParams<float> p;
    p.batch = B;
    p.len = 1;
    p.dim = Di;
    p.dstate = N;
    p.u = su_.data();
    p.u_ld = Di;
    p.delta = sdt_.data();
    p.delta_ld = Di;
    p.A = A_[l].data();
    p.B = sdbc_.data() + R;
    p.C = sdbc_.data() + R + N;
    p.bc_ld = E;
    p.D = L.Dp.w.data();
    p.z = sxz_.data() + Di;
    p.z_ld = 2 * Di;
    p.delta_bias = L.dt_b.w.data();
    p.delta_softplus = true;
    if (threaded) cpu::selective_scan_step<float>(p, st.ssm[l].data(), syg_.data());
    else serial::scan_step(p, st.ssm[l].data(), syg_.data());
    step_linear(smix_.data(), D, syg_.data(), Di, L.out_w.w.data(), value_or_null(L.out_b), B, Di, D);
    serial::add(sx_.data(), sx_.data(), smix_.data(), B * D);
  }
  serial::norm(c, shid_.data(), sx_.data(), bb.normf_w, bb.normf_b, B);
  const Param& W = lm_weight();
  step_linear(slogits_.data(), W.w.dim(0), shid_.data(), D, W.w.data(), nullptr, B, D, W.w.dim(0));
  for (int64_t b = 0; b < B; ++b) ++st.pos[b];
  if (tuning) {
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tune_.phase >= 0) (tune_.phase < 3 ? tune_.t_all : tune_.t_one) += dt;
    if (++tune_.phase == 6) tune_.chosen = tune_.t_all <= tune_.t_one ? maxt : 1;
  }
  return slogits_;
}

// ---- scoring and embeddings ----------------------------------------------------------------

namespace {
// Right-padded [B, Lmax] ids of a batch (pad id 0 is always a valid row; padding only
// follows real tokens, so it never reaches them in a causal model).
std::vector<int32_t> padded(const std::vector<std::vector<int32_t>>& seqs, int64_t Lmax, int64_t from, int64_t n) {
  std::vector<int32_t> ids(seqs.size() * n, 0);
  for (size_t b = 0; b < seqs.size(); ++b)
    for (int64_t t = 0; t < n; ++t) {
      const int64_t p = from + t;
      if (p < static_cast<int64_t>(seqs[b].size())) ids[b * n + t] = seqs[b][p];
    }
  (void)Lmax;
  return ids;
}

// Longest length; every id must be a row of the embedding (targets are read as logits columns).
int64_t longest(const std::vector<std::vector<int32_t>>& seqs, int64_t V, const char* what) {
  MS_CHECK(!seqs.empty(), "{}: no sequences", what);
  int64_t Lmax = 0;
  for (size_t b = 0; b < seqs.size(); ++b) {
    MS_CHECK(!seqs[b].empty(), "{}: sequence {} of the batch is empty", what, b);
    for (size_t t = 0; t < seqs[b].size(); ++t)
      MS_CHECK(seqs[b][t] >= 0 && seqs[b][t] < V, "{}: token id {} at position {} of sequence {} is outside the vocabulary [0, {})",
               what, seqs[b][t], t + 1, b, V);
    Lmax = std::max<int64_t>(Lmax, seqs[b].size());
  }
  return Lmax;
}
}  // namespace

std::vector<SequenceScore> score_sequences(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& seqs,
                                           bool per_token) {
  const int64_t V = eng.vocab_rows(), D = eng.d_model();
  const int64_t Lmax = longest(seqs, V, "score"), B = static_cast<int64_t>(seqs.size());
  std::vector<SequenceScore> out(B);
  for (int64_t b = 0; b < B; ++b) {
    out[b].count = static_cast<int64_t>(seqs[b].size()) - 1;
    if (per_token) out[b].per_token.assign(out[b].count, 0.0f);
  }
  InferenceState st = eng.new_state(B);
  const int64_t T = std::max<int64_t>(1, std::min(Lmax, eng.max_chunk_tokens() / B));
  constexpr int64_t kRows = 64;  // logits rows at a time: [64, V], not [chunk, V]
  Tensor hrows({kRows, D}), logits({kRows, V});
  std::vector<std::pair<int64_t, int64_t>> who(kRows);  // (sequence, position of the predicted token)
  std::vector<double> lp(kRows);
  for (int64_t c0 = 0; c0 < Lmax; c0 += T) {
    const int64_t n = std::min(T, Lmax - c0);
    std::vector<int32_t> ids = padded(seqs, Lmax, c0, n);
    const Tensor& h = eng.forward_chunk(st, ids.data(), B, n);
    int64_t k = 0;
    auto flush = [&] {
      if (k == 0) return;
      eng.lm_logits(hrows.data(), k, logits.data());
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < k; ++i) {
        const float* z = logits.data() + i * V;
        float mx = z[0];
        for (int64_t v = 1; v < V; ++v) mx = std::max(mx, z[v]);
        double s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(z[v]) - mx);
        lp[i] = double(z[seqs[who[i].first][who[i].second]]) - mx - std::log(s);
      }
      for (int64_t i = 0; i < k; ++i) {  // summed in order: the total does not depend on threads
        const auto [b, t] = who[i];
        out[b].total += lp[i];
        if (per_token) out[b].per_token[t - 1] = static_cast<float>(lp[i]);
      }
      k = 0;
    };
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = static_cast<int64_t>(seqs[b].size());
      for (int64_t t = 0; t < n && c0 + t + 1 < L; ++t) {
        std::copy_n(h.data() + (b * n + t) * D, D, hrows.data() + k * D);
        who[k] = {b, c0 + t + 1};
        if (++k == kRows) flush();
      }
    }
    flush();
  }
  return out;
}

void embed_sequences(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& seqs, float* pooled,
                     const HiddenSink& per_token) {
  const int64_t Lmax = longest(seqs, eng.config().mamba.vocab_padded(), "embed"), B = static_cast<int64_t>(seqs.size());
  const int64_t D = eng.d_model();
  std::vector<double> sum(B * D, 0.0);
  InferenceState st = eng.new_state(B);
  const int64_t T = std::max<int64_t>(1, std::min(Lmax, eng.max_chunk_tokens() / B));
  for (int64_t c0 = 0; c0 < Lmax; c0 += T) {
    const int64_t n = std::min(T, Lmax - c0);
    std::vector<int32_t> ids = padded(seqs, Lmax, c0, n);
    const Tensor& h = eng.forward_chunk(st, ids.data(), B, n);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t real = std::clamp<int64_t>(static_cast<int64_t>(seqs[b].size()) - c0, 0, n);
      if (real == 0) continue;
      const float* hb = h.data() + b * n * D;
      for (int64_t t = 0; t < real; ++t)
        for (int64_t j = 0; j < D; ++j) sum[b * D + j] += hb[t * D + j];
      if (per_token) per_token(b, c0, hb, real);
    }
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < D; ++j) pooled[b * D + j] = static_cast<float>(sum[b * D + j] / double(seqs[b].size()));
}

void embed_whole_sequences(Model& model, const std::vector<std::vector<int32_t>>& seqs, float* pooled,
                           const HiddenSink& per_token) {
  const int64_t Lmax = longest(seqs, model.cfg.mamba.vocab_padded(), "embed"), B = static_cast<int64_t>(seqs.size());
  const int64_t D = model.cfg.mamba.d_model;
  std::vector<int32_t> ids = padded(seqs, Lmax, 0, Lmax);
  std::vector<uint8_t> mask(B * Lmax, 0);
  for (int64_t b = 0; b < B; ++b) std::fill_n(mask.begin() + b * Lmax, seqs[b].size(), 1);
  const Tensor& h = model.backbone.forward(ids.data(), B, Lmax, /*training=*/false, mask.data());
  for (int64_t b = 0; b < B; ++b) {
    const int64_t real = static_cast<int64_t>(seqs[b].size());
    const float* hb = h.data() + b * Lmax * D;
    for (int64_t j = 0; j < D; ++j) {
      double s = 0;
      for (int64_t t = 0; t < real; ++t) s += hb[t * D + j];
      pooled[b * D + j] = static_cast<float>(s / double(real));
    }
    if (per_token) per_token(b, 0, hb, real);
  }
}

}  // namespace mambaseq
