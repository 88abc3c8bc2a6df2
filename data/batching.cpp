#include "mambaseq/batching.h"

#include <algorithm>

#include "mambaseq/error.h"

namespace mambaseq {

CropMode crop_mode_from_name(const std::string& s) {
  if (s == "truncate") return CropMode::Truncate;
  if (s == "random") return CropMode::Random;
  fail("unknown crop mode '{}' (known: truncate, random)", s);
}

std::string crop_mode_name(CropMode m) { return m == CropMode::Random ? "random" : "truncate"; }

void augment_example(const Dataset& d, const Example& e, const BatchingOptions& o, Rng& rng,
                     std::vector<int32_t>& ids, std::vector<int32_t>& labels) {
  const int64_t n = static_cast<int64_t>(e.ids.size());
  int64_t start = 0, len = n;
  if (o.max_len > 0 && n > o.max_len) {
    len = o.max_len;
    if (o.crop == CropMode::Random) start = static_cast<int64_t>(rng.below(static_cast<uint64_t>(n - len + 1)));
  }
  ids.assign(e.ids.begin() + start, e.ids.begin() + start + len);
  labels.clear();
  if (!e.token_labels.empty()) {
    const int64_t m = static_cast<int64_t>(e.token_labels.size());
    for (int64_t t = start; t < start + len; ++t) labels.push_back(t < m ? e.token_labels[t] : kIgnoreIndex);
  }
  if (o.rc_augment && (rng.next_u64() >> 63)) {
    MS_CHECK(d.dna, "dataset '{}': reverse-complement augmentation needs DNA tokens (this task's ids are symbols)",
             d.name);
    MS_CHECK(e.token_labels.empty(),
             "dataset '{}': reverse-complement augmentation of token-labelled examples is not supported", d.name);
    d.tokenizer.reverse_complement_inplace(ids.data(), static_cast<int64_t>(ids.size()));
  }
}

Batch make_batch(const Dataset& d, const std::vector<int64_t>& idx, const BatchingOptions& o, HeadKind head,
                 int64_t step) {
  if (o.crop == CropMode::Truncate && !o.rc_augment) return make_batch(d, idx, o.max_len, head);
  MS_CHECK(!idx.empty(), "make_batch: no examples");
  if (o.rc_augment) {
    // Checked up front, not only when a coin comes up heads: a bad config fails at step 1.
    MS_CHECK(d.dna, "dataset '{}': reverse-complement augmentation needs DNA tokens (this task's ids are symbols)",
             d.name);
    MS_CHECK(d.tokenizer.has_reverse_complement(),
             "dataset '{}': {} tokens have no reverse complement; turn rc_augment off", d.name, d.tokenizer.name());
  }
  // Crop/flip into a scratch dataset, then the plain batch builder does padding and labels.
  Rng rng = Rng::derive(o.seed, kAugmentStream + static_cast<uint64_t>(step));
  Dataset tmp = empty_like(d);
  tmp.examples.resize(idx.size());
  std::vector<int64_t> local(idx.size());
  for (size_t r = 0; r < idx.size(); ++r) {
    MS_CHECK(idx[r] >= 0 && idx[r] < d.size(), "make_batch: example index {} out of range", idx[r]);
    const Example& e = d.examples[idx[r]];
    Example& x = tmp.examples[r];
    augment_example(d, e, o, rng, x.ids, x.token_labels);
    x.label = e.label;
    x.targets = e.targets;
    local[r] = static_cast<int64_t>(r);
  }
  return make_batch(tmp, local, 0, head);
}

BatchSampler::BatchSampler(const Dataset& d, BatchingOptions o) : d_(d), o_(o) {
  MS_CHECK(o_.batch_size > 0, "batching: batch_size must be positive, got {}", o_.batch_size);
  MS_CHECK(o_.max_len >= 0, "batching: max_len must be >= 0, got {}", o_.max_len);
  MS_CHECK(o_.bucket_batches > 0, "batching: bucket_batches must be positive, got {}", o_.bucket_batches);
  MS_CHECK(d.size() > 0, "batching: dataset '{}' is empty", d.name);
  spe_ = (d.size() + o_.batch_size - 1) / o_.batch_size;
}

std::vector<int64_t> BatchSampler::indices(int64_t step) {
  MS_CHECK(step >= 0, "batching: negative step {}", step);
  const int64_t epoch = step / spe_, j = step % spe_, n = d_.size(), bs = o_.batch_size;
  if (epoch != epoch_) {
    // Same permutation as Trainer::batch_indices, so bucketing off = the trainer's order.
    std::vector<int64_t> perm(n);
    for (int64_t i = 0; i < n; ++i) perm[i] = i;
    Rng rng = Rng::derive(o_.seed, 1000003 + static_cast<uint64_t>(epoch));
    for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i + 1))]);
    batches_.clear();
    if (!o_.bucket) {
      for (int64_t a = 0; a < n; a += bs) batches_.emplace_back(perm.begin() + a, perm.begin() + std::min(n, a + bs));
    } else {
      const int64_t window = bs * o_.bucket_batches;
      auto len = [&](int64_t i) {
        const int64_t l = static_cast<int64_t>(d_.examples[i].ids.size());
        return o_.max_len > 0 ? std::min(l, o_.max_len) : l;
      };
      for (int64_t w = 0; w < n; w += window) {
        const auto first = perm.begin() + w, last = perm.begin() + std::min(n, w + window);
        std::stable_sort(first, last, [&](int64_t a, int64_t b) { return len(a) < len(b); });
      }
      // Windows are whole multiples of the batch size, so only the last batch is short.
      for (int64_t a = 0; a < n; a += bs) batches_.emplace_back(perm.begin() + a, perm.begin() + std::min(n, a + bs));
      for (int64_t i = static_cast<int64_t>(batches_.size()) - 1; i > 0; --i)
        std::swap(batches_[i], batches_[rng.below(static_cast<uint64_t>(i + 1))]);
    }
    epoch_ = epoch;
  }
  return batches_[j];
}

}  // namespace mambaseq
