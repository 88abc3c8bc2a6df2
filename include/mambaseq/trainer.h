// Training: the loop (AdamW, cosine schedule with warm-up, clipping, dropout seeds),
// evaluation, checkpoints that resume bit-for-bit, progress and JSONL logs.
//
// Reproducibility: everything random in step s derives from (seed, s) — the data
// order of an epoch from (seed, epoch), dropout from (seed, step) — so a run resumed
// at step s from its checkpoint continues the exact same loss curve.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mambaseq/batching.h"
#include "mambaseq/data.h"
#include "mambaseq/metrics.h"
#include "mambaseq/model.h"
#include "mambaseq/model_data.h"
#include "mambaseq/optim.h"

namespace mambaseq {

struct TrainOptions {
  int64_t epochs = 10;
  int64_t batch_size = 32;
  int64_t max_len = 0;      // 0: no cap (truncate longer sequences otherwise)
  int64_t max_steps = 0;    // 0: epochs × steps per epoch
  AdamWConfig adamw;
  double warmup_frac = 0.05;
  double min_lr = 0.0;
  double grad_clip = 1.0;   // 0: off
  uint64_t seed = 42;
  std::string out_dir;      // logs, checkpoints, plots ("" = none)
  int64_t save_every = 0;   // steps between checkpoints (0: end of each epoch only)
  int64_t log_every = 10;
  bool progress = true;     // progress bar on stderr
  std::string early_stop_metric = "mcc";  // validation metric for "best" and early stopping
  int64_t patience = 0;     // epochs without improvement before stopping (0: never)
  // Validation and test outputs averaged over each sequence and its reverse complement
  // (post-hoc RC conjoining, as Caduceus): DNA tokens and sequence-level heads only.
  bool rc_average = false;
  // Written as data.json into every model directory the trainer saves (best/,
  // checkpoint/, save_model), so that eval and predict can use any of them.
  std::optional<ModelDataInfo> model_data;
};

struct StepRecord {
  int64_t step;
  int64_t epoch;
  int64_t tokens;
  double loss, lr, grad_norm, tokens_per_s;
};

struct EvalResult {
  double loss = 0;
  ClassMetrics cls;         // classification heads
  RegressionMetrics reg;    // regression head
  std::vector<float> probs; // [n, num_labels] (classification) or predictions (regression)
};

// Metrics on a dataset, in inference mode. Sequence classification: per sequence.
// Multi-label: every (sequence, label) pair is one binary decision (micro-averaged).
// Token classification: every labelled token is one decision. Regression: MSE,
// Pearson, Spearman over all targets.

// rc_average: the head's outputs (logits, or predictions) are the mean of the sequence's
// and its reverse complement's; the loss stays that of the given strand.
EvalResult evaluate(Network& model, const Dataset& data, int64_t batch_size, int64_t max_len,
                    bool rc_average = false);

class Trainer {
 public:
  // batching: cropping, reverse-complement augmentation and length bucketing of the
  // training batches (null: plain truncation to opts.max_len, seeded shuffling).
  Trainer(Network& model, const Dataset& train, TrainOptions opts, const Dataset* val = nullptr,
          const BatchingOptions* batching = nullptr);
  // Trains until the total step count (or early stopping); returns the step records.
  // out_dir/train_log.jsonl is started afresh (and a previous run's best/ removed) by
  // the first step of a new run, and appended to by a run resumed with load_checkpoint.
  const std::vector<StepRecord>& run();
  // Runs at most n more steps (tests, interruption).
  void run_steps(int64_t n);
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_; }
  int64_t steps_per_epoch() const { return spe_; }
  const std::vector<StepRecord>& history() const { return history_; }
  double best_metric() const { return best_; }

  // The model (config.json + model.safetensors) and opts.model_data (data.json) in DIR.
  void save_model(const std::string& dir);
  // Checkpoint = model (safetensors + config.json + data.json) + optimizer.safetensors +
  // trainer_state.json, written to DIR.tmp and renamed into place.
  void save_checkpoint(const std::string& dir);
  void load_checkpoint(const std::string& dir);

 private:
  void train_step();
  void end_of_epoch(int64_t epoch);
  void start_run();  // the first step of a run: a fresh one clears the previous run's log and best/

  Network& model_;
  const Dataset& train_;
  const Dataset* val_;
  TrainOptions o_;
  AdamW opt_;
  std::vector<Param*> params_;
  int64_t step_ = 0, total_ = 0, spe_ = 0, warmup_ = 0;
  int64_t epochs_without_gain_ = 0;
  double best_ = NAN;
  bool stop_ = false;
  bool resumed_ = false, started_ = false;
  std::vector<StepRecord> history_;
  BatchSampler sampler_;
};

}  // namespace mambaseq
