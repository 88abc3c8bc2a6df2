// `mambaseq generate --model DIR --prompt TEXT | --prompt-file F | --prompt-ids "1 2 3"`:
// prefill the prompts, then one recurrent step per token, streaming each token as it is
// drawn. One prompt: its continuation goes to stdout byte by byte. Several prompts (one
// batch): each continuation is printed when its sequence ends, or, with --jsonl, one JSON
// event per token as it comes.
#include <cstdio>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/infer_util.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/generate.h"

namespace mambaseq::cli {

namespace {
struct GenArgs {
  int threads = 0;
  std::string model, prompt_file, tokenizer;
  std::vector<std::string> prompts, prompt_ids, stops;
  GenerateOptions o;
  bool no_eos_stop = false, jsonl = false, echo = false, quiet = false;
};

std::string json_text(const std::string& bytes) {
  return nlohmann::json(bytes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run_generate(GenArgs a) {
  apply_threads(a.threads);
  auto model = load_model(a.model);
  release_gradients(*model);
  MS_CHECK(model->cfg.head == HeadKind::LM, "{}: the model has a {} head; generate needs a language model", a.model,
           head_name(model->cfg.head));
  // Pre-tokenized prompts need no tokenizer: tokens then print as ids.
  std::unique_ptr<Tokenizer> tok;
  if (a.prompts.empty() && a.prompt_file.empty()) {
    try {
      tok = load_tokenizer(a.tokenizer, a.model, model->cfg);
    } catch (const Error&) {
      if (!a.tokenizer.empty()) throw;
    }
  } else {
    tok = load_tokenizer(a.tokenizer, a.model, model->cfg);
  }
  auto text_of = [&](int32_t t) { return tok ? tok->token_bytes(t) : fmt::format(" {}", t); };

  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> texts;
  for (const auto& p : a.prompts) {
    prompts.push_back(tok->encode(p));
    texts.push_back(p);
  }
  if (!a.prompt_file.empty()) {
    LineReader lr(a.prompt_file);
    std::string line;
    while (lr.next(line)) {
      if (line.empty()) continue;
      prompts.push_back(tok->encode(line));
      texts.push_back(line);
      MS_CHECK(!prompts.back().empty(), "{}:{}: the prompt has no tokens", a.prompt_file, lr.line_number());
    }
  }
  for (size_t i = 0; i < a.prompt_ids.size(); ++i) {
    prompts.push_back(parse_ids(a.prompt_ids[i], fmt::format("--prompt-ids #{}", i + 1)));
    std::string text;
    for (int32_t t : prompts.back()) text += tok ? tok->token_bytes(t, true) : fmt::format(" {}", t);
    texts.push_back(text);
  }
  MS_CHECK(!prompts.empty(), "no prompt: give --prompt, --prompt-file or --prompt-ids");
  for (size_t i = 0; i < prompts.size(); ++i)
    MS_CHECK(!prompts[i].empty(), "prompt {} has no tokens (a prompt needs at least one)", i + 1);

  // Stop tokens: ids, or token strings the tokenizer knows; the tokenizer's EOS by default.
  for (const auto& s : a.stops) {
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
      a.o.stop_tokens.push_back(static_cast<int32_t>(std::stol(s)));
      continue;
    }
    MS_CHECK(tok != nullptr, "--stop '{}': without a tokenizer, stop tokens must be ids", s);
    int32_t id = tok->token_id(s);
    if (id < 0) {
      auto ids = tok->encode(s);
      MS_CHECK(ids.size() == 1, "--stop '{}' is not one token of the tokenizer ({} tokens)", s, ids.size());
      id = ids[0];
    }
    a.o.stop_tokens.push_back(id);
  }
  if (!a.no_eos_stop && tok && tok->eos_id() >= 0) a.o.stop_tokens.push_back(tok->eos_id());
  a.o.vocab_limit = tok ? std::min<int64_t>(tok->vocab_size(), model->cfg.mamba.vocab_size) : model->cfg.mamba.vocab_size;

  InferenceEngine eng(*model);
  const bool single = prompts.size() == 1 && !a.jsonl;
  std::vector<std::string> out(prompts.size());
  if (single && a.echo) std::fwrite(texts[0].data(), 1, texts[0].size(), stdout);
  auto on_token = [&](int64_t b, int32_t t) {
    const std::string bytes = text_of(t);
    if (a.jsonl) {
      fmt::print("{{\"seq\": {}, \"id\": {}, \"text\": {}}}\n", b, t, tok ? json_text(bytes) : "null");
      std::fflush(stdout);
    } else if (single) {
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      std::fflush(stdout);
    } else {
      out[b] += bytes;
    }
  };
  GenerateResult r = generate(eng, prompts, a.o, on_token, /*keep_tokens=*/false);
  if (single) {
    fmt::print("\n");
  } else if (!a.jsonl) {
    for (size_t b = 0; b < prompts.size(); ++b)
      fmt::print("=== {} ===\n{}{}\n", b + 1, a.echo ? texts[b] : "", out[b]);
  } else {
    for (size_t b = 0; b < prompts.size(); ++b)
      fmt::print("{{\"seq\": {}, \"done\": true, \"reason\": \"{}\", \"tokens\": {}}}\n", b,
                 r.reason[b] == StopReason::StopToken ? "stop" : "length", r.generated[b]);
  }
  std::fflush(stdout);
  if (!a.quiet) {
    int64_t ptoks = 0, gtoks = 0;
    for (auto& p : prompts) ptoks += static_cast<int64_t>(p.size());
    for (auto g : r.generated) gtoks += g;
    std::fprintf(stderr, "mambaseq generate: %zu sequence(s); prefill %ld tokens in %.3f s; %ld steps, %ld tokens in %.3f s (%.1f tokens/s)\n",
                 prompts.size(), static_cast<long>(ptoks), r.prefill_seconds, static_cast<long>(r.steps),
                 static_cast<long>(gtoks), r.decode_seconds, r.decode_seconds > 0 ? gtoks / r.decode_seconds : 0.0);
  }
}
}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate text or sequences from prompts (recurrent, O(1) per token)");
  cmd->add_option("--model", a->model, "model directory (config.json + safetensors)")->required();
  cmd->add_option("--prompt", a->prompts, "prompt text (repeat for a batch)");
  cmd->add_option("--prompt-file", a->prompt_file, "one prompt per line (a batch)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "a pre-tokenized prompt: \"id id id\" (repeatable)");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "tokenizer.json path, or nucleotide | codon | kmerK (default: MODEL/tokenizer.json, else nucleotide "
                  "for small vocabularies)");
  cmd->add_option("--max-new-tokens,-n", a->o.max_new_tokens, "tokens to generate per prompt")->capture_default_str();
  cmd->add_flag("--greedy", a->o.greedy, "always take the most likely token");
  cmd->add_option("--temperature,-t", a->o.temperature, "sampling temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", a->o.top_k, "sample among the k most likely tokens (0: off)")->capture_default_str();
  cmd->add_option("--top-p", a->o.top_p, "nucleus sampling mass (1: off)")->capture_default_str();
  cmd->add_option("--repetition-penalty", a->o.repetition_penalty, "penalty for tokens already seen (1: off)")
      ->capture_default_str();
  cmd->add_option("--seed", a->o.seed, "random seed")->capture_default_str();
  cmd->add_option("--stop", a->stops, "stop token: an id or a token string (repeatable)");
  cmd->add_flag("--no-eos-stop", a->no_eos_stop, "do not stop at the tokenizer's end-of-text token");
  cmd->add_flag("--jsonl", a->jsonl, "one JSON object per token: {\"seq\", \"id\", \"text\"}");
  cmd->add_flag("--echo", a->echo, "print the prompt before its continuation");
  cmd->add_flag("--quiet,-q", a->quiet, "no statistics line on stderr");
  add_threads_option(cmd, a->threads);
  cmd->callback([a] { run_generate(*a); });
}

}  // namespace mambaseq::cli
