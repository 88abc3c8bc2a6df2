// Generation: greedy decoding equals repeated full forwards, sampling follows the
// distribution it claims (temperature, top-k, top-p, repetition penalty), seeds
// reproduce, a prompt continues the same way alone or in a batch, stop tokens and
// max_new_tokens end sequences, tokens stream through the callback.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "mambaseq/error.h"
#include "mambaseq/generate.h"

using namespace mambaseq;

namespace {

std::unique_ptr<Model> make_lm(uint64_t seed, int64_t vocab = 40) {
  ModelConfig c;
  c.head = HeadKind::LM;
  c.mamba.d_model = 32;
  c.mamba.n_layer = 2;
  c.mamba.vocab_size = vocab;
  c.mamba.d_state = 8;
  auto m = std::make_unique<Model>(c, seed);
  // Larger weights than the init so that the logits are far from uniform.
  Rng rng(seed + 1);
  for (Param* p : m->params())
    if (p->name.find("embeddings") != std::string::npos)
      for (int64_t i = 0; i < p->w.numel(); ++i) p->w[i] = static_cast<float>(0.25 * rng.normal());
  return m;
}

// Greedy continuation by running the full forward on the growing sequence.
std::vector<int32_t> greedy_by_full_forward(Model& m, std::vector<int32_t> ids, int64_t n) {
  const int64_t V = m.cfg.mamba.vocab_padded(), lim = m.cfg.mamba.vocab_size;
  std::vector<int32_t> out;
  for (int64_t k = 0; k < n; ++k) {
    Batch b;
    b.batch = 1;
    b.len = static_cast<int64_t>(ids.size());
    b.ids = ids;
    b.mask.assign(ids.size(), 1);
    const Tensor& z = m.forward(b, false);
    const float* last = z.data() + (b.len - 1) * V;
    const int32_t t = static_cast<int32_t>(std::max_element(last, last + lim) - last);
    out.push_back(t);
    ids.push_back(t);
  }
  return out;
}

}  // namespace

TEST(Generate, GreedyEqualsRepeatedFullForwardForABatchOfDifferentLengths) {
  auto mp = make_lm(1);
  Model& m = *mp;
  InferenceEngine eng(m);
  std::vector<std::vector<int32_t>> prompts = {{5}, {1, 2, 3, 4, 5, 6, 7}, {9, 9, 30}};
  GenerateOptions o;
  o.greedy = true;
  o.max_new_tokens = 12;
  std::vector<std::vector<int32_t>> streamed(3);
  auto r = generate(eng, prompts, o, [&](int64_t b, int32_t t) { streamed[b].push_back(t); });
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(r.tokens[b], greedy_by_full_forward(m, prompts[b], 12)) << "sequence " << b;
    EXPECT_EQ(streamed[b], r.tokens[b]);
    EXPECT_EQ(r.reason[b], StopReason::MaxTokens);
    EXPECT_EQ(r.generated[b], 12);
  }
  EXPECT_EQ(r.steps, 11);  // the first token comes from the prefill's logits
}

TEST(Generate, SeedsReproduceAndBatchCompositionDoesNotMatter) {
  auto mp = make_lm(2);
  Model& m = *mp;
  InferenceEngine eng(m);
  GenerateOptions o;
  o.temperature = 1.3;
  o.top_k = 20;
  o.top_p = 0.95;
  o.repetition_penalty = 1.2;
  o.max_new_tokens = 25;
  o.seed = 77;
  std::vector<std::vector<int32_t>> prompts = {{3, 4}, {7}, {8, 1, 2, 3, 4}};
  auto a = generate(eng, prompts, o);
  auto b = generate(eng, prompts, o);
  EXPECT_EQ(a.tokens, b.tokens);
  // The first prompt alone: index 0 again, so the same random stream.
  GenerateOptions o1 = o;
  auto alone = generate(eng, {prompts[0]}, o1);
  EXPECT_EQ(alone.tokens[0], a.tokens[0]);
  o.seed = 78;
  auto c = generate(eng, prompts, o);
  EXPECT_NE(c.tokens, a.tokens);
}

TEST(Generate, StopTokensAndLimits) {
  auto mp = make_lm(3);
  Model& m = *mp;
  InferenceEngine eng(m);
  GenerateOptions o;
  o.greedy = true;
  o.max_new_tokens = 10;
  auto free_run = generate(eng, {{1, 2}, {3}}, o);
  // Stop on sequence 0's fourth greedy token (unless it occurs earlier).
  const int32_t stop = free_run.tokens[0][3];
  const int64_t first = std::find(free_run.tokens[0].begin(), free_run.tokens[0].end(), stop) - free_run.tokens[0].begin();
  o.stop_tokens = {stop};
  auto r = generate(eng, {{1, 2}, {3}}, o);
  EXPECT_EQ(r.reason[0], StopReason::StopToken);
  EXPECT_EQ(static_cast<int64_t>(r.tokens[0].size()), first);  // the stop token is not emitted
  EXPECT_EQ(r.generated[0], first + 1);
  EXPECT_TRUE(std::equal(r.tokens[0].begin(), r.tokens[0].end(), free_run.tokens[0].begin()));
  o.max_new_tokens = 0;
  EXPECT_TRUE(generate(eng, {{1}}, o).tokens[0].empty());
  o.max_new_tokens = 1;
  o.stop_tokens.clear();
  EXPECT_EQ(generate(eng, {{1}}, o).tokens[0].size(), 1u);
  // Bad options name themselves.
  GenerateOptions bad;
  bad.top_p = 0;
  EXPECT_THROW(generate(eng, {{1}}, bad), Error);
  bad = GenerateOptions();
  bad.temperature = -1;
  EXPECT_THROW(generate(eng, {{1}}, bad), Error);
  bad = GenerateOptions();
  bad.stop_tokens = {1000};
  EXPECT_THROW(generate(eng, {{1}}, bad), Error);
  EXPECT_THROW(generate(eng, {{}}, GenerateOptions()), Error);
  EXPECT_THROW(generate(eng, {{1, 99}}, GenerateOptions()), Error);  // id outside the vocabulary
}

TEST(Sampler, FollowsTheFilteredDistribution) {
  // Logits log(p) for p = 0.4 0.3 0.2 0.1 (and two more ids beyond vocab_limit).
  const std::vector<float> base = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f), 50.f, 50.f};
  auto freq = [&](GenerateOptions o, int n) {
    Sampler s(o, 6, 1, 4);
    Rng rng(5);
    std::vector<double> f(6, 0);
    for (int i = 0; i < n; ++i) {
      std::vector<float> z = base;
      f[s.sample(0, z.data(), rng)] += 1.0 / n;
    }
    return f;
  };
  const int n = 40000;
  GenerateOptions o;
  auto f = freq(o, n);
  for (int v = 0; v < 4; ++v) EXPECT_NEAR(f[v], std::exp(base[v]), 0.01) << v;
  EXPECT_EQ(f[4] + f[5], 0.0);  // beyond the vocabulary limit
  o.temperature = 0.5;  // p^2 renormalised: .16 .09 .04 .01 over .30
  f = freq(o, n);
  EXPECT_NEAR(f[0], 0.16 / 0.30, 0.01);
  EXPECT_NEAR(f[3], 0.01 / 0.30, 0.005);
  o = GenerateOptions();
  o.top_k = 2;
  f = freq(o, n);
  EXPECT_NEAR(f[0], 0.4 / 0.7, 0.01);
  EXPECT_NEAR(f[1], 0.3 / 0.7, 0.01);
  EXPECT_EQ(f[2] + f[3], 0.0);
  o = GenerateOptions();
  o.top_p = 0.85;  // .4 + .3 + .2 = .9 reaches it: the three most likely
  f = freq(o, n);
  EXPECT_NEAR(f[2], 0.2 / 0.9, 0.01);
  EXPECT_EQ(f[3], 0.0);
  o.top_p = 0.3;  // the first alone reaches it
  f = freq(o, 100);
  EXPECT_NEAR(f[0], 1.0, 1e-9);
  // Repetition penalty: a seen token with a positive logit is divided, a negative one multiplied.
  GenerateOptions g;
  g.greedy = true;
  g.repetition_penalty = 4.0;
  Sampler s(g, 3, 1, 3);
  Rng rng(1);
  std::vector<float> z = {2.0f, 1.0f, -1.0f};
  EXPECT_EQ(s.sample(0, z.data(), rng), 0);
  s.observe(0, 0);
  z = {2.0f, 1.0f, -1.0f};
  EXPECT_EQ(s.sample(0, z.data(), rng), 1);  // 2 / 4 = 0.5 < 1
  EXPECT_FLOAT_EQ(z[0], 0.5f);
  s.observe(0, 2);
  z = {2.0f, 1.0f, -1.0f};
  s.sample(0, z.data(), rng);
  EXPECT_FLOAT_EQ(z[2], -4.0f);
}
