// The model: parameter counts, every option of the config, and end-to-end gradients
// (directional finite differences per parameter tensor) for every head.
#include <gtest/gtest.h>

#include <cmath>

#include "mambaseq/error.h"
#include "mambaseq/model.h"
#include "tests/gradcheck.h"

using namespace mambaseq;

TEST(ModelConfig, PublishedParameterCounts) {
  const std::pair<const char*, int64_t> expected[] = {{"130m", 129135360},
                                                      {"370m", 371516416},
                                                      {"790m", 793204224},
                                                      {"1.4b", 1372178432},
                                                      {"2.8b", 2768345600}};
  for (auto [name, n] : expected) {
    ModelConfig m;
    m.mamba = variant_config(name);
    EXPECT_EQ(count_parameters(m), n) << name;
  }
  EXPECT_THROW(variant_config("7b"), Error);
}

TEST(ModelConfig, Seed001ClassifierHas5261826Parameters) {
  ModelConfig cfg = seed001_classifier(2);
  EXPECT_EQ(count_parameters(cfg), 5261826);
  Model m(cfg, 1);
  EXPECT_EQ(m.num_parameters(), 5261826);
}

TEST(ModelConfig, CountMatchesAllocatedParametersForEveryOption) {
  for (int norm = 0; norm < 2; ++norm)
    for (int bias = 0; bias < 2; ++bias)
      for (int tie = 0; tie < 2; ++tie)
        for (HeadKind head : {HeadKind::LM, HeadKind::SequenceClassification, HeadKind::Regression}) {
          ModelConfig c;
          c.mamba.d_model = 12;
          c.mamba.n_layer = 2;
          c.mamba.vocab_size = 11;
          c.mamba.d_state = 5;
          c.mamba.d_conv = 3;
          c.mamba.expand = 3;
          c.mamba.dt_rank = 2;
          c.mamba.norm = norm ? NormKind::Layer : NormKind::RMS;
          c.mamba.use_bias = bias;
          c.mamba.use_conv_bias = !bias;
          c.mamba.tie_embeddings = tie;
          c.head = head;
          c.num_labels = 3;
          Model m(c, 2);
          EXPECT_EQ(m.num_parameters(), count_parameters(c));
          EXPECT_EQ(m.backbone.embedding.w.dim(0), 16);  // 11 padded to a multiple of 8
        }
}

TEST(ModelConfig, BadValuesAreErrorsNamingTheValue) {
  ModelConfig c;
  c.mamba.d_state = 0;
  try {
    c.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("d_state"), std::string::npos);
  }
  c = ModelConfig{};
  c.head = HeadKind::SequenceClassification;
  c.num_labels = 1;
  EXPECT_THROW(c.validate(), Error);
  c = ModelConfig{};
  c.head_dropout = 1.0;
  EXPECT_THROW(c.validate(), Error);
}

TEST(ModelInit, MatchesTheReferenceInitialisation) {
  ModelConfig c;
  c.mamba.d_model = 32;
  c.mamba.n_layer = 4;
  c.mamba.vocab_size = 50;
  Model m(c, 3);
  auto& l = *m.backbone.layers[1];
  const int64_t Di = 64, N = 16;
  for (int64_t d = 0; d < Di; ++d) {
    EXPECT_EQ(l.Dp.w[d], 1.0f);
    for (int64_t n = 0; n < N; ++n) EXPECT_FLOAT_EQ(l.A_log.w[d * N + n], std::log(float(n + 1)));
    const double b = l.dt_b.w[d];
    const double dt = std::log1p(std::exp(b));  // softplus(bias) is the initial dt
    EXPECT_GE(dt, 1e-3 * 0.999);
    EXPECT_LE(dt, 0.1 * 1.001);
  }
  const double s = std::pow(2.0, -0.5);  // dt_rank = ceil(32/16) = 2
  for (int64_t i = 0; i < l.dt_w.w.numel(); ++i) EXPECT_LE(std::abs(l.dt_w.w[i]), s);
  const double ob = 1.0 / std::sqrt(64.0) / std::sqrt(4.0);  // rescaled by 1/sqrt(n_layer)
  double mx = 0;
  for (int64_t i = 0; i < l.out_w.w.numel(); ++i) mx = std::max(mx, double(std::abs(l.out_w.w[i])));
  EXPECT_LE(mx, ob);
  EXPECT_GT(mx, 0.8 * ob);
  double ss = 0;
  for (int64_t i = 0; i < m.backbone.embedding.w.numel(); ++i) ss += double(m.backbone.embedding.w[i]) * m.backbone.embedding.w[i];
  EXPECT_NEAR(std::sqrt(ss / m.backbone.embedding.w.numel()), 0.02, 0.002);
  // Weight decay only where the reference applies it.
  for (Param* p : m.params()) {
    const bool no_decay = p->name.find("A_log") != std::string::npos || p->name.ends_with(".D") ||
                          p->name.find("norm") != std::string::npos || p->name.ends_with("bias");
    EXPECT_EQ(p->decay, !no_decay) << p->name;
  }
}

namespace {

ModelConfig tiny(HeadKind head, NormKind norm, bool bias, bool tie) {
  ModelConfig c;
  c.mamba.d_model = 8;
  c.mamba.n_layer = 2;
  c.mamba.vocab_size = 7;
  c.mamba.pad_vocab_size_multiple = 1;
  c.mamba.d_state = 4;
  c.mamba.d_conv = 3;
  c.mamba.expand = 2;
  c.mamba.dt_rank = 2;
  c.mamba.norm = norm;
  c.mamba.use_bias = bias;
  c.mamba.tie_embeddings = tie;
  c.mamba.rescale_prenorm_residual = false;
  c.head = head;
  c.num_labels = 3;
  c.head_dropout = 0.2;
  return c;
}

Batch tiny_batch(HeadKind head, Rng& rng) {
  Batch b;
  b.batch = 3;
  b.len = 6;
  for (int64_t i = 0; i < b.batch * b.len; ++i) b.ids.push_back(1 + int32_t(rng.below(6)));
  // Right padding on the second sequence.
  b.ids[1 * 6 + 4] = 0;
  b.ids[1 * 6 + 5] = 0;
  switch (head) {
    case HeadKind::LM:
      for (int64_t i = 0; i < b.batch * b.len; ++i) b.labels.push_back(int32_t(rng.below(7)));
      b.labels[2] = kIgnoreIndex;
      break;
    case HeadKind::TokenClassification:
      for (int64_t i = 0; i < b.batch * b.len; ++i) b.labels.push_back(int32_t(rng.below(3)));
      b.labels[5] = kIgnoreIndex;
      break;
    case HeadKind::SequenceClassification:
      b.labels = {0, 2, 1};
      break;
    case HeadKind::Regression:
      for (int i = 0; i < 9; ++i) b.targets.push_back(float(rng.normal()));
      break;
  }
  return b;
}

}  // namespace

struct GradCase {
  HeadKind head;
  NormKind norm;
  bool bias, tie;
};
void PrintTo(const GradCase& c, std::ostream* os) {
  *os << head_name(c.head) << (c.norm == NormKind::RMS ? "_rms" : "_layernorm") << (c.bias ? "_bias" : "")
      << (c.tie ? "_tied" : "");
}

class ModelGrad : public ::testing::TestWithParam<GradCase> {};

// For each parameter tensor P and a random direction v in it:
//   (L(P + εv) − L(P − εv)) / 2ε  ≈  ⟨∂L/∂P, v⟩
// on the fp32 model. The kernels' own checks (test_kernels) are in double and tight;
// this one proves the wiring of layers and heads.
TEST_P(ModelGrad, DirectionalDerivativeOfEveryParameter) {
  const GradCase gc = GetParam();
  ModelConfig cfg = tiny(gc.head, gc.norm, gc.bias, gc.tie);
  Model m(cfg, 11);
  Rng rng(12);
  // Move D, norms and biases off their initial values so no term is trivially 1 or 0.
  for (Param* p : m.params())
    for (int64_t i = 0; i < p->w.numel(); ++i) p->w[i] += float(0.1 * rng.normal());
  // dt ≈ softplus(0) ≈ 0.7 rather than the initial 0.001–0.1, so that A matters.
  for (auto& l : m.backbone.layers)
    for (int64_t i = 0; i < l->dt_b.w.numel(); ++i) l->dt_b.w[i] = float(0.5 * rng.normal());
  Batch b = tiny_batch(gc.head, rng);
  const uint64_t dseed = 99;
  m.zero_grad();
  m.forward(b, true, dseed);
  const double l0 = m.loss(b);
  ASSERT_TRUE(std::isfinite(l0));
  m.backward(b);
  for (Param* p : m.params()) {
    std::vector<float> v(p->w.numel()), w0(p->w.data(), p->w.data() + p->w.numel());
    double analytic = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      v[i] = float(rng.normal());
      analytic += double(v[i]) * p->g[i];
    }
    const double eps = 1e-2;
    auto loss_at = [&](double s) {
      for (size_t i = 0; i < v.size(); ++i) p->w[i] = float(w0[i] + s * v[i]);
      m.forward(b, true, dseed);
      return m.loss(b);
    };
    // Richardson extrapolation of two central differences: truncation O(ε⁴), so ε can
    // be large enough for fp32 rounding of the loss not to matter.
    const double d1 = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    const double d2 = (loss_at(eps / 2) - loss_at(-eps / 2)) / eps;
    const double numeric = (4 * d2 - d1) / 3;
    for (size_t i = 0; i < v.size(); ++i) p->w[i] = w0[i];
    EXPECT_LT(std::abs(numeric - analytic), 5e-3 * std::abs(analytic) + 2e-5)
        << p->name << ": numeric " << numeric << " analytic " << analytic;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Heads, ModelGrad,
    ::testing::Values(GradCase{HeadKind::LM, NormKind::RMS, false, true},
                      GradCase{HeadKind::LM, NormKind::Layer, true, false},
                      GradCase{HeadKind::SequenceClassification, NormKind::Layer, false, false},
                      GradCase{HeadKind::TokenClassification, NormKind::RMS, true, false},
                      GradCase{HeadKind::Regression, NormKind::RMS, false, false}));

TEST(Model, CausalAndPaddingDoesNotLeakIntoPooling) {
  ModelConfig cfg = tiny(HeadKind::SequenceClassification, NormKind::Layer, false, false);
  Model m(cfg, 5);
  Rng rng(6);
  Batch b = tiny_batch(HeadKind::SequenceClassification, rng);
  std::vector<float> a(m.forward(b, false).data(), m.forward(b, false).data() + 9);
  // Changing a padded position's id to another pad-equivalent does nothing; the model
  // is causal and pooling skips padding, so extending the padding region is invisible.
  Batch b2 = b;
  b2.len = 8;
  b2.ids.clear();
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t t = 0; t < 6; ++t) b2.ids.push_back(b.ids[s * 6 + t]);
    b2.ids.push_back(0);
    b2.ids.push_back(0);
  }
  const Tensor& o2 = m.forward(b2, false);
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(o2[i], a[i], 1e-5);
}

TEST(Model, InferenceForwardEqualsTrainingForwardWithoutDropout) {
  ModelConfig cfg = tiny(HeadKind::LM, NormKind::RMS, false, true);
  Model m(cfg, 7);
  Rng rng(8);
  Batch b = tiny_batch(HeadKind::LM, rng);
  const Tensor& t1 = m.forward(b, true);
  std::vector<float> a(t1.data(), t1.data() + t1.numel());
  const Tensor& t2 = m.forward(b, false);
  for (int64_t i = 0; i < t2.numel(); ++i) EXPECT_EQ(t2[i], a[i]);
}

TEST(Model, BadBatchesAreErrors) {
  Model m(tiny(HeadKind::SequenceClassification, NormKind::RMS, false, false), 1);
  Rng rng(2);
  Batch b = tiny_batch(HeadKind::SequenceClassification, rng);
  b.ids.pop_back();
  EXPECT_THROW(m.forward(b, false), Error);
  b = tiny_batch(HeadKind::SequenceClassification, rng);
  b.ids[0] = 40;  // outside the vocabulary
  EXPECT_THROW(m.forward(b, false), Error);
  b = tiny_batch(HeadKind::SequenceClassification, rng);
  m.forward(b, true);
  b.labels = {0, 1};
  EXPECT_THROW(m.loss(b), Error);
  b.labels = {0, 1, 5};
  EXPECT_THROW(m.loss(b), Error);
}
