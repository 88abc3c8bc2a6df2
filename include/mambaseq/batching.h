// Training batches: seeded order (optionally length-bucketed), truncation or random
// cropping to a maximum length, reverse-complement augmentation.
//
// Exact resume: the batch of step s depends only on (seed, s) and the dataset — the
// order of epoch e from Rng::derive(seed, 1000003 + e) (the trainer's stream: without
// bucketing the order is the trainer's own), crops and flips from
// Rng::derive(seed, kAugmentStream + s) — so a run resumed at step s draws the same
// batches as one that never stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mambaseq/data.h"

namespace mambaseq {

enum class CropMode { Truncate, Random };
CropMode crop_mode_from_name(const std::string& s);  // truncate | random
std::string crop_mode_name(CropMode m);

struct BatchingOptions {
  int64_t batch_size = 32;
  int64_t max_len = 0;          // 0: no cap
  CropMode crop = CropMode::Truncate;  // longer sequences: keep the start, or a random window
  bool rc_augment = false;      // each sequence reverse-complemented with probability 1/2
  // Length bucketing: each epoch's shuffled order is cut into windows of
  // bucket_batches × batch_size examples, sorted by length inside a window, cut into
  // batches, and the batches shuffled — less padding, still random.
  bool bucket = false;
  int64_t bucket_batches = 50;
  uint64_t seed = 42;
};

constexpr uint64_t kAugmentStream = 0xA5A5000000000000ULL;

// Crop/flip one example's ids (and token labels) into out_ids / out_labels.
// Random crop windows and flips come from rng; Truncate keeps the first max_len.
void augment_example(const Dataset& d, const Example& e, const BatchingOptions& o, Rng& rng,
                     std::vector<int32_t>& out_ids, std::vector<int32_t>& out_labels);

// make_batch with cropping and reverse-complement augmentation drawn from
// Rng::derive(o.seed, kAugmentStream + step). Errors: reverse complement of a dataset
// whose ids are not DNA, of codon tokens, or of token-labelled examples.
Batch make_batch(const Dataset& d, const std::vector<int64_t>& idx, const BatchingOptions& o, HeadKind head,
                 int64_t step);

class BatchSampler {
 public:
  BatchSampler(const Dataset& d, BatchingOptions o);
  int64_t steps_per_epoch() const { return spe_; }
  // Example indices of a step (global step count, epochs follow one another).
  std::vector<int64_t> indices(int64_t step);
  Batch batch(int64_t step, HeadKind head) { return make_batch(d_, indices(step), o_, head, step); }
  const BatchingOptions& options() const { return o_; }

 private:
  const Dataset& d_;
  BatchingOptions o_;
  int64_t spe_ = 0, epoch_ = -1;
  std::vector<std::vector<int64_t>> batches_;  // of the cached epoch
};

}  // namespace mambaseq
