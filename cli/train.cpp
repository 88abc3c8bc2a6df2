// `mambaseq train --config FILE.yaml [overrides]`: train, evaluate on the test set,
// write checkpoints, logs, metrics and plots under the output directory.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/model_data.h"
#include "mambaseq/report.h"
#include "mambaseq/run_config.h"
#include "mambaseq/safetensors.h"

namespace mambaseq::cli {

namespace {
struct TrainArgs {
  std::string config, out, resume;
  int64_t epochs = 0, batch_size = 0, seed = -1;
  double lr = 0;
  bool no_progress = false, skip_bad = false;
};

void run_train(const TrainArgs& a) {
  RunConfig rc = load_run_config(a.config);
  if (!a.out.empty()) rc.output = a.out;
  if (a.epochs > 0) rc.train.epochs = a.epochs;
  if (a.batch_size > 0) rc.train.batch_size = a.batch_size;
  if (a.lr > 0) rc.train.adamw.lr = a.lr;
  if (a.seed >= 0) rc.train.seed = static_cast<uint64_t>(a.seed);
  if (a.skip_bad) rc.data.skip_bad = true;
  rc.train.out_dir = rc.output;
  rc.train.progress = !a.no_progress;

  Dataset train, val, test;
  std::vector<std::string> data_log;
  load_run_data(rc, &train, &val, &test, &data_log);  // also fits head, labels and vocabulary to the data
  Model model(rc.model, rc.train.seed);
  const std::string what = rc.data.source == "synthetic" ? fmt::format("synthetic {}, length {}", rc.data.task, rc.data.length)
                                                         : fmt::format("{} data", rc.data.source);
  fmt::print("mambaseq train: {} | {} | {} train / {} validation / {} test\n", a.config, what, train.size(),
             val.size(), test.size());
  for (const auto& line : data_log) fmt::print("data: {}\n", line);
  fmt::print("model: d_model {} n_layer {} d_state {} d_conv {} expand {} norm {} | {} parameters\n",
             rc.model.mamba.d_model, rc.model.mamba.n_layer, rc.model.mamba.d_state, rc.model.mamba.d_conv,
             rc.model.mamba.expand, rc.model.mamba.norm == NormKind::RMS ? "rms" : "layer", model.num_parameters());
  const BatchingOptions batching = batching_options(rc);
  Trainer trainer(model, train, rc.train, val.size() > 0 ? &val : nullptr, &batching);
  if (!a.resume.empty()) {
    trainer.load_checkpoint(a.resume);
    fmt::print("resumed from {} at step {}/{}\n", a.resume, trainer.step(), trainer.total_steps());
  }
  fmt::print("training: {} epochs × {} steps, batch {}, lr {} (cosine, {:.0f}% warm-up), output {}\n",
             rc.train.epochs, trainer.steps_per_epoch(), rc.train.batch_size, rc.train.adamw.lr,
             100 * rc.train.warmup_frac, rc.output);
  std::fflush(stdout);
  const auto& hist = trainer.run();
  save_model(rc.output + "/model", model);
  const ModelDataInfo info = data_info_from(train, rc.train.max_len, rc.data.sequence_column, rc.data.label_column);
  save_model_data_info(rc.output + "/model", info);
  if (std::filesystem::exists(rc.output + "/best/model.safetensors")) save_model_data_info(rc.output + "/best", info);

  MS_CHECK(test.size() > 0, "{}: the run has no test set (set data.test_fraction or give a test file)", a.config);
  EvalResult r = evaluate(model, test, rc.train.batch_size, rc.train.max_len, rc.train.rc_average);
  const bool regression = model.head() == HeadKind::Regression;
  std::string table = regression ? fmt::format("| metric | value |\n|---|---|\n| MSE | {:.6f} |\n| Pearson | {:.4f} |\n| "
                                               "Spearman | {:.4f} |\n",
                                               r.reg.mse, r.reg.pearson, r.reg.spearman)
                                 : metrics_table(r.cls, test.label_names);
  fmt::print("\ntest set ({} examples), final model:\n\n{}\n", test.size(), table);
  if (std::filesystem::exists(rc.output + "/best/model.safetensors")) {
    auto best = load_model(rc.output + "/best");
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
                   {"train_examples", train.size()},
                   {"skipped_bad_records", train.skipped + val.skipped + test.skipped},
                   {"parameters", model.num_parameters()},
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
  cmd->add_option("--epochs", a->epochs, "override train.epochs");
  cmd->add_option("--batch-size", a->batch_size, "override train.batch_size");
  cmd->add_option("--lr", a->lr, "override train.lr");
  cmd->add_option("--seed", a->seed, "override train.seed");
  cmd->add_option("--resume", a->resume, "continue from a checkpoint directory (OUT/checkpoint)");
  cmd->add_flag("--no-progress", a->no_progress, "no progress bar");
  cmd->add_flag("--skip-bad", a->skip_bad, "skip malformed records (counted in the log) instead of stopping");
  cmd->callback([a] { run_train(*a); });
}

}  // namespace mambaseq::cli
