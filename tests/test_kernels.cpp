// Every CPU kernel's backward against finite differences (double), and the float
// kernels against the double ones.
#include <gtest/gtest.h>
#include <omp.h>

#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "tests/gradcheck.h"

using namespace mambaseq;
using namespace mambaseq::test;
namespace k = mambaseq::cpu;

TEST(KernelGrad, LinearWithBiasAndStrides) {
  Rng rng(1);
  const int64_t M = 5, K = 7, N = 4, ldx = 9, ldy = 6;
  Vec x = randn(M * ldx, rng), W = randn(N * K, rng), b = randn(N, rng), Wl = randn(M * ldy, rng);
  auto fwd = [&] {
    Vec y(M * ldy, 0.0);
    k::linear_forward(y.data(), ldy, x.data(), ldx, W.data(), b.data(), M, K, N);
    double s = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) s += y[i * ldy + j] * Wl[i * ldy + j];
    return s;
  };
  Vec dx(M * ldx, 0.0), dW(N * K, 0.0), db(N, 0.0);
  k::linear_backward(dx.data(), ldx, dW.data(), db.data(), Wl.data(), ldy, x.data(), ldx, W.data(), M, K, N);
  // Columns of x beyond K are not read: their true gradient is 0, and so is dx there.
  expect_gradients(fwd, {{"W", &W, &dW}, {"b", &b, &db}});
  Vec xk(M * K), dxk(M * K);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < K; ++j) dxk[i * K + j] = dx[i * ldx + j];
  auto fwd_x = [&] {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < K; ++j) x[i * ldx + j] = xk[i * K + j];
    return fwd();
  };
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < K; ++j) xk[i * K + j] = x[i * ldx + j];
  expect_gradients(fwd_x, {{"x", &xk, &dxk}});
}

TEST(KernelGrad, Embedding) {
  Rng rng(2);
  const int64_t V = 6, D = 5, n = 9;
  std::vector<int32_t> ids{0, 3, 3, 5, 1, 0, 2, 3, 4};
  Vec table = randn(V * D, rng), Wl = randn(n * D, rng);
  auto fwd = [&] {
    Vec out(n * D);
    k::embedding_forward(out.data(), ids.data(), table.data(), n, V, D);
    return dot(out, Wl);
  };
  Vec dt(V * D, 0.0);
  k::embedding_backward(dt.data(), Wl.data(), ids.data(), n, V, D);
  expect_gradients(fwd, {{"table", &table, &dt}});
  ids[4] = 6;
  Vec out(n * D);
  EXPECT_THROW(k::embedding_forward(out.data(), ids.data(), table.data(), n, V, D), Error);
}

TEST(KernelGrad, RMSNorm) {
  Rng rng(3);
  const int64_t M = 4, D = 8;
  Vec x = randn(M * D, rng), w = randn(D, rng), Wl = randn(M * D, rng);
  auto fwd = [&] {
    Vec y(M * D), r(M);
    k::rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), M, D, 1e-5);
    return dot(y, Wl);
  };
  Vec y(M * D), r(M), dx(M * D, 0.0), dw(D, 0.0);
  k::rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), M, D, 1e-5);
  k::rmsnorm_backward(dx.data(), dw.data(), Wl.data(), x.data(), w.data(), r.data(), M, D);
  expect_gradients(fwd, {{"x", &x, &dx}, {"w", &w, &dw}});
}

TEST(KernelGrad, LayerNorm) {
  Rng rng(4);
  const int64_t M = 4, D = 8;
  Vec x = randn(M * D, rng), w = randn(D, rng), b = randn(D, rng), Wl = randn(M * D, rng);
  auto fwd = [&] {
    Vec y(M * D), mu(M), r(M);
    k::layernorm_forward(y.data(), mu.data(), r.data(), x.data(), w.data(), b.data(), M, D, 1e-5);
    return dot(y, Wl);
  };
  Vec y(M * D), mu(M), r(M), dx(M * D, 0.0), dw(D, 0.0), db(D, 0.0);
  k::layernorm_forward(y.data(), mu.data(), r.data(), x.data(), w.data(), b.data(), M, D, 1e-5);
  k::layernorm_backward(dx.data(), dw.data(), db.data(), Wl.data(), x.data(), w.data(), mu.data(), r.data(), M, D);
  expect_gradients(fwd, {{"x", &x, &dx}, {"w", &w, &dw}, {"b", &b, &db}});
}

class ConvGrad : public ::testing::TestWithParam<int> {};
TEST_P(ConvGrad, AnyKernelSize) {
  Rng rng(5 + GetParam());
  const int64_t B = 2, L = 6, C = 3, K = GetParam(), ldx = 5;
  Vec x = randn(B * L * ldx, rng), w = randn(C * K, rng), bias = randn(C, rng), Wl = randn(B * L * C, rng);
  auto fwd = [&] {
    Vec out(B * L * C);
    k::conv1d_forward(out.data(), x.data(), ldx, w.data(), bias.data(), B, L, C, K);
    return dot(out, Wl);
  };
  Vec dx(B * L * ldx, 0.0), dw(C * K, 0.0), db(C, 0.0);
  k::conv1d_backward(dx.data(), ldx, dw.data(), db.data(), Wl.data(), x.data(), ldx, w.data(), B, L, C, K);
  expect_gradients(fwd, {{"w", &w, &dw}, {"bias", &bias, &db}});
  // x through a compact copy (padding columns are not inputs)
  Vec xc(B * L * C), dxc(B * L * C);
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t c = 0; c < C; ++c) xc[r * C + c] = x[r * ldx + c], dxc[r * C + c] = dx[r * ldx + c];
  auto fwd_x = [&] {
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t c = 0; c < C; ++c) x[r * ldx + c] = xc[r * C + c];
    return fwd();
  };
  expect_gradients(fwd_x, {{"x", &xc, &dxc}});
  // Causality: the output at t does not change when inputs after t change.
  Vec o1(B * L * C), o2(B * L * C);
  k::conv1d_forward(o1.data(), x.data(), ldx, w.data(), bias.data(), B, L, C, K);
  for (int64_t c = 0; c < C; ++c) x[(L - 1) * ldx + c] += 1.0;
  k::conv1d_forward(o2.data(), x.data(), ldx, w.data(), bias.data(), B, L, C, K);
  for (int64_t t = 0; t < L - 1; ++t)
    for (int64_t c = 0; c < C; ++c) EXPECT_EQ(o1[t * C + c], o2[t * C + c]);
}
INSTANTIATE_TEST_SUITE_P(K, ConvGrad, ::testing::Values(1, 2, 4, 7));

TEST(KernelGrad, SiluSoftplusGate) {
  Rng rng(6);
  const int64_t M = 3, C = 5, n = M * C;
  Vec x = randn(n, rng, 3.0), z = randn(n, rng, 3.0), Wl = randn(n, rng);
  x[0] = 25.0;  // softplus' linear branch
  x[1] = -30.0;
  {
    auto fwd = [&] { Vec y(n); k::silu_forward(y.data(), C, x.data(), C, M, C); return dot(y, Wl); };
    Vec dx(n, 0.0);
    k::silu_backward(dx.data(), C, Wl.data(), C, x.data(), C, M, C);
    expect_gradients(fwd, {{"silu x", &x, &dx}});
  }
  {
    auto fwd = [&] { Vec y(n); k::softplus_forward(y.data(), x.data(), n); return dot(y, Wl); };
    Vec dx(n, 0.0);
    k::softplus_backward(dx.data(), Wl.data(), x.data(), n);
    expect_gradients(fwd, {{"softplus x", &x, &dx}});
    Vec y(n);
    k::softplus_forward(y.data(), x.data(), n);
    EXPECT_EQ(y[0], 25.0);
    EXPECT_NEAR(y[2], std::log1p(std::exp(x[2])), 1e-15);
  }
  {
    auto fwd = [&] { Vec y(n); k::gate_forward(y.data(), x.data(), z.data(), C, M, C); return dot(y, Wl); };
    Vec dx(n, 0.0), dz(n, 0.0);
    k::gate_backward(dx.data(), dz.data(), C, Wl.data(), x.data(), z.data(), C, M, C);
    expect_gradients(fwd, {{"gate y", &x, &dx}, {"gate z", &z, &dz}});
  }
  {
    auto fwd = [&] { Vec y(n); k::add_forward(y.data(), x.data(), z.data(), n); return dot(y, Wl); };
    Vec da(n, 0.0), db(n, 0.0);
    k::add_backward(da.data(), db.data(), Wl.data(), n);
    expect_gradients(fwd, {{"add a", &x, &da}, {"add b", &z, &db}});
  }
}

TEST(KernelGrad, DropoutIsSeededAndScaled) {
  Rng rng(7);
  const int64_t n = 4000;
  Vec x = randn(n, rng), Wl = randn(n, rng), keep(n), y(n);
  Rng r1(42);
  k::dropout_forward(y.data(), keep.data(), x.data(), n, 0.25, r1);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(keep[i] == 0.0 || std::abs(keep[i] - 1 / 0.75) < 1e-12);
    kept += keep[i] != 0.0;
    EXPECT_EQ(y[i], x[i] * keep[i]);
  }
  EXPECT_NEAR(double(kept) / n, 0.75, 0.03);
  Vec keep2(n), y2(n);
  Rng r2(42);
  k::dropout_forward(y2.data(), keep2.data(), x.data(), n, 0.25, r2);
  EXPECT_EQ(keep, keep2);
  auto fwd = [&] { Vec o(n); for (int64_t i = 0; i < n; ++i) o[i] = x[i] * keep[i]; return dot(o, Wl); };
  Vec dx(n, 0.0);
  k::dropout_backward(dx.data(), Wl.data(), keep.data(), n);
  Vec xs(x.begin(), x.begin() + 50), dxs(dx.begin(), dx.begin() + 50);
  auto fwd_s = [&] { std::copy(xs.begin(), xs.end(), x.begin()); return fwd(); };
  expect_gradients(fwd_s, {{"dropout x", &xs, &dxs}});
  Rng r3(1);
  EXPECT_THROW(k::dropout_forward(y.data(), keep.data(), x.data(), n, 1.0, r3), Error);
}

TEST(KernelGrad, MeanPoolOverMask) {
  Rng rng(8);
  const int64_t B = 3, L = 5, D = 4;
  Vec x = randn(B * L * D, rng), Wl = randn(B * D, rng);
  std::vector<uint8_t> mask{1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0};
  auto fwd = [&] { Vec o(B * D); k::mean_pool_forward(o.data(), x.data(), mask.data(), B, L, D); return dot(o, Wl); };
  Vec dx(B * L * D, 0.0);
  k::mean_pool_backward(dx.data(), Wl.data(), mask.data(), B, L, D);
  expect_gradients(fwd, {{"x", &x, &dx}});
  Vec o(B * D);
  k::mean_pool_forward(o.data(), x.data(), mask.data(), B, L, D);
  EXPECT_NEAR(o[0], (x[0] + x[4] + x[8]) / 3, 1e-14);  // padding rows do not count
  for (int t = 0; t < L; ++t) mask[t] = 0;
  EXPECT_THROW(k::mean_pool_forward(o.data(), x.data(), mask.data(), B, L, D), Error);
}

TEST(KernelGrad, CrossEntropyWithIgnoreIndexAndMse) {
  Rng rng(9);
  const int64_t M = 6, V = 5;
  Vec logits = randn(M * V, rng, 2.0);
  std::vector<int32_t> t{0, 4, -100, 2, 2, -100};
  auto fwd = [&] { return k::cross_entropy_forward(logits.data(), t.data(), M, V, -100, nullptr); };
  int64_t count = 0;
  double loss = k::cross_entropy_forward(logits.data(), t.data(), M, V, -100, &count);
  EXPECT_EQ(count, 4);
  double manual = 0;
  for (int64_t i : {0, 1, 3, 4}) {
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[i * V + j]);
    manual += std::log(s) - logits[i * V + t[i]];
  }
  EXPECT_NEAR(loss, manual / 4, 1e-12);
  Vec d(M * V, 0.0);
  k::cross_entropy_backward(d.data(), logits.data(), t.data(), M, V, -100, 1.0 / count);
  expect_gradients(fwd, {{"logits", &logits, &d}});
  for (int64_t j = 0; j < V; ++j) EXPECT_EQ(d[2 * V + j], 0.0);  // ignored row
  t[0] = 7;
  EXPECT_THROW(k::cross_entropy_forward(logits.data(), t.data(), M, V, -100, nullptr), Error);

  Vec pred = randn(7, rng), tgt = randn(7, rng), dp(7, 0.0);
  auto fm = [&] { return k::mse_forward(pred.data(), tgt.data(), 7); };
  k::mse_backward(dp.data(), pred.data(), tgt.data(), 7, 1.0);
  expect_gradients(fm, {{"pred", &pred, &dp}});
}

// ---- selective scan ------------------------------------------------------------------

namespace {

struct ScanCase {
  int64_t B, L, C, N;
  bool useD, useZ, useBias, softplus, useH0;
  int64_t chunk;
  int threads;
};
// Readable test names (gtest would print the struct's raw bytes, padding included).
void PrintTo(const ScanCase& c, std::ostream* os) {
  *os << "B" << c.B << "_L" << c.L << "_C" << c.C << "_N" << c.N << (c.useD ? "_D" : "") << (c.useZ ? "_z" : "")
      << (c.useBias ? "_bias" : "") << (c.softplus ? "_softplus" : "") << (c.useH0 ? "_h0" : "") << "_chunk"
      << c.chunk << "_t" << c.threads;
}

struct ScanData {
  int64_t B, L, C, N, E;  // E: row stride of B/C (they sit inside a wider buffer)
  Vec u, delta, A, BC, D, z, bias, h0;
  ScanData(const ScanCase& c, Rng& rng) : B(c.B), L(c.L), C(c.C), N(c.N), E(2 * c.N + 3) {
    u = randn(B * L * C, rng);
    delta = randn(B * L * C, rng, 0.5);
    if (!c.softplus)
      for (auto& d : delta) d = std::abs(d) + 0.05;
    A = randu(C * N, rng, -2.0, -0.1);
    BC = randn(B * L * E, rng);
    D = randn(C, rng);
    z = randn(B * L * C, rng);
    bias = randn(C, rng, 0.3);
    h0 = randn(B * C * N, rng);
  }
  k::ScanParams<double> params(const ScanCase& c) const {
    k::ScanParams<double> p;
    p.batch = B; p.len = L; p.dim = C; p.dstate = N;
    p.u = u.data(); p.u_ld = C;
    p.delta = delta.data(); p.delta_ld = C;
    p.A = A.data();
    p.B = BC.data() + 1; p.C = BC.data() + 1 + N; p.bc_ld = E;
    p.D = c.useD ? D.data() : nullptr;
    p.z = c.useZ ? z.data() : nullptr; p.z_ld = C;
    p.delta_bias = c.useBias ? bias.data() : nullptr;
    p.delta_softplus = c.softplus;
    p.h0 = c.useH0 ? h0.data() : nullptr;
    return p;
  }
};

// The recurrence written out directly, one (b, c) at a time.
Vec naive_scan(const ScanData& d, const ScanCase& c, Vec* hfinal) {
  Vec out(d.B * d.L * d.C);
  if (hfinal) hfinal->assign(d.B * d.C * d.N, 0.0);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t ch = 0; ch < d.C; ++ch) {
      Vec h(d.N);
      for (int64_t n = 0; n < d.N; ++n) h[n] = c.useH0 ? d.h0[(b * d.C + ch) * d.N + n] : 0.0;
      for (int64_t t = 0; t < d.L; ++t) {
        const int64_t r = b * d.L + t;
        double dt = d.delta[r * d.C + ch] + (c.useBias ? d.bias[ch] : 0.0);
        if (c.softplus) dt = dt > 20 ? dt : std::log1p(std::exp(dt));
        const double uu = d.u[r * d.C + ch];
        double y = 0;
        for (int64_t n = 0; n < d.N; ++n) {
          h[n] = std::exp(dt * d.A[ch * d.N + n]) * h[n] + dt * d.BC[r * d.E + 1 + n] * uu;
          y += h[n] * d.BC[r * d.E + 1 + d.N + n];
        }
        if (c.useD) y += d.D[ch] * uu;
        if (c.useZ) {
          const double zz = d.z[r * d.C + ch];
          y *= zz / (1 + std::exp(-zz));
        }
        out[r * d.C + ch] = y;
      }
      if (hfinal)
        for (int64_t n = 0; n < d.N; ++n) (*hfinal)[(b * d.C + ch) * d.N + n] = h[n];
    }
  return out;
}

}  // namespace

class ScanTest : public ::testing::TestWithParam<ScanCase> {};

TEST_P(ScanTest, ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  const ScanCase c = GetParam();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(c.threads);
  Rng rng(100 + c.L * 7 + c.B);
  ScanData d(c, rng);
  Vec hf_ref;
  Vec ref = naive_scan(d, c, &hf_ref);
  Vec out(d.B * d.L * d.C, NAN), hf(d.B * d.C * d.N, NAN);
  k::selective_scan_forward(d.params(c), out.data(), hf.data());
  EXPECT_LT(rel_l2(out, ref), 1e-13);
  EXPECT_LT(rel_l2(hf, hf_ref), 1e-13);

  Vec Wl = randn(out.size(), rng);
  Vec du(d.u.size(), 0.0), ddelta(d.delta.size(), 0.0), dA(d.A.size(), 0.0), dBC(d.BC.size(), 0.0),
      dD(d.D.size(), 0.0), dz(d.z.size(), 0.0), dbias(d.bias.size(), 0.0), dh0(d.h0.size(), 0.0);
  k::ScanGrads<double> g;
  g.du = du.data(); g.du_ld = d.C;
  g.ddelta = ddelta.data(); g.ddelta_ld = d.C;
  g.dA = dA.data();
  g.dB = dBC.data() + 1; g.dC = dBC.data() + 1 + d.N; g.dbc_ld = d.E;
  g.dD = dD.data();
  g.dz = dz.data(); g.dz_ld = d.C;
  g.ddelta_bias = dbias.data();
  g.dh0 = c.useH0 ? dh0.data() : nullptr;
  k::selective_scan_backward(d.params(c), Wl.data(), g, c.chunk);

  auto loss = [&] {
    Vec o(d.B * d.L * d.C);
    k::selective_scan_forward(d.params(c), o.data(), nullptr);
    return dot(o, Wl);
  };
  // B/C live in a wider buffer: compare only the columns the scan reads.
  std::vector<GradInput> inputs{{"u", &d.u, &du}, {"delta", &d.delta, &ddelta}, {"A", &d.A, &dA}};
  if (c.useD) inputs.push_back({"D", &d.D, &dD});
  if (c.useZ) inputs.push_back({"z", &d.z, &dz});
  if (c.useBias) inputs.push_back({"delta_bias", &d.bias, &dbias});
  if (c.useH0) inputs.push_back({"h0", &d.h0, &dh0});
  expect_gradients(loss, inputs, 1e-6);
  Vec bc, dbc;
  std::vector<size_t> idx;
  for (int64_t r = 0; r < d.B * d.L; ++r)
    for (int64_t j = 1; j < 1 + 2 * d.N; ++j) idx.push_back(r * d.E + j);
  for (size_t i : idx) bc.push_back(d.BC[i]), dbc.push_back(dBC[i]);
  auto loss_bc = [&] {
    for (size_t i = 0; i < idx.size(); ++i) d.BC[idx[i]] = bc[i];
    return loss();
  };
  expect_gradients(loss_bc, {{"B|C", &bc, &dbc}}, 1e-6);
  // The columns of the wider buffer that are not B or C are left untouched.
  for (int64_t r = 0; r < d.B * d.L; ++r) EXPECT_EQ(dBC[r * d.E], 0.0);
  omp_set_num_threads(saved);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ScanTest,
    ::testing::Values(ScanCase{1, 1, 3, 4, true, true, true, true, true, 64, 2},     // L = 1 (h0: else dA is truly 0)
                      ScanCase{2, 7, 5, 3, true, true, true, true, true, 3, 2},     // odd L, chunk boundaries, h0
                      ScanCase{1, 37, 20, 16, true, true, true, true, false, 8, 4}, // batch < threads: channel groups
                      ScanCase{3, 9, 17, 1, false, false, false, false, false, 4, 2},  // bare scan, N = 1
                      ScanCase{2, 12, 33, 5, true, false, true, true, true, 5, 3}));

TEST(Scan, FloatKernelMatchesDouble) {
  ScanCase c{2, 300, 40, 16, true, true, true, true, false, 64, 2};
  Rng rng(11);
  ScanData d(c, rng);
  Vec ref = naive_scan(d, c, nullptr);
  auto f = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
  auto uf = f(d.u), df = f(d.delta), Af = f(d.A), BCf = f(d.BC), Df = f(d.D), zf = f(d.z), bf = f(d.bias);
  k::ScanParams<float> p;
  p.batch = d.B; p.len = d.L; p.dim = d.C; p.dstate = d.N;
  p.u = uf.data(); p.u_ld = d.C; p.delta = df.data(); p.delta_ld = d.C; p.A = Af.data();
  p.B = BCf.data() + 1; p.C = BCf.data() + 1 + d.N; p.bc_ld = d.E; p.D = Df.data();
  p.z = zf.data(); p.z_ld = d.C; p.delta_bias = bf.data(); p.delta_softplus = true;
  std::vector<float> out(ref.size());
  k::selective_scan_forward(p, out.data(), nullptr);
  EXPECT_LT(rel_l2(Vec(out.begin(), out.end()), ref), 1e-5);
}

TEST(Scan, BadShapesAreErrors) {
  k::ScanParams<float> p;
  p.batch = 1; p.len = 4; p.dim = 0; p.dstate = 16;
  std::vector<float> out(4);
  EXPECT_THROW(k::selective_scan_forward(p, out.data(), nullptr), Error);
}

TEST(Step, ConvAndScanStepsReproduceTheFullSequence) {
  Rng rng(21);
  const int64_t B = 2, L = 9, C = 5, K = 4, N = 3;
  Vec x = randn(B * L * C, rng), w = randn(C * K, rng), bias = randn(C, rng);
  Vec full(B * L * C);
  k::conv1d_forward(full.data(), x.data(), C, w.data(), bias.data(), B, L, C, K);
  Vec state(B * C * (K - 1), 0.0), xt(B * C), o(B * C);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) xt[b * C + c] = x[(b * L + t) * C + c];
    k::conv1d_step(o.data(), state.data(), xt.data(), C, w.data(), bias.data(), B, C, K);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(o[b * C + c], full[(b * L + t) * C + c], 1e-13);
  }
  ScanCase sc{B, L, C, N, true, true, true, true, false, 64, 2};
  ScanData d(sc, rng);
  Vec ref = naive_scan(d, sc, nullptr);
  Vec h(B * C * N, 0.0), out(B * C);
  for (int64_t t = 0; t < L; ++t) {
    // Gather token t of every sequence into a batch of length-1 sequences.
    Vec u(B * C), dl(B * C), z(B * C), bc(B * d.E);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t c = 0; c < C; ++c) {
        u[b * C + c] = d.u[(b * L + t) * C + c];
        dl[b * C + c] = d.delta[(b * L + t) * C + c];
        z[b * C + c] = d.z[(b * L + t) * C + c];
      }
      for (int64_t j = 0; j < d.E; ++j) bc[b * d.E + j] = d.BC[(b * L + t) * d.E + j];
    }
    k::ScanParams<double> p = d.params(sc);
    p.len = 1;
    p.u = u.data();
    p.delta = dl.data();
    p.z = z.data();
    p.B = bc.data() + 1;
    p.C = bc.data() + 1 + N;
    k::selective_scan_step(p, h.data(), out.data());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(out[b * C + c], ref[(b * L + t) * C + c], 1e-12);
  }
}

// ---- B/C groups, conv states and SiLU (the features the CUDA kernels are checked on) ---

namespace {

// B/C in a wider row: [pad | B (ng·N) | C (ng·N) | pad]; channel c uses group c/(C/ng).
struct GroupScan {
  int64_t Bt, L, C, N, ng, E;
  Vec u, delta, A, BC, D, z, bias, h0;
  GroupScan(int64_t Bt_, int64_t L_, int64_t C_, int64_t N_, int64_t ng_, Rng& rng)
      : Bt(Bt_), L(L_), C(C_), N(N_), ng(ng_), E(2 * ng_ * N_ + 2) {
    u = randn(Bt * L * C, rng);
    delta = randn(Bt * L * C, rng, 0.5);
    A = randu(C * N, rng, -2.0, -0.1);
    BC = randn(Bt * L * E, rng);
    D = randn(C, rng);
    z = randn(Bt * L * C, rng);
    bias = randn(C, rng, 0.3);
    h0 = randn(Bt * C * N, rng);
  }
  k::ScanParams<double> params() const {
    k::ScanParams<double> p;
    p.batch = Bt; p.len = L; p.dim = C; p.dstate = N; p.ngroups = ng;
    p.u = u.data(); p.u_ld = C; p.delta = delta.data(); p.delta_ld = C; p.A = A.data();
    p.B = BC.data() + 1; p.C = BC.data() + 1 + ng * N; p.bc_ld = E;
    p.D = D.data(); p.z = z.data(); p.z_ld = C; p.delta_bias = bias.data();
    p.delta_softplus = true; p.h0 = h0.data();
    return p;
  }
  // The recurrence written out, with the group column chosen per channel.
  Vec naive() const {
    Vec out(Bt * L * C);
    for (int64_t b = 0; b < Bt; ++b)
      for (int64_t ch = 0; ch < C; ++ch) {
        const int64_t g = ch / (C / ng);
        Vec h(h0.begin() + (b * C + ch) * N, h0.begin() + (b * C + ch + 1) * N);
        for (int64_t t = 0; t < L; ++t) {
          const int64_t r = b * L + t;
          double dt = delta[r * C + ch] + bias[ch];
          dt = dt > 20 ? dt : std::log1p(std::exp(dt));
          double y = 0;
          for (int64_t n = 0; n < N; ++n) {
            h[n] = std::exp(dt * A[ch * N + n]) * h[n] + dt * BC[r * E + 1 + g * N + n] * u[r * C + ch];
            y += h[n] * BC[r * E + 1 + ng * N + g * N + n];
          }
          y += D[ch] * u[r * C + ch];
          out[r * C + ch] = y * z[r * C + ch] / (1 + std::exp(-z[r * C + ch]));
        }
      }
    return out;
  }
};

}  // namespace

class ScanGroupsTest : public ::testing::TestWithParam<int> {};
TEST_P(ScanGroupsTest, ForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  const int threads = GetParam();  // 1: one task per sequence; 4: channel tasks share dB/dC
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  Rng rng(300 + threads);
  GroupScan d(1, 6, 8, 3, 2, rng);
  Vec out(d.Bt * d.L * d.C, NAN);
  k::selective_scan_forward(d.params(), out.data(), nullptr);
  EXPECT_LT(rel_l2(out, d.naive()), 1e-13);

  Vec Wl = randn(out.size(), rng);
  Vec du(d.u.size(), 0.0), ddelta(d.delta.size(), 0.0), dA(d.A.size(), 0.0), dBC(d.BC.size(), 0.0),
      dD(d.D.size(), 0.0), dz(d.z.size(), 0.0), dbias(d.bias.size(), 0.0), dh0(d.h0.size(), 0.0);
  k::ScanGrads<double> g;
  g.du = du.data(); g.du_ld = d.C; g.ddelta = ddelta.data(); g.ddelta_ld = d.C; g.dA = dA.data();
  g.dB = dBC.data() + 1; g.dC = dBC.data() + 1 + d.ng * d.N; g.dbc_ld = d.E;
  g.dD = dD.data(); g.dz = dz.data(); g.dz_ld = d.C; g.ddelta_bias = dbias.data(); g.dh0 = dh0.data();
  k::selective_scan_backward(d.params(), Wl.data(), g, 4);
  auto loss = [&] {
    Vec o(d.Bt * d.L * d.C);
    k::selective_scan_forward(d.params(), o.data(), nullptr);
    return dot(o, Wl);
  };
  expect_gradients(loss, {{"u", &d.u, &du}, {"delta", &d.delta, &ddelta}, {"A", &d.A, &dA},
                          {"D", &d.D, &dD}, {"z", &d.z, &dz}, {"delta_bias", &d.bias, &dbias},
                          {"h0", &d.h0, &dh0}}, 1e-6);
  // Every column of the row, the padding ones included (their gradient must stay 0).
  expect_gradients(loss, {{"B|C rows", &d.BC, &dBC}}, 1e-6);
  omp_set_num_threads(saved);
}
INSTANTIATE_TEST_SUITE_P(Threads, ScanGroupsTest, ::testing::Values(1, 4));

TEST(ScanGroups, BadGroupCountIsAnError) {
  Rng rng(310);
  GroupScan d(1, 3, 6, 2, 1, rng);
  auto p = d.params();
  p.ngroups = 4;  // does not divide dim = 6
  Vec out(d.Bt * d.L * d.C);
  EXPECT_THROW(k::selective_scan_forward(p, out.data(), nullptr), Error);
}

TEST(Step, ScanStepWithGroupsReproducesTheSequence) {
  Rng rng(311);
  GroupScan d(2, 5, 6, 3, 3, rng);
  const Vec ref = d.naive();
  Vec h(d.h0), out(d.Bt * d.C);
  for (int64_t t = 0; t < d.L; ++t) {
    Vec u(d.Bt * d.C), dl(d.Bt * d.C), z(d.Bt * d.C), bc(d.Bt * d.E);
    for (int64_t b = 0; b < d.Bt; ++b) {
      for (int64_t c = 0; c < d.C; ++c) {
        u[b * d.C + c] = d.u[(b * d.L + t) * d.C + c];
        dl[b * d.C + c] = d.delta[(b * d.L + t) * d.C + c];
        z[b * d.C + c] = d.z[(b * d.L + t) * d.C + c];
      }
      for (int64_t j = 0; j < d.E; ++j) bc[b * d.E + j] = d.BC[(b * d.L + t) * d.E + j];
    }
    auto p = d.params();
    p.len = 1; p.u = u.data(); p.delta = dl.data(); p.z = z.data();
    p.B = bc.data() + 1; p.C = bc.data() + 1 + d.ng * d.N;
    k::selective_scan_step(p, h.data(), out.data());
    for (int64_t b = 0; b < d.Bt; ++b)
      for (int64_t c = 0; c < d.C; ++c)
        EXPECT_NEAR(out[b * d.C + c], ref[(b * d.L + t) * d.C + c], 1e-12);
  }
}

class ConvStateGrad : public ::testing::TestWithParam<int> {};
TEST_P(ConvStateGrad, InitStateSiluAndFinalState) {
  Rng rng(320 + GetParam());
  const int64_t B = 2, L = 5, C = 3, K = GetParam(), ldx = 4;
  Vec x = randn(B * L * ldx, rng), w = randn(C * K, rng), bias = randn(C, rng),
      init = randn(B * C * (K - 1), rng), Wl = randn(B * L * C, rng);
  auto params = [&] {
    k::Conv1dParams<double> p;
    p.batch = B; p.len = L; p.C = C; p.K = K; p.x = x.data(); p.ldx = ldx;
    p.w = w.data(); p.bias = bias.data(); p.init_state = K > 1 ? init.data() : nullptr; p.silu = true;
    return p;
  };
  auto fwd = [&] {
    Vec out(B * L * C);
    k::conv1d_forward(params(), out.data(), nullptr);
    return dot(out, Wl);
  };
  Vec dx(B * L * ldx, 0.0), dw(C * K, 0.0), db(C, 0.0), dinit(init.size(), 0.0);
  k::conv1d_backward(params(), Wl.data(), dx.data(), ldx, dw.data(), db.data(), dinit.data());
  std::vector<GradInput> in{{"w", &w, &dw}, {"bias", &bias, &db}};
  if (K > 1) in.push_back({"init_state", &init, &dinit});
  expect_gradients(fwd, in);
  Vec xc(B * L * C), dxc(B * L * C);
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t c = 0; c < C; ++c) xc[r * C + c] = x[r * ldx + c], dxc[r * C + c] = dx[r * ldx + c];
  auto fwd_x = [&] {
    for (int64_t r = 0; r < B * L; ++r)
      for (int64_t c = 0; c < C; ++c) x[r * ldx + c] = xc[r * C + c];
    return fwd();
  };
  expect_gradients(fwd_x, {{"x", &xc, &dxc}});

  // Chunked prefill: conv(x[0:2]) then conv(x[2:L]) from its final state == conv(x).
  // L1 = 2 < K−1 for K = 4: the final state then reaches into the initial state.
  const int64_t L1 = 2;
  Vec full(B * L * C), part1(B * L1 * C), part2(B * (L - L1) * C), fin(B * C * (K - 1));
  auto p = params();
  k::conv1d_forward(p, full.data(), nullptr);
  Vec x1(B * L1 * ldx), x2(B * (L - L1) * ldx);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < ldx; ++c)
        (t < L1 ? x1[(b * L1 + t) * ldx + c] : x2[(b * (L - L1) + t - L1) * ldx + c]) = x[(b * L + t) * ldx + c];
  auto p1 = p; p1.len = L1; p1.x = x1.data();
  k::conv1d_forward(p1, part1.data(), fin.data());
  auto p2 = p; p2.len = L - L1; p2.x = x2.data(); p2.init_state = K > 1 ? fin.data() : nullptr;
  k::conv1d_forward(p2, part2.data(), nullptr);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c)
        EXPECT_NEAR(full[(b * L + t) * C + c],
                    t < L1 ? part1[(b * L1 + t) * C + c] : part2[(b * (L - L1) + t - L1) * C + c], 1e-14);
  // Without state and SiLU the new entry point equals the original one.
  auto p0 = p; p0.init_state = nullptr; p0.silu = false;
  Vec o0(B * L * C), o1(B * L * C);
  k::conv1d_forward(p0, o0.data(), nullptr);
  k::conv1d_forward(o1.data(), x.data(), ldx, w.data(), bias.data(), B, L, C, K);
  EXPECT_LT(rel_l2(o0, o1), 1e-15);
}
INSTANTIATE_TEST_SUITE_P(K, ConvStateGrad, ::testing::Values(1, 2, 4, 6));
