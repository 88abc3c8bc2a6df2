// Model configuration: the Mamba backbone (every option of reference/mamba.md) and
// the task head on top of it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mambaseq {

enum class NormKind { RMS, Layer };

struct MambaConfig {
  int64_t d_model = 768;
  int64_t n_layer = 24;
  int64_t vocab_size = 50277;           // before padding
  int64_t pad_vocab_size_multiple = 8;  // embedding rows = vocab rounded up to this
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 means "auto": ceil(d_model / 16)
  NormKind norm = NormKind::RMS;
  double norm_eps = 1e-5;
  bool residual_in_fp32 = true;  // the CPU backend is fp32 throughout; kept for config fidelity
  bool use_bias = false;         // bias on in_proj and out_proj
  bool use_conv_bias = true;
  bool tie_embeddings = true;
  // Bidirectional blocks (Caduceus' BiMamba, for non-causal tasks such as genomic
  // classification): a second mixer with its own parameters (mixer_rev.*) runs over each
  // sequence reversed within its real length; its output, reversed back, is combined with
  // the forward mixer's: "add" (Caduceus' default) or "ew_multiply". Not an LM option.
  bool bidirectional = false;
  std::string bidir_combine = "add";
  // Initialisation (reference defaults)
  double dt_min = 1e-3, dt_max = 0.1, dt_init_floor = 1e-4, dt_scale = 1.0;
  bool dt_init_random = true;  // false: "constant" dt_proj.weight = dt_rank^-0.5·dt_scale
  double initializer_range = 0.02;
  bool rescale_prenorm_residual = true;

  int64_t d_inner() const { return expand * d_model; }
  int64_t dt_rank_value() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  int64_t vocab_padded() const;
  // Throws mambaseq::Error naming the first bad value.
  void validate() const;
};

// Published variants (reference/mamba.md): 130m 370m 790m 1.4b 2.8b.
std::vector<std::string> variant_names();
MambaConfig variant_config(const std::string& name);  // unknown name: Error listing the known ones

enum class HeadKind { LM, SequenceClassification, TokenClassification, Regression };
std::string head_name(HeadKind h);
HeadKind head_from_name(const std::string& s);

struct ModelConfig {
  MambaConfig mamba;
  HeadKind head = HeadKind::LM;
  int64_t num_labels = 2;      // classes (classification) or targets (regression)
  double head_dropout = 0.1;   // before the head's linear layer
  int32_t pad_token_id = 0;    // positions with this id are padding (masked from pooling)
  void validate() const;
};

// The seed-001 genomic classifier: vocab 6 (PAD A C G T N), d_model 256, 12 LayerNorm
// blocks, mean pooling, dropout 0.1, linear head. 5,261,826 parameters for 2 classes.
ModelConfig seed001_classifier(int64_t num_classes = 2);

// Exact parameter count from the shapes (tied embedding counted once).
int64_t count_parameters(const ModelConfig& cfg);

}  // namespace mambaseq
