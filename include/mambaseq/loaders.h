// Datasets from files: CSV/TSV with a header, FASTA (label per file or `label=` in the
// header), gzip variants of both, and the Nucleotide Transformer suite layout
// DIR/<task>/{train,test}.csv. Files are streamed (readers.h); only the token ids are kept.
//
// Bad data ends with an Error naming the file and line: too few or too many columns, an
// unknown label, an empty sequence, a character outside the alphabet, a missing label,
// a non-numeric target, a label set that differs between train and test. With
// skip_bad, bad records are skipped instead and counted (Dataset::skipped, notes).
// Nothing is dropped silently: Dataset::notes says what was skipped, which IUPAC codes
// became N, and which trailing bases formed no whole codon / k-mer.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "mambaseq/data.h"
#include "mambaseq/tokenizers.h"

namespace mambaseq {

struct LoadOptions {
  SeqTokenizer tokenizer;  // nucleotide by default
  TargetKind target = TargetKind::Classification;  // Token is for synthetic data only
  // CSV / TSV
  char delimiter = 0;  // 0: by file name (*.tsv, *.tab → tab, else comma), .gz ignored
  std::string sequence_column = "sequence";
  std::string label_column = "label";  // classification; regression default target; multi-label with a separator
  std::string name_column;             // "": the column "name" when the header has one
  std::vector<std::string> label_columns;   // multi-label: one 0/1 column per label
  std::string label_separator;              // multi-label: labels in label_column, e.g. ";"
  std::vector<std::string> target_columns;  // regression: empty = {label_column}
  // FASTA: `KEY=value` word in the header's description holds the label (or target).
  std::string label_tag = "label";
  // Fixed label names and order (class ids = positions). Empty: the labels found,
  // in numeric order when all are integers (NT's 0/1/2), else alphabetical.
  std::vector<std::string> labels;
  bool skip_bad = false;
};

// FASTA by extension (.fa .fasta .fna .ffn .frn .fas, optionally .gz), CSV/TSV otherwise.
bool is_fasta_path(const std::string& path);

Dataset load_csv(const std::string& path, const LoadOptions& o);
// Labels (or a regression target) from the `label_tag=` word of each header.
Dataset load_fasta(const std::string& path, const LoadOptions& o);
// One class per file: {label name, path} pairs; class ids follow the list order
// (unless o.labels fixes them). Classification only.
Dataset load_fasta_files(const std::vector<std::pair<std::string, std::string>>& files, const LoadOptions& o);
// Promoter-style pair: negatives are class 0, positives class 1.
Dataset load_fasta_pair(const std::string& positive, const std::string& negative, const LoadOptions& o,
                        const std::string& positive_name = "positive", const std::string& negative_name = "negative");
// load_fasta or load_csv by extension.
Dataset load_file(const std::string& path, const LoadOptions& o);

// Train and test files: the test set is read with the training set's labels, so a
// label the training set lacks is an error at its line; a training label the test
// set never uses is an error naming both files.
void load_train_test(const std::string& train_path, const std::string& test_path, const LoadOptions& o,
                     Dataset* train, Dataset* test);
// Error unless train and test have the same label names (classification, multi-label).
void check_same_labels(const Dataset& train, const Dataset& test);

// The 18 Nucleotide Transformer downstream tasks (benchmarks.md), in the seed's order.
std::vector<std::string> nt_task_names();
// DIR/<task>/train.csv and test.csv (or .csv.gz, .tsv, .tsv.gz).
void load_nt_task(const std::string& dir, const std::string& task, const LoadOptions& o, Dataset* train,
                  Dataset* test);

}  // namespace mambaseq
