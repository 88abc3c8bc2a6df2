// `mambaseq embed --model DIR --fasta F --out FILE.npy|FILE.safetensors [--per-token]`:
// per-sequence mean of the final hidden states (after norm_f), or every token's hidden
// state, streamed to disk batch by batch: a 100k-sequence FASTA never has more than one
// batch of embeddings in memory. Rows follow the FASTA order; FILE.ids.tsv lists each
// sequence's index, id, token count and first row (per-token mode).
//   .npy:          [sequences, d_model] float32, or [total tokens, d_model] with --per-token
//   .safetensors:  "embeddings" [sequences, d_model]; with --per-token also "hidden"
//                  [total tokens, d_model] and "offsets" [sequences + 1] (I64)
#include <memory>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/infer_util.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/inference.h"
#include "mambaseq/npy.h"
#include "mambaseq/progress.h"

namespace mambaseq::cli {

namespace {
struct EmbedArgs {
  int threads = 0;
  std::string model, fasta, ids, out, tokenizer;
  bool per_token = false, no_progress = false;
  int64_t batch = 8;
};

bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

void run_embed(const EmbedArgs& a) {
  apply_threads(a.threads);
  const bool npy = ends_with(a.out, ".npy"), st = ends_with(a.out, ".safetensors");
  MS_CHECK(npy || st, "--out {}: the file name must end in .npy or .safetensors", a.out);
  auto model = load_model(a.model);
  release_gradients(*model);
  std::unique_ptr<Tokenizer> tok;
  if (!a.fasta.empty()) tok = load_tokenizer(a.tokenizer, a.model, model->cfg);
  // Bidirectional models have no token-by-token state: whole sequences through the model.
  const bool whole = model->cfg.mamba.bidirectional;
  std::unique_ptr<InferenceEngine> eng;
  if (!whole) eng = std::make_unique<InferenceEngine>(*model);
  const int64_t D = model->cfg.mamba.d_model;
  SeqInput in(a.fasta, a.ids, tok.get());

  // Writers: the per-token rows stream straight into the output (they are the big part).
  std::unique_ptr<NpyWriter> nw;
  std::unique_ptr<SafeTensorsStreamWriter> sw;
  const size_t kPooled = a.per_token ? 1 : 0, kHidden = 0;
  if (npy) {
    nw = std::make_unique<NpyWriter>(a.out, D);
  } else {
    std::vector<std::pair<std::string, int64_t>> t;
    if (a.per_token) t.push_back({"hidden", D});
    t.push_back({"embeddings", D});
    sw = std::make_unique<SafeTensorsStreamWriter>(a.out, t);
    sw->set_metadata("format", "mambaseq-embeddings");
    sw->set_metadata("pooling", "mean of final hidden states (after norm_f)");
    sw->set_metadata("d_model", std::to_string(D));
  }
  AtomicOutput ids_out(a.out + ".ids.tsv");
  ids_out.write("index\tid\ttokens\tfirst_row\n");

  Progress prog("embed", count_records(a.fasta, a.ids), "tokens", 10, !a.no_progress);
  int64_t nseq = 0, nrows = 0;
  std::vector<int64_t> offsets{0};
  std::vector<SeqRecord> recs;
  std::vector<std::vector<int32_t>> seqs;
  std::vector<float> pooled;
  auto flush = [&] {
    if (recs.empty()) return;
    seqs.clear();
    int64_t work = 0;
    std::vector<int64_t> first(recs.size());
    for (size_t i = 0; i < recs.size(); ++i) {
      seqs.push_back(recs[i].ids);
      first[i] = nrows + work;  // per-token rows of sequence i start here
      work += static_cast<int64_t>(recs[i].ids.size());
    }
    pooled.resize(recs.size() * D);
    HiddenSink sink;
    if (a.per_token)
      sink = [&](int64_t b, int64_t pos, const float* rows, int64_t n) {
        if (nw) nw->write_rows(first[b] + pos, rows, n);
        else sw->write_rows(kHidden, first[b] + pos, rows, n);
      };
    try {
      if (whole) embed_whole_sequences(*model, seqs, pooled.data(), sink);
      else embed_sequences(*eng, seqs, pooled.data(), sink);
    } catch (const Error& e) {
      fail("{}: sequences {}..{} ({}..): {}", in.name(), nseq + 1, nseq + static_cast<int64_t>(recs.size()),
           recs[0].id, e.what());
    }
    if (!a.per_token || sw) {
      if (nw) nw->write_rows(nseq, pooled.data(), static_cast<int64_t>(recs.size()));
      else sw->write_rows(kPooled, nseq, pooled.data(), static_cast<int64_t>(recs.size()));
    }
    for (size_t i = 0; i < recs.size(); ++i) {
      ids_out.write(fmt::format("{}\t{}\t{}\t{}\n", nseq + static_cast<int64_t>(i), tsv_cell(recs[i].id),
                                recs[i].ids.size(), first[i]));
      offsets.push_back(first[i] + static_cast<int64_t>(recs[i].ids.size()));
    }
    nseq += static_cast<int64_t>(recs.size());
    nrows += work;
    prog.update(nseq, "", static_cast<double>(work));
    recs.clear();
  };
  SeqRecord r;
  while (in.next(r)) {
    recs.push_back(std::move(r));
    if (static_cast<int64_t>(recs.size()) >= a.batch) flush();
  }
  flush();
  MS_CHECK(nseq > 0, "{}: no sequences", in.name());
  prog.finish(fmt::format("{} sequences, {} tokens", nseq, nrows));
  if (nw) {
    nw->finish(a.per_token ? nrows : nseq);
  } else {
    if (a.per_token) sw->add_i64("offsets", offsets);
    sw->finish(a.per_token ? std::vector<int64_t>{nrows, nseq} : std::vector<int64_t>{nseq});
  }
  ids_out.commit();
}
}  // namespace

void register_embed(CLI::App& app) {
  auto a = std::make_shared<EmbedArgs>();
  auto* cmd = app.add_subcommand("embed", "Per-sequence (mean) or per-token embeddings to .npy / .safetensors");
  cmd->add_option("--model", a->model, "model directory")->required();
  cmd->add_option("--fasta", a->fasta, "sequences (FASTA, may be gzipped)");
  cmd->add_option("--ids", a->ids, "pre-tokenized input: one sequence per line, whitespace-separated token ids");
  cmd->add_option("--out,-o", a->out, "output FILE.npy or FILE.safetensors (plus FILE.ids.tsv)")->required();
  cmd->add_flag("--per-token", a->per_token, "every token's hidden state instead of (npy) or besides (safetensors) the mean");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json path, or nucleotide | codon | kmerK");
  cmd->add_option("--batch-size,-b", a->batch, "sequences per batch")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("--no-progress", a->no_progress, "no progress line");
  add_threads_option(cmd, a->threads);
  cmd->callback([a] { run_embed(*a); });
}

}  // namespace mambaseq::cli
