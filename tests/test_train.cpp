// Training: optimizer, schedule, clipping, metrics, checkpoints, exact resume, NaN stop.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mambaseq/baselines.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/data.h"
#include "mambaseq/error.h"
#include "mambaseq/splits.h"
#include "mambaseq/trainer.h"

using namespace mambaseq;
namespace fs = std::filesystem;

namespace {
std::string tmpdir(const std::string& name) {
  std::string d = ::testing::TempDir() + "mambaseq_" + name + "_" + std::to_string(::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

ModelConfig small_classifier() {
  ModelConfig c = seed001_classifier(2);
  c.mamba.d_model = 16;
  c.mamba.n_layer = 2;
  c.mamba.d_state = 4;
  c.head_dropout = 0.1;
  return c;
}
}  // namespace

TEST(Optim, AdamWStepMatchesTheFormula) {
  Param a("a", {3}, true), b("b", {2}, false);
  const float w0[3] = {0.5f, -1.0f, 2.0f}, g0[3] = {0.1f, -0.2f, 0.3f};
  for (int i = 0; i < 3; ++i) a.w[i] = w0[i], a.g[i] = g0[i];
  b.w[0] = 1.0f, b.w[1] = -1.0f, b.g[0] = 0.5f, b.g[1] = 0.0f;
  AdamWConfig c;
  c.lr = 0.01;
  c.weight_decay = 0.1;
  AdamW opt({&a, &b}, c);
  for (int t = 1; t <= 2; ++t) opt.step(0.01);
  // Two steps with the same gradient, by hand in double.
  for (int i = 0; i < 3; ++i) {
    double w = w0[i], m = 0, v = 0;
    for (int t = 1; t <= 2; ++t) {
      w *= 1 - 0.01 * 0.1;
      m = 0.9 * m + 0.1 * g0[i];
      v = 0.999 * v + 0.001 * g0[i] * g0[i];
      const double mh = m / (1 - std::pow(0.9, t)), vh = v / (1 - std::pow(0.999, t));
      w -= 0.01 * mh / (std::sqrt(vh) + 1e-8);
    }
    EXPECT_NEAR(a.w[i], w, 1e-6);
  }
  EXPECT_NEAR(b.w[0], 1.0 - 2 * 0.01, 1e-5);  // no decay: only the Adam steps (±lr each)
  EXPECT_EQ(b.w[1], -1.0f);                   // zero gradient, no decay: unchanged
}

TEST(Optim, CosineScheduleWithWarmup) {
  EXPECT_DOUBLE_EQ(cosine_lr(0, 100, 10, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(cosine_lr(5, 100, 10, 1.0), 0.5);
  EXPECT_DOUBLE_EQ(cosine_lr(10, 100, 10, 1.0), 1.0);
  EXPECT_NEAR(cosine_lr(55, 100, 10, 1.0), 0.5, 1e-12);
  EXPECT_NEAR(cosine_lr(100, 100, 10, 1.0, 0.1), 0.1, 1e-12);
  EXPECT_GT(cosine_lr(30, 100, 10, 1.0), cosine_lr(31, 100, 10, 1.0));
}

TEST(Optim, GlobalNormClipping) {
  Param a("a", {2}), b("b", {1});
  a.g[0] = 3, a.g[1] = 0, b.g[0] = 4;  // norm 5
  EXPECT_DOUBLE_EQ(clip_grad_norm({&a, &b}, 1.0), 5.0);
  EXPECT_NEAR(a.g[0], 0.6, 1e-6);
  EXPECT_NEAR(b.g[0], 0.8, 1e-6);
  EXPECT_NEAR(clip_grad_norm({&a, &b}, 10.0), 1.0, 1e-5);  // below the bound: untouched
  EXPECT_NEAR(a.g[0], 0.6, 1e-6);
}

TEST(Metrics, KnownValues) {
  // 2×2: TP 3, FN 1, FP 2, TN 4
  std::vector<int32_t> y{1, 1, 1, 1, 0, 0, 0, 0, 0, 0}, p{1, 1, 1, 0, 1, 1, 0, 0, 0, 0};
  ClassMetrics m = classification_metrics(y, p, {}, 2);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.7);
  EXPECT_NEAR(m.mcc, (3.0 * 4 - 2.0 * 1) / std::sqrt(5.0 * 4 * 6 * 5), 1e-12);
  EXPECT_DOUBLE_EQ(m.precision, 0.6);
  EXPECT_DOUBLE_EQ(m.recall, 0.75);
  EXPECT_NEAR(m.specificity, 4.0 / 6, 1e-12);
  EXPECT_EQ(m.confusion[1][0], 1);
  std::vector<float> probs;
  const float s[10] = {0.9f, 0.8f, 0.7f, 0.2f, 0.6f, 0.3f, 0.1f, 0.15f, 0.05f, 0.25f};
  for (float v : s) probs.push_back(1 - v), probs.push_back(v);
  m = classification_metrics(y, p, probs, 2);
  // Positives' scores 0.9 0.8 0.7 0.2; negatives' 0.6 0.3 0.1 0.15 0.05 0.25: 21 of 24 pairs ordered.
  EXPECT_NEAR(m.auroc, 21.0 / 24, 1e-12);
  EXPECT_NEAR(m.auprc, (1 + 1 + 1 + 4.0 / 7) / 4, 1e-12);
  // Multi-class MCC of a perfect prediction is 1; of a constant one is 0.
  std::vector<int32_t> y3{0, 1, 2, 2, 1, 0};
  EXPECT_NEAR(classification_metrics(y3, y3, {}, 3).mcc, 1.0, 1e-12);
  EXPECT_NEAR(classification_metrics(y3, std::vector<int32_t>(6, 1), {}, 3).mcc, 0.0, 1e-12);
  // Macro-F1 of the 2×2 above: F1 = 2TP / (2TP + FP + FN) per class, class 0 (TP 4, FP 1,
  // FN 2) 8/11, class 1 (TP 3, FP 2, FN 1) 6/9.
  EXPECT_NEAR(m.macro_f1, (8.0 / 11 + 6.0 / 9) / 2, 1e-12);
  // 3 classes, confusion [[4, 1, 1], [0, 3, 2], [1, 0, 2]] (rows true, columns predicted):
  // n 14, trace 9, true counts t = (6, 5, 3), predicted counts p = (5, 4, 5). Gorodkin's
  // R_K = (trace·n − Σ p_k t_k) / sqrt((n² − Σ p_k²)(n² − Σ t_k²))
  //     = (126 − 65) / sqrt((196 − 66)(196 − 70)).
  std::vector<int32_t> yt, yp;
  const int conf[3][3] = {{4, 1, 1}, {0, 3, 2}, {1, 0, 2}};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      for (int c = 0; c < conf[i][j]; ++c) yt.push_back(i), yp.push_back(j);
  m = classification_metrics(yt, yp, {}, 3);
  EXPECT_NEAR(m.mcc, 61.0 / std::sqrt(130.0 * 126), 1e-12);  // 0.4766
  EXPECT_NEAR(m.accuracy, 9.0 / 14, 1e-12);
  // Per class F1: 8/11 (TP 4, FP 1, FN 2), 6/9 (TP 3, FP 1, FN 2), 4/8 (TP 2, FP 3, FN 1).
  EXPECT_NEAR(m.macro_f1, (8.0 / 11 + 6.0 / 9 + 4.0 / 8) / 3, 1e-12);
  EXPECT_NEAR(m.precision, (4.0 / 5 + 3.0 / 4 + 2.0 / 5) / 3, 1e-12);  // macro averages
  EXPECT_NEAR(m.recall, (4.0 / 6 + 3.0 / 5 + 2.0 / 3) / 3, 1e-12);
  EXPECT_EQ(m.confusion, (std::vector<std::vector<int64_t>>{{4, 1, 1}, {0, 3, 2}, {1, 0, 2}}));
  RegressionMetrics r = regression_metrics({1, 2, 3, 4}, {2, 4, 6, 9});
  EXPECT_NEAR(r.spearman, 1.0, 1e-12);
  EXPECT_NEAR(r.mse, (1 + 4 + 9 + 25) / 4.0, 1e-12);
  EXPECT_LT(r.pearson, 1.0);
  EXPECT_GT(r.pearson, 0.98);
}

TEST(Checkpoint, SaveLoadRoundTripAndErrors) {
  const std::string dir = tmpdir("ckpt");
  Model m(small_classifier(), 3);
  save_model(dir + "/m", m);
  auto m2 = load_model(dir + "/m");
  for (Param* p : m.params()) {
    Param* q = m2->find(p->name);
    ASSERT_NE(q, nullptr) << p->name;
    for (int64_t i = 0; i < p->w.numel(); ++i) ASSERT_EQ(p->w[i], q->w[i]) << p->name;
  }
  // A config that disagrees with the tensors names the tensor and both shapes.
  ModelConfig wrong = small_classifier();
  wrong.mamba.d_state = 8;
  Model mw(wrong, 1);
  SafeTensorsReader r(dir + "/m/model.safetensors");
  try {
    load_weights(mw, r);
    FAIL();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("x_proj.weight' has shape [9, 32], expected [17, 32]"), std::string::npos) << msg;
  }
  ModelConfig deeper = small_classifier();
  deeper.mamba.n_layer = 3;
  Model md(deeper, 1);
  try {
    load_weights(md, r);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backbone.layers.2"), std::string::npos) << e.what();
  }
  ModelConfig shallower = small_classifier();
  shallower.mamba.n_layer = 1;
  Model ms(shallower, 1);
  EXPECT_THROW(load_weights(ms, r), Error);  // unexpected tensors of layer 1
  // Truncated file.
  fs::copy_file(dir + "/m/model.safetensors", dir + "/t.safetensors");
  fs::resize_file(dir + "/t.safetensors", fs::file_size(dir + "/t.safetensors") - 100);
  EXPECT_THROW(SafeTensorsReader(dir + "/t.safetensors"), Error);
  EXPECT_THROW(load_model(dir + "/nope"), Error);
  fs::remove_all(dir);
}

TEST(Train, ResumeContinuesTheExactLossCurve) {
  const std::string dir = tmpdir("resume");
  Dataset all = make_synthetic("motif", 60, 24, 5);
  TrainOptions o;
  o.epochs = 3;
  o.batch_size = 8;  // 8 steps per epoch, last batch partial
  o.adamw.lr = 3e-3;
  o.progress = false;
  o.seed = 9;
  std::vector<double> full;
  {
    Model m(small_classifier(), 1);
    Trainer t(m, all, o);
    for (auto& r : t.run()) full.push_back(r.loss);
    ASSERT_EQ(full.size(), 24u);
  }
  std::vector<double> resumed;
  {
    Model m(small_classifier(), 1);
    Trainer t(m, all, o);
    t.run_steps(11);  // stops mid-epoch 2
    for (auto& r : t.history()) resumed.push_back(r.loss);
    t.save_checkpoint(dir + "/ck");
  }
  {
    Model m(small_classifier(), 777);  // different init: everything must come from the checkpoint
    Trainer t(m, all, o);
    t.load_checkpoint(dir + "/ck");
    EXPECT_EQ(t.step(), 11);
    for (auto& r : t.run()) resumed.push_back(r.loss);
  }
  ASSERT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(resumed[i], full[i]) << "step " << i + 1;
  // A checkpoint from a different run setup is refused, not silently resumed.
  TrainOptions o2 = o;
  o2.batch_size = 4;
  Model m(small_classifier(), 1);
  Trainer t2(m, all, o2);
  EXPECT_THROW(t2.load_checkpoint(dir + "/ck"), Error);
  fs::remove_all(dir);
}

TEST(Train, EarlyStoppingStopsAfterPatienceAndKeepsTheBestValidationModel) {
  const std::string dir = tmpdir("early");
  Dataset all = make_synthetic("motif", 64, 16, 3), train, val;
  split_train_val_test(all, 0.25, 0.0, 1, &train, &val, nullptr);
  TrainOptions o;
  o.epochs = 40;
  o.batch_size = 16;  // 3 steps per epoch
  o.adamw.lr = 1e-2;
  o.early_stop_metric = "accuracy";
  o.patience = 2;
  o.progress = false;
  o.seed = 4;
  o.out_dir = dir;
  Model m(small_classifier(), 2);
  Trainer t(m, train, o, &val);
  t.run();
  // The validation lines of the log, replayed through the rule: a strictly better
  // accuracy is the new best; `patience` epochs in a row without one stop the run.
  std::vector<double> acc, loss;
  std::ifstream f(dir + "/train_log.jsonl");
  for (std::string line; std::getline(f, line);) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("eval")) continue;
    EXPECT_EQ(j["epoch"].get<size_t>(), acc.size() + 1);
    acc.push_back(j["accuracy"].get<double>());
    loss.push_back(j["loss"].get<double>());
  }
  size_t best_epoch = 1, stop_epoch = 0;
  for (size_t e = 2, without = 0; e <= acc.size() && !stop_epoch; ++e) {
    if (acc[e - 1] > acc[best_epoch - 1]) best_epoch = e, without = 0;
    else if (++without == static_cast<size_t>(o.patience)) stop_epoch = e;
  }
  ASSERT_GT(stop_epoch, 0u) << "the run did not stop early, so this test checks nothing";
  EXPECT_EQ(stop_epoch, acc.size());  // nothing trained or validated after the stop
  EXPECT_LT(stop_epoch, static_cast<size_t>(o.epochs));
  EXPECT_EQ(t.step(), static_cast<int64_t>(stop_epoch) * t.steps_per_epoch());
  EXPECT_EQ(t.best_metric(), acc[best_epoch - 1]);
  // best/ is the model after epoch best_epoch: the validation accuracy and loss logged then.
  auto best = load_model(dir + "/best");
  const EvalResult rb = evaluate(*best, val, o.batch_size, 0);
  EXPECT_EQ(rb.cls.accuracy, acc[best_epoch - 1]);
  EXPECT_NEAR(rb.loss, loss[best_epoch - 1], 1e-6);
  EXPECT_GT(std::abs(loss[best_epoch - 1] - loss.back()), 1e-4);  // which the final model is not
  EXPECT_NEAR(evaluate(m, val, o.batch_size, 0).loss, loss.back(), 1e-6);
  fs::remove_all(dir);
}

TEST(Train, NanStopsWithTheStepAndKeepsTheLastCheckpoint) {
  const std::string dir = tmpdir("nan");
  Dataset all = make_synthetic("motif", 32, 20, 6);
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.progress = false;
  o.out_dir = dir;
  o.save_every = 1;
  Model m(small_classifier(), 2);
  Trainer t(m, all, o);
  t.run_steps(2);
  m.backbone.layers[0]->in_w.w[0] = NAN;
  try {
    t.run_steps(1);
    FAIL() << "a NaN loss must stop training";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 3"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/checkpoint.tmp"));
  auto good = load_model(dir + "/checkpoint");
  for (Param* p : good->params())
    for (int64_t i = 0; i < p->w.numel(); ++i) ASSERT_TRUE(std::isfinite(p->w[i])) << p->name;
  std::ifstream st(dir + "/checkpoint/trainer_state.json");
  std::string s((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
  EXPECT_NE(s.find("\"step\": 2"), std::string::npos) << s;
  fs::remove_all(dir);
}

TEST(Train, LearnsTheSyntheticMotifTask) {
  Dataset all = make_synthetic("motif", 480, 48, 11), train, val;
  stratified_split(all, 0.25, 3, &train, &val);
  EXPECT_EQ(val.size(), 120);
  ModelConfig c = small_classifier();
  c.mamba.d_model = 32;
  Model m(c, 4);
  TrainOptions o;
  o.epochs = 6;
  o.batch_size = 16;
  o.adamw.lr = 5e-3;
  o.progress = false;
  Trainer t(m, train, o, &val);
  t.run();
  EXPECT_LT(t.history().back().loss, t.history().front().loss);
  EvalResult r = evaluate(m, val, 32, 0);
  EXPECT_GT(r.cls.accuracy, 0.85) << "validation accuracy " << r.cls.accuracy;
}

// Reverse-complement averaging: each example's probabilities come from the mean of the
// logits of the sequence and of its reverse complement (sequences of unequal lengths, so
// padding is in play); symbolic tokens and token heads are refused.
TEST(Train, EvaluateAveragesOverTheReverseComplement) {
  Dataset d = make_synthetic("motif", 12, 40, 5);
  d.examples[3].ids.resize(29);
  d.examples[7].ids.resize(17);
  Model m(small_classifier(), 6);
  for (Param* p : m.params())  // away from the initial values, so strands differ clearly
    for (int64_t i = 0; i < p->w.numel(); ++i) p->w[i] += 0.05f * std::sin(float(i) + float(p->w.numel()));
  const EvalResult plain = evaluate(m, d, 5, 0), avg = evaluate(m, d, 5, 0, /*rc_average=*/true);
  ASSERT_EQ(avg.probs.size(), 24u);
  double moved = 0;
  for (int64_t i = 0; i < d.size(); ++i) {
    const auto& e = d.examples[i];
    float z[2] = {0, 0};
    for (const auto& ids : {e.ids, d.tokenizer.reverse_complement(e.ids)}) {
      Batch b;
      b.batch = 1;
      b.len = static_cast<int64_t>(ids.size());
      b.ids = ids;
      b.labels = {e.label};
      const Tensor& o = m.forward(b, false);
      z[0] += 0.5f * o[0], z[1] += 0.5f * o[1];
    }
    const double p1 = 1.0 / (1.0 + std::exp(double(z[0] - z[1])));
    EXPECT_NEAR(avg.probs[2 * i + 1], p1, 2e-6) << "example " << i;
    moved += std::abs(plain.probs[2 * i + 1] - p1);
  }
  EXPECT_GT(moved, 1e-3);  // the reverse strand really was used
  EXPECT_NEAR(avg.loss, plain.loss, 1e-12);
  Dataset sym = make_synthetic("induction_seq", 4, 32, 1);
  ModelConfig c4 = small_classifier();
  c4.num_labels = 4;
  Model m4(c4, 1);
  try {
    evaluate(m4, sym, 4, 0, true);
    ADD_FAILURE() << "symbolic tokens were reverse-complemented";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs DNA tokens"), std::string::npos) << e.what();
  }
}

TEST(Train, CnnResumeRestoresBatchNormStatisticsExactly) {
  const std::string dir = tmpdir("resume_cnn");
  Dataset all = make_synthetic("motif", 40, 24, 5);
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 8;
  o.progress = false;
  CnnConfig c = seed001_cnn(2);
  c.d_embed = 8;
  c.channels = 8;
  std::vector<double> full, resumed;
  {
    CnnClassifier m(c, 1);
    Trainer t(m, all, o);
    for (auto& r : t.run()) full.push_back(r.loss);
  }
  {
    CnnClassifier m(c, 1);
    Trainer t(m, all, o);
    t.run_steps(7);
    for (auto& r : t.history()) resumed.push_back(r.loss);
    t.save_checkpoint(dir + "/ck");
  }
  {
    CnnClassifier m(c, 99);
    Trainer t(m, all, o);
    t.load_checkpoint(dir + "/ck");
    for (auto& r : t.run()) resumed.push_back(r.loss);
  }
  ASSERT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(resumed[i], full[i]) << "step " << i + 1;
  fs::remove_all(dir);
}
