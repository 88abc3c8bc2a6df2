// The baselines (CNN, Transformer) and the bidirectional Mamba: every new kernel's
// backward against finite differences in double, every parameter of the models by
// fp32 directional derivatives, the seed's parameter counts, BatchNorm statistics,
// padding invariances, and checkpoint round trips.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "mambaseq/baselines.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/hf_config.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/kernels_cpu_extra.h"
#include "mambaseq/model.h"
#include "mambaseq/optim.h"
#include "tests/gradcheck.h"

using namespace mambaseq;
using namespace mambaseq::test;
namespace k = mambaseq::cpu;

// ---- kernels (double) ----------------------------------------------------------------

class ConvDenseGrad : public ::testing::TestWithParam<int> {};
TEST_P(ConvDenseGrad, MatchesDirectSumAndFiniteDifferences) {
  Rng rng(100 + GetParam());
  const int64_t B = 2, L = 7, Cin = 3, Cout = 4, K = GetParam(), P = K / 2;
  Vec x = randn(B * L * Cin, rng), W = randn(Cout * Cin * K, rng), bias = randn(Cout, rng);
  Vec Wl = randn(B * L * Cout, rng);
  Vec ws(k::conv_dense_workspace(B, L, Cin, Cout, K));
  auto run = [&] {
    Vec out(B * L * Cout);
    k::conv_dense_forward(out.data(), x.data(), W.data(), bias.data(), B, L, Cin, Cout, K, ws.data());
    return out;
  };
  // PyTorch's Conv1d(padding = K/2) written out.
  Vec out = run();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        double s = bias[o];
        for (int64_t kk = 0; kk < K; ++kk) {
          const int64_t j = t + kk - P;
          if (j < 0 || j >= L) continue;
          for (int64_t i = 0; i < Cin; ++i) s += W[(o * Cin + i) * K + kk] * x[(b * L + j) * Cin + i];
        }
        EXPECT_NEAR(out[(b * L + t) * Cout + o], s, 1e-12);
      }
  Vec dx(x.size(), 0.0), dW(W.size(), 0.0), db(Cout, 0.0);
  k::conv_dense_backward(dx.data(), dW.data(), db.data(), Wl.data(), x.data(), W.data(), B, L, Cin, Cout, K, ws.data());
  expect_gradients([&] { return dot(run(), Wl); }, {{"x", &x, &dx}, {"W", &W, &dW}, {"bias", &bias, &db}});
  // Accumulates rather than overwrites.
  Vec dx2 = dx;
  k::conv_dense_backward(dx2.data(), (double*)nullptr, (double*)nullptr, Wl.data(), x.data(), W.data(), B, L, Cin,
                         Cout, K, ws.data());
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], 2 * dx[i], 1e-12);
}
INSTANTIATE_TEST_SUITE_P(KernelSizes, ConvDenseGrad, ::testing::Values(1, 3, 5, 9));

TEST(ConvDense, EvenKernelIsAnError) {
  std::vector<float> x(8), w(8), out(8), ws(100);
  EXPECT_THROW(k::conv_dense_forward(out.data(), x.data(), w.data(), (float*)nullptr, 1, 4, 2, 1, 2, ws.data()), Error);
}

TEST(BatchNormKernel, TrainingGradientsAndRunningStatistics) {
  Rng rng(200);
  const int64_t M = 9, C = 5;
  for (int masked = 0; masked < 2; ++masked) {
    std::vector<uint8_t> mask(M, 1);
    if (masked) mask[2] = mask[7] = 0;
    const uint8_t* mp = masked ? mask.data() : nullptr;
    Vec x = randn(M * C, rng, 2.0), w = randn(C, rng), b = randn(C, rng), Wl = randn(M * C, rng);
    auto run = [&](Vec* rm, Vec* rv) {
      Vec y(M * C), mu(C), rs(C), rm0(C, 0.0), rv0(C, 1.0);
      k::batchnorm_forward(y.data(), mu.data(), rs.data(), rm ? rm->data() : rm0.data(), rv ? rv->data() : rv0.data(),
                           x.data(), w.data(), b.data(), mp, M, C, true, 0.1, 1e-5);
      return y;
    };
    Vec rm(C, 0.5), rv(C, 2.0);
    Vec y = run(&rm, &rv);
    const int64_t n = masked ? M - 2 : M;
    for (int64_t c = 0; c < C; ++c) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < M; ++i)
        if (mask[i] || !masked) s += x[i * C + c];
      const double mu = s / n;
      for (int64_t i = 0; i < M; ++i)
        if (mask[i] || !masked) ss += (x[i * C + c] - mu) * (x[i * C + c] - mu);
      EXPECT_NEAR(rm[c], 0.9 * 0.5 + 0.1 * mu, 1e-12);
      EXPECT_NEAR(rv[c], 0.9 * 2.0 + 0.1 * ss / (n - 1), 1e-12);  // unbiased in the running variance
      for (int64_t i = 0; i < M; ++i) {
        const double want = (mask[i] || !masked) ? (x[i * C + c] - mu) / std::sqrt(ss / n + 1e-5) * w[c] + b[c] : 0.0;
        EXPECT_NEAR(y[i * C + c], want, 1e-12);  // biased variance normalises
      }
    }
    Vec mu(C), rs(C), dx(M * C, 0.0), dw(C, 0.0), db(C, 0.0);
    {
      Vec yy(M * C), a(C), v(C, 1.0);
      k::batchnorm_forward(yy.data(), mu.data(), rs.data(), a.data(), v.data(), x.data(), w.data(), b.data(), mp, M, C,
                           true, 0.1, 1e-5);
    }
    k::batchnorm_backward(dx.data(), dw.data(), db.data(), Wl.data(), x.data(), w.data(), mu.data(), rs.data(), mp, M,
                          C, true);
    if (masked) {
      // Masked rows neither count nor get gradient: check the others through a compact copy.
      for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dx[2 * C + c], 0.0);
    }
    expect_gradients([&] { return dot(run(nullptr, nullptr), Wl); }, {{"w", &w, &dw}, {"b", &b, &db}});
    if (!masked) expect_gradients([&] { return dot(run(nullptr, nullptr), Wl); }, {{"x", &x, &dx}});
    else {
      Vec xr, dxr;
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < M; ++i)
        if (mask[i])
          for (int64_t c = 0; c < C; ++c) xr.push_back(x[i * C + c]), dxr.push_back(dx[i * C + c]), rows.push_back(i * C + c);
      expect_gradients(
          [&] {
            for (size_t j = 0; j < rows.size(); ++j) x[rows[j]] = xr[j];
            return dot(run(nullptr, nullptr), Wl);
          },
          {{"x (real rows)", &xr, &dxr}});
    }
  }
  Vec y(2), mu(1), rs(1), rm(1), rv(1), x{1.0, 2.0}, w{1.0}, b{0.0};
  std::vector<uint8_t> one{1, 0};
  EXPECT_THROW(k::batchnorm_forward(y.data(), mu.data(), rs.data(), rm.data(), rv.data(), x.data(), w.data(), b.data(),
                                    one.data(), 2, 1, true, 0.1, 1e-5),
               Error);  // one value per channel: PyTorch refuses too
}

TEST(BatchNormKernel, EvalUsesRunningStatistics) {
  Rng rng(201);
  const int64_t M = 6, C = 3;
  Vec x = randn(M * C, rng), w = randn(C, rng), b = randn(C, rng), Wl = randn(M * C, rng);
  Vec rm = randn(C, rng), rv = randu(C, rng, 0.5, 2.0);
  auto run = [&] {
    Vec y(M * C), mu(C), rs(C), m = rm, v = rv;
    k::batchnorm_forward(y.data(), mu.data(), rs.data(), m.data(), v.data(), x.data(), w.data(), b.data(), nullptr, M,
                         C, false, 0.1, 1e-5);
    EXPECT_EQ(m, rm);  // eval never touches the statistics
    return y;
  };
  Vec y = run();
  for (int64_t i = 0; i < M; ++i)
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(y[i * C + c], (x[i * C + c] - rm[c]) / std::sqrt(rv[c] + 1e-5) * w[c] + b[c], 1e-12);
  Vec mu(C), rs(C), yy(M * C), dx(M * C, 0.0), dw(C, 0.0), db(C, 0.0), m = rm, v = rv;
  k::batchnorm_forward(yy.data(), mu.data(), rs.data(), m.data(), v.data(), x.data(), w.data(), b.data(), nullptr, M, C,
                       false, 0.1, 1e-5);
  k::batchnorm_backward(dx.data(), dw.data(), db.data(), Wl.data(), x.data(), w.data(), mu.data(), rs.data(), nullptr, M,
                        C, false);
  expect_gradients([&] { return dot(run(), Wl); }, {{"x", &x, &dx}, {"w", &w, &dw}, {"b", &b, &db}});
}

TEST(MaxPoolKernel, ValuesFirstMaxOnTiesAndGradients) {
  // PyTorch: MaxPool1d(2) on [3, 3, 1, 5, 2] → [3, 5], argmax [0, 3] (floor drops t = 4).
  Vec x1{3, 3, 1, 5, 2}, o1(2);
  std::vector<int32_t> i1(2);
  k::maxpool_forward(o1.data(), i1.data(), x1.data(), 1, 5, 1, 2, 2);
  EXPECT_EQ(o1, (Vec{3, 5}));
  EXPECT_EQ(i1, (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(k::maxpool_out_len(7, 2, 2), 3);
  EXPECT_EQ(k::maxpool_out_len(7, 3, 2), 3);
  Rng rng(300);
  for (auto [kk, s] : {std::pair<int64_t, int64_t>{2, 2}, {3, 2}, {3, 1}}) {
    const int64_t B = 2, L = 7, C = 3, Lo = k::maxpool_out_len(L, kk, s);
    Vec x = randn(B * L * C, rng), Wl = randn(B * Lo * C, rng);
    std::vector<int32_t> idx(B * Lo * C);
    auto run = [&] {
      Vec out(B * Lo * C);
      k::maxpool_forward(out.data(), idx.data(), x.data(), B, L, C, kk, s);
      return out;
    };
    run();
    Vec dx(x.size(), 0.0);
    k::maxpool_backward(dx.data(), Wl.data(), idx.data(), B, L, C, kk, s);
    expect_gradients([&] { return dot(run(), Wl); }, {{"x", &x, &dx}});
  }
}

TEST(ReverseKernel, WithinLengthPaddingStaysAndInvolution) {
  const int64_t B = 2, L = 5, D = 2;
  Vec src(B * L * D);
  for (size_t i = 0; i < src.size(); ++i) src[i] = double(i);
  std::vector<int64_t> lens{5, 3};
  Vec dst(src.size()), back(src.size());
  k::reverse_within_length(dst.data(), src.data(), lens.data(), B, L, D, false);
  // Sequence 1: rows 0 1 2 | 3 4  →  2 1 0 | 3 4
  const int64_t want_rows[] = {4, 3, 2, 1, 0, 7, 6, 5, 8, 9};
  for (int64_t r = 0; r < B * L; ++r)
    for (int64_t j = 0; j < D; ++j) EXPECT_EQ(dst[r * D + j], src[want_rows[r] * D + j]);
  k::reverse_within_length(back.data(), dst.data(), lens.data(), B, L, D, false);
  EXPECT_EQ(back, src);
  k::reverse_within_length(back.data(), dst.data(), lens.data(), B, L, D, true);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], 2 * src[i]);
  // Backward = the same permutation, accumulated.
  Rng rng(310);
  Vec x = randn(src.size(), rng), Wl = randn(src.size(), rng), dx(src.size(), 0.0);
  k::reverse_within_length(dx.data(), Wl.data(), lens.data(), B, L, D, true);
  expect_gradients(
      [&] {
        Vec o(x.size());
        k::reverse_within_length(o.data(), x.data(), lens.data(), B, L, D, false);
        return dot(o, Wl);
      },
      {{"x", &x, &dx}});
  lens[1] = 6;
  EXPECT_THROW(k::reverse_within_length(dst.data(), src.data(), lens.data(), B, L, D, false), Error);
}

namespace {
// Direct attention in double, one (b, h) at a time: the definition the kernel must meet.
Vec naive_attention(const Vec& qkv, const std::vector<uint8_t>& km, int64_t B, int64_t L, int64_t H, int64_t dh,
                    Vec* lse) {
  const int64_t D = H * dh;
  Vec out(B * L * D, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> s(L, -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < L; ++j) {
          if (!km[b * L + j]) continue;
          double v = 0;
          for (int64_t d = 0; d < dh; ++d) v += qkv[(b * L + i) * 3 * D + h * dh + d] * qkv[(b * L + j) * 3 * D + D + h * dh + d];
          s[j] = v / std::sqrt(double(dh));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < L; ++j) z += km[b * L + j] ? std::exp(s[j] - mx) : 0.0;
        (*lse)[(b * H + h) * L + i] = mx + std::log(z);
        for (int64_t j = 0; j < L; ++j) {
          if (!km[b * L + j]) continue;
          const double pj = std::exp(s[j] - mx) / z;
          for (int64_t d = 0; d < dh; ++d) out[(b * L + i) * D + h * dh + d] += pj * qkv[(b * L + j) * 3 * D + 2 * D + h * dh + d];
        }
      }
  return out;
}
}  // namespace

TEST(AttentionKernel, MatchesDefinitionAndFiniteDifferences) {
  Rng rng(400);
  const int64_t B = 2, L = 5, H = 2, dh = 3, D = H * dh;
  std::vector<uint8_t> km{1, 1, 1, 1, 1, 1, 1, 1, 0, 0};  // sequence 1: two padding keys
  for (double p : {0.0, 0.3}) {
    Vec qkv = randn(B * L * 3 * D, rng), Wl = randn(B * L * D, rng);
    Vec ws(k::attention_workspace(B, H, L)), lse(B * H * L);
    k::AttnParams<double> ap{B, L, H, dh, qkv.data(), 3 * D, km.data(), p, 77};
    auto run = [&] {
      Vec out(B * L * D);
      k::attention_forward(ap, out.data(), D, lse.data(), ws.data());
      return out;
    };
    Vec out = run();
    if (p == 0.0) {
      Vec ref_lse(B * H * L);
      Vec ref = naive_attention(qkv, km, B, L, H, dh, &ref_lse);
      for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-12);
      for (size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], ref_lse[i], 1e-12);
    } else {
      // Some weights dropped, some scaled by 1/(1−p): the output differs from p = 0.
      k::AttnParams<double> a0 = ap;
      a0.dropout = 0;
      Vec o0(B * L * D), l0(B * H * L);
      k::attention_forward(a0, o0.data(), D, l0.data(), ws.data());
      EXPECT_GT(rel_l2(out, o0), 1e-3);
    }
    Vec dqkv(qkv.size(), 0.0);
    k::attention_backward(ap, Wl.data(), D, lse.data(), dqkv.data(), 3 * D, ws.data());
    expect_gradients([&] { return dot(run(), Wl); }, {{p == 0 ? "qkv" : "qkv (dropout 0.3)", &qkv, &dqkv}});
    // Masked keys get no gradient (their K and V rows are not read).
    for (int64_t j = 3; j < L; ++j)
      for (int64_t c = D; c < 3 * D; ++c) EXPECT_EQ(dqkv[(1 * L + j) * 3 * D + c], 0.0);
  }
  std::vector<uint8_t> none(B * L, 0);
  none[0] = 1;
  Vec qkv(B * L * 3 * D), out(B * L * D), lse(B * H * L), ws(k::attention_workspace(B, H, L));
  k::AttnParams<double> ap{B, L, H, dh, qkv.data(), 3 * D, none.data(), 0.0, 0};
  EXPECT_THROW(k::attention_forward(ap, out.data(), D, lse.data(), ws.data()), Error);  // sequence 1 has no key
}

TEST(AttentionKernel, ChunkedAndSingleChunkAgreeInFloat) {
  // A long sequence forces several chunks of (batch, head) pairs; float vs double agree.
  Rng rng(401);
  const int64_t B = 3, L = 1100, H = 2, dh = 4, D = H * dh;
  std::vector<uint8_t> km(B * L, 1);
  for (int64_t t = 900; t < L; ++t) km[2 * L + t] = 0;
  Vec q = randn(B * L * 3 * D, rng);
  std::vector<float> qf(q.begin(), q.end());
  Vec out(B * L * D), lse(B * H * L), ws(k::attention_workspace(B, H, L));
  std::vector<float> outf(B * L * D), lsef(B * H * L), wsf(k::attention_workspace(B, H, L));
  EXPECT_LT(k::attention_workspace(B, H, L), 2 * B * H * L * L);  // really chunked
  k::attention_forward(k::AttnParams<double>{B, L, H, dh, q.data(), 3 * D, km.data(), 0.0, 0}, out.data(), D, lse.data(),
                       ws.data());
  k::attention_forward(k::AttnParams<float>{B, L, H, dh, qf.data(), 3 * D, km.data(), 0.0, 0}, outf.data(), D,
                       lsef.data(), wsf.data());
  Vec of(outf.begin(), outf.end());
  EXPECT_LT(rel_l2(of, out), 1e-5);
}

TEST(ActivationKernels, ReluGeluGradients) {
  Rng rng(500);
  const int64_t n = 40;
  Vec x = randn(n, rng), Wl = randn(n, rng);
  for (auto& v : x)
    if (std::abs(v) < 1e-3) v = 0.5;  // keep ReLU's kink away from the finite difference
  Vec y(n), dx(n, 0.0);
  k::relu_forward(y.data(), x.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(y[i], std::max(x[i], 0.0));
  k::relu_backward(dx.data(), Wl.data(), y.data(), n);
  expect_gradients([&] { Vec o(n); k::relu_forward(o.data(), x.data(), n); return dot(o, Wl); }, {{"relu x", &x, &dx}});
  Vec g(n), dg(n, 0.0);
  k::gelu_forward(g.data(), x.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(g[i], 0.5 * x[i] * std::erfc(-x[i] / std::sqrt(2.0)), 1e-14);
  k::gelu_backward(dg.data(), Wl.data(), x.data(), n);
  expect_gradients([&] { Vec o(n); k::gelu_forward(o.data(), x.data(), n); return dot(o, Wl); }, {{"gelu x", &x, &dg}});
}

TEST(ActivationKernels, HashedDropoutIsSeededAndThreadIndependent) {
  const int64_t n = 100000;
  std::vector<float> x(n, 1.0f), o1(n), k1(n), o2(n), k2(n), o3(n), k3(n);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  k::dropout_hashed_forward(o1.data(), k1.data(), x.data(), n, 0.25, 9);
  omp_set_num_threads(std::max(2, threads));
  k::dropout_hashed_forward(o2.data(), k2.data(), x.data(), n, 0.25, 9);
  omp_set_num_threads(threads);
  k::dropout_hashed_forward(o3.data(), k3.data(), x.data(), n, 0.25, 10);
  EXPECT_EQ(k1, k2);
  EXPECT_NE(k1, k3);
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_TRUE(k1[i] == 0.0f || std::abs(k1[i] - 1.0f / 0.75f) < 1e-6f);
    kept += k1[i] != 0;
  }
  EXPECT_NEAR(double(kept) / n, 0.75, 0.01);
  // Its backward is cpu::dropout_backward with the stored mask.
  Rng rng(501);
  const int64_t m = 50;
  Vec xd = randn(m, rng), Wl = randn(m, rng), keep(m), od(m), dx(m, 0.0);
  k::dropout_hashed_forward(od.data(), keep.data(), xd.data(), m, 0.3, 4);
  k::dropout_backward(dx.data(), Wl.data(), keep.data(), m);
  expect_gradients(
      [&] {
        Vec o(m), kk(m);
        k::dropout_hashed_forward(o.data(), kk.data(), xd.data(), m, 0.3, 4);
        return dot(o, Wl);
      },
      {{"x", &xd, &dx}});
}

// ---- models: configurations and parameter counts --------------------------------------

TEST(Baselines, Seed001ParameterCounts) {
  // CNN: 6·256 + Σ_k (256·256·k + 256 + 2·256) for k = 15, 9, 5, 3 + 256·2 + 2 = 2,102,274
  // (the seed's table says 2.10M; BatchNorm running statistics are buffers, not parameters).
  CnnConfig c = seed001_cnn(2);
  EXPECT_EQ(count_parameters(c), 2102274);
  CnnClassifier cnn(c, 1);
  EXPECT_EQ(cnn.num_parameters(), 2102274);
  // Transformer: 6·256 + CLS 256 + positions 601·256 + 6 × 527,104 + final norm 512
  // + 514 = 3,319,298 (the seed's 3.32M).
  TransformerConfig t = seed001_transformer(2);
  EXPECT_EQ(count_parameters(t), 3319298);
  TransformerClassifier tr(t, 1);
  EXPECT_EQ(tr.num_parameters(), 3319298);
  EXPECT_EQ(count_parameters(seed001_cnn(3)), 2102274 + 257);
  // Bidirectional seed-001 Mamba: a second mixer (437,760 parameters) per layer.
  ModelConfig m = seed001_classifier(2);
  m.mamba.bidirectional = true;
  EXPECT_EQ(count_parameters(m), 5261826 + 12 * 437760);
  Model bm(m, 1);
  EXPECT_EQ(bm.num_parameters(), count_parameters(m));
  int64_t rev = 0;
  for (Param* p : bm.params()) rev += p->name.find(".mixer_rev.") != std::string::npos ? p->w.numel() : 0;
  EXPECT_EQ(rev, 12 * 437760);
  EXPECT_NE(bm.find("backbone.layers.11.mixer_rev.A_log"), nullptr);
  EXPECT_EQ(bm.find("backbone.layers.0.mixer_rev.unused_norm"), nullptr);
}

TEST(Baselines, BadConfigsAreErrorsNamingTheValue) {
  auto msg = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CnnConfig c;
  c.kernel_sizes = {15, 4};
  EXPECT_NE(msg([&] { c.validate(); }).find("kernel size 4"), std::string::npos);
  c = CnnConfig{};
  c.head = HeadKind::LM;
  EXPECT_NE(msg([&] { c.validate(); }).find("head"), std::string::npos);
  TransformerConfig t;
  t.n_head = 7;
  EXPECT_NE(msg([&] { t.validate(); }).find("n_head"), std::string::npos);
  t = TransformerConfig{};
  t.activation = "swish";
  EXPECT_NE(msg([&] { t.validate(); }).find("swish"), std::string::npos);
  ModelConfig m;
  m.mamba.bidirectional = true;  // head LM
  EXPECT_NE(msg([&] { m.validate(); }).find("bidirectional"), std::string::npos);
  m.head = HeadKind::SequenceClassification;
  m.mamba.bidir_combine = "concat";
  EXPECT_NE(msg([&] { m.validate(); }).find("concat"), std::string::npos);
  // Too long for the Transformer's positions, too short for the CNN's poolings.
  t = TransformerConfig{};
  t.d_model = 8, t.n_head = 2, t.d_ff = 8, t.n_layer = 1, t.max_len = 4;
  TransformerClassifier tr(t, 1);
  Batch b;
  b.batch = 1, b.len = 5, b.ids = {1, 2, 3, 4, 1}, b.labels = {0};
  EXPECT_NE(msg([&] { tr.forward(b, false); }).find("max_len"), std::string::npos);
  c = CnnConfig{};
  c.d_embed = 4, c.channels = 4;
  CnnClassifier cnn(c, 1);
  b.len = 15, b.ids.assign(15, 1);
  EXPECT_NE(msg([&] { cnn.forward(b, false); }).find("too short"), std::string::npos);
}

// ---- models: gradients -----------------------------------------------------------------

namespace {

enum class Task { Classes, Regression, MultiLabel };

// 3 sequences of `len`, the second right-padded by 3; labels for the task.
Batch tiny_batch(Task task, int64_t len, int64_t labels, Rng& rng) {
  Batch b;
  b.batch = 3;
  b.len = len;
  for (int64_t i = 0; i < b.batch * len; ++i) b.ids.push_back(1 + int32_t(rng.below(5)));
  for (int64_t t = len - 3; t < len; ++t) b.ids[len + t] = 0;
  b.mask.resize(b.ids.size());
  for (size_t i = 0; i < b.ids.size(); ++i) b.mask[i] = b.ids[i] != 0;
  if (task == Task::Classes) b.labels = {0, int32_t(labels - 1), 1};
  else
    for (int64_t i = 0; i < b.batch * labels; ++i)
      b.targets.push_back(task == Task::MultiLabel ? float(rng.below(2)) : float(rng.normal()));
  b.multi_label = task == Task::MultiLabel;
  return b;
}

// For each parameter tensor P and a random direction v scaled to P's RMS:
//   (L(P + εv) − L(P − εv)) / 2ε ≈ ⟨∂L/∂P, v⟩, Richardson-extrapolated (ε, ε/2).
// ReLU and max pooling make the loss piecewise smooth: `pattern` reports which side of
// every kink a forward took, and a difference is used only when the four evaluations
// and the base point share one pattern (ε shrinks, then a new direction is drawn).
void expect_directional_gradients(Network& m, const Batch& b, uint64_t seed,
                                  const std::function<std::vector<int32_t>()>& pattern = nullptr) {
  Rng rng(seed);
  const uint64_t dseed = 99;
  m.zero_grad();
  m.forward(b, true, dseed);
  ASSERT_TRUE(std::isfinite(m.loss(b)));
  const std::vector<int32_t> base = pattern ? pattern() : std::vector<int32_t>{};
  m.backward(b);
  double total = 0;
  for (Param* p : m.params()) {
    const std::vector<float> w0(p->w.data(), p->w.data() + p->w.numel());
    double ss = 0;
    for (float x : w0) ss += double(x) * x;
    const double scale = std::max(std::sqrt(ss / w0.size()), 1e-2);
    bool checked = false;
    for (int attempt = 0; attempt < 20 && !checked; ++attempt) {
      std::vector<float> v(w0.size());
      double analytic = 0;
      for (size_t i = 0; i < v.size(); ++i) {
        v[i] = float(rng.normal() * scale);
        analytic += double(v[i]) * p->g[i];
      }
      for (double eps : {1e-2, 5e-3, 2e-3, 1e-3}) {
        bool same = true;
        auto loss_at = [&](double s) {
          for (size_t i = 0; i < v.size(); ++i) p->w[i] = float(w0[i] + s * v[i]);
          m.forward(b, true, dseed);
          if (pattern && pattern() != base) same = false;
          return m.loss(b);
        };
        const double d1 = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
        const double d2 = (loss_at(eps / 2) - loss_at(-eps / 2)) / eps;
        for (size_t i = 0; i < v.size(); ++i) p->w[i] = w0[i];
        if (!same) continue;
        const double numeric = (4 * d2 - d1) / 3;
        // 2e-4: the fp32 forward's rounding of the loss (~1e-7) divided by 2ε (ε down to 1e-3),
        // Richardson-weighted, with room for -O1 (sanitizer build) rounding differences.
        EXPECT_LT(std::abs(numeric - analytic), 5e-3 * std::abs(analytic) + 2e-4)
            << p->name << ": numeric " << numeric << " analytic " << analytic << " (eps " << eps << ")";
        total += std::abs(analytic);
        checked = true;
        break;
      }
    }
    EXPECT_TRUE(checked) << p->name << ": no kink-free finite difference found";
  }
  m.forward(b, true, dseed);  // leave the model as it was
  EXPECT_GT(total, 1e-3);
}

void perturb(Network& m, double scale, uint64_t seed) {
  Rng rng(seed);
  for (Param* p : m.params())
    for (int64_t i = 0; i < p->w.numel(); ++i) p->w[i] += float(scale * rng.normal());
}

CnnConfig tiny_cnn(Task task, bool masked) {
  CnnConfig c;
  c.d_embed = 5;
  c.channels = 6;
  c.kernel_sizes = {5, 3};
  c.head = task == Task::Regression ? HeadKind::Regression : HeadKind::SequenceClassification;
  c.num_labels = task == Task::MultiLabel ? 4 : 3;
  c.head_dropout = 0.2;
  c.mask_padding = masked;
  return c;
}

TransformerConfig tiny_transformer(Task task, const char* act) {
  TransformerConfig c;
  c.d_model = 8;
  c.n_layer = 2;
  c.n_head = 2;
  c.d_ff = 12;
  c.max_len = 12;
  c.dropout = 0.2;
  c.head_dropout = 0.2;
  c.activation = act;
  c.head = task == Task::Regression ? HeadKind::Regression : HeadKind::SequenceClassification;
  c.num_labels = task == Task::MultiLabel ? 4 : 3;
  return c;
}

ModelConfig tiny_bimamba(Task task, const char* combine, NormKind norm) {
  ModelConfig c;
  c.mamba.d_model = 8;
  c.mamba.n_layer = 2;
  c.mamba.vocab_size = 6;
  c.mamba.pad_vocab_size_multiple = 1;
  c.mamba.d_state = 4;
  c.mamba.d_conv = 3;
  c.mamba.dt_rank = 2;
  c.mamba.norm = norm;
  c.mamba.tie_embeddings = false;
  c.mamba.rescale_prenorm_residual = false;
  c.mamba.bidirectional = true;
  c.mamba.bidir_combine = combine;
  c.head = task == Task::Regression ? HeadKind::Regression : HeadKind::SequenceClassification;
  c.num_labels = task == Task::MultiLabel ? 4 : 3;
  c.head_dropout = 0.2;
  return c;
}

struct ModelCase {
  const char* name;
  Task task;
  int variant;
};
std::string case_name(const ::testing::TestParamInfo<ModelCase>& i) { return i.param.name; }

}  // namespace

class CnnGrad : public ::testing::TestWithParam<ModelCase> {};
TEST_P(CnnGrad, DirectionalDerivativeOfEveryParameter) {
  const ModelCase mc = GetParam();
  CnnClassifier m(tiny_cnn(mc.task, mc.variant == 1), 21);
  perturb(m, 0.1, 22);
  Rng rng(23);
  Batch b = tiny_batch(mc.task, 13, m.cfg.num_labels, rng);
  expect_directional_gradients(m, b, 24, [&] { return m.branch_pattern(); });
}
INSTANTIATE_TEST_SUITE_P(Heads, CnnGrad,
                         ::testing::Values(ModelCase{"Classes", Task::Classes, 0},
                                           ModelCase{"Regression", Task::Regression, 0},
                                           ModelCase{"MultiLabel", Task::MultiLabel, 0},
                                           ModelCase{"ClassesMasked", Task::Classes, 1},
                                           ModelCase{"RegressionMasked", Task::Regression, 1}),
                         case_name);

class TransformerGrad : public ::testing::TestWithParam<ModelCase> {};
TEST_P(TransformerGrad, DirectionalDerivativeOfEveryParameter) {
  const ModelCase mc = GetParam();
  TransformerClassifier m(tiny_transformer(mc.task, mc.variant == 1 ? "gelu" : "relu"), 31);
  perturb(m, 0.1, 32);
  Rng rng(33);
  Batch b = tiny_batch(mc.task, 7, m.cfg.num_labels, rng);
  expect_directional_gradients(m, b, 34, [&] { return m.branch_pattern(); });
}
INSTANTIATE_TEST_SUITE_P(Heads, TransformerGrad,
                         ::testing::Values(ModelCase{"Classes", Task::Classes, 0},
                                           ModelCase{"Regression", Task::Regression, 0},
                                           ModelCase{"MultiLabel", Task::MultiLabel, 0},
                                           ModelCase{"ClassesGelu", Task::Classes, 1}),
                         case_name);

class BiMambaGrad : public ::testing::TestWithParam<ModelCase> {};
TEST_P(BiMambaGrad, DirectionalDerivativeOfEveryParameter) {
  const ModelCase mc = GetParam();
  Model m(tiny_bimamba(mc.task, mc.variant == 1 ? "ew_multiply" : "add", mc.variant == 2 ? NormKind::RMS : NormKind::Layer),
          41);
  perturb(m, 0.1, 42);
  Rng rng(43);
  for (auto* l : {m.backbone.layers[0].get(), m.backbone.layers[1].get(), m.backbone.layers[0]->rev.get(),
                  m.backbone.layers[1]->rev.get()})
    for (int64_t i = 0; i < l->dt_b.w.numel(); ++i) l->dt_b.w[i] = float(0.5 * rng.normal());  // A matters
  Batch b = tiny_batch(mc.task, 7, m.cfg.num_labels, rng);
  expect_directional_gradients(m, b, 44);
}
INSTANTIATE_TEST_SUITE_P(Heads, BiMambaGrad,
                         ::testing::Values(ModelCase{"ClassesAdd", Task::Classes, 0},
                                           ModelCase{"RegressionMultiply", Task::Regression, 1},
                                           ModelCase{"MultiLabelAddRMS", Task::MultiLabel, 2}),
                         case_name);

// ---- models: semantics -----------------------------------------------------------------

namespace {
std::vector<float> copy_out(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

// Batch `b` with `extra` more PAD positions at the end of every sequence.
Batch pad_more(const Batch& b, int64_t extra) {
  Batch o = b;
  o.len = b.len + extra;
  o.ids.clear();
  o.mask.clear();
  for (int64_t s = 0; s < b.batch; ++s) {
    for (int64_t t = 0; t < b.len; ++t) o.ids.push_back(b.ids[s * b.len + t]), o.mask.push_back(b.mask[s * b.len + t]);
    for (int64_t t = 0; t < extra; ++t) o.ids.push_back(0), o.mask.push_back(0);
  }
  return o;
}
// Sequence s alone, cut to its real length.
Batch alone(const Batch& b, int64_t s) {
  Batch o;
  o.batch = 1;
  for (int64_t t = 0; t < b.len; ++t)
    if (b.mask[s * b.len + t]) o.ids.push_back(b.ids[s * b.len + t]), o.mask.push_back(1);
  o.len = int64_t(o.ids.size());
  return o;
}
}  // namespace

TEST(CnnModel, BatchNormRunningStatisticsAndEvalMode) {
  CnnClassifier m(tiny_cnn(Task::Classes, false), 51);
  Rng rng(52);
  Batch b = tiny_batch(Task::Classes, 16, 3, rng);
  auto rm0 = copy_out(m.blocks[0].run_mean.w), rv0 = copy_out(m.blocks[0].run_var.w);
  EXPECT_EQ(rm0, std::vector<float>(6, 0.0f));
  EXPECT_EQ(rv0, std::vector<float>(6, 1.0f));
  // Eval: running statistics, untouched; each sequence's output is its own.
  auto e1 = copy_out(m.forward(b, false));
  EXPECT_EQ(copy_out(m.blocks[0].run_mean.w), rm0);
  EXPECT_EQ(m.batches_tracked(0), 0);
  Batch b0 = b;
  b0.batch = 1;
  b0.ids.resize(16), b0.mask.resize(16), b0.labels.resize(1);
  auto e0 = copy_out(m.forward(b0, false));
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(e0[j], e1[j], 1e-5);
  // Training: batch statistics; the running ones move by momentum 0.1 towards them.
  auto t1 = copy_out(m.forward(b, true, 7));
  EXPECT_EQ(m.batches_tracked(0), 1);
  double moved = 0;
  for (int c = 0; c < 6; ++c) {
    moved += std::abs(m.blocks[0].run_mean.w[c]) + std::abs(m.blocks[0].run_var.w[c] - 1.0f);
    EXPECT_GT(m.blocks[0].run_var.w[c], 0.9f * 1.0f);  // (1−m)·1 + m·(positive variance)
  }
  EXPECT_GT(moved, 1e-3);
  auto t0 = copy_out(m.forward(b0, true, 7));
  double diff = 0;
  for (int j = 0; j < 3; ++j) diff += std::abs(t0[j] - t1[j]);
  EXPECT_GT(diff, 1e-4);  // in training, a sequence's output depends on its batch
  auto e2 = copy_out(m.forward(b, false));
  double ediff = 0;
  for (size_t j = 0; j < e1.size(); ++j) ediff += std::abs(e2[j] - e1[j]);
  EXPECT_GT(ediff, 1e-5);  // eval now uses the updated statistics
}

TEST(CnnModel, PaddingPlainMeanVersusMaskedMode) {
  Rng rng(61);
  Batch b = tiny_batch(Task::Classes, 16, 3, rng);
  // Seed semantics (plain mean over positions): appended padding changes the output.
  CnnClassifier plain(tiny_cnn(Task::Classes, false), 62);
  auto p1 = copy_out(plain.forward(b, false));
  auto p2 = copy_out(plain.forward(pad_more(b, 8), false));
  double d = 0;
  for (size_t j = 0; j < p1.size(); ++j) d += std::abs(p1[j] - p2[j]);
  EXPECT_GT(d, 1e-4);
  // mask_padding: every sequence as if alone at its own length.
  CnnClassifier masked(tiny_cnn(Task::Classes, true), 62);
  auto m1 = copy_out(masked.forward(b, false));
  auto m2 = copy_out(masked.forward(pad_more(b, 8), false));
  for (size_t j = 0; j < m1.size(); ++j) EXPECT_NEAR(m1[j], m2[j], 1e-5);
  for (int64_t s = 0; s < 3; ++s) {
    auto a = copy_out(masked.forward(alone(b, s), false));
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(a[j], m1[s * 3 + j], 1e-5) << "sequence " << s;
  }
  // Training-mode statistics count real positions only: appended padding changes nothing.
  auto tm1 = copy_out(masked.forward(b, true, 3));
  auto tm2 = copy_out(masked.forward(pad_more(b, 8), true, 3));
  for (size_t j = 0; j < tm1.size(); ++j) EXPECT_NEAR(tm1[j], tm2[j], 1e-5);
  Batch short_seq = b;
  for (int64_t t = 3; t < 16; ++t) short_seq.ids[t] = 0, short_seq.mask[t] = 0;
  EXPECT_THROW(masked.forward(short_seq, false), Error);  // 3 real tokens, 2 poolings need 4
}

TEST(TransformerModel, KeyPaddingMaskMakesAppendedPaddingInvisible) {
  TransformerClassifier m(tiny_transformer(Task::Classes, "relu"), 71);
  perturb(m, 0.05, 72);
  Rng rng(73);
  Batch b = tiny_batch(Task::Classes, 7, 3, rng);
  auto o1 = copy_out(m.forward(b, false));
  auto o2 = copy_out(m.forward(pad_more(b, 4), false));
  for (size_t j = 0; j < o1.size(); ++j) EXPECT_NEAR(o1[j], o2[j], 1e-5);
  for (int64_t s = 0; s < 3; ++s) {
    auto a = copy_out(m.forward(alone(b, s), false));
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(a[j], o1[s * 3 + j], 1e-5) << "sequence " << s;
  }
  // The mask matters: without it the padding tokens are attended to.
  Batch nomask = pad_more(b, 4);
  nomask.mask.assign(nomask.ids.size(), 1);
  auto o3 = copy_out(m.forward(nomask, false));
  double d = 0;
  for (size_t j = 0; j < o1.size(); ++j) d += std::abs(o1[j] - o3[j]);
  EXPECT_GT(d, 1e-4);
  // Dropout is active in training only, and reproducible from the seed.
  auto t1 = copy_out(m.forward(b, true, 5));
  auto t2 = copy_out(m.forward(b, true, 5));
  auto t3 = copy_out(m.forward(b, true, 6));
  EXPECT_EQ(t1, t2);
  EXPECT_NE(t1, t3);
}

TEST(BiMamba, SeesLaterTokensAndIgnoresAppendedPadding) {
  for (const char* combine : {"add", "ew_multiply"}) {
    ModelConfig cfg = tiny_bimamba(Task::Classes, combine, NormKind::Layer);
    Model m(cfg, 81);
    Rng rng(82);
    Batch b = tiny_batch(Task::Classes, 7, 3, rng);
    const int64_t D = cfg.mamba.d_model;
    // Position 1 of sequence 0 changes when token 4 changes (not so for the causal model).
    auto hidden_row = [&](Model& mm, const Batch& bb, int64_t row) {
      const Tensor& h = mm.backbone.forward(bb.ids.data(), bb.batch, bb.len, false, bb.mask.data());
      return std::vector<float>(h.data() + row * D, h.data() + (row + 1) * D);
    };
    Batch later = b;
    later.ids[4] = later.ids[4] == 1 ? 2 : 1;
    auto h1 = hidden_row(m, b, 1), h2 = hidden_row(m, later, 1);
    double d = 0;
    for (int64_t j = 0; j < D; ++j) d += std::abs(h1[j] - h2[j]);
    EXPECT_GT(d, 1e-4) << combine;
    ModelConfig causal = cfg;
    causal.mamba.bidirectional = false;
    Model c(causal, 81);
    EXPECT_EQ(hidden_row(c, b, 1), hidden_row(c, later, 1));
    // Padding appended or present: the reversal spans real tokens only.
    auto o1 = copy_out(m.forward(b, false));
    auto o2 = copy_out(m.forward(pad_more(b, 5), false));
    for (size_t j = 0; j < o1.size(); ++j) EXPECT_NEAR(o1[j], o2[j], 1e-5) << combine;
    for (int64_t s = 0; s < 3; ++s) {
      auto a = copy_out(m.forward(alone(b, s), false));
      for (int j = 0; j < 3; ++j) EXPECT_NEAR(a[j], o1[s * 3 + j], 1e-5) << combine << " sequence " << s;
    }
    // Training forward (all activations kept) equals inference forward without dropout.
    ModelConfig nodrop = cfg;
    nodrop.head_dropout = 0;
    Model nd(nodrop, 83);
    auto tr = copy_out(nd.forward(b, true));
    auto ev = copy_out(nd.forward(b, false));
    EXPECT_EQ(tr, ev);
  }
}

TEST(BiMamba, UnidirectionalModelsAreUnchanged) {
  // The flag off: no mixer_rev parameters and no new config keys. On: the reversed mixer
  // of layer l draws its initial values right after layer l's, so the embedding and
  // layer 0's forward mixer start exactly as in the unidirectional model.
  ModelConfig a = seed001_classifier(2);
  Model m(a, 5);
  for (Param* p : m.params()) EXPECT_EQ(p->name.find("mixer_rev"), std::string::npos);
  EXPECT_EQ(config_to_json(a).find("mambaseq_bidirectional"), std::string::npos);
  ModelConfig b = a;
  b.mamba.bidirectional = true;
  Model mb(b, 5);
  EXPECT_NE(config_to_json(b).find("\"mambaseq_bidirectional\": true"), std::string::npos);
  for (const char* n : {"backbone.embeddings.weight", "backbone.layers.0.mixer.in_proj.weight",
                        "backbone.layers.0.mixer.out_proj.weight"})
    EXPECT_EQ(copy_out(m.find(n)->w), copy_out(mb.find(n)->w)) << n;
  EXPECT_NE(copy_out(mb.find("backbone.layers.0.mixer.in_proj.weight")->w),
            copy_out(mb.find("backbone.layers.0.mixer_rev.in_proj.weight")->w));
}

// ---- checkpoints ------------------------------------------------------------------------

namespace {
std::string temp_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("mambaseq_test_baselines_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  return d.string();
}
}  // namespace

TEST(BaselineCheckpoint, CnnSaveLoadNetworkRoundTrip) {
  CnnConfig c = tiny_cnn(Task::Regression, true);
  c.num_labels = 2;
  CnnClassifier m(c, 91);
  Rng rng(92);
  Batch b = tiny_batch(Task::Regression, 16, 2, rng);
  m.forward(b, true, 1);  // non-trivial running statistics
  m.forward(b, true, 2);
  auto want = copy_out(m.forward(b, false));
  const std::string dir = temp_dir("cnn");
  m.save(dir);
  std::unique_ptr<Network> n = load_network(dir);
  ASSERT_EQ(n->arch(), "cnn");
  EXPECT_EQ(n->head(), HeadKind::Regression);
  auto* l = dynamic_cast<CnnClassifier*>(n.get());
  ASSERT_NE(l, nullptr);
  EXPECT_TRUE(l->cfg.mask_padding);
  EXPECT_EQ(l->cfg.kernel_sizes, c.kernel_sizes);
  EXPECT_EQ(l->batches_tracked(1), 2);
  EXPECT_EQ(copy_out(n->forward(b, false)), want);
  SafeTensorsReader f(dir + "/model.safetensors");
  EXPECT_TRUE(f.has("blocks.0.bn.running_var"));
  EXPECT_EQ(f.read_i64("blocks.1.bn.num_batches_tracked"), std::vector<int64_t>{2});
  EXPECT_EQ(f.info("blocks.1.conv.weight").shape, (Shape{6, 6, 3}));  // PyTorch [out, in, k]
  // A wrong config is an error naming the key.
  {
    std::ofstream o(dir + "/config.json");
    o << R"({"mambaseq_arch": "cnn", "kernel_sizes": [5, "x"]})";
  }
  try {
    load_network(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kernel_sizes"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(BaselineCheckpoint, TransformerSaveLoadNetworkRoundTrip) {
  TransformerConfig c = tiny_transformer(Task::Classes, "gelu");
  TransformerClassifier m(c, 93);
  perturb(m, 0.05, 94);
  Rng rng(95);
  Batch b = tiny_batch(Task::Classes, 7, 3, rng);
  auto want = copy_out(m.forward(b, false));
  const std::string dir = temp_dir("transformer");
  m.save(dir);
  std::unique_ptr<Network> n = load_network(dir);
  ASSERT_EQ(n->arch(), "transformer");
  auto* l = dynamic_cast<TransformerClassifier*>(n.get());
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->cfg.activation, "gelu");
  EXPECT_EQ(l->cfg.max_len, 12);
  EXPECT_EQ(copy_out(n->forward(b, false)), want);
  SafeTensorsReader f(dir + "/model.safetensors");
  EXPECT_EQ(f.info("encoder.layers.1.self_attn.in_proj_weight").shape, (Shape{24, 8}));
  EXPECT_EQ(f.info("pos_embedding").shape, (Shape{1, 13, 8}));
  std::filesystem::remove_all(dir);
}

TEST(BaselineCheckpoint, BidirectionalMambaSaveLoadNetworkRoundTrip) {
  ModelConfig c = tiny_bimamba(Task::Classes, "ew_multiply", NormKind::Layer);
  Model m(c, 96);
  perturb(m, 0.05, 97);
  Rng rng(98);
  Batch b = tiny_batch(Task::Classes, 7, 3, rng);
  auto want = copy_out(m.forward(b, false));
  const std::string dir = temp_dir("bimamba");
  m.save(dir);
  ModelConfig r = read_model_config(dir + "/config.json");
  EXPECT_TRUE(r.mamba.bidirectional);
  EXPECT_EQ(r.mamba.bidir_combine, "ew_multiply");
  std::unique_ptr<Network> n = load_network(dir);
  ASSERT_EQ(n->arch(), "mamba");
  EXPECT_EQ(copy_out(n->forward(b, false)), want);
  SafeTensorsReader f(dir + "/model.safetensors");
  EXPECT_TRUE(f.has("backbone.layers.1.mixer_rev.out_proj.weight"));
  std::filesystem::remove_all(dir);
}
