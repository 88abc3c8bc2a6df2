#include "mambaseq/run_config.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "mambaseq/error.h"

namespace mambaseq {

namespace {

struct Section {
  const std::string& file;
  std::string name;
  YAML::Node node;

  void only(const std::set<std::string>& keys) const {
    if (!node) return;
    MS_CHECK(node.IsMap(), "{}: '{}' must be a mapping", file, name);
    for (const auto& kv : node) {
      const auto k = kv.first.as<std::string>();
      if (!keys.count(k)) {
        std::string known;
        for (const auto& x : keys) known += (known.empty() ? "" : ", ") + x;
        fail("{}: unknown key '{}.{}' (known: {})", file, name, k, known);
      }
    }
  }
  template <typename T>
  void get(const char* key, T& out) const {
    if (!node || !node[key]) return;
    try {
      out = node[key].as<T>();
    } catch (const YAML::Exception&) {
      fail("{}: '{}.{}' has a bad value '{}'", file, name, key, YAML::Dump(node[key]));
    }
  }
  void positive(const char* key, int64_t& out) const {
    get(key, out);
    MS_CHECK(out > 0, "{}: '{}.{}' must be a positive integer, got {}", file, name, key, out);
  }
};

}  // namespace

RunConfig load_run_config(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("cannot read config file {}", path);
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML: {}", path, e.what());
  }
  MS_CHECK(root.IsMap(), "{}: the top level must be a mapping with data, model, train, output", path);
  RunConfig rc;
  rc.path = path;
  Section top{path, "", root};
  top.only({"data", "model", "train", "output"});
  if (root["output"]) rc.output = root["output"].as<std::string>();

  Section d{path, "data", root["data"]};
  d.only({"source", "task", "train_size", "test_size", "length", "val_fraction", "seed"});
  d.get("source", rc.data.source);
  MS_CHECK(rc.data.source == "synthetic", "{}: 'data.source' must be 'synthetic', got '{}'", path, rc.data.source);
  d.get("task", rc.data.task);
  d.positive("train_size", rc.data.train_size);
  d.positive("test_size", rc.data.test_size);
  d.positive("length", rc.data.length);
  d.get("val_fraction", rc.data.val_fraction);
  MS_CHECK(rc.data.val_fraction > 0 && rc.data.val_fraction < 1, "{}: 'data.val_fraction' must be in (0, 1), got {}",
           path, rc.data.val_fraction);
  d.get("seed", rc.data.seed);

  Section m{path, "model", root["model"]};
  m.only({"preset", "d_model", "n_layer", "d_state", "d_conv", "expand", "dt_rank", "norm", "use_bias",
          "use_conv_bias", "head_dropout", "vocab_size"});
  std::string preset = "seed001";
  m.get("preset", preset);
  if (preset == "seed001") rc.model = seed001_classifier(2);
  else if (preset != "none") {
    rc.model.mamba = variant_config(preset);  // error lists the known variants
    rc.model.head = HeadKind::SequenceClassification;
  }
  MambaConfig& mc = rc.model.mamba;
  m.get("d_model", mc.d_model);
  m.get("n_layer", mc.n_layer);
  m.get("d_state", mc.d_state);
  m.get("d_conv", mc.d_conv);
  m.get("expand", mc.expand);
  m.get("vocab_size", mc.vocab_size);
  if (m.node && m.node["dt_rank"]) {
    const std::string v = m.node["dt_rank"].as<std::string>();
    if (v == "auto") mc.dt_rank = 0;
    else m.get("dt_rank", mc.dt_rank);
  }
  std::string norm = mc.norm == NormKind::RMS ? "rms" : "layer";
  m.get("norm", norm);
  MS_CHECK(norm == "rms" || norm == "layer", "{}: 'model.norm' must be rms or layer, got '{}'", path, norm);
  mc.norm = norm == "rms" ? NormKind::RMS : NormKind::Layer;
  m.get("use_bias", mc.use_bias);
  m.get("use_conv_bias", mc.use_conv_bias);
  m.get("head_dropout", rc.model.head_dropout);

  Section t{path, "train", root["train"]};
  t.only({"epochs", "batch_size", "lr", "weight_decay", "warmup", "min_lr", "grad_clip", "max_len", "max_steps",
          "seed", "early_stop_metric", "patience", "save_every", "log_every"});
  TrainOptions& o = rc.train;
  t.positive("epochs", o.epochs);
  t.positive("batch_size", o.batch_size);
  t.get("lr", o.adamw.lr);
  t.get("weight_decay", o.adamw.weight_decay);
  t.get("warmup", o.warmup_frac);
  t.get("min_lr", o.min_lr);
  t.get("grad_clip", o.grad_clip);
  t.get("max_len", o.max_len);
  t.get("max_steps", o.max_steps);
  t.get("seed", o.seed);
  t.get("early_stop_metric", o.early_stop_metric);
  t.get("patience", o.patience);
  t.get("save_every", o.save_every);
  t.get("log_every", o.log_every);
  MS_CHECK(o.adamw.lr > 0 && o.adamw.lr < 10, "{}: 'train.lr' must be in (0, 10), got {}", path, o.adamw.lr);
  MS_CHECK(o.adamw.weight_decay >= 0, "{}: 'train.weight_decay' must be >= 0, got {}", path, o.adamw.weight_decay);
  MS_CHECK(o.warmup_frac >= 0 && o.warmup_frac < 1, "{}: 'train.warmup' must be in [0, 1), got {}", path, o.warmup_frac);
  MS_CHECK(o.grad_clip >= 0, "{}: 'train.grad_clip' must be >= 0, got {}", path, o.grad_clip);
  MS_CHECK(o.max_len >= 0 && o.max_steps >= 0 && o.patience >= 0 && o.save_every >= 0,
           "{}: 'train.max_len', 'max_steps', 'patience' and 'save_every' must be >= 0", path);
  metric_higher_is_better(o.early_stop_metric);
  ClassMetrics probe;
  metric_value(probe, o.early_stop_metric);  // unknown metric names fail here, not after an epoch
  try {
    rc.model.validate();
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return rc;
}

void load_datasets(const DataSpec& spec, Dataset* train, Dataset* val, Dataset* test) {
  Dataset all = make_synthetic(spec.task, spec.train_size, spec.length, spec.seed);
  stratified_split(all, spec.val_fraction, spec.seed + 1, train, val);
  *test = make_synthetic(spec.task, spec.test_size, spec.length, spec.seed + 1000);
  test->name = spec.task + " (test)";
}

}  // namespace mambaseq
