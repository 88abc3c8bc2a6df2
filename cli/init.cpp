// `mambaseq init --out DIR [--variant 130m | sizes] [options]`: write a randomly
// initialised language model as a checkpoint (config.json + safetensors, optionally
// sharded and in F16/BF16): for benchmarks, smoke tests and checking that other Mamba
// implementations (transformers) load what mambaseq writes (scripts/hf_interop.py).
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"

namespace mambaseq::cli {

namespace {
struct InitArgs {
  std::string out, variant, dtype = "f32", tokenizer_json;
  int64_t d_model = 0, n_layer = 0, vocab_size = 0, d_state = 0, d_conv = 0, expand = 0, dt_rank = -1;
  int64_t seed = 0;
  double max_shard_mb = 0, perturb = 0;
  bool untied = false, use_bias = false, no_conv_bias = false, layer_norm = false;
};

void run_init(const InitArgs& a) {
  ModelConfig c;
  c.head = HeadKind::LM;
  if (!a.variant.empty()) c.mamba = variant_config(a.variant);
  auto set = [](int64_t v, int64_t& dst) {
    if (v > 0) dst = v;
  };
  set(a.d_model, c.mamba.d_model);
  set(a.n_layer, c.mamba.n_layer);
  set(a.vocab_size, c.mamba.vocab_size);
  set(a.d_state, c.mamba.d_state);
  set(a.d_conv, c.mamba.d_conv);
  set(a.expand, c.mamba.expand);
  if (a.dt_rank >= 0) c.mamba.dt_rank = a.dt_rank;
  c.mamba.tie_embeddings = !a.untied;
  c.mamba.use_bias = a.use_bias;
  c.mamba.use_conv_bias = !a.no_conv_bias;
  if (a.layer_norm) c.mamba.norm = NormKind::Layer;
  c.validate();
  SaveOptions so;
  const std::string d = a.dtype;
  if (d == "f32") so.dtype = DType::F32;
  else if (d == "f16") so.dtype = DType::F16;
  else if (d == "bf16") so.dtype = DType::BF16;
  else if (d == "f64") so.dtype = DType::F64;
  else fail("--dtype '{}': expected f32, f16, bf16 or f64", d);
  so.max_shard_bytes = static_cast<int64_t>(a.max_shard_mb * 1024 * 1024);

  Model m(c, static_cast<uint64_t>(a.seed));
  if (a.perturb > 0) {  // move every weight off its initial value (zero biases, D = 1, ...)
    Rng rng(static_cast<uint64_t>(a.seed) ^ 0x9e3779b97f4a7c15ull);
    for (Param* p : m.params())
      for (int64_t i = 0; i < p->w.numel(); ++i) p->w[i] += static_cast<float>(a.perturb * rng.normal());
  }
  save_model(a.out, m, so);
  if (!a.tokenizer_json.empty())
    std::filesystem::copy_file(a.tokenizer_json, a.out + "/tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
  fmt::print("wrote {}: d_model {} n_layer {} vocab {} (rows {}) d_state {} d_conv {} dt_rank {} {} head{}{}, {} "
             "parameters, {}\n",
             a.out, c.mamba.d_model, c.mamba.n_layer, c.mamba.vocab_size, c.mamba.vocab_padded(), c.mamba.d_state,
             c.mamba.d_conv, c.mamba.dt_rank_value(), c.mamba.tie_embeddings ? "tied" : "untied",
             c.mamba.use_bias ? ", use_bias" : "", c.mamba.norm == NormKind::Layer ? ", LayerNorm" : "",
             m.num_parameters(), dtype_name(so.dtype));
}
}  // namespace

void register_init(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  auto* cmd = app.add_subcommand("init", "Write a randomly initialised language model checkpoint");
  cmd->add_option("--out,-o", a->out, "checkpoint directory")->required();
  cmd->add_option("--variant", a->variant, "start from a published size: 130m 370m 790m 1.4b 2.8b");
  cmd->add_option("--d-model", a->d_model, "d_model");
  cmd->add_option("--n-layer", a->n_layer, "layers");
  cmd->add_option("--vocab-size", a->vocab_size, "vocabulary (padded to a multiple of 8 for the embedding)");
  cmd->add_option("--d-state", a->d_state, "SSM state size N");
  cmd->add_option("--d-conv", a->d_conv, "conv kernel size");
  cmd->add_option("--expand", a->expand, "d_inner / d_model");
  cmd->add_option("--dt-rank", a->dt_rank, "dt_rank (0: auto)");
  cmd->add_flag("--untied", a->untied, "separate lm_head.weight");
  cmd->add_flag("--use-bias", a->use_bias, "biases on in_proj and out_proj");
  cmd->add_flag("--no-conv-bias", a->no_conv_bias, "no conv1d bias");
  cmd->add_flag("--layer-norm", a->layer_norm, "LayerNorm instead of RMSNorm (not loadable by transformers)");
  cmd->add_option("--seed", a->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--perturb", a->perturb, "add N(0, s²) noise to every weight (tests)");
  cmd->add_option("--dtype", a->dtype, "f32 | f16 | bf16 | f64")->capture_default_str();
  cmd->add_option("--max-shard-mb", a->max_shard_mb, "shard into files of at most this many MiB (+ index.json)");
  cmd->add_option("--tokenizer-json", a->tokenizer_json, "copy this tokenizer.json into the checkpoint");
  cmd->callback([a] { run_init(*a); });
}

}  // namespace mambaseq::cli
