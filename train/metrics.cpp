#include "mambaseq/metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mambaseq/error.h"

namespace mambaseq {

namespace {
// Area under the ROC curve by the rank statistic (ties get half credit).
double auroc_binary(const std::vector<int32_t>& y, const std::vector<double>& s) {
  std::vector<size_t> idx(y.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] < s[b]; });
  double rank_sum = 0;
  int64_t npos = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && s[idx[j]] == s[idx[i]]) ++j;
    const double avg_rank = (i + 1 + j) / 2.0;
    for (size_t k = i; k < j; ++k)
      if (y[idx[k]] == 1) rank_sum += avg_rank, ++npos;
    i = j;
  }
  const int64_t nneg = static_cast<int64_t>(y.size()) - npos;
  if (npos == 0 || nneg == 0) return NAN;
  return (rank_sum - npos * (npos + 1) / 2.0) / (double(npos) * nneg);
}

// Average precision (the step-wise area under the precision-recall curve).
double auprc_binary(const std::vector<int32_t>& y, const std::vector<double>& s) {
  std::vector<size_t> idx(y.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  const int64_t npos = std::count(y.begin(), y.end(), 1);
  if (npos == 0) return NAN;
  double ap = 0;
  int64_t tp = 0, seen = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    int64_t tp_group = 0;
    while (j < idx.size() && s[idx[j]] == s[idx[i]]) tp_group += y[idx[j]] == 1, ++j;
    seen += j - i;
    tp += tp_group;
    ap += double(tp_group) / npos * (double(tp) / seen);
    i = j;
  }
  return ap;
}

std::vector<double> ranks(const std::vector<float>& v) {
  std::vector<size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && v[idx[j]] == v[idx[i]]) ++j;
    for (size_t k = i; k < j; ++k) r[idx[k]] = (i + j - 1) / 2.0;
    i = j;
  }
  return r;
}

template <typename A, typename B>
double pearson(const A& a, const B& b) {
  const size_t n = a.size();
  if (n < 2) return NAN;
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; ++i) ma += a[i], mb += b[i];
  ma /= n, mb /= n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return (saa == 0 || sbb == 0) ? NAN : sab / std::sqrt(saa * sbb);
}
}  // namespace

ClassMetrics classification_metrics(const std::vector<int32_t>& y_true, const std::vector<int32_t>& y_pred,
                                    const std::vector<float>& probs, int64_t K) {
  MS_CHECK(y_true.size() == y_pred.size(), "metrics: {} labels but {} predictions", y_true.size(), y_pred.size());
  ClassMetrics m;
  m.n = static_cast<int64_t>(y_true.size());
  m.num_classes = K;
  m.confusion.assign(K, std::vector<int64_t>(K, 0));
  for (size_t i = 0; i < y_true.size(); ++i) {
    MS_CHECK(y_true[i] >= 0 && y_true[i] < K && y_pred[i] >= 0 && y_pred[i] < K,
             "metrics: label {} / prediction {} outside [0, {})", y_true[i], y_pred[i], K);
    ++m.confusion[y_true[i]][y_pred[i]];
  }
  if (m.n == 0) return m;
  // Gorodkin's R_K, which is Matthews' correlation for K = 2.
  std::vector<double> t(K, 0), p(K, 0);
  double c = 0;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      t[i] += m.confusion[i][j];
      p[j] += m.confusion[i][j];
      if (i == j) c += m.confusion[i][j];
    }
  const double s = double(m.n);
  double tp_sum = 0, pp = 0, tt = 0;
  for (int64_t k = 0; k < K; ++k) tp_sum += p[k] * t[k], pp += p[k] * p[k], tt += t[k] * t[k];
  const double den = std::sqrt((s * s - pp) * (s * s - tt));
  m.mcc = den == 0 ? 0.0 : (c * s - tp_sum) / den;
  m.accuracy = c / s;
  double f1 = 0, prec = 0, rec = 0, spec = 0;
  std::vector<double> pk(K), rk(K), sk(K);
  for (int64_t k = 0; k < K; ++k) {
    const double tp = m.confusion[k][k], fp = p[k] - tp, fn = t[k] - tp, tn = s - tp - fp - fn;
    pk[k] = tp + fp > 0 ? tp / (tp + fp) : 0;
    rk[k] = tp + fn > 0 ? tp / (tp + fn) : 0;
    sk[k] = tn + fp > 0 ? tn / (tn + fp) : 0;
    f1 += pk[k] + rk[k] > 0 ? 2 * pk[k] * rk[k] / (pk[k] + rk[k]) : 0;
    prec += pk[k], rec += rk[k], spec += sk[k];
  }
  m.macro_f1 = f1 / K;
  if (K == 2) {
    m.precision = pk[1], m.recall = rk[1], m.specificity = sk[1];
    if (!probs.empty()) {
      MS_CHECK(probs.size() == y_true.size() * 2, "metrics: {} probabilities for {} examples", probs.size(), y_true.size());
      std::vector<double> score(y_true.size());
      for (size_t i = 0; i < score.size(); ++i) score[i] = probs[i * 2 + 1];
      m.auroc = auroc_binary(y_true, score);
      m.auprc = auprc_binary(y_true, score);
    }
  } else {
    m.precision = prec / K, m.recall = rec / K, m.specificity = spec / K;
  }
  return m;
}

RegressionMetrics regression_metrics(const std::vector<float>& pred, const std::vector<float>& target) {
  MS_CHECK(pred.size() == target.size(), "metrics: {} predictions but {} targets", pred.size(), target.size());
  RegressionMetrics r;
  r.n = static_cast<int64_t>(pred.size());
  if (r.n == 0) return r;
  for (size_t i = 0; i < pred.size(); ++i) r.mse += (double(pred[i]) - target[i]) * (double(pred[i]) - target[i]);
  r.mse /= r.n;
  r.pearson = pearson(pred, target);
  r.spearman = pearson(ranks(pred), ranks(target));
  return r;
}

double metric_value(const ClassMetrics& m, const std::string& name) {
  if (name == "accuracy") return m.accuracy;
  if (name == "mcc") return m.mcc;
  if (name == "macro_f1" || name == "f1") return m.macro_f1;
  if (name == "precision") return m.precision;
  if (name == "recall" || name == "sensitivity") return m.recall;
  if (name == "specificity") return m.specificity;
  if (name == "auroc") return m.auroc;
  if (name == "auprc") return m.auprc;
  fail("unknown classification metric '{}' (known: accuracy, mcc, macro_f1, precision, recall, specificity, auroc, auprc)",
       name);
}

bool metric_higher_is_better(const std::string& name) { return name != "mse" && name != "loss"; }

}  // namespace mambaseq
