// Data: examples, datasets, the nucleotide alphabet, built-in synthetic tasks, and
// batching (padding + mask). Flow: reader → tokenizer → Dataset → make_batch → Model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mambaseq/model.h"
#include "mambaseq/rng.h"
#include "mambaseq/tokenizers.h"

namespace mambaseq {

struct Example {
  std::vector<int32_t> ids;
  int32_t label = 0;           // class (sequence classification)
  std::vector<int32_t> token_labels;  // token classification / LM targets (−100 = ignore)
  std::vector<float> targets;  // regression: num_labels values; multi-label: num_labels 0/1
  std::string name;            // record id / name column ("" for synthetic data)
};

// What the labels of a dataset are; decides the head and the loss.
enum class TargetKind {
  Classification,  // Example::label in [0, num_labels): softmax cross-entropy
  MultiLabel,      // Example::targets, num_labels values in {0, 1}: sigmoid + BCE per label
  Regression,      // Example::targets, num_labels real values: MSE (Pearson, Spearman reported)
  Token,           // Example::token_labels per position (−100 ignored): token classification
};
std::string target_kind_name(TargetKind k);          // classification | multi_label | regression | token
TargetKind target_kind_from_name(const std::string& s);

struct Dataset {
  std::string name;
  std::vector<Example> examples;
  int64_t num_labels = 2;      // classes, labels (multi-label) or regression targets
  int64_t vocab_size = 6;
  std::vector<std::string> label_names;  // class / label / target-column names
  TargetKind target = TargetKind::Classification;
  // How ids were made: reverse-complement augmentation needs DNA tokens (dna == false
  // for the symbolic synthetic tasks, whose ids are not nucleotides).
  SeqTokenizer tokenizer;
  bool dna = true;
  // Loading report for the run's log: what was read, skipped or changed (never silent).
  int64_t skipped = 0;         // bad records skipped under skip_bad
  TokenizeStats token_stats;   // IUPAC codes read as N, bases outside whole codons/k-mers
  std::vector<std::string> notes;
  int64_t size() const { return static_cast<int64_t>(examples.size()); }
  bool multi_label() const { return target == TargetKind::MultiLabel; }
};

// An empty dataset with `d`'s metadata (name, labels, vocabulary, tokenizer, kind).
Dataset empty_like(const Dataset& d);

// Nucleotide vocabulary used by the DNA models (seed 001): PAD 0, A 1, C 2, G 3, T 4, N 5.
constexpr int32_t kPad = 0;
int32_t nucleotide_id(char c);  // lower case accepted, U read as T; anything else: −1
std::vector<int32_t> encode_nucleotides(const std::string& seq);  // unknown letters → Error

// Built-in, deterministic synthetic tasks (same seed → same data). Sequence tasks are
// length `len` over A C G T, balanced between the classes:
//   motif:          label 1 iff the motif TATAAT occurs (planted at a random position)
//   long_range:     motifs X and Y, one in the first quarter, the other in the last;
//                   label 1 iff X comes first (order over ≥ half the sequence)
//   splice:         label 1 iff a donor GTAAGT is followed, 20+ bases later, by an
//                   acceptor TTTTCAG (intron-like GT…AG); negatives hold one of the two,
//                   or both in the wrong order, so the order is what must be learnt
// Token tasks (TargetKind::Token, 4 classes A C G T, loss only where labelled): the
// Mamba paper's selectivity tasks, scaled down; a causal model answers at the end.
//   selective_copy: 8 data bases at random positions among noise (N) in the first
//                   len − 8 positions, then 8 copy markers (id 6, vocabulary 7); marker
//                   i is labelled with the i-th data base: copy them in order
//   induction:      random bases, one trigger N followed by a base v, more random bases,
//                   then N again as the last token, labelled v (vocabulary 6)
// Their sequence-level forms (one class per sequence; CNN and Transformer run these):
//   selective_copy_seq: 2 data bases at random positions among noise (N); the class is
//                   the ordered pair (16 classes AA..TT)
//   induction_seq:  the induction sequences, class = v (4 classes)
// Regression on codon tokens (seed 000's mRNA workflow):
//   mrna_stability: coding sequences of `len` codons (ATG … stop) with a half-life-like
//                   target from a fixed codon-optimality table (mean over the CDS plus a
//                   5' ramp of 10 codons) and small noise; Pearson/Spearman measure it
Dataset make_synthetic(const std::string& task, int64_t n, int64_t len, uint64_t seed);
std::vector<std::string> synthetic_task_names();

// Stratified split by fraction (deterministic for a seed); see splits.h for the rest.
void stratified_split(const Dataset& all, double val_fraction, uint64_t seed, Dataset* train, Dataset* val);

// A batch of examples, right-padded with kPad to the longest (capped at max_len:
// longer sequences are truncated). Builds mask and labels for the model's head:
// class labels, token labels, or targets (regression; multi-label, with
// Batch::multi_label set so the loss is BCE with logits). Augmentation: batching.h.
Batch make_batch(const Dataset& d, const std::vector<int64_t>& idx, int64_t max_len, HeadKind head);

}  // namespace mambaseq
