// Nucleotide tokens, dataset basics, built-in synthetic tasks, and batching.
#include <algorithm>
#include <cmath>
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

std::string target_kind_name(TargetKind k) {
  switch (k) {
    case TargetKind::Classification: return "classification";
    case TargetKind::MultiLabel: return "multi_label";
    case TargetKind::Regression: return "regression";
    case TargetKind::Token: return "token";
  }
  return "?";
}

TargetKind target_kind_from_name(const std::string& s) {
  if (s == "classification") return TargetKind::Classification;
  if (s == "multi_label") return TargetKind::MultiLabel;
  if (s == "regression") return TargetKind::Regression;
  if (s == "token") return TargetKind::Token;
  fail("unknown target kind '{}' (known: classification, multi_label, regression, token)", s);
}

Dataset empty_like(const Dataset& d) {
  Dataset e;
  e.name = d.name;
  e.num_labels = d.num_labels;
  e.vocab_size = d.vocab_size;
  e.label_names = d.label_names;
  e.target = d.target;
  e.tokenizer = d.tokenizer;
  e.dna = d.dna;
  return e;
}

std::vector<std::string> synthetic_task_names() {
  return {"motif",         "long_range",         "splice",        "selective_copy",
          "induction",     "selective_copy_seq", "induction_seq", "mrna_stability"};
}

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
    // Motifs X and Y, one in the first quarter and the other in the last: label = which
    // came first. Both classes hold both motifs, so only their order — over at least
    // half the sequence — tells them apart (a position-invariant model sees no difference).
    const std::string X = "GGATCC", Y = "CTGCAG";
    MS_CHECK(len >= 48, "synthetic task long_range: length must be >= 48, got {}", len);
    const auto mx = encode_nucleotides(X), my = encode_nucleotides(Y);
    d.label_names = {"Y_first", "X_first"};
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      std::vector<int32_t> ids;
      do ids = random_seq();
      while (contains(ids, mx, 0, len) || contains(ids, my, 0, len));
      e.label = static_cast<int32_t>(i % 2);
      const int64_t q = len / 4;
      plant(ids, e.label ? X : Y, static_cast<int64_t>(rng.below(q - 6)));
      plant(ids, e.label ? Y : X, len - q + static_cast<int64_t>(rng.below(q - 6)));
      e.ids = std::move(ids);
      d.examples.push_back(std::move(e));
    }
  } else if (task == "splice") {
    // Donor before acceptor (intron-like) vs one signal alone or both in the wrong order.
    const std::string donor = "GTAAGT", acceptor = "TTTTCAG";
    const int64_t gap = 20, D = 6, A = 7;
    MS_CHECK(len >= D + gap + A + 2, "synthetic task splice: length must be >= {}, got {}", D + gap + A + 2, len);
    const auto md = encode_nucleotides(donor), ma = encode_nucleotides(acceptor);
    d.label_names = {"no_intron", "intron"};
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      e.label = static_cast<int32_t>(i % 2);
      do e.ids = random_seq();
      while (contains(e.ids, md, 0, len) || contains(e.ids, ma, 0, len));
      // First signal in [0, len − gap − D − A], the second at least `gap` bases after it.
      const int64_t p1 = static_cast<int64_t>(rng.below(len - gap - D - A + 1));
      const int64_t first_end = p1 + (e.label ? D : A);
      const int64_t p2 = first_end + gap + static_cast<int64_t>(rng.below(len - (e.label ? A : D) - first_end - gap + 1));
      const int64_t kind = e.label ? 0 : static_cast<int64_t>(rng.below(3));  // negatives: 0 wrong order, 1 donor, 2 acceptor
      if (e.label) {
        plant(e.ids, donor, p1);
        plant(e.ids, acceptor, p2);
      } else if (kind == 0) {
        plant(e.ids, acceptor, p1);
        plant(e.ids, donor, p2);
      } else {
        // A lone signal anywhere, so its position says nothing about the label.
        const std::string& m = kind == 1 ? donor : acceptor;
        plant(e.ids, m, static_cast<int64_t>(rng.below(len - static_cast<int64_t>(m.size()) + 1)));
      }
      // Planting can create a motif across a boundary by chance; keep the rule exact.
      const bool has_d = contains(e.ids, md, 0, len), has_a = contains(e.ids, ma, 0, len);
      bool ordered = false;
      for (int64_t x = 0; has_d && has_a && x + D <= len && !ordered; ++x)
        if (std::equal(md.begin(), md.end(), e.ids.begin() + x)) ordered = contains(e.ids, ma, x + D, len);
      if (ordered != static_cast<bool>(e.label)) {
        --i;  // redraw this example
        continue;
      }
      d.examples.push_back(std::move(e));
    }
  } else if (task == "selective_copy") {
    // ids: PAD 0, data A..T 1..4, noise N 5, copy marker 6. Token labels 0..3 (A C G T).
    const int64_t K = 8;
    MS_CHECK(len >= 4 * K, "synthetic task selective_copy: length must be >= {}, got {}", 4 * K, len);
    d.target = TargetKind::Token;
    d.dna = false;
    d.vocab_size = 7;
    d.num_labels = 4;
    d.label_names = {"A", "C", "G", "T"};
    const int64_t body = len - K;
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      e.ids.assign(len, 5);
      e.token_labels.assign(len, kIgnoreIndex);
      // K distinct positions in the body, in increasing order (partial Fisher–Yates).
      std::vector<int64_t> pos(body);
      for (int64_t p = 0; p < body; ++p) pos[p] = p;
      for (int64_t k = 0; k < K; ++k) std::swap(pos[k], pos[k + rng.below(body - k)]);
      std::sort(pos.begin(), pos.begin() + K);
      for (int64_t k = 0; k < K; ++k) {
        const int32_t v = static_cast<int32_t>(rng.below(4));
        e.ids[pos[k]] = 1 + v;
        e.ids[body + k] = 6;
        e.token_labels[body + k] = v;
      }
      d.examples.push_back(std::move(e));
    }
  } else if (task == "induction" || task == "induction_seq") {
    // ids: PAD 0, A..T 1..4, trigger N 5. The last token (N) is labelled with the base
    // that followed the first N. The first N sits in the first half, so there is
    // always a long gap to bridge. induction_seq: the same sequences, the answer as the
    // sequence's class, so models without a token head (CNN, Transformer) run it too.
    MS_CHECK(len >= 16, "synthetic task {}: length must be >= 16, got {}", task, len);
    const bool per_token = task == "induction";
    d.target = per_token ? TargetKind::Token : TargetKind::Classification;
    d.dna = false;
    d.vocab_size = 6;
    d.num_labels = 4;
    d.label_names = {"A", "C", "G", "T"};
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      e.ids = random_seq();
      const int64_t p = static_cast<int64_t>(rng.below(len / 2 - 1));
      e.ids[p] = 5;
      e.ids[len - 1] = 5;
      if (per_token) {
        e.token_labels.assign(len, kIgnoreIndex);
        e.token_labels[len - 1] = e.ids[p + 1] - 1;
      } else {
        e.label = e.ids[p + 1] - 1;
      }
      d.examples.push_back(std::move(e));
    }
  } else if (task == "selective_copy_seq") {
    // Selective copying as one answer per sequence: 2 data bases at random positions
    // among noise (N); the class is the ordered pair (16 classes "AA".."TT"), so the
    // model must both ignore the noise and keep the order. ids: PAD 0, A..T 1..4, N 5.
    MS_CHECK(len >= 8, "synthetic task selective_copy_seq: length must be >= 8, got {}", len);
    d.dna = false;
    d.vocab_size = 6;
    d.num_labels = 16;
    d.label_names.clear();
    for (const char a : std::string("ACGT"))
      for (const char b : std::string("ACGT")) d.label_names.push_back(std::string{a, b});
    for (int64_t i = 0; i < n; ++i) {
      Example e;
      e.ids.assign(len, 5);
      e.label = static_cast<int32_t>(i % 16);  // balanced classes
      const int64_t p0 = static_cast<int64_t>(rng.below(len - 1));
      const int64_t p1 = p0 + 1 + static_cast<int64_t>(rng.below(len - p0 - 1));
      e.ids[p0] = 1 + e.label / 4;
      e.ids[p1] = 1 + e.label % 4;
      d.examples.push_back(std::move(e));
    }
  } else if (task == "mrna_stability") {
    // Coding sequences (ATG, len − 2 sense codons, a stop), read as codon tokens, with a
    // half-life-like target: 2 + 3·(mean codon optimality) + 1.5·(mean optimality of the
    // first 10 codons, the "ramp") + N(0, 0.1²). Optimality per codon is a fixed table in
    // [−1, 1] (the same for every seed), like a codon stability coefficient.
    MS_CHECK(len >= 12, "synthetic task mrna_stability: length (codons) must be >= 12, got {}", len);
    const SeqTokenizer codon = SeqTokenizer::codon(0);
    d.target = TargetKind::Regression;
    d.num_labels = 1;
    d.label_names = {"half_life"};
    d.tokenizer = codon;
    d.vocab_size = codon.vocab_size();
    const std::string bases = "ACGT";
    std::vector<std::string> sense;
    std::vector<double> optimality;
    Rng table(0x5EED0C0D0ULL);
    for (int c = 0; c < 64; ++c) {
      const std::string cod{bases[c / 16], bases[c / 4 % 4], bases[c % 4]};
      if (cod == "TAA" || cod == "TAG" || cod == "TGA") continue;
      sense.push_back(cod);
      optimality.push_back(2.0 * table.uniform() - 1.0);
    }
    const char* stops[3] = {"TAA", "TAG", "TGA"};
    for (int64_t i = 0; i < n; ++i) {
      // Each sequence leans towards optimal or non-optimal codons (codon usage bias b), so
      // the targets spread: P(codon) ∝ exp(2·b·optimality).
      const double bias = rng.uniform(-1.0, 1.0);
      std::vector<double> cum(sense.size());
      double tot = 0;
      for (size_t c = 0; c < sense.size(); ++c) cum[c] = tot += std::exp(2.0 * bias * optimality[c]);
      std::string cds = "ATG";
      double all = 0, ramp = 0;
      for (int64_t k = 1; k + 1 < len; ++k) {
        const size_t c = std::min(sense.size() - 1, static_cast<size_t>(std::lower_bound(cum.begin(), cum.end(),
                                                                                   rng.uniform() * tot) - cum.begin()));
        cds += sense[c];
        all += optimality[c];
        if (k <= 10) ramp += optimality[c];
      }
      cds += stops[rng.below(3)];
      Example e;
      e.ids = codon.encode(cds);
      e.targets = {static_cast<float>(2.0 + 3.0 * all / double(len - 2) + 1.5 * ramp / 10.0 + 0.1 * rng.normal())};
      d.examples.push_back(std::move(e));
    }
  } else {
    std::string known;
    for (const auto& t : synthetic_task_names()) known += (known.empty() ? "" : ", ") + t;
    fail("unknown synthetic task '{}' (known: {})", task, known);
  }
  return d;
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
  const bool ml = d.multi_label();
  MS_CHECK(!ml || head == HeadKind::SequenceClassification,
           "dataset '{}' is multi-label: it needs a sequence classification head (one logit per label), not {}",
           d.name, head_name(head));
  b.multi_label = ml;
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
    } else if (head == HeadKind::SequenceClassification && !ml) {
      b.labels.push_back(e.label);
    } else {
      MS_CHECK(static_cast<int64_t>(e.targets.size()) == d.num_labels,
               "dataset '{}': example {} has {} targets, expected {}", d.name, idx[r], e.targets.size(), d.num_labels);
      b.targets.insert(b.targets.end(), e.targets.begin(), e.targets.end());
    }
  }
  return b;
}

}  // namespace mambaseq
