// Parity with Hugging Face transformers' MambaForCausalLM (tests/data/hf-tiny, made in
// float64 by transformers 5.17): logits and last hidden state within 1e-5, every
// parameter gradient of loss = Σ logits ⊙ W within 1e-4 (relative L2).
#include <gtest/gtest.h>

#include <cmath>

#include "mambaseq/checkpoint.h"
#include "mambaseq/safetensors.h"

using namespace mambaseq;

namespace {
const std::string kDir = std::string(MAMBASEQ_TEST_DATA) + "/hf-tiny";

double rel_l2(const float* a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}
}  // namespace

TEST(Parity, HfTinyForwardAndGradients) {
  auto model = load_model(kDir);
  EXPECT_EQ(model->cfg.mamba.d_model, 48);
  EXPECT_EQ(model->cfg.mamba.n_layer, 2);
  EXPECT_EQ(model->cfg.mamba.dt_rank_value(), 3);
  EXPECT_EQ(model->cfg.mamba.vocab_padded(), 37);
  SafeTensorsReader ref(kDir + "/reference.safetensors");
  auto ids64 = ref.read_i64("input_ids");
  ASSERT_EQ(ref.info("input_ids").shape, (Shape{2, 33}));
  Batch b;
  b.batch = 2;
  b.len = 33;
  b.ids.assign(ids64.begin(), ids64.end());
  b.mask.assign(ids64.size(), 1);  // token 0 is a real token here (bos = pad = 0 in this config)

  model->zero_grad();
  const Tensor& logits = model->forward(b, /*training=*/true);
  ASSERT_EQ(logits.shape(), (Shape{66, 37}));
  const double e_logits = rel_l2(logits.data(), ref.read_f64("logits"));
  const double e_hidden = rel_l2(model->backbone.hidden().data(), ref.read_f64("last_hidden_state"));
  EXPECT_LT(e_logits, 1e-5);
  EXPECT_LT(e_hidden, 1e-5);

  Tensor W = ref.read_f32("loss_weights");
  double loss = 0;
  for (int64_t i = 0; i < W.numel(); ++i) loss += double(logits[i]) * W[i];
  EXPECT_NEAR(loss, ref.read_f64("loss")[0], 1e-4 * std::abs(ref.read_f64("loss")[0]));
  model->backward_from_output(W.data(), 2, 33);
  int checked = 0;
  double worst = 0;
  for (Param* p : model->params()) {
    const double e = rel_l2(p->g.data(), ref.read_f64("grad." + p->name));
    EXPECT_LT(e, 1e-4) << p->name;
    worst = std::max(worst, e);
    ++checked;
  }
  EXPECT_EQ(checked, 22);  // embedding, 2 × 10 per layer, norm_f
  std::printf("parity: logits %.2e  hidden %.2e  worst gradient %.2e\n", e_logits, e_hidden, worst);
}
