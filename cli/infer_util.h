// Helpers shared by the inference subcommands (generate, score, embed): input records
// from FASTA or pre-tokenized id files, one at a time.
#pragma once
#include <cerrno>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <cblas.h>
#include <omp.h>

#include "mambaseq/bpe.h"
#include "mambaseq/error.h"
#include "mambaseq/model.h"
#include "mambaseq/readers.h"

namespace mambaseq::cli {

// One whitespace-separated list of token ids; errors name file, line and column.
inline std::vector<int32_t> parse_ids(const std::string& line, const std::string& where) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == ',')) ++i;
    if (i >= line.size()) break;
    size_t e = i;
    while (e < line.size() && line[e] != ' ' && line[e] != '\t' && line[e] != '\r' && line[e] != ',') ++e;
    const std::string tok = line.substr(i, e - i);
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    MS_CHECK(end && *end == '\0' && errno == 0 && v >= 0 && v <= INT32_MAX,
             "{}, column {}: '{}' is not a token id (a non-negative integer)", where, i + 1, tok.substr(0, 40));
    ids.push_back(static_cast<int32_t>(v));
    i = e;
  }
  return ids;
}

// A sequence to score or embed: its name and token ids.
struct SeqRecord {
  std::string id;
  std::string text;  // the sequence as read (FASTA); empty for --ids input
  std::vector<int32_t> ids;
};

// FASTA records (tokenized) or lines of ids, streamed.
class SeqInput {
 public:
  SeqInput(const std::string& fasta, const std::string& ids_file, const Tokenizer* tok) : tok_(tok) {
    MS_CHECK(fasta.empty() != ids_file.empty(), "give exactly one of --fasta and --ids");
    if (!fasta.empty()) fasta_ = std::make_unique<FastaReader>(fasta);
    else lines_ = std::make_unique<LineReader>(ids_file);
    name_ = fasta.empty() ? ids_file : fasta;
  }
  bool next(SeqRecord& r) {
    if (fasta_) {
      FastaRecord rec;
      if (!fasta_->next(rec)) return false;
      r.id = rec.id;
      try {
        r.ids = tok_->encode(rec.seq);
      } catch (const Error& e) {
        fail("{}:{}: record '{}': {}", name_, rec.line, rec.id, e.what());
      }
      MS_CHECK(!r.ids.empty(), "{}:{}: record '{}' has no tokens", name_, rec.line, rec.id);
      r.text = std::move(rec.seq);
      return true;
    }
    std::string line;
    while (lines_->next(line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank
      const std::string where = fmt::format("{}:{}", name_, lines_->line_number());
      r.ids = parse_ids(line, where);
      r.id = fmt::format("line{}", lines_->line_number());
      r.text.clear();
      return true;
    }
    return false;
  }
  const std::string& name() const { return name_; }

 private:
  const Tokenizer* tok_;
  std::unique_ptr<FastaReader> fasta_;
  std::unique_ptr<LineReader> lines_;
  std::string name_;
};

// Records in a FASTA or ids file (a quick pass) for the progress bar; 0 for stdin.
inline int64_t count_records(const std::string& fasta, const std::string& ids_file) {
  const std::string& p = fasta.empty() ? ids_file : fasta;
  if (p == "-") return 0;
  LineReader lr(p);
  std::string line;
  int64_t n = 0;
  while (lr.next(line)) {
    if (!fasta.empty()) n += !line.empty() && line[0] == '>';
    else n += line.find_first_not_of(" \t\r") != std::string::npos;
  }
  return n;
}

// --threads N: OpenMP and OpenBLAS threads (0: leave the defaults). On a machine other
// processes keep busy, fewer threads can be much faster: every barrier waits for the
// slowest thread.
inline void apply_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}
inline void add_threads_option(CLI::App* cmd, int& threads) {
  cmd->add_option("--threads", threads, "CPU threads (default: all; 1 is often fastest on a busy machine)")
      ->check(CLI::Range(0, 4096));
}

// Inference never reads gradients: drop the model's gradient buffers (half its memory).
inline void release_gradients(Model& m) {
  for (Param* p : m.params()) p->g = Tensor();
}

// Text for TSV cells: tabs and newlines would break the columns.
inline std::string tsv_cell(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace mambaseq::cli
