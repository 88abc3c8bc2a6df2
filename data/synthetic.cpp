// Nucleotide tokens, built-in synthetic tasks, splits and batching.
#include <algorithm>
#include <map>

#include "mambaseq/data.h"
#include "mambaseq/error.h"

namespace mambaseq {

int32_t nucleotide_id(char c) {
  switch (c) {
    case 'A': case 'a': return 1;
    case 'C': case 'c': return 2;
    case 'G': case 'g': return 3;
    case 'T': case 't': case 'U': case 'u': return 4;
    case 'N': case 'n': return 5;
    default: return -1;
  }
}

std::vector<int32_t> encode_nucleotides(const std::string& seq) {
  std::vector<int32_t> ids;
  ids.reserve(seq.size());
  for (size_t i = 0; i < seq.size(); ++i) {
    int32_t id = nucleotide_id(seq[i]);
    MS_CHECK(id >= 0, "unknown nucleotide '{}' at position {}", seq[i], i + 1);
    ids.push_back(id);
  }
  return ids;
}

std::vector<std::string> synthetic_task_names() { return {"motif", "long_range"}; }

namespace {
void plant(std::vector<int32_t>& ids, const std::string& motif, int64_t pos) {
  for (size_t k = 0; k < motif.size(); ++k) ids[pos + k] = nucleotide_id(motif[k]);
}
bool contains(const std::vector<int32_t>& ids, const std::vector<int32_t>& m, int64_t from, int64_t to) {
  for (int64_t i = from; i + static_cast<int64_t>(m.size()) <= to; ++i)
    if (std::equal(m.begin(), m.end(), ids.begin() + i)) return true;
  return false;
}
}  // namespace

Dataset make_synthetic(const std::string& task, int64_t n, int64_t len, uint64_t seed) {
  MS_CHECK(n > 0, "synthetic task: number of examples must be positive, got {}", n);
  Dataset d;
  d.name = task;
  d.num_labels = 2;
  d.vocab_size = 6;
  Rng rng(seed);
  auto random_seq = [&] {
    std::vector<int32_t> ids(len);
    for (auto& x : ids) x = 1 + static_cast<int32_t>(rng.below(4));
    return ids;
  };
  if (task == "motif") {
    const std::string motif = "TATAAT";
    MS_CHECK(len >= 12, "synthetic task motif: length must be >= 12, got {}", len);
    const auto m = encode_nucleotides(motif);
    d.label_names = {"absent", "present"};
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      e.label = static_cast<int32_t>(i % 2);
      e.ids = random_seq();
      if (e.label) plant(e.ids, motif, static_cast<int64_t>(rng.below(len - motif.size() + 1)));
      else
        while (contains(e.ids, m, 0, len)) e.ids = random_seq();  // negatives never hold it by chance
      d.examples.push_back(std::move(e));
    }
  } else if (task == "long_range") {
    // Motif X or Y in the first quarter and X or Y in the last quarter: label = same?
    const std::string X = "GGATCC", Y = "CTGCAG";
    MS_CHECK(len >= 48, "synthetic task long_range: length must be >= 48, got {}", len);
    const auto mx = encode_nucleotides(X), my = encode_nucleotides(Y);
    d.label_names = {"different", "same"};
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      std::vector<int32_t> ids;
      do ids = random_seq();
      while (contains(ids, mx, 0, len) || contains(ids, my, 0, len));
      const bool a = rng.below(2), b = rng.below(2);
      const int64_t q = len / 4;
      plant(ids, a ? X : Y, static_cast<int64_t>(rng.below(q - 6)));
      plant(ids, b ? X : Y, len - q + static_cast<int64_t>(rng.below(q - 6)));
      e.ids = std::move(ids);
      e.label = a == b;
      d.examples.push_back(std::move(e));
    }
  } else {
    fail("unknown synthetic task '{}' (known: motif, long_range)", task);
  }
  return d;
}

void stratified_split(const Dataset& all, double val_fraction, uint64_t seed, Dataset* train, Dataset* val) {
  MS_CHECK(val_fraction > 0 && val_fraction < 1, "validation fraction must be in (0, 1), got {}", val_fraction);
  std::map<int32_t, std::vector<int64_t>> by_label;
  for (int64_t i = 0; i < all.size(); ++i) by_label[all.examples[i].label].push_back(i);
  Rng rng(seed);
  for (Dataset* d : {train, val}) {
    d->name = all.name;
    d->num_labels = all.num_labels;
    d->vocab_size = all.vocab_size;
    d->label_names = all.label_names;
    d->examples.clear();
  }
  for (auto& [label, idx] : by_label) {
    for (int64_t i = static_cast<int64_t>(idx.size()) - 1; i > 0; --i)
      std::swap(idx[i], idx[rng.below(static_cast<uint64_t>(i + 1))]);
    const int64_t nv = static_cast<int64_t>(idx.size() * val_fraction + 0.5);
    for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i)
      (i < nv ? val : train)->examples.push_back(all.examples[idx[i]]);
  }
}

Batch make_batch(const Dataset& d, const std::vector<int64_t>& idx, int64_t max_len, HeadKind head) {
  MS_CHECK(!idx.empty(), "make_batch: no examples");
  Batch b;
  b.batch = static_cast<int64_t>(idx.size());
  b.len = 0;
  for (int64_t i : idx) {
    MS_CHECK(i >= 0 && i < d.size(), "make_batch: example index {} out of range", i);
    MS_CHECK(!d.examples[i].ids.empty(), "dataset '{}': example {} is an empty sequence", d.name, i);
    b.len = std::max<int64_t>(b.len, static_cast<int64_t>(d.examples[i].ids.size()));
  }
  if (max_len > 0) b.len = std::min(b.len, max_len);
  b.ids.assign(b.batch * b.len, kPad);
  b.mask.assign(b.batch * b.len, 0);
  const bool per_token = head == HeadKind::LM || head == HeadKind::TokenClassification;
  if (per_token) b.labels.assign(b.batch * b.len, kIgnoreIndex);
  for (int64_t r = 0; r < b.batch; ++r) {
    const Example& e = d.examples[idx[r]];
    const int64_t n = std::min<int64_t>(b.len, static_cast<int64_t>(e.ids.size()));
    for (int64_t t = 0; t < n; ++t) {
      b.ids[r * b.len + t] = e.ids[t];
      b.mask[r * b.len + t] = 1;
    }
    if (head == HeadKind::LM) {
      for (int64_t t = 0; t + 1 < n; ++t) b.labels[r * b.len + t] = e.ids[t + 1];
    } else if (head == HeadKind::TokenClassification) {
      for (int64_t t = 0; t < n && t < static_cast<int64_t>(e.token_labels.size()); ++t)
        b.labels[r * b.len + t] = e.token_labels[t];
    } else if (head == HeadKind::SequenceClassification) {
      b.labels.push_back(e.label);
    } else {
      b.targets.insert(b.targets.end(), e.targets.begin(), e.targets.end());
    }
  }
  return b;
}

}  // namespace mambaseq
