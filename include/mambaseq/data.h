// Data: examples, datasets, the nucleotide alphabet, built-in synthetic tasks, and
// batching (padding + mask). Flow: reader → tokenizer → Dataset → make_batch → Model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mambaseq/model.h"
#include "mambaseq/rng.h"

namespace mambaseq {

struct Example {
  std::vector<int32_t> ids;
  int32_t label = 0;           // class (sequence classification)
  std::vector<int32_t> token_labels;  // token classification / LM targets (−100 = ignore)
  std::vector<float> targets;  // regression
};

struct Dataset {
  std::string name;
  std::vector<Example> examples;
  int64_t num_labels = 2;
  int64_t vocab_size = 6;
  std::vector<std::string> label_names;
  int64_t size() const { return static_cast<int64_t>(examples.size()); }
};

// Nucleotide vocabulary used by the DNA models (seed 001): PAD 0, A 1, C 2, G 3, T 4, N 5.
constexpr int32_t kPad = 0;
int32_t nucleotide_id(char c);  // lower case accepted, U read as T; anything else: −1
std::vector<int32_t> encode_nucleotides(const std::string& seq);  // unknown letters → Error

// Built-in, deterministic synthetic classification tasks (same seed → same data):
//   motif:      label 1 iff the motif TATAAT occurs (planted at a random position)
//   long_range: label 1 iff the two halves carry the same of two motifs, far apart
// Sequences are length `len` over A C G T.
Dataset make_synthetic(const std::string& task, int64_t n, int64_t len, uint64_t seed);
std::vector<std::string> synthetic_task_names();

// Stratified split by fraction (deterministic for a seed).
void stratified_split(const Dataset& all, double val_fraction, uint64_t seed, Dataset* train, Dataset* val);

// A batch of examples, right-padded with kPad to the longest (capped at max_len:
// longer sequences are truncated). Builds mask and labels for the model's head.
Batch make_batch(const Dataset& d, const std::vector<int64_t>& idx, int64_t max_len, HeadKind head);

}  // namespace mambaseq
