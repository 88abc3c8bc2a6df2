#include "mambaseq/config.h"

#include <fmt/format.h>

#include "mambaseq/error.h"

namespace mambaseq {

int64_t MambaConfig::vocab_padded() const {
  int64_t m = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
  return (vocab_size + m - 1) / m * m;
}

void MambaConfig::validate() const {
  auto pos = [](const char* name, int64_t v) {
    MS_CHECK(v > 0, "invalid model config: {} must be a positive integer, got {}", name, v);
  };
  pos("d_model", d_model);
  pos("n_layer", n_layer);
  pos("vocab_size", vocab_size);
  pos("d_state", d_state);
  pos("d_conv", d_conv);
  pos("expand", expand);
  MS_CHECK(dt_rank >= 0, "invalid model config: dt_rank must be positive or 0 (auto), got {}", dt_rank);
  MS_CHECK(pad_vocab_size_multiple >= 0,
           "invalid model config: pad_vocab_size_multiple must be >= 0, got {}", pad_vocab_size_multiple);
  MS_CHECK(norm_eps > 0 && norm_eps < 1, "invalid model config: norm_eps must be in (0, 1), got {}", norm_eps);
  MS_CHECK(dt_min > 0 && dt_max >= dt_min,
           "invalid model config: need 0 < dt_min <= dt_max, got dt_min={} dt_max={}", dt_min, dt_max);
  MS_CHECK(dt_init_floor > 0, "invalid model config: dt_init_floor must be positive, got {}", dt_init_floor);
  MS_CHECK(dt_scale > 0, "invalid model config: dt_scale must be positive, got {}", dt_scale);
  MS_CHECK(initializer_range > 0, "invalid model config: initializer_range must be positive, got {}",
           initializer_range);
  MS_CHECK(bidir_combine == "add" || bidir_combine == "ew_multiply",
           "invalid model config: bidir_combine must be \"add\" or \"ew_multiply\", got \"{}\"", bidir_combine);
  MS_CHECK(d_model <= (1 << 16) && d_state <= 1024 && d_conv <= 1024 && expand <= 64 && n_layer <= 4096,
           "invalid model config: a size is implausibly large (d_model={} d_state={} d_conv={} expand={} "
           "n_layer={})",
           d_model, d_state, d_conv, expand, n_layer);
}

std::vector<std::string> variant_names() { return {"130m", "370m", "790m", "1.4b", "2.8b"}; }

MambaConfig variant_config(const std::string& name) {
  MambaConfig c;
  if (name == "130m") { c.d_model = 768; c.n_layer = 24; }
  else if (name == "370m") { c.d_model = 1024; c.n_layer = 48; }
  else if (name == "790m") { c.d_model = 1536; c.n_layer = 48; }
  else if (name == "1.4b") { c.d_model = 2048; c.n_layer = 48; }
  else if (name == "2.8b") { c.d_model = 2560; c.n_layer = 64; }
  else {
    std::string known;
    for (auto& v : variant_names()) known += (known.empty() ? "" : ", ") + v;
    fail("unknown variant '{}' (known: {})", name, known);
  }
  return c;
}

std::string head_name(HeadKind h) {
  switch (h) {
    case HeadKind::LM: return "lm";
    case HeadKind::SequenceClassification: return "sequence_classification";
    case HeadKind::TokenClassification: return "token_classification";
    case HeadKind::Regression: return "regression";
  }
  return "?";
}

HeadKind head_from_name(const std::string& s) {
  for (HeadKind h : {HeadKind::LM, HeadKind::SequenceClassification, HeadKind::TokenClassification,
                     HeadKind::Regression})
    if (head_name(h) == s) return h;
  fail("unknown head '{}' (known: lm, sequence_classification, token_classification, regression)", s);
}

void ModelConfig::validate() const {
  mamba.validate();
  if (head != HeadKind::LM)
    MS_CHECK(num_labels >= 1 && num_labels <= (1 << 20),
             "invalid model config: num_labels must be >= 1, got {}", num_labels);
  if (head == HeadKind::SequenceClassification || head == HeadKind::TokenClassification)
    MS_CHECK(num_labels >= 2, "invalid model config: a classifier needs num_labels >= 2, got {}", num_labels);
  MS_CHECK(head_dropout >= 0 && head_dropout < 1,
           "invalid model config: head_dropout must be in [0, 1), got {}", head_dropout);
  MS_CHECK(!(mamba.bidirectional && head == HeadKind::LM),
           "invalid model config: a bidirectional model sees later tokens, so it cannot be a causal LM (head lm)");
  MS_CHECK(pad_token_id >= 0 && pad_token_id < mamba.vocab_padded(),
           "invalid model config: pad_token_id {} is outside the vocabulary", pad_token_id);
}

ModelConfig seed001_classifier(int64_t num_classes) {
  ModelConfig m;
  m.mamba.d_model = 256;
  m.mamba.n_layer = 12;
  m.mamba.vocab_size = 6;
  m.mamba.pad_vocab_size_multiple = 1;
  m.mamba.norm = NormKind::Layer;
  m.mamba.tie_embeddings = false;  // no LM head at all
  m.head = HeadKind::SequenceClassification;
  m.num_labels = num_classes;
  m.head_dropout = 0.1;
  m.pad_token_id = 0;
  return m;
}

int64_t count_parameters(const ModelConfig& cfg) {
  const MambaConfig& c = cfg.mamba;
  const int64_t D = c.d_model, Di = c.d_inner(), N = c.d_state, R = c.dt_rank_value(), K = c.d_conv;
  const int64_t V = c.vocab_padded();
  const int64_t norm = c.norm == NormKind::Layer ? 2 * D : D;
  const int64_t mixer = 2 * Di * D + (c.use_bias ? 2 * Di : 0)  // in_proj
                        + Di * K + (c.use_conv_bias ? Di : 0)   // conv1d
                        + (R + 2 * N) * Di                       // x_proj
                        + Di * R + Di                            // dt_proj
                        + Di * N + Di                            // A_log, D
                        + D * Di + (c.use_bias ? D : 0);         // out_proj
  const int64_t layer = norm + mixer * (c.bidirectional ? 2 : 1);
  int64_t total = V * D + c.n_layer * layer + norm;
  switch (cfg.head) {
    case HeadKind::LM: total += c.tie_embeddings ? 0 : V * D; break;
    case HeadKind::SequenceClassification:
    case HeadKind::TokenClassification:
    case HeadKind::Regression: total += D * cfg.num_labels + cfg.num_labels; break;
  }
  return total;
}

}  // namespace mambaseq
