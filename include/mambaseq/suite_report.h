// Results of a benchmark suite (models × tasks): JSON, CSV, a Markdown report and
// PNG plots (per-task accuracy by model, category summary, MCC radar by category,
// efficiency: accuracy against training time and parameters).
#pragma once
#include <string>
#include <vector>

#include "mambaseq/metrics.h"

namespace mambaseq {

struct SuiteRow {
  std::string task, category, model;
  int64_t params = 0;
  int64_t epochs = 0;
  double train_seconds = 0;
  double train_tokens_per_s = 0;
  double infer_tokens_per_s = 0;
  ClassMetrics test;  // metrics on the task's test split
};

// A published figure to print beside ours (e.g. CNNProm's Sn/Sp/MCC).
struct PublishedRow {
  std::string task, source;
  double accuracy = NAN, mcc = NAN, sensitivity = NAN, specificity = NAN;
};

// Writes DIR/results.json, DIR/results.csv, DIR/report.md and the PNG plots
// (DIR/accuracy_by_task.png, category_summary.png, mcc_radar.png, efficiency.png).
// Returns the Markdown report.
// `notes` are listed in the report (what was skipped and why, machine, wall time).
std::string write_suite_report(const std::string& dir, const std::string& suite, const std::vector<SuiteRow>& rows,
                               const std::vector<PublishedRow>& published = {},
                               const std::vector<std::string>& notes = {},
                               const std::string& run_info = "");

}  // namespace mambaseq
