#include "mambaseq/report.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "mambaseq/error.h"

namespace mambaseq {

bool have_gnuplot() { return std::system("command -v gnuplot > /dev/null 2>&1") == 0; }

bool run_gnuplot(const std::string& script, const std::string& png) {
  if (!have_gnuplot()) {
    std::fprintf(stderr, "note: gnuplot is not installed, so %s was not drawn (scripts/setup.sh installs it)\n",
                 png.c_str());
    return false;
  }
  const std::string tmp_png = png + ".tmp." + std::to_string(::getpid()) + ".png";
  const std::string gp = png + ".gp";
  {
    std::ofstream f(gp);
    MS_CHECK(f.good(), "cannot write {}", gp);
    f << "set terminal pngcairo size 900,540 noenhanced font 'Sans,10'\n"
      << "set output '" << tmp_png << "'\n"
      << script;
  }
  const std::string cmd = "gnuplot '" + gp + "' 2> '" + gp + ".log'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    // pngcairo is optional in gnuplot builds: fall back to the plain png terminal.
    std::ofstream f(gp);
    f << "set terminal png size 900,540\nset output '" << tmp_png << "'\n" << script;
    f.close();
    rc = std::system(cmd.c_str());
  }
  std::error_code ec;
  if (rc != 0 || !std::filesystem::exists(tmp_png)) {
    std::filesystem::remove(tmp_png, ec);
    fail("gnuplot failed to draw {} (see {}.log)", png, gp);
  }
  std::filesystem::rename(tmp_png, png, ec);
  MS_CHECK(!ec, "cannot move plot into {}: {}", png, ec.message());
  std::filesystem::remove(gp + ".log", ec);
  return true;
}

bool plot_training_curve(const std::string& dir, const std::vector<StepRecord>& h) {
  if (h.empty()) return false;
  const std::string tsv = dir + "/loss.tsv";
  {
    std::ofstream f(tsv);
    MS_CHECK(f.good(), "cannot write {}", tsv);
    f << "step\tepoch\tloss\tlr\tgrad_norm\ttokens_per_s\n";
    for (const auto& r : h)
      f << r.step << '\t' << r.epoch << '\t' << r.loss << '\t' << r.lr << '\t' << r.grad_norm << '\t'
        << r.tokens_per_s << '\n';
  }
  const std::string script = fmt::format(
      "set title 'Training loss'\nset xlabel 'step'\nset ylabel 'loss'\nset y2label 'learning rate'\n"
      "set y2tics\nset ytics nomirror\nset grid\nset key top right\n"
      "plot '{0}' using 1:3 skip 1 with lines lw 1 lc rgb '#9ecae1' title 'loss (step)', "
      "'{0}' using 1:3 skip 1 smooth bezier with lines lw 2 lc rgb '#08519c' title 'loss (smoothed)', "
      "'{0}' using 1:4 skip 1 axes x1y2 with lines lw 1 dt 2 lc rgb '#e6550d' title 'lr'\n",
      tsv);
  return run_gnuplot(script, dir + "/loss.png");
}

std::string metrics_table(const ClassMetrics& m, const std::vector<std::string>& names) {
  auto f = [](double v) { return std::isnan(v) ? std::string("n/a") : fmt::format("{:.4f}", v); };
  std::string s = fmt::format(
      "| metric | value |\n|---|---|\n| examples | {} |\n| accuracy | {} |\n| MCC | {} |\n| macro-F1 | {} |\n"
      "| precision | {} |\n| recall (sensitivity) | {} |\n| specificity | {} |\n| AUROC | {} |\n| AUPRC | {} |\n",
      m.n, f(m.accuracy), f(m.mcc), f(m.macro_f1), f(m.precision), f(m.recall), f(m.specificity), f(m.auroc),
      f(m.auprc));
  s += "\nconfusion matrix (rows: true, columns: predicted)\n\n|  |";
  auto name = [&](size_t k) { return k < names.size() ? names[k] : std::to_string(k); };
  for (size_t k = 0; k < m.confusion.size(); ++k) s += " " + name(k) + " |";
  s += "\n|---|";
  for (size_t k = 0; k < m.confusion.size(); ++k) s += "---|";
  s += "\n";
  for (size_t i = 0; i < m.confusion.size(); ++i) {
    s += "| " + name(i) + " |";
    for (auto c : m.confusion[i]) s += " " + std::to_string(c) + " |";
    s += "\n";
  }
  return s;
}

}  // namespace mambaseq
