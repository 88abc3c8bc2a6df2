// Splits: stratified train / validation / test by fraction, and stratified k-fold.
// Deterministic for a seed; each part keeps the examples in their original order.
//
// Strata: the class (classification); the exact label set (multi-label); the quintile
// of the first target (regression); one stratum for token tasks. Each stratum of n
// examples gives round(n · fraction) to a part, halves rounding up — so the promoter
// files' 80/20 split (seed 7) gives E. coli 3071/768 and B. subtilis 1098/275, as
// published (benchmarks.md).
#pragma once
#include <cstdint>
#include <vector>

#include "mambaseq/data.h"

namespace mambaseq {

// Stratum of each example (see above), as small integers.
std::vector<int64_t> strata(const Dataset& d);

// The examples at `idx` (in that order) with d's metadata. The splits below give the
// train part also d's loading counts (skipped, token_stats); the other parts start at 0.
Dataset subset(const Dataset& d, const std::vector<int64_t>& idx);

// Per stratum: shuffle (Rng(seed), strata in ascending order), the first
// round(n · test_fraction) go to test, the next round(n · val_fraction) to validation,
// the rest to train. The test part does not depend on val_fraction. Fractions in
// [0, 1) with val + test < 1; a null output part must have fraction 0.
void split_train_val_test(const Dataset& all, double val_fraction, double test_fraction, uint64_t seed,
                          Dataset* train, Dataset* val, Dataset* test);

// Stratified k-fold: per stratum, shuffled, examples are dealt to folds 0..k−1 in
// turn (continuing across strata, so the folds differ in size by at most one).
// `fold` is the validation part, the other k − 1 folds are train.
void kfold_split(const Dataset& all, int64_t k, int64_t fold, uint64_t seed, Dataset* train, Dataset* val);
// The fold (0..k−1) of every example, as kfold_split deals them.
std::vector<int64_t> kfold_assignment(const Dataset& all, int64_t k, uint64_t seed);

}  // namespace mambaseq
