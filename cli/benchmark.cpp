// `mambaseq benchmark --config SUITE.yaml`: trains and tests every model on every task
// of a suite and writes results (JSON, CSV), a Markdown report and plots. Each run's
// OUT/<task>/<model>/{best,checkpoint} carries data.json, so eval and predict take it.
//
// Suite file:
//   suite: NAME                 output: DIR
//   models: [mamba, cnn, transformer]
//   model: {mamba: {...}, cnn: {...}, transformer: {...}}   # each a run config's model section
//                                                           # (its type implied)
//   train: {...run-config train keys, shared by all models...}
//   tasks: [{name, category, data: {...run-config data keys...}}, ...]
//   nt_tasks: {dir: DIR, tasks: [names] (default: all 18)}   # the NT suite's layout
//   published: [{task, source, sensitivity, specificity, mcc}]
#include <yaml-cpp/yaml.h>

#include <omp.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>

#include "cli/commands.h"
#include "mambaseq/error.h"
#include "mambaseq/loaders.h"
#include "mambaseq/run_config.h"
#include "mambaseq/suite_report.h"
#include "mambaseq/trainer.h"

namespace mambaseq::cli {

namespace {

struct TaskSpec {
  std::string name, category;
  YAML::Node data;
};

struct Suite {
  std::string path, name, output;
  std::vector<std::string> models{"mamba", "cnn", "transformer"};
  YAML::Node model, train;
  std::vector<TaskSpec> tasks;
  std::vector<PublishedRow> published;
};

// The Nucleotide Transformer tasks' categories (reference/benchmarks.md).
std::string nt_category(const std::string& task) {
  if (task.rfind("promoter", 0) == 0) return "promoter";
  if (task.rfind("enhancer", 0) == 0) return "enhancer";
  if (task.rfind("splice", 0) == 0) return "splice";
  return "histone";
}

void only_keys(const YAML::Node& n, const std::set<std::string>& keys, const std::string& where) {
  if (!n) return;
  MS_CHECK(n.IsMap(), "{} must be a mapping", where);
  for (const auto& kv : n) {
    const std::string k = kv.first.as<std::string>();
    MS_CHECK(keys.count(k), "{}: unknown key '{}'", where, k);
  }
}

Suite load_suite(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("cannot read suite file {}", path);
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML: {}", path, e.what());
  }
  only_keys(root, {"suite", "output", "models", "model", "train", "tasks", "nt_tasks", "published"}, path);
  Suite s;
  s.path = path;
  try {
    s.name = root["suite"] ? root["suite"].as<std::string>() : std::filesystem::path(path).stem().string();
    s.output = root["output"] ? root["output"].as<std::string>() : "runs/bench_" + s.name;
    if (root["models"]) s.models = root["models"].as<std::vector<std::string>>();
  } catch (const YAML::Exception& e) {
    fail("{}: bad 'suite', 'output' or 'models': {}", path, e.what());
  }
  MS_CHECK(!s.models.empty(), "{}: 'models' is empty", path);
  for (const auto& m : s.models)
    MS_CHECK(m == "mamba" || m == "cnn" || m == "transformer", "{}: unknown model '{}' (known: mamba, cnn, transformer)",
             path, m);
  s.model = root["model"];
  only_keys(s.model, {"mamba", "cnn", "transformer"}, path + ": model");
  s.train = root["train"];
  if (const YAML::Node t = root["tasks"]) {
    MS_CHECK(t.IsSequence(), "{}: 'tasks' must be a list", path);
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string where = fmt::format("{}: tasks[{}]", path, i);
      only_keys(t[i], {"name", "category", "data"}, where);
      MS_CHECK(t[i]["name"] && t[i]["data"], "{} needs 'name' and 'data'", where);
      s.tasks.push_back({t[i]["name"].as<std::string>(),
                         t[i]["category"] ? t[i]["category"].as<std::string>() : t[i]["name"].as<std::string>(),
                         t[i]["data"]});
    }
  }
  if (const YAML::Node nt = root["nt_tasks"]) {
    only_keys(nt, {"dir", "tasks", "data"}, path + ": nt_tasks");
    MS_CHECK(nt["dir"], "{}: nt_tasks needs 'dir' (a directory DIR/<task>/{{train,test}}.csv)", path);
    const std::string dir = nt["dir"].as<std::string>();
    MS_CHECK(std::filesystem::is_directory(dir),
             "{}: nt_tasks.dir {} does not exist (download the Nucleotide Transformer downstream tasks as "
             "DIR/<task>/train.csv and test.csv)",
             path, dir);
    std::vector<std::string> names = nt["tasks"] ? nt["tasks"].as<std::vector<std::string>>() : nt_task_names();
    for (const auto& n : names) {
      YAML::Node d = nt["data"] ? YAML::Clone(nt["data"]) : YAML::Node(YAML::NodeType::Map);
      d["source"] = "nt_dir";
      d["dir"] = dir;
      d["task"] = n;
      s.tasks.push_back({n, nt_category(n), d});
    }
  }
  MS_CHECK(!s.tasks.empty(), "{}: no tasks (give 'tasks' or 'nt_tasks')", path);
  if (const YAML::Node p = root["published"])
    for (const auto& r : p) {
      PublishedRow pr;
      pr.task = r["task"].as<std::string>();
      pr.source = r["source"] ? r["source"].as<std::string>() : "published";
      if (r["accuracy"]) pr.accuracy = r["accuracy"].as<double>();
      if (r["mcc"]) pr.mcc = r["mcc"].as<double>();
      if (r["sensitivity"]) pr.sensitivity = r["sensitivity"].as<double>();
      if (r["specificity"]) pr.specificity = r["specificity"].as<double>();
      s.published.push_back(pr);
    }
  return s;
}

int64_t tokens_in(const Dataset& d, int64_t max_len) {
  int64_t n = 0;
  for (const auto& e : d.examples)
    n += max_len > 0 ? std::min<int64_t>(max_len, e.ids.size()) : static_cast<int64_t>(e.ids.size());
  return n;
}

// Where and how long: the suite's wall time means little without the machine.
std::string run_info(const std::string& config, double wall_s) {
  std::string cpu = "unknown CPU";
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  double load[3] = {0, 0, 0};
  const bool have_load = getloadavg(load, 3) == 3;
  const std::time_t t = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return fmt::format(
      "- suite file: `{}`\n- wall time (data, training, evaluation, reports): **{:.1f} s** ({:.1f} min)\n- machine: {}, "
      "{} hardware threads, {} OpenMP threads\n- finished: {}{}",
      config, wall_s, wall_s / 60, cpu, std::thread::hardware_concurrency(), omp_get_max_threads(), date,
      have_load ? fmt::format("; load average at the end {:.2f} (1 min) / {:.2f} (5 min): above the thread count means "
                              "other processes competed and the times are upper bounds",
                              load[0], load[1])
                : "");
}

struct BenchArgs {
  std::string config, out;
  bool no_progress = false;
};

void run_benchmark(const BenchArgs& a) {
  Suite s = load_suite(a.config);
  if (!a.out.empty()) s.output = a.out;
  std::vector<SuiteRow> rows;
  std::vector<std::string> notes;
  const auto t_start = std::chrono::steady_clock::now();
  const size_t total = s.tasks.size() * s.models.size();
  size_t run = 0;
  for (size_t ti = 0; ti < s.tasks.size(); ++ti) {
    const TaskSpec& task = s.tasks[ti];
    // One run config per model, model.<kind> of the suite as `model:` with type <kind>:
    // the keys are checked as in a train config, for every model before any training.
    std::map<std::string, RunConfig> rcs;
    for (const auto& kind : s.models) {
      YAML::Node node(YAML::NodeType::Map);
      node["data"] = task.data;
      node["model"] = s.model && s.model[kind] ? YAML::Clone(s.model[kind]) : YAML::Node(YAML::NodeType::Map);
      if (node["model"].IsMap()) node["model"]["type"] = kind;
      if (s.train) node["train"] = s.train;
      node["output"] = s.output + "/" + task.name;
      rcs[kind] = load_run_config_text(YAML::Dump(node), fmt::format("{}: tasks[{}] ({}), model.{}", s.path, ti,
                                                                      task.name, kind));
    }
    Dataset train, val, test;
    std::vector<std::string> log;
    load_datasets(rcs.begin()->second.data, &train, &val, &test, &log);  // the same data section for all
    MS_CHECK(test.size() > 0, "{}: task {} has no test set", s.path, task.name);
    for (const auto& l : log) fmt::print("[{}] data: {}\n", task.name, l);
    for (const auto& kind : s.models) {
      ++run;
      RunConfig& rc = rcs[kind];
      fit_model_to_data(rc, train);
      if (kind != "mamba" && rc.model.head != HeadKind::SequenceClassification && rc.model.head != HeadKind::Regression) {
        notes.push_back(fmt::format("{} was not run on {}: the {} baseline has sequence-level heads only (this task is "
                                    "{})",
                                    kind, task.name, kind, head_name(rc.model.head)));
        fmt::print("[{}/{}] {} × {}: skipped ({})\n", run, total, task.name, kind, notes.back());
        continue;
      }
      auto net = make_network(rc, {&train, &val, &test});
      TrainOptions o = rc.train;
      o.out_dir = s.output + "/" + task.name + "/" + kind;
      o.progress = !a.no_progress;
      const BatchingOptions batching = batching_options(rc);
      fmt::print("[{}/{}] {} × {}: {} parameters, {} train / {} val / {} test\n", run, total, task.name, kind,
                 net->num_parameters(), train.size(), val.size(), test.size());
      std::fflush(stdout);
      Trainer trainer(*net, train, o, val.size() > 0 ? &val : nullptr, &batching);
      const auto t0 = std::chrono::steady_clock::now();
      const auto& hist = trainer.run();
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      int64_t trained_tokens = 0;
      for (const auto& h : hist) trained_tokens += h.tokens;
      const auto e0 = std::chrono::steady_clock::now();
      EvalResult r = evaluate(*net, test, o.batch_size, o.max_len, o.rc_average);
      const double esecs = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
      SuiteRow row;
      row.task = task.name;
      row.category = task.category;
      row.model = kind;
      row.params = net->num_parameters();
      row.epochs = trainer.steps_per_epoch() > 0 ? trainer.step() / trainer.steps_per_epoch() : 0;
      row.train_seconds = secs;
      row.train_tokens_per_s = secs > 0 ? trained_tokens / secs : 0;
      row.infer_tokens_per_s = esecs > 0 ? tokens_in(test, o.max_len) / esecs : 0;
      row.test = r.cls;
      if (rc.model.head == HeadKind::Regression) {
        row.test.accuracy = NAN;
        row.test.mcc = r.reg.spearman;  // reported as the correlation column for regression tasks
        notes.push_back(fmt::format("{}: regression task; the MCC column holds Spearman's rho, accuracy is n/a", task.name));
      }
      rows.push_back(row);
      fmt::print("[{}/{}] {} × {}: test accuracy {:.4f}, MCC {:.4f}, {:.1f} s ({:.0f} tokens/s)\n", run, total,
                 task.name, kind, row.test.accuracy, row.test.mcc, secs, row.train_tokens_per_s);
      std::fflush(stdout);
    }
    if (!rows.empty()) write_suite_report(s.output, s.name, rows, s.published, notes);  // partial results stay visible
  }
  MS_CHECK(!rows.empty(), "{}: no model could be run on any task", s.path);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  const std::string md = write_suite_report(s.output, s.name, rows, s.published, notes, run_info(a.config, wall));
  fmt::print("\n{}\nsuite {}: {} runs in {:.1f} s; results in {}/ (report.md, results.json, results.csv, *.png)\n", md,
             s.name, rows.size(), wall, s.output);
}

}  // namespace

void register_benchmark(CLI::App& app) {
  auto* cmd = app.add_subcommand("benchmark", "Train and test models × tasks of a suite; report with plots");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("--config", a->config, "suite YAML (configs/suite_*.yaml)")->required();
  cmd->add_option("--out", a->out, "output directory (overrides the suite's output)");
  cmd->add_flag("--no-progress", a->no_progress, "no progress bars");
  cmd->callback([a] { run_benchmark(*a); });
}

}  // namespace mambaseq::cli
