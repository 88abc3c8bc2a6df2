#include "mambaseq/suite_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "mambaseq/error.h"
#include "mambaseq/report.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

namespace {

std::string num(double v, int prec = 4) { return std::isnan(v) ? "n/a" : fmt::format("{:.{}f}", v, prec); }
nlohmann::json jnum(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

// Keeps first-seen order (tasks and models appear in the order the suite ran them).
std::vector<std::string> unique_in_order(const std::vector<SuiteRow>& rows, std::string SuiteRow::*field) {
  std::vector<std::string> out;
  for (const auto& r : rows)
    if (std::find(out.begin(), out.end(), r.*field) == out.end()) out.push_back(r.*field);
  return out;
}

const SuiteRow* find_row(const std::vector<SuiteRow>& rows, const std::string& task, const std::string& model) {
  for (const auto& r : rows)
    if (r.task == task && r.model == model) return &r;
  return nullptr;
}

std::string quote_csv(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

const char* kColors[] = {"#2171b5", "#cb181d", "#238b45", "#6a51a3", "#d94801", "#525252"};

}  // namespace

std::string write_suite_report(const std::string& dir, const std::string& suite, const std::vector<SuiteRow>& rows,
                               const std::vector<PublishedRow>& published, const std::vector<std::string>& notes,
                               const std::string& run_info) {
  MS_CHECK(!rows.empty(), "suite {}: no results to report", suite);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MS_CHECK(!ec, "cannot create {}: {}", dir, ec.message());
  const auto tasks = unique_in_order(rows, &SuiteRow::task);
  const auto models = unique_in_order(rows, &SuiteRow::model);
  const auto cats = unique_in_order(rows, &SuiteRow::category);

  // ---- JSON and CSV --------------------------------------------------------------
  nlohmann::json j = nlohmann::json::array();
  std::string csv =
      "suite,task,category,model,params,epochs,train_seconds,train_tokens_per_s,infer_tokens_per_s,accuracy,mcc,"
      "macro_f1,precision,recall,specificity,auroc,auprc,n_test\n";
  for (const auto& r : rows) {
    const ClassMetrics& m = r.test;
    j.push_back({{"suite", suite}, {"task", r.task}, {"category", r.category}, {"model", r.model},
                 {"params", r.params}, {"epochs", r.epochs}, {"train_seconds", r.train_seconds},
                 {"train_tokens_per_s", r.train_tokens_per_s}, {"infer_tokens_per_s", r.infer_tokens_per_s},
                 {"accuracy", jnum(m.accuracy)}, {"mcc", jnum(m.mcc)}, {"macro_f1", jnum(m.macro_f1)},
                 {"precision", jnum(m.precision)}, {"recall", jnum(m.recall)}, {"specificity", jnum(m.specificity)},
                 {"auroc", jnum(m.auroc)}, {"auprc", jnum(m.auprc)}, {"n_test", m.n}, {"confusion", m.confusion}});
    csv += fmt::format("{},{},{},{},{},{},{:.3f},{:.1f},{:.1f},{},{},{},{},{},{},{},{},{}\n", quote_csv(suite),
                       quote_csv(r.task), quote_csv(r.category), quote_csv(r.model), r.params, r.epochs,
                       r.train_seconds, r.train_tokens_per_s, r.infer_tokens_per_s, num(m.accuracy, 6),
                       num(m.mcc, 6), num(m.macro_f1, 6), num(m.precision, 6), num(m.recall, 6),
                       num(m.specificity, 6), num(m.auroc, 6), num(m.auprc, 6), m.n);
  }
  write_file_atomic(dir + "/results.json", j.dump(2) + "\n");
  write_file_atomic(dir + "/results.csv", csv);

  // ---- Markdown ------------------------------------------------------------------
  std::string md = fmt::format("# Benchmark suite `{}`\n\n", suite);
  auto table = [&](const char* title, double ClassMetrics::*metric, double scale, int prec) {
    md += fmt::format("## {}\n\n| task | category |", title);
    for (const auto& m : models) md += " " + m + " |";
    md += " best |\n|---|---|";
    for (size_t i = 0; i <= models.size(); ++i) md += "---|";
    md += "\n";
    for (const auto& t : tasks) {
      std::string cat;
      double best = -INFINITY;
      std::string best_model;
      for (const auto& m : models)
        if (const SuiteRow* r = find_row(rows, t, m)) {
          cat = r->category;
          if (r->test.*metric > best) best = r->test.*metric, best_model = m;
        }
      md += "| " + t + " | " + cat + " |";
      for (const auto& m : models) {
        const SuiteRow* r = find_row(rows, t, m);
        const std::string v = r ? num(r->test.*metric * scale, prec) : "–";
        md += " " + (r && m == best_model ? "**" + v + "**" : v) + " |";
      }
      md += " " + best_model + " |\n";
    }
    // Averages over different task sets do not compare: the first row takes only the
    // tasks every model ran; the second, each model's own tasks (when they differ).
    std::vector<std::string> common;
    for (const auto& t : tasks) {
      bool all = true;
      for (const auto& m : models) all = all && find_row(rows, t, m) != nullptr;
      if (all) common.push_back(t);
    }
    auto avg_row = [&](const std::string& label, bool only_common) {
      md += "| " + label + " | |";
      for (const auto& m : models) {
        double s = 0;
        int n = 0;
        for (const auto& r : rows)
          if (r.model == m && !std::isnan(r.test.*metric) &&
              (!only_common || std::find(common.begin(), common.end(), r.task) != common.end()))
            s += r.test.*metric, ++n;
        md += " " + (n ? num(s / n * scale, prec) : std::string("–")) + " |";
      }
      md += " |\n";
    };
    avg_row(fmt::format("**average over the {} task(s) every model ran**", common.size()), true);
    if (common.size() != tasks.size()) avg_row("average over each model's own tasks", false);
    md += "\n";
  };
  table("Accuracy (%)", &ClassMetrics::accuracy, 100.0, 2);
  table("MCC", &ClassMetrics::mcc, 1.0, 4);

  md += "## Wins, cost and speed per model\n\n| model | tasks won (accuracy, of those it ran) | parameters | total training time (s) | "
        "training tokens/s | inference tokens/s |\n|---|---|---|---|---|---|\n";
  for (const auto& m : models) {
    int wins = 0;
    int64_t params = 0;
    double secs = 0, ttps = 0, itps = 0;
    int n = 0;
    for (const auto& t : tasks) {
      const SuiteRow* mine = find_row(rows, t, m);
      if (!mine) continue;
      bool best = true;
      for (const auto& o : models)
        if (const SuiteRow* r = find_row(rows, t, o); r && o != m && r->test.accuracy > mine->test.accuracy)
          best = false;
      wins += best;
      params = std::max(params, mine->params);
      secs += mine->train_seconds;
      ttps += mine->train_tokens_per_s;
      itps += mine->infer_tokens_per_s;
      ++n;
    }
    md += fmt::format("| {} | {} of {} | {} | {:.1f} | {:.0f} | {:.0f} |\n", m, wins, n, params, secs,
                      n ? ttps / n : 0.0, n ? itps / n : 0.0);
  }
  md += "\n(Ties count as a win for every tied model.)\n\n";

  md += "## Per-category averages\n\n| category | tasks |";
  for (const auto& m : models) md += " " + m + " acc | " + m + " MCC |";
  md += "\n|---|---|";
  for (size_t i = 0; i < models.size(); ++i) md += "---|---|";
  md += "\n";
  for (const auto& c : cats) {
    std::set<std::string> ts;
    for (const auto& r : rows)
      if (r.category == c) ts.insert(r.task);
    md += fmt::format("| {} | {} |", c, ts.size());
    for (const auto& m : models) {
      double a = 0, mc = 0;
      int n = 0;
      for (const auto& r : rows)
        if (r.category == c && r.model == m) a += r.test.accuracy, mc += r.test.mcc, ++n;
      md += n ? fmt::format(" {:.2f} | {:.4f} |", 100 * a / n, mc / n) : " – | – |";
    }
    md += "\n";
  }
  md += "\n";

  if (!published.empty()) {
    md += "## Beside published figures (test split; sensitivity, specificity, MCC)\n\n| task | source | Sn | Sp | "
          "MCC |\n|---|---|---|---|---|\n";
    for (const auto& p : published)
      md += fmt::format("| {} | {} | {} | {} | {} |\n", p.task, p.source, num(p.sensitivity, 3),
                        num(p.specificity, 3), num(p.mcc, 3));
    std::set<std::string> with_figures;
    for (const auto& p : published) with_figures.insert(p.task);
    for (const auto& r : rows)
      if (with_figures.count(r.task))
        md += fmt::format("| {} | mambaseq {} | {} | {} | {} |\n", r.task, r.model, num(r.test.recall, 3),
                          num(r.test.specificity, 3), num(r.test.mcc, 3));
    md += "\n";
  }
  if (!notes.empty()) {
    md += "## Notes\n\n";
    for (const auto& n : notes) md += "- " + n + "\n";
    md += "\n";
  }
  if (!run_info.empty()) md += "## This run\n\n" + run_info + "\n\n";
  md += "![accuracy by task](accuracy_by_task.png)\n\n![category summary](category_summary.png)\n\n"
        "![MCC by category](mcc_radar.png)\n\n![efficiency](efficiency.png)\n";
  write_file_atomic(dir + "/report.md", md);

  // ---- Plots ---------------------------------------------------------------------
  // Data files: one row per task (or category), one column per model.
  {
    std::ofstream f(dir + "/plot_tasks.tsv");
    f << "# task";  // a comment for gnuplot, whose histograms would count a header as a row
    for (const auto& m : models) f << '\t' << m;
    f << '\n';
    for (const auto& t : tasks) {
      f << t;
      for (const auto& m : models) {
        const SuiteRow* r = find_row(rows, t, m);
        f << '\t' << (r ? 100 * r->test.accuracy : NAN);
      }
      f << '\n';
    }
  }
  {
    std::ofstream f(dir + "/plot_categories.tsv");
    f << "# category";
    for (const auto& m : models) f << '\t' << m << "_acc\t" << m << "_mcc";
    f << '\n';
    for (const auto& c : cats) {
      f << c;
      for (const auto& m : models) {
        double a = 0, mc = 0;
        int n = 0;
        for (const auto& r : rows)
          if (r.category == c && r.model == m) a += r.test.accuracy, mc += r.test.mcc, ++n;
        f << '\t' << (n ? 100 * a / n : NAN) << '\t' << (n ? mc / n : NAN);
      }
      f << '\n';
    }
  }
  std::string bars = "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 "
                     "border -1\nset grid ytics\nset key outside top center horizontal\nset xtics rotate by -40 "
                     "scale 0\nset yrange [0:105]\nset ylabel 'accuracy (%)'\n";
  std::string plot = "plot ";
  for (size_t i = 0; i < models.size(); ++i)
    plot += fmt::format("{}'{}/plot_tasks.tsv' using {}:xtic(1) title '{}' lc rgb '{}'", i ? ", " : "", dir, i + 2,
                        models[i], kColors[i % 6]);
  // One cluster per row, centred on 0 … n−1 (autoscaling leaves an empty slot).
  auto xrange = [](size_t n) { return fmt::format("set xrange [-0.5:{}]\n", double(n) - 0.5); };
  run_gnuplot("set title 'Test accuracy by task'\n" + bars + xrange(tasks.size()) + plot + "\n",
              dir + "/accuracy_by_task.png");
  plot = "plot ";
  for (size_t i = 0; i < models.size(); ++i)
    plot += fmt::format("{}'{}/plot_categories.tsv' using {}:xtic(1) title '{}' lc rgb '{}'", i ? ", " : "", dir,
                        2 * i + 2, models[i], kColors[i % 6]);
  run_gnuplot("set title 'Average test accuracy by category'\n" + bars + xrange(cats.size()) + plot + "\n",
              dir + "/category_summary.png");

  // Radar: one spoke per category, MCC on the radius (negative MCC drawn at 0).
  {
    std::ofstream f(dir + "/plot_radar.tsv");
    const double two_pi = 2 * M_PI;
    for (size_t mi = 0; mi < models.size(); ++mi) {
      for (size_t k = 0; k <= cats.size(); ++k) {
        const std::string& c = cats[k % cats.size()];
        double mc = 0;
        int n = 0;
        for (const auto& r : rows)
          if (r.category == c && r.model == models[mi]) mc += r.test.mcc, ++n;
        const double v = n ? std::max(0.0, mc / n) : 0.0;
        f << two_pi * double(k % cats.size()) / cats.size() << '\t' << v << '\n';
      }
      f << "\n\n";
    }
  }
  std::string radar = "set title 'MCC by category'\nset polar\nset angles radians\nset size square\nunset border\n"
                      "unset xtics\nunset ytics\nset rrange [0:1]\nset grid polar " +
                      fmt::format("{:.6f}", 2 * M_PI / std::max<size_t>(cats.size(), 1)) +
                      "\nset rtics 0.2 format '%.1f'\nset key outside right\nset ttics (";
  for (size_t k = 0; k < cats.size(); ++k)
    radar += fmt::format("{}'{}' {:.6f}", k ? ", " : "", cats[k], 360.0 * k / cats.size());
  radar += ")\nplot ";
  for (size_t i = 0; i < models.size(); ++i)
    radar += fmt::format("{}'{}/plot_radar.tsv' index {} using 1:2 with linespoints lw 2 pt 7 lc rgb '{}' title '{}'",
                         i ? ", " : "", dir, i, kColors[i % 6], models[i]);
  run_gnuplot(radar + "\n", dir + "/mcc_radar.png");

  // Efficiency: mean accuracy against total training time; point size grows with parameters.
  {
    std::ofstream f(dir + "/plot_efficiency.tsv");
    f << "model\ttrain_seconds\taccuracy\tparams\n";
    for (const auto& m : models) {
      double secs = 0, acc = 0;
      int64_t params = 0;
      int n = 0;
      for (const auto& r : rows)
        if (r.model == m) secs += r.train_seconds, acc += r.test.accuracy, params = std::max(params, r.params), ++n;
      f << m << '\t' << std::max(secs, 1e-3) << '\t' << 100 * acc / std::max(n, 1) << '\t' << params << '\n';
    }
  }
  run_gnuplot(fmt::format("set title 'Efficiency: mean accuracy against total training time (point size grows with "
                          "parameters)'\nset logscale x\nset xlabel 'total training time (s)'\nset ylabel 'mean "
                          "accuracy (%)'\nset grid\nset key off\nset offsets graph 0.1, graph 0.1, graph 0.1, graph "
                          "0.1\nplot '{0}/plot_efficiency.tsv' skip 1 using 2:3:(1+2*log10($4+1)/7.0*3) with points pt 7 "
                          "ps variable lc rgb '#2171b5', '' skip 1 using 2:3:(sprintf('%s (%.2fM)', stringcolumn(1), "
                          "$4/1e6)) with labels offset 0,1.5\n",
                          dir),
              dir + "/efficiency.png");
  return md;
}

}  // namespace mambaseq
