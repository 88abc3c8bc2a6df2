#include "mambaseq/splits.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "mambaseq/error.h"

namespace mambaseq {

namespace {
// Groups of example indices per stratum, ascending stratum, each shuffled by rng.
std::vector<std::vector<int64_t>> shuffled_strata(const Dataset& d, Rng& rng) {
  const auto key = strata(d);
  std::map<int64_t, std::vector<int64_t>> by;
  for (int64_t i = 0; i < d.size(); ++i) by[key[i]].push_back(i);
  std::vector<std::vector<int64_t>> out;
  for (auto& [k, idx] : by) {
    for (int64_t i = static_cast<int64_t>(idx.size()) - 1; i > 0; --i)
      std::swap(idx[i], idx[rng.below(static_cast<uint64_t>(i + 1))]);
    out.push_back(std::move(idx));
  }
  return out;
}

int64_t round_share(size_t n, double fraction) {
  // Half up; the epsilon keeps e.g. 0.2 · 1000 = 200.00000000000003 from mattering.
  return static_cast<int64_t>(std::floor(static_cast<double>(n) * fraction + 0.5 + 1e-9));
}

// subset() keeps metadata only; the loading counts of `all` go with the train part, so
// the parts' counts add up to the source's (and a run can report what it skipped).
Dataset train_part(const Dataset& all, const std::vector<int64_t>& idx) {
  Dataset t = subset(all, idx);
  t.skipped = all.skipped;
  t.token_stats = all.token_stats;
  return t;
}
}  // namespace

std::vector<int64_t> strata(const Dataset& d) {
  std::vector<int64_t> key(d.size(), 0);
  switch (d.target) {
    case TargetKind::Classification:
      for (int64_t i = 0; i < d.size(); ++i) key[i] = d.examples[i].label;
      break;
    case TargetKind::MultiLabel: {
      std::map<std::vector<float>, int64_t> ids;
      for (int64_t i = 0; i < d.size(); ++i) key[i] = ids.emplace(d.examples[i].targets, ids.size()).first->second;
      break;
    }
    case TargetKind::Regression: {
      // Quintiles of the first target by rank (ties broken by index: deterministic).
      std::vector<int64_t> order(d.size());
      for (int64_t i = 0; i < d.size(); ++i) order[i] = i;
      auto t0 = [&](int64_t i) { return d.examples[i].targets.empty() ? 0.0f : d.examples[i].targets[0]; };
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t0(a) < t0(b); });
      for (int64_t r = 0; r < d.size(); ++r) key[order[r]] = r * 5 / std::max<int64_t>(1, d.size());
      break;
    }
    case TargetKind::Token: break;
  }
  return key;
}

Dataset subset(const Dataset& d, const std::vector<int64_t>& idx) {
  Dataset s = empty_like(d);
  s.examples.reserve(idx.size());
  for (int64_t i : idx) s.examples.push_back(d.examples[i]);
  return s;
}

void split_train_val_test(const Dataset& all, double val_fraction, double test_fraction, uint64_t seed,
                          Dataset* train, Dataset* val, Dataset* test) {
  MS_CHECK(val_fraction >= 0 && val_fraction < 1, "validation fraction must be in [0, 1), got {}", val_fraction);
  MS_CHECK(test_fraction >= 0 && test_fraction < 1, "test fraction must be in [0, 1), got {}", test_fraction);
  MS_CHECK(val_fraction + test_fraction < 1, "validation ({}) + test ({}) fractions leave nothing to train on",
           val_fraction, test_fraction);
  MS_CHECK(train != nullptr && (val || val_fraction == 0) && (test || test_fraction == 0),
           "split: missing output dataset");
  Rng rng(seed);
  std::vector<int64_t> tr, va, te;
  for (const auto& idx : shuffled_strata(all, rng)) {
    const int64_t nt = round_share(idx.size(), test_fraction);
    const int64_t nv = std::min<int64_t>(round_share(idx.size(), val_fraction), idx.size() - nt);
    for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i) (i < nt ? te : i < nt + nv ? va : tr).push_back(idx[i]);
  }
  for (auto* v : {&tr, &va, &te}) std::sort(v->begin(), v->end());
  // Build the outputs last: `all` may alias one of them.
  Dataset a = train_part(all, tr), b = subset(all, va), c = subset(all, te);
  *train = std::move(a);
  if (val) *val = std::move(b);
  if (test) *test = std::move(c);
}

void stratified_split(const Dataset& all, double val_fraction, uint64_t seed, Dataset* train, Dataset* val) {
  MS_CHECK(val_fraction > 0 && val_fraction < 1, "validation fraction must be in (0, 1), got {}", val_fraction);
  split_train_val_test(all, val_fraction, 0.0, seed, train, val, nullptr);
}

std::vector<int64_t> kfold_assignment(const Dataset& all, int64_t k, uint64_t seed) {
  MS_CHECK(k >= 2, "k-fold: k must be at least 2, got {}", k);
  MS_CHECK(all.size() >= k, "k-fold: {} examples cannot make {} folds", all.size(), k);
  Rng rng(seed);
  std::vector<int64_t> fold(all.size(), 0);
  int64_t next = 0;
  for (const auto& idx : shuffled_strata(all, rng))
    for (int64_t i : idx) fold[i] = next++ % k;
  return fold;
}

void kfold_split(const Dataset& all, int64_t k, int64_t fold, uint64_t seed, Dataset* train, Dataset* val) {
  MS_CHECK(fold >= 0 && fold < k, "k-fold: fold must be in 0..{}, got {}", k - 1, fold);
  const auto f = kfold_assignment(all, k, seed);
  std::vector<int64_t> tr, va;
  for (int64_t i = 0; i < all.size(); ++i) (f[i] == fold ? va : tr).push_back(i);
  Dataset a = train_part(all, tr), b = subset(all, va);
  *train = std::move(a);
  *val = std::move(b);
}

}  // namespace mambaseq
