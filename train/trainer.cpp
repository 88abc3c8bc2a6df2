#include "mambaseq/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/progress.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
void append_jsonl(const std::string& out_dir, const json& j) {
  if (out_dir.empty()) return;
  std::ofstream f(out_dir + "/train_log.jsonl", std::ios::app);
  MS_CHECK(f.good(), "cannot write {}/train_log.jsonl", out_dir);
  f << j.dump() << "\n";
}
}  // namespace

EvalResult evaluate(Network& model, const Dataset& data, int64_t batch_size, int64_t max_len, bool rc_average) {
  MS_CHECK(data.size() > 0, "evaluate: dataset '{}' is empty", data.name);
  MS_CHECK(batch_size > 0, "evaluate: batch size must be positive, got {}", batch_size);
  EvalResult r;
  const HeadKind head = model.head();
  MS_CHECK(head != HeadKind::LM, "evaluate: language models are scored with `mambaseq score`, not evaluated here");
  Dataset rc;  // the reverse-complement strand of every example
  if (rc_average) {
    MS_CHECK(head == HeadKind::SequenceClassification || head == HeadKind::Regression,
             "evaluate: reverse-complement averaging needs a sequence-level head, not {}", head_name(head));
    MS_CHECK(data.dna && data.tokenizer.has_reverse_complement(),
             "evaluate: reverse-complement averaging needs DNA tokens; dataset '{}' has {}", data.name,
             data.dna ? data.tokenizer.name() + " tokens" : "symbolic (non-DNA) tokens");
    rc = data;
    for (auto& e : rc.examples) e.ids = data.tokenizer.reverse_complement(e.ids);
  }
  std::vector<float> avg;
  std::vector<int32_t> y, yhat;
  std::vector<float> pred, target, binary_probs;
  double loss_sum = 0;
  int64_t K = 0;
  for (int64_t s = 0; s < data.size(); s += batch_size) {
    std::vector<int64_t> idx;
    for (int64_t i = s; i < std::min(data.size(), s + batch_size); ++i) idx.push_back(i);
    Batch b = make_batch(data, idx, max_len, head);
    if (rc_average) {
      const Tensor& ro = model.forward(make_batch(rc, idx, max_len, head), false);
      avg.assign(ro.data(), ro.data() + ro.numel());
    }
    const Tensor& out = model.forward(b, false);
    K = out.dim(1);
    loss_sum += model.loss(b) * b.batch;
    if (rc_average)
      for (int64_t i = 0; i < out.numel(); ++i) avg[i] = 0.5f * (avg[i] + out[i]);
    const float* base = rc_average ? avg.data() : out.data();
    for (int64_t row = 0; row < out.dim(0); ++row) {
      const float* o = base + row * K;
      if (head == HeadKind::Regression) {
        for (int64_t k = 0; k < K; ++k) pred.push_back(o[k]), target.push_back(b.targets[row * K + k]);
        continue;
      }
      if (b.multi_label) {  // one sigmoid per label
        for (int64_t k = 0; k < K; ++k) {
          const float p = float(1.0 / (1.0 + std::exp(-double(o[k]))));
          r.probs.push_back(p);
          binary_probs.push_back(1 - p), binary_probs.push_back(p);
          y.push_back(b.targets[row * K + k] > 0.5f);
          yhat.push_back(p > 0.5f);
        }
        continue;
      }
      if (b.labels[row] == kIgnoreIndex) continue;  // unlabelled token
      const float mx = *std::max_element(o, o + K);
      double z = 0;
      for (int64_t k = 0; k < K; ++k) z += std::exp(double(o[k]) - mx);
      for (int64_t k = 0; k < K; ++k) r.probs.push_back(float(std::exp(double(o[k]) - mx) / z));
      y.push_back(b.labels[row]);
      yhat.push_back(static_cast<int32_t>(std::max_element(o, o + K) - o));
    }
  }
  r.loss = loss_sum / data.size();
  if (head == HeadKind::Regression) {
    r.reg = regression_metrics(pred, target);
    r.probs = pred;
  } else if (data.multi_label()) {
    r.cls = classification_metrics(y, yhat, binary_probs, 2);
  } else {
    r.cls = classification_metrics(y, yhat, r.probs, K);
  }
  return r;
}

namespace {
BatchingOptions plain_batching(const TrainOptions& o) {
  BatchingOptions b;
  b.batch_size = o.batch_size;
  b.max_len = o.max_len;
  b.seed = o.seed;
  return b;
}
}  // namespace

Trainer::Trainer(Network& model, const Dataset& train, TrainOptions o, const Dataset* val,
                 const BatchingOptions* batching)
    : model_(model), train_(train), val_(val), o_(std::move(o)), opt_(model.params(), o_.adamw),
      params_(model.params()), sampler_(train, batching ? *batching : plain_batching(o_)) {
  MS_CHECK(sampler_.options().batch_size == o_.batch_size && sampler_.options().seed == o_.seed,
           "training: the batching options disagree with batch_size/seed of the run");
  MS_CHECK(o_.batch_size > 0, "training: batch_size must be positive, got {}", o_.batch_size);
  MS_CHECK(o_.epochs > 0 || o_.max_steps > 0, "training: epochs must be positive, got {}", o_.epochs);
  MS_CHECK(o_.warmup_frac >= 0 && o_.warmup_frac < 1, "training: warmup must be in [0, 1), got {}", o_.warmup_frac);
  MS_CHECK(o_.grad_clip >= 0, "training: grad_clip must be >= 0, got {}", o_.grad_clip);
  MS_CHECK(train.size() > 0, "training: the training set '{}' is empty", train.name);
  spe_ = sampler_.steps_per_epoch();
  total_ = o_.max_steps > 0 ? o_.max_steps : o_.epochs * spe_;
  warmup_ = static_cast<int64_t>(o_.warmup_frac * total_);
  if (!o_.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o_.out_dir, ec);
    MS_CHECK(!ec, "cannot create output directory {}: {}", o_.out_dir, ec.message());
  }
}

void Trainer::train_step() {
  const auto t0 = std::chrono::steady_clock::now();
  Batch b = sampler_.batch(step_, model_.head());
  model_.zero_grad();
  model_.forward(b, true, Rng::derive(o_.seed, step_).next_u64());
  const double loss = model_.loss(b);
  // Stop before anything is written: the last checkpoint on disk stays the last good one.
  MS_CHECK(std::isfinite(loss),
           "training diverged at step {} (epoch {}): the loss is {}; no checkpoint was written for this step "
           "(lower the learning rate or check the data)",
           step_ + 1, step_ / spe_ + 1, loss);
  model_.backward(b);
  const double gnorm = clip_grad_norm(params_, o_.grad_clip);
  MS_CHECK(std::isfinite(gnorm), "training diverged at step {} (epoch {}): the gradient norm is {}", step_ + 1,
           step_ / spe_ + 1, gnorm);
  const double lr = cosine_lr(step_, total_, warmup_, o_.adamw.lr, o_.min_lr);
  opt_.step(lr);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0;
  for (uint8_t m : b.mask) tokens += m;
  StepRecord rec{step_ + 1, step_ / spe_ + 1, tokens, loss, lr, gnorm, dt > 0 ? tokens / dt : 0};
  history_.push_back(rec);
  ++step_;
  if (!o_.out_dir.empty() && (step_ % std::max<int64_t>(1, o_.log_every) == 0 || step_ == total_))
    append_jsonl(o_.out_dir, {{"step", rec.step}, {"epoch", rec.epoch}, {"loss", rec.loss}, {"lr", rec.lr},
                              {"grad_norm", rec.grad_norm}, {"tokens_per_s", rec.tokens_per_s}});
}

void Trainer::end_of_epoch(int64_t epoch) {
  if (val_ && val_->size() > 0) {
    EvalResult r = evaluate(model_, *val_, o_.batch_size, o_.max_len, o_.rc_average);
    const bool reg = model_.head() == HeadKind::Regression;
    const std::string metric = reg ? "mse" : o_.early_stop_metric;
    const double v = reg ? r.reg.mse : metric_value(r.cls, metric);
    const bool higher = metric_higher_is_better(metric);
    const bool better = std::isnan(best_) || (higher ? v > best_ : v < best_);
    json j{{"eval", "validation"}, {"epoch", epoch}, {"step", step_}, {"loss", r.loss}, {metric, v}};
    if (!reg) j.update({{"accuracy", r.cls.accuracy}, {"mcc", r.cls.mcc}, {"macro_f1", r.cls.macro_f1}});
    append_jsonl(o_.out_dir, j);
    if (better) {
      best_ = v;
      epochs_without_gain_ = 0;
      if (!o_.out_dir.empty()) save_model(o_.out_dir + "/best");
    } else if (o_.patience > 0 && ++epochs_without_gain_ >= o_.patience) {
      stop_ = true;
    }
  }
  if (!o_.out_dir.empty()) save_checkpoint(o_.out_dir + "/checkpoint");
}

void Trainer::start_run() {
  started_ = true;
  if (resumed_ || o_.out_dir.empty()) return;
  // A fresh run into an old output directory must not mix its log and best model with
  // the old run's; a resumed run continues both.
  std::error_code ec;
  fs::remove(o_.out_dir + "/train_log.jsonl", ec);
  fs::remove_all(o_.out_dir + "/best", ec);
}

void Trainer::run_steps(int64_t n) {
  if (!started_ && n > 0) start_run();
  for (int64_t i = 0; i < n && step_ < total_ && !stop_; ++i) {
    train_step();
    if (step_ % spe_ == 0 || step_ == total_) end_of_epoch((step_ - 1) / spe_ + 1);
    else if (o_.save_every > 0 && step_ % o_.save_every == 0 && !o_.out_dir.empty())
      save_checkpoint(o_.out_dir + "/checkpoint");
  }
}

const std::vector<StepRecord>& Trainer::run() {
  Progress bar("train", total_, "tok", std::max<int64_t>(1, o_.log_every), o_.progress);
  while (step_ < total_ && !stop_) {
    run_steps(1);
    const StepRecord& r = history_.back();
    bar.update(step_, fmt::format("epoch {} loss {:.4f} lr {:.2e}", r.epoch, r.loss, r.lr), double(r.tokens));
  }
  bar.finish(stop_ ? "stopped early" : "done");
  return history_;
}

void Trainer::save_model(const std::string& dir) {
  model_.save(dir);
  if (o_.model_data) save_model_data_info(dir, *o_.model_data);
}

void Trainer::save_checkpoint(const std::string& dir) {
  const std::string tmp = dir + ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  save_model(tmp);
  SafeTensorsWriter w;
  for (size_t i = 0; i < params_.size(); ++i) {
    w.add("exp_avg." + params_[i]->name, opt_.exp_avg(i).data(), params_[i]->w.shape());
    w.add("exp_avg_sq." + params_[i]->name, opt_.exp_avg_sq(i).data(), params_[i]->w.shape());
  }
  w.write(tmp + "/optimizer.safetensors");
  json st{{"step", step_},           {"optimizer_steps", opt_.steps()}, {"total_steps", total_},
          {"seed", o_.seed},         {"batch_size", o_.batch_size},     {"train_examples", train_.size()},
          {"best_metric", std::isnan(best_) ? json(nullptr) : json(best_)},
          {"epochs_without_gain", epochs_without_gain_}};
  write_file_atomic(tmp + "/trainer_state.json", st.dump(2) + "\n");
  // Swap directories: the old checkpoint is removed only after the new one is complete.
  const std::string old = dir + ".old";
  fs::remove_all(old, ec);
  if (fs::exists(dir)) fs::rename(dir, old, ec);
  MS_CHECK(!ec, "cannot move old checkpoint {} aside: {}", dir, ec.message());
  fs::rename(tmp, dir, ec);
  MS_CHECK(!ec, "cannot move new checkpoint into {}: {}", dir, ec.message());
  fs::remove_all(old, ec);
}

void Trainer::load_checkpoint(const std::string& dir) {
  MS_CHECK(fs::is_directory(dir), "checkpoint directory {} does not exist", dir);
  std::ifstream f(dir + "/trainer_state.json");
  MS_CHECK(f.good(), "checkpoint {}: trainer_state.json is missing (not a training checkpoint?)", dir);
  json st;
  try {
    st = json::parse(f);
  } catch (const std::exception& e) {
    fail("checkpoint {}: trainer_state.json is not valid JSON: {}", dir, e.what());
  }
  auto get = [&](const char* key) {
    MS_CHECK(st.contains(key) && st[key].is_number_integer(), "checkpoint {}: trainer_state.json lacks integer '{}'",
             dir, key);
    return st[key].get<int64_t>();
  };
  const int64_t step = get("step");
  MS_CHECK(get("batch_size") == o_.batch_size && get("train_examples") == train_.size() &&
               static_cast<uint64_t>(get("seed")) == o_.seed,
           "checkpoint {}: it was made with batch_size {}, {} training examples and seed {}, but this run has {}, {} "
           "and {}: resuming would not continue the same run",
           dir, get("batch_size"), get("train_examples"), get("seed"), o_.batch_size, train_.size(), o_.seed);
  MS_CHECK(step >= 0 && step <= total_, "checkpoint {}: step {} is outside this run's {} steps", dir, step, total_);
  SafeTensorsReader mf(dir + "/model.safetensors");
  model_.load_state(mf);
  SafeTensorsReader of(dir + "/optimizer.safetensors");
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& m = opt_.exp_avg(i);
    Tensor& v = opt_.exp_avg_sq(i);
    of.read_f32_into("exp_avg." + params_[i]->name, m);
    of.read_f32_into("exp_avg_sq." + params_[i]->name, v);
  }
  opt_.set_steps(get("optimizer_steps"));
  step_ = step;
  resumed_ = true;
  epochs_without_gain_ = get("epochs_without_gain");
  best_ = st["best_metric"].is_number() ? st["best_metric"].get<double>() : NAN;
}

}  // namespace mambaseq
