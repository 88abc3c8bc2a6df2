// Evaluation metrics for classification and regression.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace mambaseq {

struct ClassMetrics {
  int64_t n = 0, num_classes = 2;
  double accuracy = 0, mcc = 0, macro_f1 = 0;
  // Binary: of class 1 (positive). Multi-class: macro averages over classes.
  double precision = 0, recall = 0, specificity = 0;
  double auroc = NAN, auprc = NAN;  // binary only (needs probabilities)
  std::vector<std::vector<int64_t>> confusion;  // [true][predicted]
};

// probs: [n, num_classes] row-major, or empty (then AUROC/AUPRC stay NaN).
ClassMetrics classification_metrics(const std::vector<int32_t>& y_true, const std::vector<int32_t>& y_pred,
                                    const std::vector<float>& probs, int64_t num_classes);

struct RegressionMetrics {
  int64_t n = 0;
  double mse = 0, pearson = NAN, spearman = NAN;
};
RegressionMetrics regression_metrics(const std::vector<float>& pred, const std::vector<float>& target);

// One metric by name (accuracy, mcc, macro_f1, precision, recall, specificity, auroc,
// auprc, mse, pearson, spearman) and whether larger is better.
double metric_value(const ClassMetrics& m, const std::string& name);
bool metric_higher_is_better(const std::string& name);

}  // namespace mambaseq
