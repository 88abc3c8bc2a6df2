// `mambaseq score --model DIR (--fasta F | --ids F) [--per-token]`: log-likelihood of each
// sequence under a language model, streamed batch by batch (TSV: id, tokens, scored,
// total_logprob, mean_logprob[, per_token]). Token t is scored given tokens < t, so a
// sequence of L tokens has L − 1 scored tokens (L with --bos).
//
// `mambaseq score --model DIR --fasta REF.fa --variants V.tsv`: variant-effect scores.
// V.tsv rows are "sequence id, 1-based position, ref, alt" (tab-separated; '#' lines and a
// header line are skipped); each row reports log P(alt sequence) − log P(reference), the
// alt sequence being the reference with ref replaced by alt at that position (the ref
// allele must match the sequence there).
#include <cmath>
#include <map>
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
struct ScoreArgs {
  int threads = 0;
  std::string model, fasta, ids, out, tokenizer, variants, logits_out;
  bool per_token = false, no_progress = false;
  int64_t batch = 8, bos = -1;
};

std::string g6(double v) { return fmt::format("{:.6g}", v); }

void check_lm(const Model& m, const std::string& dir) {
  MS_CHECK(m.cfg.head == HeadKind::LM, "{}: the model has a {} head; scoring needs a language model", dir,
           head_name(m.cfg.head));
}

void score_files(const ScoreArgs& a) {
  auto model = load_model(a.model);
  release_gradients(*model);
  check_lm(*model, a.model);
  std::unique_ptr<Tokenizer> tok;
  if (!a.fasta.empty()) tok = load_tokenizer(a.tokenizer, a.model, model->cfg);
  InferenceEngine eng(*model);
  SeqInput in(a.fasta, a.ids, tok.get());
  AtomicOutput out(a.out);
  out.write(std::string("id\ttokens\tscored\ttotal_logprob\tmean_logprob") + (a.per_token ? "\tper_token_logprob" : "") +
            "\n");
  // Full logits for checking against other implementations (small models only).
  std::unique_ptr<SafeTensorsStreamWriter> lw;
  std::vector<int64_t> all_ids, offsets{0};
  const int64_t V = eng.vocab_rows();
  if (!a.logits_out.empty())
    lw = std::make_unique<SafeTensorsStreamWriter>(a.logits_out, std::vector<std::pair<std::string, int64_t>>{{"logits", V}});

  Progress prog("score", count_records(a.fasta, a.ids), "tokens", 10, !a.no_progress);
  int64_t done = 0;
  std::vector<SeqRecord> recs;
  std::vector<std::vector<int32_t>> seqs;
  auto flush = [&] {
    if (recs.empty()) return;
    seqs.clear();
    int64_t work = 0;
    for (auto& r : recs) {
      seqs.push_back(r.ids);
      if (a.bos >= 0) seqs.back().insert(seqs.back().begin(), static_cast<int32_t>(a.bos));
      work += static_cast<int64_t>(seqs.back().size());
    }
    std::vector<SequenceScore> sc;
    try {
      sc = score_sequences(eng, seqs, a.per_token);
    } catch (const Error& e) {
      fail("{}: sequences {}..{} ({}..): {}", in.name(), done + 1, done + static_cast<int64_t>(recs.size()),
           recs[0].id, e.what());
    }
    for (size_t i = 0; i < recs.size(); ++i) {
      std::string row = fmt::format("{}\t{}\t{}\t{}\t{}", tsv_cell(recs[i].id), recs[i].ids.size(), sc[i].count,
                                    g6(sc[i].total), sc[i].count ? g6(sc[i].mean()) : "nan");
      if (a.per_token) {
        row += '\t';
        for (size_t t = 0; t < sc[i].per_token.size(); ++t) row += (t ? "," : "") + g6(sc[i].per_token[t]);
      }
      out.write(row + "\n");
      if (lw) {
        InferenceState st = eng.new_state(1);
        const Tensor& h = eng.forward_chunk(st, seqs[i].data(), 1, static_cast<int64_t>(seqs[i].size()));
        Tensor z({static_cast<int64_t>(seqs[i].size()), V});
        eng.lm_logits(h.data(), z.dim(0), z.data());
        lw->write_rows(0, offsets.back(), z.data(), z.dim(0));
        all_ids.insert(all_ids.end(), seqs[i].begin(), seqs[i].end());
        offsets.push_back(offsets.back() + z.dim(0));
      }
    }
    done += static_cast<int64_t>(recs.size());
    prog.update(done, "", static_cast<double>(work));
    recs.clear();
  };
  SeqRecord r;
  while (in.next(r)) {
    recs.push_back(std::move(r));
    if (static_cast<int64_t>(recs.size()) >= a.batch) flush();
  }
  flush();
  prog.finish();
  if (lw) {
    lw->add_i64("input_ids", all_ids);
    lw->add_i64("offsets", offsets);
    lw->finish({offsets.back()});
  }
  out.commit();
}

void score_variants(const ScoreArgs& a) {
  MS_CHECK(!a.fasta.empty(), "--variants needs the reference sequences: --fasta REF.fa");
  auto model = load_model(a.model);
  release_gradients(*model);
  check_lm(*model, a.model);
  auto tok = load_tokenizer(a.tokenizer, a.model, model->cfg);
  InferenceEngine eng(*model);
  // Reference windows by id (random access: a variant file names them in any order).
  std::map<std::string, FastaRecord> refs;
  {
    FastaReader fr(a.fasta);
    FastaRecord rec;
    while (fr.next(rec)) {
      const std::string id = rec.id;
      MS_CHECK(!refs.count(id), "{}:{}: sequence id '{}' appears twice", a.fasta, rec.line, id);
      refs.emplace(id, std::move(rec));
    }
  }
  struct Variant {
    std::string id, ref, alt;
    int64_t pos = 0, line = 0;
  };
  std::vector<Variant> vars;
  {
    LineReader lr(a.variants);
    std::string line;
    bool first = true;
    while (lr.next(line)) {
      const std::string where = fmt::format("{}:{}", a.variants, lr.line_number());
      if (line.empty() || line[0] == '#') continue;
      std::vector<std::string> f;
      size_t s = 0;
      for (size_t e; (e = line.find('\t', s)) != std::string::npos; s = e + 1) f.push_back(line.substr(s, e - s));
      f.push_back(line.substr(s));
      for (auto& x : f)
        while (!x.empty() && (x.back() == '\r' || x.back() == ' ')) x.pop_back();
      MS_CHECK(f.size() >= 4, "{}: expected 4 tab-separated columns (id, position, ref, alt), found {}", where,
               f.size());
      const bool numeric = !f[1].empty() && f[1].find_first_not_of("0123456789") == std::string::npos;
      if (first && !numeric) {  // a header line
        first = false;
        continue;
      }
      first = false;
      MS_CHECK(numeric && f[1].size() < 12, "{}: position '{}' is not a positive integer", where, f[1]);
      Variant v{f[0], f[2], f[3], std::stoll(f[1]), lr.line_number()};
      auto it = refs.find(v.id);
      MS_CHECK(it != refs.end(), "{}: sequence '{}' is not in {}", where, v.id, a.fasta);
      const std::string& seq = it->second.seq;
      MS_CHECK(!v.ref.empty() && v.ref != "." && v.ref != "-", "{}: empty ref allele (insertions: give the base before it)",
               where);
      if (v.alt == "." || v.alt == "-") v.alt.clear();  // deletion
      MS_CHECK(v.pos >= 1 && v.pos + static_cast<int64_t>(v.ref.size()) - 1 <= static_cast<int64_t>(seq.size()),
               "{}: position {} (ref '{}') is outside '{}' (length {})", where, v.pos, v.ref, v.id, seq.size());
      std::string here = seq.substr(v.pos - 1, v.ref.size());
      bool same = here.size() == v.ref.size();
      for (size_t k = 0; same && k < here.size(); ++k) same = std::toupper(here[k]) == std::toupper(v.ref[k]);
      MS_CHECK(same, "{}: ref allele '{}' does not match '{}' at {}:{} (the sequence has '{}')", where, v.ref, v.id,
               v.id, v.pos, here);
      vars.push_back(std::move(v));
    }
  }
  MS_CHECK(!vars.empty(), "{}: no variants", a.variants);

  auto encode = [&](const std::string& s, const std::string& what) {
    std::vector<int32_t> ids;
    try {
      ids = tok->encode(s);
    } catch (const Error& e) {
      fail("{}: {}", what, e.what());
    }
    if (a.bos >= 0) ids.insert(ids.begin(), static_cast<int32_t>(a.bos));
    MS_CHECK(!ids.empty(), "{}: no tokens", what);
    return ids;
  };
  std::map<std::string, double> ref_ll;  // per reference id, scored once
  AtomicOutput out(a.out);
  out.write("id\tpos\tref\talt\tref_logprob\talt_logprob\tllr\n");
  Progress prog("variants", static_cast<int64_t>(vars.size()), "variants", 10, !a.no_progress);
  for (size_t i0 = 0; i0 < vars.size(); i0 += a.batch) {
    const size_t i1 = std::min(vars.size(), i0 + static_cast<size_t>(a.batch));
    std::vector<std::vector<int32_t>> seqs;
    std::vector<std::string> need_ref;
    for (size_t i = i0; i < i1; ++i)
      if (!ref_ll.count(vars[i].id) && std::find(need_ref.begin(), need_ref.end(), vars[i].id) == need_ref.end()) {
        need_ref.push_back(vars[i].id);
        seqs.push_back(encode(refs[vars[i].id].seq, "reference " + vars[i].id));
      }
    for (size_t i = i0; i < i1; ++i) {
      std::string alt = refs[vars[i].id].seq;
      alt.replace(vars[i].pos - 1, vars[i].ref.size(), vars[i].alt);
      seqs.push_back(encode(alt, fmt::format("{}:{}: alt sequence", a.variants, vars[i].line)));
    }
    auto sc = score_sequences(eng, seqs, false);
    for (size_t k = 0; k < need_ref.size(); ++k) ref_ll[need_ref[k]] = sc[k].total;
    for (size_t i = i0; i < i1; ++i) {
      const Variant& v = vars[i];
      const double r = ref_ll[v.id], al = sc[need_ref.size() + (i - i0)].total;
      out.write(fmt::format("{}\t{}\t{}\t{}\t{}\t{}\t{}\n", tsv_cell(v.id), v.pos, v.ref, v.alt.empty() ? "-" : v.alt,
                            g6(r), g6(al), g6(al - r)));
    }
    prog.update(static_cast<int64_t>(i1), "", static_cast<double>(i1 - i0));
  }
  prog.finish();
  out.commit();
}
}  // namespace

void register_score(CLI::App& app) {
  auto a = std::make_shared<ScoreArgs>();
  auto* cmd = app.add_subcommand("score", "Log-likelihood of sequences under a language model; variant effects");
  cmd->add_option("--model", a->model, "model directory")->required();
  cmd->add_option("--fasta", a->fasta, "sequences (FASTA, may be gzipped); with --variants: the reference windows");
  cmd->add_option("--ids", a->ids, "pre-tokenized input: one sequence per line, whitespace-separated token ids");
  cmd->add_option("--variants", a->variants, "TSV: sequence id, 1-based position, ref, alt → log-likelihood ratios");
  cmd->add_option("--out,-o", a->out, "output TSV (default: stdout); written atomically");
  cmd->add_flag("--per-token", a->per_token, "add each token's log-probability (comma-separated)");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json path, or nucleotide | codon | kmerK");
  cmd->add_option("--batch-size,-b", a->batch, "sequences per batch")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--bos", a->bos, "prepend this token id, so the first token is scored too");
  cmd->add_option("--logits-out", a->logits_out,
                  "also write every position's logits to this .safetensors (logits, input_ids, offsets; for checks "
                  "against other implementations)");
  cmd->add_flag("--no-progress", a->no_progress, "no progress line");
  add_threads_option(cmd, a->threads);
  cmd->callback([a] {
    apply_threads(a->threads);
    if (!a->variants.empty()) {
      MS_CHECK(a->ids.empty() && !a->per_token && a->logits_out.empty(),
               "--variants takes --fasta (the references) only; not --ids, --per-token or --logits-out");
      score_variants(*a);
    } else {
      score_files(*a);
    }
  });
}

}  // namespace mambaseq::cli
