// Datasets from CSV/TSV and FASTA files (see loaders.h).
#include "mambaseq/loaders.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "mambaseq/error.h"
#include "mambaseq/readers.h"

namespace mambaseq {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string printable(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string(1, c);
  return fmt::format("\\x{:02x}", u);
}

bool parse_int(const std::string& s, int64_t& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty();
}

bool parse_float(const std::string& s, float& v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(d) || errno == ERANGE) return false;
  v = static_cast<float>(d);
  return std::isfinite(v);
}

// Turns records (sequence, labels, name, where) into examples; labels are mapped to
// ids at the end unless fixed up front.
class Builder {
 public:
  Builder(const LoadOptions& o, std::string name) : o_(o) {
    d_.name = std::move(name);
    d_.tokenizer = o.tokenizer;
    d_.vocab_size = o.tokenizer.vocab_size();
    d_.target = o.target;
    MS_CHECK(o.target != TargetKind::Token, "{}: token-level labels are only available for synthetic tasks", d_.name);
    for (size_t i = 0; i < o.labels.size(); ++i) {
      MS_CHECK(!o.labels[i].empty(), "{}: an empty name in the fixed label list", d_.name);
      MS_CHECK(ids_.emplace(o.labels[i], static_cast<int32_t>(i)).second, "{}: label '{}' is listed twice", d_.name,
               o.labels[i]);
    }
    fixed_ = !o.labels.empty();
    if (fixed_) names_ = o.labels;
  }

  // Every check a sequence must pass, before its labels are looked at: a skipped
  // record must not leave a label behind. line_of(pos): the line of character pos.
  void validate(std::string_view seq, const std::string& file, int64_t line,
                const std::function<int64_t(size_t)>& line_of = {}) {
    if (seq.empty()) throw BadRecord(fmt::format("{}:{}: empty sequence", file, line));
    for (size_t i = 0; i < seq.size(); ++i)
      if (base_code(seq[i], &scratch_) < 0)
        throw BadRecord(fmt::format("{}:{}: character '{}' at position {} is not a nucleotide (A C G T U N or an "
                                    "IUPAC code)",
                                    file, line_of ? line_of(i) : line, printable(seq[i]), i + 1));
    const auto& t = o_.tokenizer;
    const int64_t need = t.kind() == SeqTokenizerKind::Nucleotide ? 1
                         : t.kind() == SeqTokenizerKind::Codon    ? t.frame() + 3
                                                                  : t.k();
    if (static_cast<int64_t>(seq.size()) < need)
      throw BadRecord(fmt::format("{}:{}: a sequence of {} bases is shorter than one {} token", file, line,
                                  seq.size(), t.name()));
  }

  Example& add(std::string_view seq, const std::string& name) {
    TokenizeStats st;
    std::vector<int32_t> ids = o_.tokenizer.encode(seq, &st);
    if (st.partial_codon_bases > 0) ++partial_seqs_;
    d_.token_stats.add(st);
    d_.examples.emplace_back();
    Example& e = d_.examples.back();
    e.ids = std::move(ids);
    e.name = name;
    return e;
  }

  int32_t label_id(const std::string& label, const std::string& file, int64_t line) {
    if (label.empty()) throw BadRecord(fmt::format("{}:{}: empty label", file, line));
    auto it = ids_.find(label);
    if (it != ids_.end()) return it->second;
    if (fixed_)
      throw BadRecord(fmt::format("{}:{}: unknown label '{}' (known: {})", file, line, label, join(names_)));
    const auto id = static_cast<int32_t>(names_.size());
    names_.push_back(label);
    ids_.emplace(label, id);
    return id;
  }

  // Validates, then adds: a bad label must not leave a half-made example behind.
  void add_class(std::string_view seq, const std::string& label, const std::string& name, const std::string& file,
                 int64_t line, const std::function<int64_t(size_t)>& line_of = {}) {
    validate(seq, file, line, line_of);
    const int32_t id = label_id(label, file, line);
    add(seq, name).label = id;
  }

  void add_targets(std::string_view seq, const std::vector<std::string>& values,
                   const std::vector<std::string>& columns, const std::string& name, const std::string& file,
                   int64_t line, const std::function<int64_t(size_t)>& line_of = {}) {
    validate(seq, file, line, line_of);
    std::vector<float> t(values.size());
    for (size_t k = 0; k < values.size(); ++k)
      if (!parse_float(values[k], t[k]))
        throw BadRecord(fmt::format("{}:{}: {} '{}' is not a finite number", file, line, columns[k], values[k]));
    add(seq, name).targets = std::move(t);
  }

  void add_multi_columns(std::string_view seq, const std::vector<std::string>& values,
                         const std::vector<std::string>& columns, const std::string& name, const std::string& file,
                         int64_t line) {
    validate(seq, file, line);
    std::vector<float> t(values.size());
    for (size_t k = 0; k < values.size(); ++k) {
      if (values[k] != "0" && values[k] != "1")
        throw BadRecord(fmt::format("{}:{}: multi-label column '{}' must be 0 or 1, got '{}'", file, line, columns[k],
                                    values[k]));
      t[k] = values[k] == "1" ? 1.0f : 0.0f;
    }
    add(seq, name).targets = std::move(t);
  }

  void add_multi_separated(std::string_view seq, const std::string& field, const std::string& name,
                           const std::string& file, int64_t line,
                           const std::function<int64_t(size_t)>& line_of = {}) {
    validate(seq, file, line, line_of);
    // Parse every label before registering any.
    std::vector<std::string> labs;
    const std::string& sep = o_.label_separator;
    size_t a = 0;
    while (!field.empty()) {
      const size_t b = field.find(sep, a);
      std::string lab = field.substr(a, b == std::string::npos ? std::string::npos : b - a);
      while (!lab.empty() && lab.front() == ' ') lab.erase(lab.begin());
      while (!lab.empty() && lab.back() == ' ') lab.pop_back();
      if (lab.empty()) throw BadRecord(fmt::format("{}:{}: empty label in '{}'", file, line, field));
      if (fixed_ && !ids_.count(lab))
        throw BadRecord(fmt::format("{}:{}: unknown label '{}' (known: {})", file, line, lab, join(names_)));
      labs.push_back(std::move(lab));
      if (b == std::string::npos) break;
      a = b + sep.size();
    }
    std::vector<int32_t> ids;
    for (const auto& l : labs) ids.push_back(label_id(l, file, line));
    add(seq, name);
    multi_.push_back(std::move(ids));  // an empty label list is a valid "none of them"
  }

  void skip(const std::string& msg) {
    ++d_.skipped;
    if (first_errors_.size() < 3) first_errors_.push_back(msg);
  }

  Dataset finish(const std::string& file, int64_t blank_lines = 0) {
    std::vector<int32_t> remap;
    if (o_.target == TargetKind::Classification || o_.target == TargetKind::MultiLabel) {
      if (!fixed_ && o_.label_columns.empty()) {
        // Discovered labels: numeric order when all are integers, else alphabetical.
        std::vector<std::string> sorted = names_;
        bool numeric = !sorted.empty();
        std::vector<int64_t> num(sorted.size());
        for (size_t i = 0; i < sorted.size(); ++i) numeric = numeric && parse_int(sorted[i], num[i]);
        if (numeric)
          std::sort(sorted.begin(), sorted.end(), [](const std::string& a, const std::string& b) {
            int64_t x = 0, y = 0;
            parse_int(a, x);
            parse_int(b, y);
            return x < y;
          });
        else
          std::sort(sorted.begin(), sorted.end());
        remap.resize(names_.size());
        for (size_t i = 0; i < sorted.size(); ++i) remap[ids_.at(sorted[i])] = static_cast<int32_t>(i);
        names_ = sorted;
      }
      if (!o_.label_columns.empty()) names_ = o_.label_columns;
      d_.label_names = names_;
      d_.num_labels = static_cast<int64_t>(names_.size());
      if (o_.target == TargetKind::Classification) {
        if (!remap.empty())
          for (auto& e : d_.examples) e.label = remap[e.label];
      } else if (!multi_.empty()) {
        for (size_t i = 0; i < d_.examples.size(); ++i) {
          auto& t = d_.examples[i].targets;
          t.assign(d_.num_labels, 0.0f);
          for (int32_t id : multi_[i]) t[remap.empty() ? id : remap[id]] = 1.0f;
        }
      }
    }
    if (d_.skipped > 0) {
      d_.notes.push_back(fmt::format("{}: skipped {} bad record{} (skip_bad)", file, d_.skipped,
                                     d_.skipped == 1 ? "" : "s"));
      for (const auto& m : first_errors_) d_.notes.push_back("  skipped: " + m);
    }
    if (d_.token_stats.iupac_to_n > 0)
      d_.notes.push_back(fmt::format("{}: {} IUPAC ambiguity code{} (R Y S W K M B D H V) read as N", file,
                                     d_.token_stats.iupac_to_n, d_.token_stats.iupac_to_n == 1 ? "" : "s"));
    if (d_.token_stats.partial_codon_bases > 0)
      d_.notes.push_back(fmt::format("{}: {} trailing bases in {} sequences form no whole {} token (not used)", file,
                                     d_.token_stats.partial_codon_bases, partial_seqs_, o_.tokenizer.name()));
    if (blank_lines > 0) d_.notes.push_back(fmt::format("{}: {} blank lines (no data) ignored", file, blank_lines));
    MS_CHECK(!d_.examples.empty(), "{}: no usable records{}", file,
             d_.skipped ? fmt::format(" ({} skipped as bad)", d_.skipped) : std::string());
    return std::move(d_);
  }

  Dataset& data() { return d_; }

 private:
  const LoadOptions& o_;
  Dataset d_;
  bool fixed_ = false;
  std::map<std::string, int32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::vector<int32_t>> multi_;  // multi-label (separator): label ids per example
  std::vector<std::string> first_errors_;
  int64_t scratch_ = 0, partial_seqs_ = 0;
};

// Runs one record's work; under skip_bad a BadRecord is counted instead of thrown.
template <typename F>
bool guarded(const LoadOptions& o, Builder& b, F&& f) {
  try {
    return f();
  } catch (const BadRecord& e) {
    if (!o.skip_bad) throw;
    b.skip(e.what());
    return true;
  }
}

}  // namespace

bool is_fasta_path(const std::string& path) {
  std::string p = path;
  if (ends_with(p, ".gz")) p.resize(p.size() - 3);
  for (const char* ext : {".fa", ".fasta", ".fna", ".ffn", ".frn", ".fas", ".FA", ".FASTA"})
    if (ends_with(p, ext)) return true;
  return false;
}

Dataset load_csv(const std::string& path, const LoadOptions& o) {
  CsvReader r(path, o.delimiter);
  Builder b(o, path);
  const int64_t seq_col = r.column(o.sequence_column);
  int64_t name_col = -1;
  if (!o.name_column.empty()) name_col = r.column(o.name_column);
  else if (r.has_column("name")) name_col = r.column("name");
  std::vector<int64_t> cols;
  std::vector<std::string> col_names;
  if (o.target == TargetKind::Regression) {
    col_names = o.target_columns.empty() ? std::vector<std::string>{o.label_column} : o.target_columns;
  } else if (o.target == TargetKind::MultiLabel && !o.label_columns.empty()) {
    MS_CHECK(o.labels.empty(), "{}: multi-label columns name the labels; do not also list labels", path);
    col_names = o.label_columns;
  } else {
    MS_CHECK(o.target != TargetKind::MultiLabel || !o.label_separator.empty(),
             "{}: multi-label data needs label_columns (one 0/1 column per label) or a label_separator", path);
    col_names = {o.label_column};
  }
  for (const auto& c : col_names) cols.push_back(r.column(c));
  if (o.target == TargetKind::Regression || !o.label_columns.empty()) b.data().label_names = col_names;
  CsvRow row;
  std::vector<std::string> vals;
  while (guarded(o, b, [&] {
    if (!r.next(row)) return false;
    const std::string& seq = row.fields[seq_col];
    const std::string name = name_col >= 0 ? row.fields[name_col] : std::string();
    vals.clear();
    for (int64_t c : cols) vals.push_back(row.fields[c]);
    switch (o.target) {
      case TargetKind::Classification: b.add_class(seq, vals[0], name, path, row.line); break;
      case TargetKind::Regression: b.add_targets(seq, vals, col_names, name, path, row.line); break;
      case TargetKind::MultiLabel:
        if (!o.label_columns.empty()) b.add_multi_columns(seq, vals, col_names, name, path, row.line);
        else b.add_multi_separated(seq, vals[0], name, path, row.line);
        break;
      case TargetKind::Token: break;
    }
    return true;
  })) {
  }
  Dataset d = b.finish(path, r.blank_lines());
  if (o.target == TargetKind::Regression) {
    d.label_names = col_names;
    d.num_labels = static_cast<int64_t>(col_names.size());
  }
  return d;
}

Dataset load_fasta(const std::string& path, const LoadOptions& o) {
  MS_CHECK(o.target == TargetKind::Classification || o.target == TargetKind::Regression ||
               (o.target == TargetKind::MultiLabel && !o.label_separator.empty()),
           "{}: FASTA labels come from '{}=' in the header: classification, regression, or multi-label with a "
           "label_separator",
           path, o.label_tag);
  FastaReader r(path);
  Builder b(o, path);
  FastaRecord rec;
  while (guarded(o, b, [&] {
    if (!r.next(rec)) return false;
    const std::string v = rec.tag(o.label_tag);
    if (v.empty())
      throw BadRecord(fmt::format("{}:{}: record '{}' has no '{}=' in its header", path, rec.line, rec.id,
                                  o.label_tag));
    auto line_of = [&](size_t pos) { return rec.line_of(pos); };
    if (o.target == TargetKind::Classification) b.add_class(rec.seq, v, rec.id, path, rec.line, line_of);
    else if (o.target == TargetKind::Regression) b.add_targets(rec.seq, {v}, {o.label_tag}, rec.id, path, rec.line, line_of);
    else b.add_multi_separated(rec.seq, v, rec.id, path, rec.line, line_of);
    return true;
  })) {
  }
  Dataset d = b.finish(path);
  if (o.target == TargetKind::Regression) {
    d.label_names = {o.label_tag};
    d.num_labels = 1;
  }
  return d;
}

Dataset load_fasta_files(const std::vector<std::pair<std::string, std::string>>& files, const LoadOptions& o) {
  MS_CHECK(!files.empty(), "no FASTA files given");
  MS_CHECK(o.target == TargetKind::Classification, "one label per FASTA file is classification only");
  LoadOptions fo = o;
  std::string name;
  if (fo.labels.empty())
    for (const auto& [label, path] : files) fo.labels.push_back(label);  // list order = class ids
  std::set<std::string> listed;
  for (const auto& [label, path] : files) {
    MS_CHECK(listed.insert(label).second, "FASTA files: label '{}' is given to two files", label);
    name += (name.empty() ? "" : " + ") + path;
  }
  Builder b(fo, name);
  for (const auto& [label, path] : files) {
    FastaReader r(path);
    FastaRecord rec;
    const int64_t before = b.data().size() + b.data().skipped;
    while (guarded(fo, b, [&] {
      if (!r.next(rec)) return false;
      b.add_class(rec.seq, label, rec.id, path, rec.line, [&](size_t pos) { return rec.line_of(pos); });
      return true;
    })) {
    }
    MS_CHECK(b.data().size() + b.data().skipped > before, "{}: no FASTA records (label '{}')", path, label);
  }
  return b.finish(name);
}

Dataset load_fasta_pair(const std::string& positive, const std::string& negative, const LoadOptions& o,
                        const std::string& positive_name, const std::string& negative_name) {
  return load_fasta_files({{negative_name, negative}, {positive_name, positive}}, o);
}

Dataset load_file(const std::string& path, const LoadOptions& o) {
  return is_fasta_path(path) ? load_fasta(path, o) : load_csv(path, o);
}

void check_same_labels(const Dataset& train, const Dataset& test) {
  if (train.target != TargetKind::Classification && train.target != TargetKind::MultiLabel) return;
  std::set<std::string> a(train.label_names.begin(), train.label_names.end()),
      b(test.label_names.begin(), test.label_names.end());
  std::vector<std::string> only_train, only_test;
  for (const auto& x : a)
    if (!b.count(x)) only_train.push_back(x);
  for (const auto& x : b)
    if (!a.count(x)) only_test.push_back(x);
  if (!only_train.empty() || !only_test.empty())
    fail("the label sets of {} and {} differ: {}{}{} (a model trained on one cannot be scored on the other)",
         train.name, test.name, only_train.empty() ? "" : "only in " + train.name + ": " + join(only_train),
         !only_train.empty() && !only_test.empty() ? "; " : "",
         only_test.empty() ? "" : "only in " + test.name + ": " + join(only_test));
  MS_CHECK(train.label_names == test.label_names, "{} and {} list the same labels in different orders", train.name,
           test.name);
}

void load_train_test(const std::string& train_path, const std::string& test_path, const LoadOptions& o,
                     Dataset* train, Dataset* test) {
  *train = load_file(train_path, o);
  LoadOptions to = o;
  if (o.target == TargetKind::Classification || (o.target == TargetKind::MultiLabel && o.label_columns.empty()))
    to.labels = train->label_names;  // a test label the training set lacks fails at its line
  *test = load_file(test_path, to);
  if (o.target == TargetKind::Classification) {
    // Every training class should occur in the test set too, or its metrics are undefined.
    std::vector<int64_t> count(train->num_labels, 0);
    for (const auto& e : test->examples) ++count[e.label];
    std::vector<std::string> missing;
    for (int64_t k = 0; k < train->num_labels; ++k)
      if (count[k] == 0) missing.push_back(train->label_names[k]);
    if (!missing.empty())
      fail("the label sets of {} and {} differ: only in {}: {}", train_path, test_path, train_path, join(missing));
  } else {
    check_same_labels(*train, *test);
  }
}

std::vector<std::string> nt_task_names() {
  return {"promoter_all", "promoter_tata", "promoter_no_tata", "enhancers", "enhancers_types",
          "splice_sites_all", "splice_sites_acceptors", "splice_sites_donors", "H3", "H4", "H3K9ac", "H3K14ac",
          "H4ac", "H3K4me1", "H3K4me2", "H3K4me3", "H3K36me3", "H3K79me3"};
}

void load_nt_task(const std::string& dir, const std::string& task, const LoadOptions& o, Dataset* train,
                  Dataset* test) {
  namespace fs = std::filesystem;
  auto find = [&](const std::string& part) {
    std::vector<std::string> tried;
    for (const char* ext : {".csv", ".csv.gz", ".tsv", ".tsv.gz"}) {
      const std::string p = (fs::path(dir) / task / (part + ext)).string();
      if (fs::exists(p)) return p;
      tried.push_back(p);
    }
    fail("Nucleotide Transformer task '{}': no {} file (tried {})", task, part, join(tried));
  };
  const std::string tr = find("train"), te = find("test");
  load_train_test(tr, te, o, train, test);
  train->name = task;
  test->name = task + " (test)";
}

}  // namespace mambaseq
