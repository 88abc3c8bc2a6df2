#include "mambaseq/run_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "mambaseq/error.h"
#include "mambaseq/model_data.h"
#include "mambaseq/splits.h"

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

// {label: path} map, in the file's order (class ids follow it).
std::vector<std::pair<std::string, std::string>> label_paths(const Section& s, const char* key) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!s.node || !s.node[key]) return out;
  const YAML::Node n = s.node[key];
  MS_CHECK(n.IsMap(), "{}: '{}.{}' must be a mapping of label: path", s.file, s.name, key);
  for (const auto& kv : n) {
    try {
      out.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
    } catch (const YAML::Exception&) {
      fail("{}: '{}.{}' must map labels to paths", s.file, s.name, key);
    }
  }
  return out;
}

void parse_data(const std::string& path, const Section& d, DataSpec& ds) {
  const std::set<std::string> common = {"source", "target", "labels", "tokenizer", "k", "kmer_stride", "frame",
                                        "max_len", "crop", "rc_augment", "bucket", "val_fraction", "test_fraction",
                                        "kfold", "fold", "seed", "skip_bad"};
  d.get("source", ds.source);
  std::set<std::string> keys;
  if (ds.source == "synthetic") keys = {"task", "train_size", "test_size", "length"};
  else if (ds.source == "csv" || ds.source == "tsv")
    keys = {"train", "test", "sequence_column", "label_column", "name_column", "label_columns", "label_separator",
            "target_columns", "task"};
  else if (ds.source == "fasta") keys = {"train", "test", "files", "test_files", "label_tag", "label_separator", "task"};
  else if (ds.source == "fasta_pair") keys = {"positive", "negative", "positive_label", "negative_label", "task"};
  else if (ds.source == "nt_dir") keys = {"dir", "task", "sequence_column", "label_column", "name_column"};
  else
    fail("{}: 'data.source' must be synthetic, csv, tsv, fasta, fasta_pair or nt_dir, got '{}'", path, ds.source);
  keys.insert(common.begin(), common.end());
  // A key of another source is reported as such, anything else as unknown (d.only).
  const std::set<std::string> per_source = {"task", "train_size", "test_size", "length", "train", "test",
                                            "sequence_column", "label_column", "name_column", "label_columns",
                                            "label_separator", "target_columns", "files", "test_files", "label_tag",
                                            "positive", "negative", "positive_label", "negative_label", "dir"};
  if (d.node && d.node.IsMap())
    for (const auto& kv : d.node) {
      const auto k = kv.first.as<std::string>();
      if (!keys.count(k) && per_source.count(k)) fail("{}: 'data.{}' does not apply to source '{}'", path, k, ds.source);
    }
  d.only(keys);
  d.get("task", ds.task);
  d.positive("train_size", ds.train_size);
  d.positive("test_size", ds.test_size);
  d.positive("length", ds.length);
  d.get("train", ds.train);
  d.get("test", ds.test);
  ds.files = label_paths(d, "files");
  ds.test_files = label_paths(d, "test_files");
  d.get("positive", ds.positive);
  d.get("negative", ds.negative);
  d.get("positive_label", ds.positive_label);
  d.get("negative_label", ds.negative_label);
  d.get("dir", ds.dir);
  d.get("target", ds.target);
  d.get("sequence_column", ds.sequence_column);
  d.get("label_column", ds.label_column);
  d.get("name_column", ds.name_column);
  d.get("label_columns", ds.label_columns);
  d.get("target_columns", ds.target_columns);
  d.get("labels", ds.labels);
  d.get("label_separator", ds.label_separator);
  d.get("label_tag", ds.label_tag);
  d.get("tokenizer", ds.tokenizer);
  d.get("k", ds.k);
  d.get("kmer_stride", ds.kmer_stride);
  d.get("frame", ds.frame);
  d.get("max_len", ds.max_len);
  d.get("crop", ds.crop);
  d.get("rc_augment", ds.rc_augment);
  d.get("bucket", ds.bucket);
  d.get("val_fraction", ds.val_fraction);
  d.get("test_fraction", ds.test_fraction);
  d.get("kfold", ds.kfold);
  d.get("fold", ds.fold);
  d.get("seed", ds.seed);
  d.get("skip_bad", ds.skip_bad);

  auto bad = [&](const char* key, const std::string& why) { fail("{}: 'data.{}' {}", path, key, why); };
  if (ds.task.empty()) {
    if (ds.source == "synthetic") ds.task = "motif";
    else if (ds.source == "nt_dir") bad("task", "is required for source nt_dir (the task's directory name)");
    else {
      std::string f = ds.source == "fasta_pair" ? ds.positive : !ds.train.empty() ? ds.train
                      : ds.files.empty() ? std::string() : ds.files.front().second;
      f = std::filesystem::path(f).filename().string();
      ds.task = f.substr(0, f.find('.'));
    }
  }
  try {
    target_kind_from_name(ds.target);
    MS_CHECK(ds.target != "token", "target 'token' is set by the synthetic token tasks, not chosen");
  } catch (const Error& e) {
    bad("target", e.what());
  }
  try {
    ds.load_options();  // tokenizer, k, frame, stride
  } catch (const Error& e) {
    bad("tokenizer", e.what());
  }
  try {
    crop_mode_from_name(ds.crop);
  } catch (const Error& e) {
    bad("crop", e.what());
  }
  if (ds.max_len < 0) bad("max_len", fmt::format("must be >= 0, got {}", ds.max_len));
  if (!(ds.val_fraction >= 0 && ds.val_fraction < 1))
    bad("val_fraction", fmt::format("must be in [0, 1), got {}", ds.val_fraction));
  if (ds.test_fraction != -1 && !(ds.test_fraction >= 0 && ds.test_fraction < 1))
    bad("test_fraction", fmt::format("must be in [0, 1), got {}", ds.test_fraction));
  if (ds.kfold == 1 || ds.kfold < 0) bad("kfold", fmt::format("must be 0 (off) or >= 2, got {}", ds.kfold));
  if (ds.kfold >= 2 && (ds.fold < 0 || ds.fold >= ds.kfold))
    bad("fold", fmt::format("must be in 0..{}, got {}", ds.kfold - 1, ds.fold));
  if (ds.kfold == 0 && d.node && d.node["fold"]) bad("fold", "needs data.kfold");
  if (ds.target == "regression" && !ds.labels.empty()) bad("labels", "does not apply to regression targets");
  if (ds.target != "regression" && !ds.target_columns.empty()) bad("target_columns", "needs target: regression");
  if (ds.target != "multi_label" && (!ds.label_columns.empty() || !ds.label_separator.empty()))
    bad(ds.label_columns.empty() ? "label_separator" : "label_columns", "needs target: multi_label");
  if (ds.rc_augment) {
    if (!ds.load_options().tokenizer.has_reverse_complement())
      bad("rc_augment", ds.load_options().tokenizer.name() + " tokens have no reverse complement");
    if (ds.source == "synthetic" && (ds.task.rfind("selective_copy", 0) == 0 || ds.task.rfind("induction", 0) == 0))
      bad("rc_augment", "does not apply to the symbolic task " + ds.task);
    if (ds.source == "synthetic" && ds.task == "mrna_stability")
      bad("rc_augment", "codon tokens (task mrna_stability) have no reverse complement");
  }
  const bool has_test_file = !ds.test.empty() || !ds.test_files.empty() || ds.source == "nt_dir";
  if (has_test_file && ds.test_fraction > 0) bad("test_fraction", "cannot be used with a test file");
  if (ds.source == "synthetic") {
    bool known = false;
    for (const auto& t : synthetic_task_names()) known |= t == ds.task;
    if (!known) {
      std::string names;
      for (const auto& t : synthetic_task_names()) names += (names.empty() ? "" : ", ") + t;
      bad("task", fmt::format("'{}' is not a synthetic task (known: {})", ds.task, names));
    }
    if (ds.target != "classification") bad("target", "is fixed by the synthetic task");
    if (ds.tokenizer != "nucleotide") bad("tokenizer", "is fixed by the synthetic task (codons for mrna_stability)");
  } else if (ds.source == "csv" || ds.source == "tsv") {
    if (ds.train.empty()) bad("train", "is required for source " + ds.source);
  } else if (ds.source == "fasta") {
    if (ds.train.empty() == ds.files.empty()) bad("train", "give either 'train' (labels in headers) or 'files'");
    if (!ds.test.empty() && !ds.files.empty()) bad("test", "use 'test_files' with 'files'");
    if (!ds.test_files.empty() && ds.files.empty()) bad("test_files", "needs 'files'");
  } else if (ds.source == "fasta_pair") {
    if (ds.positive.empty() || ds.negative.empty()) bad("positive", "and 'data.negative' are both required");
  } else if (ds.source == "nt_dir") {
    if (ds.dir.empty()) bad("dir", "is required for source nt_dir");
  }
}

}  // namespace

LoadOptions DataSpec::load_options() const {
  LoadOptions o;
  o.tokenizer = SeqTokenizer::from_name(tokenizer, static_cast<int>(k), static_cast<int>(frame),
                                        static_cast<int>(kmer_stride));
  o.target = target_kind_from_name(target);
  if (source == "tsv") o.delimiter = '\t';
  else if (source == "csv") o.delimiter = ',';
  o.sequence_column = sequence_column;
  o.label_column = label_column;
  o.name_column = name_column;
  o.label_columns = label_columns;
  o.label_separator = label_separator;
  o.target_columns = target_columns;
  o.label_tag = label_tag;
  o.labels = labels;
  o.skip_bad = skip_bad;
  return o;
}

namespace {
RunConfig run_config_from_node(const YAML::Node& root, const std::string& path);

// KEY.PATH=VALUE into the parsed file, creating mappings on the way; what the key and the
// value mean is left to run_config_from_node, as for a key written in the file.
void apply_override(YAML::Node& root, const std::string& set, const std::string& path) {
  const size_t eq = set.find('=');
  const std::string key = set.substr(0, eq);
  MS_CHECK(eq != std::string::npos && !key.empty() && key.front() != '.' && key.back() != '.' &&
               key.find("..") == std::string::npos,
           "--set '{}': expected KEY.PATH=VALUE, e.g. train.lr=0.001", set);
  YAML::Node value;
  try {
    value = YAML::Load(set.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    fail("--set {}: the value is not valid YAML: {}", key, e.what());
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);  // an empty file
  YAML::Node cur;
  cur.reset(root);  // reset() rebinds; operator= would overwrite the node referred to
  for (size_t start = 0;;) {
    const size_t dot = key.find('.', start);
    MS_CHECK(cur.IsMap(), "{}: --set {}: '{}' is not a mapping", path, key,
             start == 0 ? "the top level" : key.substr(0, start - 1));
    const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
    if (dot == std::string::npos) {
      cur[part] = value;
      return;
    }
    if (!cur[part] || cur[part].IsNull()) cur[part] = YAML::Node(YAML::NodeType::Map);
    cur.reset(cur[part]);
    start = dot + 1;
  }
}
}  // namespace

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("cannot read config file {}", path);
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML: {}", path, e.what());
  }
  for (const auto& s : overrides) apply_override(root, s, path);
  return run_config_from_node(root, path);
}

RunConfig load_run_config_text(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail("{}: not valid YAML: {}", where, e.what());
  }
  return run_config_from_node(root, where);
}

namespace {
// A model section of exactly these keys (and `type`), each read into its field.
template <typename T>
struct Key {
  const char* name;
  T& value;
};
template <typename... T>
void read_keys(const Section& m, Key<T>... keys) {
  m.only({"type", keys.name...});
  (m.get(keys.name, keys.value), ...);
}

// model.type mamba: the classifier of seed 001 (or a published variant) and its keys.
void parse_mamba(const Section& m, RunConfig& rc) {
  const std::string& path = m.file;
  m.only({"type", "preset", "d_model", "n_layer", "d_state", "d_conv", "expand", "dt_rank", "norm", "use_bias",
          "use_conv_bias", "head_dropout", "vocab_size", "bidirectional", "bidir_combine"});
  rc.model_vocab_set = m.node && m.node["vocab_size"];
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
  m.get("bidirectional", mc.bidirectional);
  m.get("bidir_combine", mc.bidir_combine);
}

RunConfig run_config_from_node(const YAML::Node& root, const std::string& path) {
  MS_CHECK(root.IsMap(), "{}: the top level must be a mapping with data, model, train, output", path);
  RunConfig rc;
  rc.path = path;
  Section top{path, "", root};
  top.only({"data", "model", "train", "output"});
  if (root["output"]) rc.output = root["output"].as<std::string>();

  parse_data(path, Section{path, "data", root["data"]}, rc.data);

  Section m{path, "model", root["model"]};
  if (m.node && m.node.IsMap()) m.get("type", rc.model_type);  // a non-mapping fails in m.only
  if (rc.model_type != "mamba") rc.model = seed001_classifier(2);  // the baselines' head, labels, vocabulary
  if (rc.model_type == "cnn") {
    CnnConfig& c = rc.cnn = seed001_cnn(2);
    read_keys(m, Key{"d_embed", c.d_embed}, Key{"channels", c.channels}, Key{"kernel_sizes", c.kernel_sizes},
              Key{"pool", c.pool}, Key{"head_dropout", c.head_dropout}, Key{"mask_padding", c.mask_padding});
  } else if (rc.model_type == "transformer") {
    TransformerConfig& c = rc.transformer = seed001_transformer(2);
    read_keys(m, Key{"d_model", c.d_model}, Key{"n_layer", c.n_layer}, Key{"n_head", c.n_head}, Key{"d_ff", c.d_ff},
              Key{"dropout", c.dropout}, Key{"head_dropout", c.head_dropout}, Key{"activation", c.activation});
  } else {
    MS_CHECK(rc.model_type == "mamba", "{}: 'model.type' must be mamba, cnn or transformer, got '{}'", path,
             rc.model_type);
    parse_mamba(m, rc);
  }

  Section t{path, "train", root["train"]};
  t.only({"epochs", "batch_size", "lr", "weight_decay", "warmup", "min_lr", "grad_clip", "max_len", "max_steps",
          "seed", "early_stop_metric", "patience", "save_every", "log_every", "rc_average"});
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
  t.get("rc_average", o.rc_average);
  MS_CHECK(o.adamw.lr > 0 && o.adamw.lr < 10, "{}: 'train.lr' must be in (0, 10), got {}", path, o.adamw.lr);
  MS_CHECK(o.adamw.weight_decay >= 0, "{}: 'train.weight_decay' must be >= 0, got {}", path, o.adamw.weight_decay);
  MS_CHECK(o.warmup_frac >= 0 && o.warmup_frac < 1, "{}: 'train.warmup' must be in [0, 1), got {}", path, o.warmup_frac);
  MS_CHECK(o.grad_clip >= 0, "{}: 'train.grad_clip' must be >= 0, got {}", path, o.grad_clip);
  MS_CHECK(o.max_len >= 0 && o.max_steps >= 0 && o.patience >= 0 && o.save_every >= 0,
           "{}: 'train.max_len', 'max_steps', 'patience' and 'save_every' must be >= 0", path);
  if (rc.data.max_len > 0) {
    MS_CHECK(o.max_len == 0 || o.max_len == rc.data.max_len,
             "{}: 'data.max_len' ({}) and 'train.max_len' ({}) differ; give one of them", path, rc.data.max_len,
             o.max_len);
    o.max_len = rc.data.max_len;
  }
  metric_higher_is_better(o.early_stop_metric);
  ClassMetrics probe;
  metric_value(probe, o.early_stop_metric);  // unknown metric names fail here, not after an epoch
  try {
    rc.model.validate();
    if (rc.model_type == "cnn") rc.cnn.validate();
    if (rc.model_type == "transformer") rc.transformer.validate();
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return rc;
}
}  // namespace

void load_datasets(const DataSpec& spec, Dataset* train, Dataset* val, Dataset* test,
                   std::vector<std::string>* log) {
  std::vector<std::string> lines;
  if (spec.source == "synthetic") {
    // Unchanged since the first release: train_size examples split by val_fraction
    // (seed + 1), a separate test set from seed + 1000.
    Dataset all = make_synthetic(spec.task, spec.train_size, spec.length, spec.seed);
    if (spec.kfold >= 2) kfold_split(all, spec.kfold, spec.fold, spec.seed + 1, train, val);
    else split_train_val_test(all, spec.val_fraction, 0.0, spec.seed + 1, train, val, nullptr);
    *test = make_synthetic(spec.task, spec.test_size, spec.length, spec.seed + 1000);
    test->name = spec.task + " (test)";
  } else {
    const LoadOptions o = spec.load_options();
    Dataset all, test_file;
    bool have_test = true;
    if (spec.source == "nt_dir") {
      load_nt_task(spec.dir, spec.task, o, &all, &test_file);
    } else if (spec.source == "fasta_pair") {
      all = load_fasta_pair(spec.positive, spec.negative, o, spec.positive_label, spec.negative_label);
      have_test = false;
    } else if (!spec.files.empty()) {
      all = load_fasta_files(spec.files, o);
      if (!spec.test_files.empty()) {
        LoadOptions to = o;
        to.labels = all.label_names;
        test_file = load_fasta_files(spec.test_files, to);
        check_same_labels(all, test_file);
      } else {
        have_test = false;
      }
    } else if (!spec.test.empty()) {
      load_train_test(spec.train, spec.test, o, &all, &test_file);
    } else {
      all = spec.source == "fasta" ? load_fasta(spec.train, o) : load_csv(spec.train, o);
      have_test = false;
    }
    if (all.target == TargetKind::Classification)
      MS_CHECK(all.num_labels >= 2, "{}: only one class ('{}') in the training data", all.name,
               all.label_names.empty() ? "" : all.label_names[0]);
    for (const auto& n : all.notes) lines.push_back(n);
    for (const auto& n : test_file.notes) lines.push_back(n);
    // Fractions are of the file's examples; with a test file, of the training file.
    const double tf = have_test ? 0.0 : (spec.test_fraction >= 0 ? spec.test_fraction : 0.2);
    MS_CHECK(have_test || tf > 0, "{}: no test file and test_fraction 0: there would be no test set", all.name);
    if (have_test) *test = std::move(test_file);
    if (spec.kfold >= 2) {
      Dataset rest;
      if (have_test) rest = std::move(all);
      else split_train_val_test(all, 0.0, tf, spec.seed, &rest, nullptr, test);
      kfold_split(rest, spec.kfold, spec.fold, spec.seed, train, val);
    } else if (have_test) {
      split_train_val_test(all, spec.val_fraction, 0.0, spec.seed, train, val, nullptr);
    } else {
      // One stratified draw: the test part does not depend on val_fraction.
      split_train_val_test(all, spec.val_fraction, tf, spec.seed, train, val, test);
    }
    const std::string& task = spec.task;
    train->name = task;
    val->name = task + " (validation)";
    test->name = task + " (test)";
    lines.push_back(fmt::format("{}: {} train / {} validation / {} test ({}; {}; split seed {}{})", task, train->size(),
                                val->size(), test->size(), target_kind_name(train->target), o.tokenizer.name(),
                                spec.seed, spec.kfold >= 2 ? fmt::format(", fold {} of {}", spec.fold, spec.kfold) : ""));
  }
  if (log) log->insert(log->end(), lines.begin(), lines.end());
  else
    for (const auto& l : lines) fmt::print(stderr, "data: {}\n", l);
}

void fit_model_to_data(RunConfig& rc, const Dataset& train) {
  ModelConfig& m = rc.model;
  switch (train.target) {
    case TargetKind::Classification:
    case TargetKind::MultiLabel: m.head = HeadKind::SequenceClassification; break;
    case TargetKind::Regression: m.head = HeadKind::Regression; break;
    case TargetKind::Token: m.head = HeadKind::TokenClassification; break;
  }
  m.num_labels = train.num_labels;
  if (!rc.model_vocab_set) m.mamba.vocab_size = train.vocab_size;
  MS_CHECK(m.mamba.vocab_size >= train.vocab_size,
           "{}: model.vocab_size {} is smaller than the data's {} token ids ({})", rc.path, m.mamba.vocab_size,
           train.vocab_size, train.dna ? train.tokenizer.name() : "synthetic symbols");
  // Checked here, not at the first validation: the head and the tokens are known now.
  if (rc.train.rc_average) {
    MS_CHECK(m.head == HeadKind::SequenceClassification || m.head == HeadKind::Regression,
             "{}: 'train.rc_average' needs a sequence-level task; this one is {}", rc.path, head_name(m.head));
    MS_CHECK(train.dna && train.tokenizer.has_reverse_complement(),
             "{}: 'train.rc_average' needs DNA tokens with a reverse complement; the data has {}", rc.path,
             train.dna ? train.tokenizer.name() + " tokens" : "symbolic (non-DNA) tokens");
  }
  try {
    m.validate();
  } catch (const Error& e) {
    fail("{}: {}", rc.path, e.what());
  }
  rc.train.model_data = data_info_from(train, rc.train.max_len, rc.data.sequence_column, rc.data.label_column);
}

void load_run_data(RunConfig& rc, Dataset* train, Dataset* val, Dataset* test, std::vector<std::string>* log) {
  load_datasets(rc.data, train, val, test, log);
  fit_model_to_data(rc, *train);
}

std::unique_ptr<Network> make_network(const RunConfig& rc, const std::vector<const Dataset*>& data) {
  const ModelConfig& m = rc.model;
  if (rc.model_type == "mamba") return std::make_unique<Model>(m, rc.train.seed);
  MS_CHECK(m.head == HeadKind::SequenceClassification || m.head == HeadKind::Regression,
           "{}: the {} baseline has sequence-level heads only (this task is {})", rc.path, rc.model_type,
           head_name(m.head));
  auto fit = [&m](auto c) {
    c.vocab_size = m.mamba.vocab_padded();
    c.head = m.head;
    c.num_labels = m.num_labels;
    c.pad_token_id = m.pad_token_id;
    return c;
  };
  if (rc.model_type == "cnn") return std::make_unique<CnnClassifier>(fit(rc.cnn), rc.train.seed);
  TransformerConfig c = fit(rc.transformer);
  int64_t longest = 0;  // learned positions: every sequence the run will see must fit
  for (const Dataset* d : data)
    for (const auto& e : d->examples) longest = std::max<int64_t>(longest, e.ids.size());
  if (rc.train.max_len > 0) longest = std::min(longest, rc.train.max_len);
  c.max_len = std::max(c.max_len, longest);
  return std::make_unique<TransformerClassifier>(c, rc.train.seed);
}

BatchingOptions batching_options(const RunConfig& rc) {
  BatchingOptions b;
  b.batch_size = rc.train.batch_size;
  b.max_len = rc.train.max_len;
  b.crop = crop_mode_from_name(rc.data.crop);
  b.rc_augment = rc.data.rc_augment;
  b.bucket = rc.data.bucket;
  b.seed = rc.train.seed;
  return b;
}

}  // namespace mambaseq
