// The command line: a clear one-line error and a non-zero exit for bad input, and the
// training job end to end on a tiny config.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/baselines.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/data.h"
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

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> v;
  for (std::string l; std::getline(f, l);) v.push_back(l);
  return v;
}

nlohmann::json json_of(const std::string& path) {
  std::ifstream f(path);
  return nlohmann::json::parse(f);
}

// The synthetic motif task as a CSV file, so that train and eval can read the same file.
std::string motif_csv(const std::string& name, int64_t n, uint64_t seed, const std::string& extra_rows = "") {
  const mambaseq::Dataset d = mambaseq::make_synthetic("motif", n, 24, seed);
  std::string csv = "sequence,label\n";
  for (const auto& e : d.examples) {
    for (int32_t id : e.ids) csv += "-ACGTN"[id];
    csv += "," + d.label_names[e.label] + "\n";
  }
  return write_tmp(name, csv + extra_rows);
}

// What `predict` must write for `seqs` (one batch, equal lengths: no padding), computed
// here from the saved model: softmax of its logits.
std::vector<std::vector<double>> probabilities(const std::string& model_dir, const std::vector<std::string>& seqs) {
  auto net = mambaseq::load_network(model_dir);
  mambaseq::Dataset d;
  std::vector<int64_t> idx;
  for (const auto& sq : seqs) {
    idx.push_back(d.size());
    d.examples.emplace_back().ids = mambaseq::encode_nucleotides(sq);
  }
  const mambaseq::Tensor& out = net->forward(mambaseq::make_batch(d, idx, 0, net->head()), false);
  std::vector<std::vector<double>> p(seqs.size());
  for (size_t r = 0; r < seqs.size(); ++r) {
    double z = 0;
    for (int64_t k = 0; k < out.dim(1); ++k) z += std::exp(double(out[r * out.dim(1) + k]));
    for (int64_t k = 0; k < out.dim(1); ++k) p[r].push_back(std::exp(double(out[r * out.dim(1) + k])) / z);
  }
  return p;
}

// Runs predict on `model_dir` and checks every probability against probabilities().
void expect_predict_matches(const std::string& model_dir, const std::string& tsv) {
  const std::vector<std::string> seqs{"ACGTTATAATGGACGTACGTACGT", "GGGCCCAAATTTGGGCCCAAATTT"};
  const std::string fa = write_tmp("pm.fa", ">a\n" + seqs[0] + "\n>b\n" + seqs[1] + "\n");
  auto r = run_cli("predict --model " + model_dir + " --fasta " + fa + " --out " + tsv + " --no-progress");
  ASSERT_EQ(r.code, 0) << model_dir << "\n" << r.out;
  const auto want = probabilities(model_dir, seqs);
  const auto rows = lines_of(tsv);
  ASSERT_EQ(rows.size(), 3u) << model_dir;
  EXPECT_EQ(rows[0], "id\tpredicted\tp_absent\tp_present") << model_dir;
  for (size_t i = 0; i < 2; ++i) {
    std::istringstream ss(rows[i + 1]);
    std::string id, pred;
    double p0, p1;
    ss >> id >> pred >> p0 >> p1;
    EXPECT_EQ(id, i ? "b" : "a");
    EXPECT_NEAR(p0, want[i][0], 2e-6) << model_dir;
    EXPECT_NEAR(p1, want[i][1], 2e-6) << model_dir;
    EXPECT_EQ(pred, want[i][1] > want[i][0] ? "present" : "absent");
  }
}
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
      {"train --config " + write_tmp("set.yaml", kTiny) + " --set train.lrr=1", "unknown key 'train.lrr'"},
      {"train --config " + write_tmp("set.yaml", kTiny) + " --set model.d_state=few",
       "'model.d_state' has a bad value 'few'"},
      {"train --config " + write_tmp("set.yaml", kTiny) + " --set model.type=rnn",
       "'model.type' must be mamba, cnn or transformer, got 'rnn'"},
      {"train --config " + write_tmp("set.yaml", kTiny) + " --set epochs=2", "unknown key '.epochs'"},
      {"train --config " + write_tmp("set.yaml", kTiny) + " --set train.epochs", "expected KEY.PATH=VALUE"},
      {"train --config " + write_tmp("set.yaml", kTiny) + " --epochs 0", "'train.epochs' must be a positive integer, got 0"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args + (c.args.rfind("info", 0) == 0 ? "" : " --no-progress"));
    EXPECT_NE(r.code, 0) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find("mambaseq: error: "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("terminate called"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("d_inner"), std::string::npos) << "no partial output before the error:\n" << r.out;
    if (c.args.find(" --set ") != std::string::npos || c.args.find(" --epochs ") != std::string::npos) {
      EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line:\n" << r.out;
    }
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
  // The log: the last step (log_every 10 > 3 steps), then the epoch's validation.
  const auto log = lines_of(out + "/train_log.jsonl");
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(log[0])["step"], 3);
  EXPECT_EQ(nlohmann::json::parse(log[1])["eval"], "validation");
  // Resuming a finished run continues at its last step and trains nothing more.
  r = run_cli("train --config " + cfg + " --out " + out + " --no-progress --resume " + out + "/checkpoint");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("at step 3/3"), std::string::npos) << r.out;
  EXPECT_EQ(lines_of(out + "/train_log.jsonl"), log);
  // A resumed run appends to the log: a second epoch after the first one's lines.
  r = run_cli("train --config " + cfg + " --out " + out + " --no-progress --epochs 2 --resume " + out + "/checkpoint");
  ASSERT_EQ(r.code, 0) << r.out;
  auto log2 = lines_of(out + "/train_log.jsonl");
  ASSERT_EQ(log2.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(log2.begin(), log2.begin() + 2), log);
  EXPECT_EQ(nlohmann::json::parse(log2[2])["step"], 6);
  EXPECT_EQ(nlohmann::json::parse(log2[3])["epoch"], 2);
  // A fresh run into the same directory starts a new log.
  r = run_cli("train --config " + cfg + " --out " + out + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.out;
  log2 = lines_of(out + "/train_log.jsonl");
  ASSERT_EQ(log2.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(log2[0])["step"], 3);
  EXPECT_EQ(nlohmann::json::parse(log2[0])["loss"], nlohmann::json::parse(log[0])["loss"]);  // same seeds, same run
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
  // Every saved model of every model type serves predict: best/ and checkpoint/ carry data.json.
  for (const char* kind : {"mamba", "cnn", "transformer"})
    for (const char* dir : {"best", "checkpoint"})
      expect_predict_matches(out + "/motif/" + kind + "/" + dir, out + "/p.tsv");
  // A model directory without data.json is an error naming the missing file.
  fs::remove(out + "/motif/cnn/best/data.json");
  const std::string fa = write_tmp("nodata.fa", ">a\nACGT\n");
  for (const char* cmd : {"predict", "eval"}) {
    r = run_cli(std::string(cmd) + " --model " + out + "/motif/cnn/best " + (cmd[0] == 'p' ? "--fasta " : "--data ") +
                fa + " --out " + out + "/x.out");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("mambaseq: error: " + out + "/motif/cnn/best/data.json is missing"), std::string::npos) << r.out;
  }
  // Label names that do not match the model's outputs are refused before any output.
  const std::string dj = out + "/motif/transformer/best/data.json";
  nlohmann::json info = nlohmann::json::parse(std::ifstream(dj));
  info["label_names"].push_back("extra");
  std::ofstream(dj) << info.dump();
  for (const char* cmd : {"predict", "eval"}) {
    r = run_cli(std::string(cmd) + " --model " + out + "/motif/transformer/best " +
                (cmd[0] == 'p' ? "--fasta " : "--data ") + fa + " --out " + out + "/y.out");
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.out.find("mambaseq: error: " + dj + " names 3 labels but the model has 2 outputs"), std::string::npos)
        << r.out;
    EXPECT_FALSE(fs::exists(out + "/y.out"));
  }
  // A bad suite names the file and the problem.
  r = run_cli("benchmark --config " + write_tmp("bad_suite.yaml", "models: [mamba, rnn]\ntasks: []\n"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("unknown model 'rnn'"), std::string::npos) << r.out;
  r = run_cli("benchmark --config " + write_tmp("empty_suite.yaml", "models: []\ntasks: []\n"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("'models' is empty"), std::string::npos) << r.out;
  fs::remove_all(out);
}

TEST(Cli, TrainBuildsTheBaselinesAndEvalPredictUseThem) {
  const std::string out = ::testing::TempDir() + "mambaseq_cli_base_" + std::to_string(::getpid());
  const std::string train = motif_csv("btr.csv", 64, 3), test = motif_csv("bte.csv", 32, 4);
  const std::string data = "data:\n  source: csv\n  train: " + train + "\n  test: " + test + "\n  val_fraction: 0.25\n";
  const std::string tr = "train:\n  epochs: 2\n  batch_size: 16\n  lr: 0.003\n";
  // The CNN by the config's model.type; the Transformer by --set on a Mamba config.
  const std::string cnn_cfg = write_tmp("cnn.yaml", data + "model: {type: cnn, d_embed: 8, channels: 8}\n" + tr);
  const std::string mamba_cfg = write_tmp("mam.yaml", data + "model: {d_model: 8, n_layer: 1}\n" + tr);
  mambaseq::CnnConfig cnn = mambaseq::seed001_cnn(2);
  cnn.d_embed = cnn.channels = 8;
  mambaseq::TransformerConfig tf = mambaseq::seed001_transformer(2);
  tf.d_model = 8, tf.n_layer = 1, tf.n_head = 2, tf.d_ff = 16;  // max_len stays 600 (> 24)
  struct Case {
    std::string type, args;
    int64_t params;
  };
  for (const Case& c : {Case{"cnn", "--config " + cnn_cfg, mambaseq::count_parameters(cnn)},
                        Case{"transformer",
                             "--config " + mamba_cfg + " --set model='{type: transformer, d_model: 8, n_layer: 1}'" +
                                 " --set model.n_head=2 --set model.d_ff=16",
                             mambaseq::count_parameters(tf)}}) {
    fs::remove_all(out);
    auto r = run_cli("train " + c.args + " --out " + out + " --no-progress");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("model: " + c.type + " | " + std::to_string(c.params) + " parameters"), std::string::npos)
        << r.out;
    EXPECT_EQ(json_of(out + "/model/config.json")["mambaseq_arch"], c.type);
    const auto m = json_of(out + "/metrics.json");
    EXPECT_EQ(m["model"], c.type);
    EXPECT_EQ(m["parameters"].get<int64_t>(), c.params);
    EXPECT_EQ(m["steps"].get<int64_t>(), 2 * 3);  // 48 of 64 train, batch 16, 2 epochs
    // eval on the run's test file gives the run's test metrics (same batches: same logits).
    r = run_cli("eval --model " + out + "/model --data " + test + " --batch-size 16 --out " + out + "/e.json");
    ASSERT_EQ(r.code, 0) << r.out;
    const auto e = json_of(out + "/e.json");
    EXPECT_EQ(e["examples"], 32);
    EXPECT_EQ(e["accuracy"].get<double>(), m["test"]["accuracy"].get<double>()) << c.type;
    EXPECT_EQ(e["confusion"], m["test"]["confusion"]) << c.type;
    EXPECT_NEAR(e["loss"].get<double>(), m["test"]["loss"].get<double>(), 1e-9) << c.type;
    expect_predict_matches(out + "/model", out + "/p.tsv");
    expect_predict_matches(out + "/best", out + "/p.tsv");
  }
  fs::remove_all(out);
}

TEST(Cli, SkippedBadRecordsAreCountedInTheLogAndMetrics) {
  const std::string out = ::testing::TempDir() + "mambaseq_cli_skip_" + std::to_string(::getpid());
  fs::remove_all(out);
  const std::string csv = motif_csv("skip.csv", 40, 5, "ACGTXACGT,present\n");
  const std::string cfg = write_tmp("skip.yaml", "data:\n  source: csv\n  train: " + csv + "\n" +
                                                     std::string(kTiny).substr(std::string(kTiny).find("model:")));
  auto r = run_cli("train --config " + cfg + " --out " + out + " --no-progress");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("skip.csv:42"), std::string::npos) << r.out;
  r = run_cli("train --config " + cfg + " --out " + out + " --no-progress --skip-bad");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("skip.csv: skipped 1 bad record (skip_bad)"), std::string::npos) << r.out;
  const auto m = json_of(out + "/metrics.json");
  EXPECT_EQ(m["skipped_bad_records"].get<int64_t>(), 1);
  EXPECT_EQ(m["train_examples"].get<int64_t>(), 40 - 8 - 4);  // 20% test, 10% of all validation, per class
  fs::remove_all(out);
}
