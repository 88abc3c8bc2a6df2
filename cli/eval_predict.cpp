// `mambaseq eval --model DIR --data FILE`: metrics of a trained model on labelled data.
// `mambaseq predict --model DIR --fasta F --out F.tsv`: per-sequence class probabilities
// (or regression predictions), streamed: records are read, scored and written in
// batches, so the input never has to fit in memory; the TSV appears atomically.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/loaders.h"
#include "mambaseq/model_data.h"
#include "mambaseq/progress.h"
#include "mambaseq/readers.h"
#include "mambaseq/report.h"
#include "mambaseq/safetensors.h"
#include "mambaseq/trainer.h"

namespace mambaseq::cli {

namespace {

struct EvalArgs {
  std::string model, data, out, sequence_column, label_column;
  int64_t batch_size = 64;
  bool skip_bad = false, rc_average = false;
};

void run_eval(const EvalArgs& a) {
  auto net = load_network(a.model);
  MS_CHECK(net->head() != HeadKind::LM, "{}: a language model; use `mambaseq score`", a.model);
  ModelDataInfo info = load_model_data_info(a.model, *net);
  LoadOptions o;
  o.tokenizer = info.tokenizer;
  o.target = info.target;
  o.sequence_column = a.sequence_column.empty() ? info.sequence_column : a.sequence_column;
  o.label_column = a.label_column.empty() ? info.label_column : a.label_column;
  if (info.target != TargetKind::Regression) o.labels = info.label_names;  // a label the model never saw is an error
  o.skip_bad = a.skip_bad;
  Dataset d = load_file(a.data, o);
  if (d.skipped) fmt::print(stderr, "eval: skipped {} bad records of {}\n", d.skipped, a.data);
  EvalResult r = evaluate(*net, d, a.batch_size, info.max_len, a.rc_average);
  nlohmann::json j{{"model", a.model}, {"data", a.data}, {"examples", d.size()}, {"loss", r.loss},
                   {"rc_average", a.rc_average}};
  if (net->head() == HeadKind::Regression) {
    fmt::print("| metric | value |\n|---|---|\n| examples | {} |\n| MSE | {:.6f} |\n| Pearson | {:.4f} |\n| Spearman | "
               "{:.4f} |\n",
               d.size(), r.reg.mse, r.reg.pearson, r.reg.spearman);
    j.update({{"mse", r.reg.mse}, {"pearson", r.reg.pearson}, {"spearman", r.reg.spearman}});
  } else {
    fmt::print("{}", metrics_table(r.cls, info.label_names));
    auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
    j.update({{"accuracy", r.cls.accuracy}, {"mcc", r.cls.mcc}, {"macro_f1", r.cls.macro_f1},
              {"precision", r.cls.precision}, {"recall", r.cls.recall}, {"specificity", r.cls.specificity},
              {"auroc", num(r.cls.auroc)}, {"auprc", num(r.cls.auprc)}, {"confusion", r.cls.confusion}});
  }
  if (!a.out.empty()) write_file_atomic(a.out, j.dump(2) + "\n");
}

struct PredictArgs {
  std::string model, fasta, out;
  int64_t batch_size = 64;
  bool no_progress = false, rc_average = false;
};

void run_predict(const PredictArgs& a) {
  auto net = load_network(a.model);
  MS_CHECK(net->head() == HeadKind::SequenceClassification || net->head() == HeadKind::Regression,
           "{}: predict needs a sequence classification or regression model", a.model);
  ModelDataInfo info = load_model_data_info(a.model, *net);
  MS_CHECK(a.batch_size > 0, "--batch-size must be positive, got {}", a.batch_size);
  MS_CHECK(!a.rc_average || info.tokenizer.has_reverse_complement(),
           "--rc-average: {} tokens have no reverse complement", info.tokenizer.name());
  const std::string tmp = a.out + ".tmp." + std::to_string(::getpid());
  std::ofstream out(tmp);
  MS_CHECK(out.good(), "cannot write {}", tmp);
  // Keep the temporary file only until success: any error removes it.
  struct Cleanup {
    std::string path;
    bool keep = false;
    ~Cleanup() {
      if (!keep) std::filesystem::remove(path);
    }
  } cleanup{tmp};

  FastaReader reader(a.fasta);
  FastaRecord rec;
  Dataset chunk;
  chunk.tokenizer = info.tokenizer;
  chunk.label_names = info.label_names;
  chunk.target = info.target == TargetKind::Regression ? TargetKind::Regression : TargetKind::Classification;
  std::vector<std::string> ids;
  int64_t done = 0, iupac = 0;
  bool header = false;
  Progress bar("predict", 0, "seq", 20, !a.no_progress);
  auto flush = [&] {
    if (chunk.examples.empty()) return;
    std::vector<int64_t> idx(chunk.examples.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>(i);
    Batch b = make_batch(chunk, idx, info.max_len, net->head());
    std::vector<float> avg;  // --rc-average: the reverse complement's outputs, then the mean
    if (a.rc_average) {
      Dataset rc = chunk;
      for (auto& e : rc.examples) e.ids = info.tokenizer.reverse_complement(e.ids);
      const Tensor& ro = net->forward(make_batch(rc, idx, info.max_len, net->head()), false);
      avg.assign(ro.data(), ro.data() + ro.numel());
    }
    const Tensor& fo = net->forward(b, false);
    const int64_t K = fo.dim(1);
    for (size_t i = 0; i < avg.size(); ++i) avg[i] = 0.5f * (avg[i] + fo[static_cast<int64_t>(i)]);
    const float* o = a.rc_average ? avg.data() : fo.data();
    if (!header) {
      out << "id";
      if (net->head() == HeadKind::Regression)
        for (int64_t k = 0; k < K; ++k) out << "\tprediction_" << (k < (int64_t)info.label_names.size() ? info.label_names[k] : std::to_string(k));
      else {
        out << "\tpredicted";
        for (const auto& n : info.label_names) out << "\tp_" << n;
      }
      out << '\n';
      header = true;
    }
    for (int64_t r = 0; r < b.batch; ++r) {
      const float* v = o + r * K;
      out << ids[r];
      if (net->head() == HeadKind::Regression) {
        for (int64_t k = 0; k < K; ++k) out << '\t' << v[k];
      } else {
        const float mx = *std::max_element(v, v + K);
        double z = 0;
        for (int64_t k = 0; k < K; ++k) z += std::exp(double(v[k]) - mx);
        out << '\t' << info.label_names[std::max_element(v, v + K) - v];
        for (int64_t k = 0; k < K; ++k) out << '\t' << fmt::format("{:.6g}", std::exp(double(v[k]) - mx) / z);
      }
      out << '\n';
    }
    done += b.batch;
    bar.update(done);
    chunk.examples.clear();
    ids.clear();
  };
  while (reader.next(rec)) {
    TokenizeStats st;
    Example e;
    try {
      e.ids = info.tokenizer.encode(rec.seq, &st);
    } catch (const Error& err) {
      size_t bad = 0;  // point at the line holding the first character outside the alphabet
      while (bad < rec.seq.size() && base_code(rec.seq[bad]) >= 0) ++bad;
      fail("{}:{}: record '{}': {}", a.fasta, bad < rec.seq.size() ? rec.line_of(bad) : rec.line, rec.id, err.what());
    }
    MS_CHECK(!e.ids.empty(), "{}:{}: record '{}' is an empty sequence", a.fasta, rec.line, rec.id);
    iupac += st.iupac_to_n;
    chunk.examples.push_back(std::move(e));
    ids.push_back(rec.id);
    if (static_cast<int64_t>(chunk.examples.size()) == a.batch_size) flush();
  }
  flush();
  bar.finish();
  MS_CHECK(done > 0, "{}: no FASTA records", a.fasta);
  out.close();
  MS_CHECK(out.good(), "error writing {}", tmp);
  std::filesystem::rename(tmp, a.out);
  cleanup.keep = true;
  fmt::print(stderr, "predict: {} sequences → {}{}\n", done, a.out,
             iupac ? fmt::format(" ({} IUPAC codes read as N)", iupac) : "");
}

}  // namespace

void register_eval_predict(CLI::App& app) {
  auto* ev = app.add_subcommand("eval", "Metrics of a trained model on labelled data (CSV/TSV/FASTA, .gz ok)");
  auto e = std::make_shared<EvalArgs>();
  ev->add_option("--model", e->model, "model directory (OUT/model or OUT/best of a training run)")->required();
  ev->add_option("--data", e->data, "labelled data: CSV/TSV with a header, or FASTA with label= in headers")->required();
  ev->add_option("--sequence-column", e->sequence_column, "CSV column with the sequence (default: as trained)");
  ev->add_option("--label-column", e->label_column, "CSV column with the label (default: as trained)");
  ev->add_option("--batch-size", e->batch_size, "sequences per forward pass");
  ev->add_option("--out", e->out, "also write the metrics as JSON here");
  ev->add_flag("--skip-bad", e->skip_bad, "skip malformed records (counted) instead of stopping");
  ev->add_flag("--rc-average", e->rc_average, "average each sequence's outputs with its reverse complement's");
  ev->callback([e] { run_eval(*e); });

  auto* pr = app.add_subcommand("predict", "Per-sequence class probabilities for a FASTA file, streamed to TSV");
  auto p = std::make_shared<PredictArgs>();
  pr->add_option("--model", p->model, "model directory")->required();
  pr->add_option("--fasta", p->fasta, "input FASTA (.gz ok)")->required();
  pr->add_option("--out", p->out, "output TSV: id, predicted label, one probability column per label")->required();
  pr->add_option("--batch-size", p->batch_size, "sequences per forward pass");
  pr->add_flag("--no-progress", p->no_progress, "no progress line");
  pr->add_flag("--rc-average", p->rc_average, "average each sequence's outputs with its reverse complement's");
  pr->callback([p] { run_predict(*p); });
}

}  // namespace mambaseq::cli
