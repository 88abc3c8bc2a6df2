// The command line: a clear one-line error and a non-zero exit for bad input, and the
// training job end to end on a tiny config.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/cli_util.h"

using mambaseq::test::run_cli;
namespace fs = std::filesystem;

namespace {
std::string write_tmp(const std::string& name, const std::string& text) {
  const std::string p = ::testing::TempDir() + "mambaseq_cli_" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(p) << text;
  return p;
}
const char* kTiny = R"(data:
  source: synthetic
  task: motif
  train_size: 64
  test_size: 32
  length: 24
  val_fraction: 0.25
model:
  preset: seed001
  d_model: 8
  n_layer: 1
  d_state: 4
train:
  epochs: 1
  batch_size: 16
  lr: 0.003
)";
}  // namespace

TEST(Cli, InfoPrintsExactParameterCounts) {
  auto r = run_cli("info");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("129,135,360"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2,768,345,600"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5,261,826"), std::string::npos) << r.out;
  r = run_cli("info --variant 130m --d_state 32");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("130,904,832"), std::string::npos) << r.out;
}

TEST(Cli, BadInputsGiveOneClearErrorLine) {
  struct Case {
    std::string args, expect;
  };
  const std::string missing = ::testing::TempDir() + "does_not_exist.yaml";
  const std::vector<Case> cases{
      {"info --variant 7b", "unknown variant '7b'"},
      {"info --variant 130m --d_state 0", "d_state must be a positive integer, got 0"},
      {"train --config " + missing, "cannot read config file " + missing},
      {"train --config " + write_tmp("lr.yaml", std::string(kTiny) + "  weight_decay: -1\n"),
       "'train.weight_decay' must be >= 0, got -1"},
      {"train --config " + write_tmp("key.yaml", std::string(kTiny) + "  lrr: 0.1\n"), "unknown key 'train.lrr'"},
      {"train --config " + write_tmp("dm.yaml", "model:\n  d_model: -3\n"), "d_model must be a positive integer, got -3"},
      {"train --config " + write_tmp("task.yaml", "data:\n  task: nope\n"), "'data.task' 'nope' is not a synthetic task"},
      {"train --config " + write_tmp("yaml.yaml", "data: [unclosed\n"), "not valid YAML"},
      {"train --config " + write_tmp("epochs.yaml", "train:\n  epochs: many\n"), "'train.epochs' has a bad value 'many'"},
      {"train --config " + write_tmp("ok.yaml", kTiny) + " --resume " + missing, "does not exist"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args + (c.args.rfind("info", 0) == 0 ? "" : " --no-progress"));
    EXPECT_NE(r.code, 0) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find("mambaseq: error: "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("terminate called"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("d_inner"), std::string::npos) << "no partial output before the error:\n" << r.out;
  }
}

TEST(Cli, TrainWritesModelMetricsLogsAndResumes) {
  const std::string out = ::testing::TempDir() + "mambaseq_cli_run_" + std::to_string(::getpid());
  fs::remove_all(out);
  const std::string cfg = write_tmp("run.yaml", kTiny);
  auto r = run_cli("train --config " + cfg + " --out " + out + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
  for (const char* f : {"model/model.safetensors", "model/config.json", "checkpoint/optimizer.safetensors",
                        "checkpoint/trainer_state.json", "train_log.jsonl", "metrics.json", "report.md", "loss.tsv"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  std::ifstream mf(out + "/metrics.json");
  auto j = nlohmann::json::parse(mf);
  EXPECT_EQ(j["test"]["confusion"].size(), 2u);
  const double acc = j["test"]["accuracy"].get<double>();
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
  EXPECT_EQ(j["steps"].get<int>(), 3);  // 48 training examples / batch 16
  // Resuming a finished run continues at its last step and trains nothing more.
  r = run_cli("train --config " + cfg + " --out " + out + " --no-progress --resume " + out + "/checkpoint");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("at step 3/3"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(Cli, PredictStreamsProbabilitiesAndEvalScoresLabelledData) {
  const std::string out = ::testing::TempDir() + "mambaseq_cli_pred_" + std::to_string(::getpid());
  fs::remove_all(out);
  ASSERT_EQ(run_cli("train --config " + write_tmp("p.yaml", kTiny) + " --out " + out + " --no-progress").code, 0);
  const std::string fa = write_tmp("in.fa", ">s1 first\nACGTTATAATGG\nACGT\n>s2\nacgtnacgtRacgt\n>s3\nTTTT\n");
  auto r = run_cli("predict --model " + out + "/model --fasta " + fa + " --out " + out + "/p.tsv --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1 IUPAC codes read as N"), std::string::npos) << r.out;
  std::ifstream f(out + "/p.tsv");
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "id\tpredicted\tp_absent\tp_present");
  int rows = 0;
  while (std::getline(f, line)) {
    ++rows;
    std::istringstream ss(line);
    std::string id, pred;
    double p0, p1;
    ss >> id >> pred >> p0 >> p1;
    EXPECT_EQ(id, "s" + std::to_string(rows));
    EXPECT_NEAR(p0 + p1, 1.0, 1e-5);
    EXPECT_EQ(pred, p1 > p0 ? "present" : "absent");
  }
  EXPECT_EQ(rows, 3);
  // --rc-average: a sequence and its reverse complement get the same probabilities.
  const std::string pair = write_tmp("rc.fa", ">f\nACGTTATAATGGCCA\n>r\nTGGCCATTATAACGT\n");
  auto probs = [&](const std::string& flags) {
    auto rr = run_cli("predict --model " + out + "/model --fasta " + pair + " --out " + out + "/rc.tsv --no-progress" +
                      flags);
    EXPECT_EQ(rr.code, 0) << rr.out;
    std::ifstream in(out + "/rc.tsv");
    std::string l, id, pred;
    std::getline(in, l);
    std::vector<double> p;
    double p0, p1;
    while (in >> id >> pred >> p0 >> p1) p.push_back(p1);
    return p;
  };
  const auto plain = probs(""), avg = probs(" --rc-average");
  ASSERT_EQ(avg.size(), 2u);
  EXPECT_NEAR(avg[0], avg[1], 2e-6);
  EXPECT_NEAR(avg[0], 0.5 * (plain[0] + plain[1]), 0.05);  // logit mean: close to the probability mean
  EXPECT_NE(plain[0], plain[1]);
  // A character outside the alphabet names file and line, and leaves no output behind.
  const std::string bad = write_tmp("bad.fa", ">a\nACGT\n>b\nAC\nGX\n");
  r = run_cli("predict --model " + out + "/model --fasta " + bad + " --out " + out + "/bad.tsv --no-progress");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(bad + ":5"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out + "/bad.tsv"));
  for (const auto& e : fs::directory_iterator(out)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
  // eval on a labelled CSV; a label the model never saw is an error naming the line.
  const std::string csv = write_tmp("l.csv", "sequence,label\nACGTTATAATGGAC,present\nACGTACGTACGTAC,absent\n");
  r = run_cli("eval --model " + out + "/model --data " + csv + " --out " + out + "/m.json");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream mf(out + "/m.json");
  auto j = nlohmann::json::parse(mf);
  EXPECT_EQ(j["examples"].get<int>(), 2);
  const std::string csv2 = write_tmp("l2.csv", "sequence,label\nACGT,present\nACGT,maybe\n");
  r = run_cli("eval --model " + out + "/model --data " + csv2);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find(csv2 + ":3"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(Cli, BenchmarkRunsModelsTimesTasksAndReports) {
  const std::string out = ::testing::TempDir() + "mambaseq_cli_bench_" + std::to_string(::getpid());
  fs::remove_all(out);
  const std::string suite = write_tmp("suite.yaml", R"(suite: tiny
models: [mamba, cnn, transformer]
model:
  mamba: {preset: seed001, d_model: 8, n_layer: 1, bidirectional: true}
  cnn: {d_embed: 8, channels: 8}
  transformer: {d_model: 8, n_layer: 1, n_head: 2, d_ff: 16}
train: {epochs: 1, batch_size: 16, lr: 0.003}
tasks:
  - {name: motif, category: motif, data: {source: synthetic, task: motif, train_size: 48, test_size: 24, length: 24}}
  - {name: induction, category: selectivity, data: {source: synthetic, task: induction, train_size: 48, test_size: 24, length: 24}}
)");
  auto r = run_cli("benchmark --config " + suite + " --out " + out + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream jf(out + "/results.json");
  auto j = nlohmann::json::parse(jf);
  ASSERT_EQ(j.size(), 4u);  // 3 models on motif, only mamba on the token task
  EXPECT_EQ(j[1]["model"], "cnn");
  EXPECT_GT(j[0]["params"].get<int64_t>(), 0);
  std::ifstream rf(out + "/report.md");
  std::string md((std::istreambuf_iterator<char>(rf)), std::istreambuf_iterator<char>());
  EXPECT_NE(md.find("cnn was not run on induction"), std::string::npos) << md;
  EXPECT_NE(md.find("## This run"), std::string::npos) << md;
  EXPECT_NE(md.find("- wall time (data, training, evaluation, reports): **"), std::string::npos) << md;
  // A bad suite names the file and the problem.
  r = run_cli("benchmark --config " + write_tmp("bad_suite.yaml", "models: [mamba, rnn]\ntasks: []\n"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("unknown model 'rnn'"), std::string::npos) << r.out;
  fs::remove_all(out);
}
