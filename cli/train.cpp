// `mambaseq train --config FILE.yaml [overrides]`: train, evaluate on the test set,
// write checkpoints, logs, metrics and plots under the output directory.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/report.h"
#include "mambaseq/run_config.h"
#include "mambaseq/safetensors.h"

namespace mambaseq::cli {

namespace {
struct TrainArgs {
  std::string config, out, resume;
  std::vector<std::string> named, sets;  // KEY=VALUE overrides: from --epochs etc., then from --set
  bool no_progress = false, skip_bad = false;
};

void run_train(const TrainArgs& a) {
  std::vector<std::string> overrides = a.named;
  if (a.skip_bad) overrides.push_back("data.skip_bad=true");
  overrides.insert(overrides.end(), a.sets.begin(), a.sets.end());
  RunConfig rc = load_run_config(a.config, overrides);
  if (!a.out.empty()) rc.output = a.out;
  rc.train.out_dir = rc.output;
  rc.train.progress = !a.no_progress;

  Dataset train, val, test;
  std::vector<std::string> data_log;
  load_run_data(rc, &train, &val, &test, &data_log);  // also fits head, labels and vocabulary to the data
  auto net = make_network(rc, {&train, &val, &test});
  const std::string what = rc.data.source == "synthetic" ? fmt::format("synthetic {}, length {}", rc.data.task, rc.data.length)
                                                         : fmt::format("{} data", rc.data.source);
  fmt::print("mambaseq train: {} | {} | {} train / {} validation / {} test\n", a.config, what, train.size(),
             val.size(), test.size());
  for (const auto& line : data_log) fmt::print("data: {}\n", line);
  const MambaConfig& mc = rc.model.mamba;
  fmt::print("model: {} | {} parameters\n",
             rc.model_type != "mamba"
                 ? rc.model_type
                 : fmt::format("d_model {} n_layer {} d_state {} d_conv {} expand {} norm {}", mc.d_model, mc.n_layer,
                               mc.d_state, mc.d_conv, mc.expand, mc.norm == NormKind::RMS ? "rms" : "layer"),
             net->num_parameters());
  const BatchingOptions batching = batching_options(rc);
  Trainer trainer(*net, train, rc.train, val.size() > 0 ? &val : nullptr, &batching);
  if (!a.resume.empty()) {
    trainer.load_checkpoint(a.resume);
    fmt::print("resumed from {} at step {}/{}\n", a.resume, trainer.step(), trainer.total_steps());
  }
  fmt::print("training: {} epochs × {} steps, batch {}, lr {} (cosine, {:.0f}% warm-up), output {}\n",
             rc.train.epochs, trainer.steps_per_epoch(), rc.train.batch_size, rc.train.adamw.lr,
             100 * rc.train.warmup_frac, rc.output);
  std::fflush(stdout);
  const auto& hist = trainer.run();
  trainer.save_model(rc.output + "/model");

  MS_CHECK(test.size() > 0, "{}: the run has no test set (set data.test_fraction or give a test file)", a.config);
  EvalResult r = evaluate(*net, test, rc.train.batch_size, rc.train.max_len, rc.train.rc_average);
  const bool regression = net->head() == HeadKind::Regression;
  std::string table = regression ? fmt::format("| metric | value |\n|---|---|\n| MSE | {:.6f} |\n| Pearson | {:.4f} |\n| "
                                               "Spearman | {:.4f} |\n",
                                               r.reg.mse, r.reg.pearson, r.reg.spearman)
                                 : metrics_table(r.cls, test.label_names);
  fmt::print("\ntest set ({} examples), final model:\n\n{}\n", test.size(), table);
  if (std::filesystem::exists(rc.output + "/best/model.safetensors")) {
    auto best = load_network(rc.output + "/best");
    EvalResult rb = evaluate(*best, test, rc.train.batch_size, rc.train.max_len, rc.train.rc_average);
    if (regression)
      fmt::print("best checkpoint by validation MSE ({:.6f}): test MSE {:.6f}, Spearman {:.4f}\n", trainer.best_metric(),
                 rb.reg.mse, rb.reg.spearman);
    else
      fmt::print("best checkpoint by validation {} ({:.4f}): test accuracy {:.4f}, MCC {:.4f}\n",
                 rc.train.early_stop_metric, trainer.best_metric(), rb.cls.accuracy, rb.cls.mcc);
  }
  nlohmann::json j{{"config", a.config},
                   {"task", rc.data.task},
                   {"source", rc.data.source},
                   {"model", rc.model_type},
                   {"train_examples", train.size()},
                   {"skipped_bad_records", train.skipped + val.skipped + test.skipped},
                   {"parameters", net->num_parameters()},
                   {"steps", trainer.step()},
                   {"final_train_loss", hist.empty() ? 0.0 : hist.back().loss},
                   {"test_regression", {{"mse", r.reg.mse}, {"pearson", r.reg.pearson}, {"spearman", r.reg.spearman}}},
                   {"test",
                    {{"loss", r.loss},
                     {"accuracy", r.cls.accuracy},
                     {"mcc", r.cls.mcc},
                     {"macro_f1", r.cls.macro_f1},
                     {"precision", r.cls.precision},
                     {"recall", r.cls.recall},
                     {"specificity", r.cls.specificity},
                     {"auroc", std::isnan(r.cls.auroc) ? nlohmann::json(nullptr) : nlohmann::json(r.cls.auroc)},
                     {"auprc", std::isnan(r.cls.auprc) ? nlohmann::json(nullptr) : nlohmann::json(r.cls.auprc)},
                     {"confusion", r.cls.confusion}}}};
  write_file_atomic(rc.output + "/metrics.json", j.dump(2) + "\n");
  write_file_atomic(rc.output + "/report.md", "# " + (rc.data.task.empty() ? rc.data.source : rc.data.task) + ": test metrics\n\n" + table +
                                                  "\n![training loss](loss.png)\n");
  if (plot_training_curve(rc.output, hist)) fmt::print("loss curve: {}/loss.png\n", rc.output);
  fmt::print("metrics: {}/metrics.json, report: {}/report.md, model: {}/model\n", rc.output, rc.output, rc.output);
}
}  // namespace

void register_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a model from a YAML config (see configs/)");
  auto a = std::make_shared<TrainArgs>();
  cmd->add_option("--config", a->config, "YAML run config")->required();
  cmd->add_option("--out", a->out, "output directory (overrides the config's output)");
  for (const auto& [flag, key, type] : {std::tuple{"--epochs", "train.epochs", "INT"},
                                         std::tuple{"--batch-size", "train.batch_size", "INT"},
                                         std::tuple{"--lr", "train.lr", "FLOAT"}, std::tuple{"--seed", "train.seed", "INT"}})
    cmd->add_option_function<std::string>(
           flag, [a, key = std::string(key)](const std::string& v) { a->named.push_back(key + "=" + v); },
           "override " + std::string(key) + " (as --set " + key + "=VALUE)")
        ->type_name(type);
  cmd->add_option("--set", a->sets,
                  "override any config key, KEY.PATH=VALUE (e.g. model.type=cnn, data.max_len=200, train.lr=1e-3); "
                  "repeatable, applied after the other flags, checked as the YAML key would be")
      ->take_all();
  cmd->add_option("--resume", a->resume, "continue from a checkpoint directory (OUT/checkpoint)");
  cmd->add_flag("--no-progress", a->no_progress, "no progress bar");
  cmd->add_flag("--skip-bad", a->skip_bad, "skip malformed records (counted in the log) instead of stopping");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace mambaseq::cli
