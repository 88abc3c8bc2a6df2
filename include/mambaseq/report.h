// Reports people read: metric tables (Markdown) and PNG plots through gnuplot.
#pragma once
#include <string>
#include <vector>

#include "mambaseq/metrics.h"
#include "mambaseq/trainer.h"

namespace mambaseq {

// True when `gnuplot` is on PATH.
bool have_gnuplot();

// Runs a gnuplot script that writes `png`; the PNG appears atomically (written to a
// temporary name, then renamed). Returns false, with a note on stderr, if gnuplot is
// missing; a failing gnuplot is an Error.
bool run_gnuplot(const std::string& script, const std::string& png);

// Loss (and learning rate) per step → DIR/loss.tsv and DIR/loss.png.
bool plot_training_curve(const std::string& dir, const std::vector<StepRecord>& history);

std::string metrics_table(const ClassMetrics& m, const std::vector<std::string>& label_names);

}  // namespace mambaseq
