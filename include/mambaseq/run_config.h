// A training run described by a YAML file (configs/*.yaml): data, model, training
// options, output directory. Unknown keys and bad values are errors naming the file
// and the key, because a typo silently ignored is a wrong experiment.
#pragma once
#include <memory>
#include <string>

#include <utility>
#include <vector>

#include "mambaseq/baselines.h"
#include "mambaseq/batching.h"
#include "mambaseq/config.h"
#include "mambaseq/loaders.h"
#include "mambaseq/trainer.h"

namespace mambaseq {

// The `data:` section. Sources and their keys (any other key is an error):
//   synthetic   task (synthetic_task_names()), train_size, test_size, length
//   csv | tsv   train, test (optional: else test_fraction of train is held out),
//               sequence_column, label_column, name_column, label_columns (multi-label,
//               0/1 each), label_separator (multi-label in one column), target_columns
//               (regression); delimiter by source (csv ',', tsv tab)
//   fasta       train, test with `label_tag=` in headers, or files / test_files:
//               {label: path} maps, one label per file
//   fasta_pair  positive, negative (promoter-style), positive_label, negative_label;
//               test_fraction (default 0.2) is held out
//   nt_dir      dir, task: DIR/<task>/{train,test}.csv (Nucleotide Transformer layout)
// Common: target (classification | multi_label | regression), labels (fixed names and
// order), tokenizer (nucleotide | codon | kmer), k, kmer_stride, frame, max_len,
// crop (truncate | random), rc_augment, bucket, val_fraction, test_fraction, kfold,
// fold, seed (splits), skip_bad.
struct DataSpec {
  std::string source = "synthetic";
  std::string task;  // synthetic task (default motif) or NT task; else a display name
                     // (default: the training file's name without extensions)
  int64_t train_size = 2000, test_size = 400, length = 100;  // synthetic
  std::string train, test;                                    // csv, tsv, fasta
  std::vector<std::pair<std::string, std::string>> files, test_files;  // fasta: {label, path}
  std::string positive, negative;                             // fasta_pair
  std::string positive_label = "positive", negative_label = "negative";
  std::string dir;                                            // nt_dir
  std::string target = "classification";
  std::string sequence_column = "sequence", label_column = "label", name_column;
  std::vector<std::string> label_columns, target_columns, labels;
  std::string label_separator, label_tag = "label";
  std::string tokenizer = "nucleotide";
  int64_t k = 3, kmer_stride = 1, frame = 0;
  int64_t max_len = 0;              // copied to train.max_len (crop length and evaluation cap)
  std::string crop = "truncate";    // truncate | random (training batches)
  bool rc_augment = false;          // reverse-complement half the training sequences
  bool bucket = false;              // length-bucketed batches
  double val_fraction = 0.1;        // of all examples (0: no validation set)
  double test_fraction = -1;        // −1: 0.2 where no test file exists, else 0
  int64_t kfold = 0, fold = 0;      // kfold ≥ 2: validation = fold `fold` (val_fraction unused)
  uint64_t seed = 1;
  bool skip_bad = false;            // skip (and count) bad records instead of failing

  LoadOptions load_options() const;  // reader / tokenizer options for the file sources
};

// The `model:` section. `type` (default mamba) picks the architecture and with it the
// keys allowed beside it:
//   mamba        preset, d_model, n_layer, d_state, d_conv, expand, dt_rank, norm, use_bias,
//                use_conv_bias, head_dropout, vocab_size, bidirectional, bidir_combine
//   cnn          d_embed, channels, kernel_sizes, pool, head_dropout, mask_padding
//   transformer  d_model, n_layer, n_head, d_ff, dropout, head_dropout, activation
// Baselines start from seed 001's sizes; vocabulary, head and labels come from the data.
struct RunConfig {
  std::string path;  // the YAML file, for messages
  DataSpec data;
  std::string model_type = "mamba";  // mamba | cnn | transformer
  ModelConfig model;                 // mamba (its head, labels and vocabulary serve the baselines too)
  CnnConfig cnn;
  TransformerConfig transformer;
  TrainOptions train;
  std::string output = "runs/default";
  bool model_vocab_set = false;  // model.vocab_size given in the file (else taken from the data)
};

// `overrides` are KEY.PATH=VALUE strings (`mambaseq train --set`), applied in order to
// the parsed file before it is validated: VALUE is read as YAML (`train.lr=1e-3`,
// `model.kernel_sizes=[9,5]`), so an override is checked exactly as the same key written
// in the file would be.
RunConfig load_run_config(const std::string& yaml_path, const std::vector<std::string>& overrides = {});
// The same from YAML text; `where` names it in messages (e.g. "suite.yaml: tasks[2]").
RunConfig load_run_config_text(const std::string& yaml_text, const std::string& where);

// Builds the train / validation / test sets the spec describes. What loading changed or
// skipped (IUPAC codes read as N, bad records under skip_bad, …) and how the data was
// split go to *log, one line each; with no log they are printed to stderr ("data: …").
void load_datasets(const DataSpec& spec, Dataset* train, Dataset* val, Dataset* test,
                   std::vector<std::string>* log = nullptr);

// Fits the model config to the training data: head (classification / multi-label →
// sequence classification, regression, token), num_labels, and vocab_size (unless the
// file set model.vocab_size; then it must cover the data's ids); and sets
// train.model_data, the data.json written beside every model the run saves.
void fit_model_to_data(RunConfig& rc, const Dataset& train);

// load_datasets + fit_model_to_data: what `mambaseq train` needs.
void load_run_data(RunConfig& rc, Dataset* train, Dataset* val, Dataset* test, std::vector<std::string>* log = nullptr);

// The network rc.model_type names, fitted to the data (after fit_model_to_data); the
// Transformer's positions cover the longest sequence of `data` (capped at train.max_len).
// The baselines have sequence-level heads only: a token task is an error.
std::unique_ptr<Network> make_network(const RunConfig& rc, const std::vector<const Dataset*>& data);

// Batching for training: data.max_len / crop / rc_augment / bucket with train.batch_size
// and train.seed.
BatchingOptions batching_options(const RunConfig& rc);

}  // namespace mambaseq
