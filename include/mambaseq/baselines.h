// The seed-001 baselines (reference/benchmarks.md §1), PyTorch semantics, on the CPU:
//
//   CNN:          Embedding(V → E) → n × [Conv1d(k_i, 'same') → BatchNorm1d → ReLU →
//                 MaxPool1d(2)] → global mean over the remaining length → Dropout → Linear
//   Transformer:  [CLS] + Embedding(V → D) + learned positions → n × pre-norm
//                 nn.TransformerEncoderLayer (MHA with key padding mask, FFN, dropout) →
//                 LayerNorm → CLS row → Dropout → Linear
//
// Heads: sequence classification (softmax CE; with Batch::multi_label, one sigmoid per
// label and BCE — see network.h) and regression (MSE). Shapes in comments: B = batch,
// L = len, M = B·L rows, C = channels, D = d_model, F = d_ff, H = heads.
//
// Padding. The Transformer masks PAD keys, so a sequence's output does not depend on
// padding appended to it. The seed's CNN takes the plain mean over all positions,
// padding included (PyTorch has no mask there) — CnnConfig::mask_padding = false, the
// default, reproduces that. With mask_padding = true every sequence is processed as if
// alone at its own length: embeddings of padding are zeroed, after each pooling the
// positions beyond floor(n/2) are zeroed (so 'same' convolutions see the zero padding
// they would see at the sequence's end), BatchNorm statistics count real positions
// only, and the final mean is over the n/16 real positions (each sequence then needs at
// least 2^blocks real tokens). Real length n = last non-PAD position + 1.
//
// Initialisation follows PyTorch's defaults (Embedding N(0,1), Conv1d/Linear
// U(±1/sqrt(fan_in)), MultiheadAttention's xavier in_proj). Weight decay (Param::decay)
// applies to weights and embeddings, not to biases and norm parameters (as the Mamba
// model). The seed does not give the CNN's dropout rate: 0.1, as everywhere else in it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mambaseq/config.h"
#include "mambaseq/network.h"
#include "mambaseq/tensor.h"

namespace mambaseq {

class SafeTensorsReader;

struct CnnConfig {
  int64_t vocab_size = 6;   // PAD A C G T N
  int64_t d_embed = 256;
  int64_t channels = 256;
  std::vector<int64_t> kernel_sizes{15, 9, 5, 3};  // one block per entry; odd sizes
  int64_t pool = 2;          // MaxPool1d(pool) (kernel = stride) after every block
  double bn_momentum = 0.1;
  double bn_eps = 1e-5;
  double head_dropout = 0.1;
  bool mask_padding = false;  // false: the seed's plain mean (see the header comment)
  HeadKind head = HeadKind::SequenceClassification;
  int64_t num_labels = 2;
  int32_t pad_token_id = 0;
  void validate() const;  // Error naming the first bad value
};

struct TransformerConfig {
  int64_t vocab_size = 6;
  int64_t d_model = 256;
  int64_t n_layer = 6;
  int64_t n_head = 8;
  int64_t d_ff = 512;
  int64_t max_len = 600;           // longest input; positions = max_len + 1 (CLS first)
  double dropout = 0.1;            // attention weights, attention output, FFN hidden, FFN output
  double head_dropout = 0.1;
  std::string activation = "relu";  // FFN: "relu" (nn.TransformerEncoderLayer's default) or "gelu"
  double norm_eps = 1e-5;
  HeadKind head = HeadKind::SequenceClassification;
  int64_t num_labels = 2;
  int32_t pad_token_id = 0;
  void validate() const;
};

// Seed 001's baselines. 2,102,274 and 3,319,298 parameters for 2 classes.
CnnConfig seed001_cnn(int64_t num_classes = 2);
TransformerConfig seed001_transformer(int64_t num_classes = 2);
int64_t count_parameters(const CnnConfig& cfg);          // trainable only (no BN statistics)
int64_t count_parameters(const TransformerConfig& cfg);

// A non-trainable tensor saved with the model (BatchNorm running statistics).
struct Buffer {
  std::string name;
  Tensor w;
  Buffer(std::string n, Shape s) : name(std::move(n)), w(std::move(s)) {}
};

class CnnClassifier : public Network {
 public:
  explicit CnnClassifier(const CnnConfig& cfg, uint64_t seed = 0);
  // [B, num_labels]: logits (classification) or predictions (regression). training:
  // batch statistics (running statistics updated) and dropout; else running statistics.
  const Tensor& forward(const Batch& b, bool training, uint64_t dropout_seed = 0) override;
  void backward_from_output(const float* dout, int64_t batch, int64_t len) override;
  std::vector<Param*> params() override;
  HeadKind head() const override { return cfg.head; }
  int64_t num_labels() const override { return cfg.num_labels; }
  std::string arch() const override { return "cnn"; }
  // config.json ("mambaseq_arch": "cnn") + model.safetensors with the parameters, the
  // running statistics and num_batches_tracked (I64), under PyTorch state_dict names.
  void save(const std::string& dir) override;
  // BatchNorm running_mean / running_var of every block (not trained, saved and loaded).
  std::vector<Buffer*> buffers();
  // Every parameter and buffer from the file (num_batches_tracked optional); a missing,
  // misshapen or unexpected tensor is an Error naming it.
  void load_state(const SafeTensorsReader& file) override;
  int64_t batches_tracked(size_t block) const { return tracked_.at(block); }
  // Which side of every kink the last forward took (ReLU signs, max-pool winners): two
  // forwards with the same pattern lie on one smooth piece, so finite differences between
  // them are valid (the gradient tests check this).
  std::vector<int32_t> branch_pattern() const;

  const CnnConfig cfg;
  Param embedding;  // [V, E]
  struct Block {
    Param conv_w, conv_b, bn_w, bn_b;  // [C, Cin, K], [C], [C], [C]
    Buffer run_mean, run_var;          // [C]
    int64_t K;
  };
  std::vector<Block> blocks;
  Param head_w, head_b;  // [num_labels, C], [num_labels]

 private:
  struct Acts {
    int64_t len = 0;  // input length of the block
    Tensor c, r, mean, rstd;  // conv out [B·len, C], ReLU out, BN stats [C]
    std::vector<int32_t> idx;  // pool argmax [B·len/pool, C]
  };
  int64_t batch_ = 0;
  bool training_ = false;
  std::vector<int32_t> ids_;
  std::vector<int64_t> lens_;                 // per-level real lengths (masked mode): [levels, B]
  std::vector<std::vector<uint8_t>> masks_;   // per-level row masks [B·len_level]
  std::vector<Tensor> inputs_;                // input of each block (embedding, then pool outputs)
  std::vector<Acts> acts_;
  std::vector<int64_t> tracked_;
  Tensor ws_, pooled_, dropped_, keep_, out_;
  Tensor g1_, g2_, g3_, d_dropped_, d_pool_;
};

class TransformerClassifier : public Network {
 public:
  explicit TransformerClassifier(const TransformerConfig& cfg, uint64_t seed = 0);
  // [B, num_labels]. A batch longer than max_len is an Error.
  const Tensor& forward(const Batch& b, bool training, uint64_t dropout_seed = 0) override;
  void backward_from_output(const float* dout, int64_t batch, int64_t len) override;
  std::vector<Param*> params() override;
  HeadKind head() const override { return cfg.head; }
  int64_t num_labels() const override { return cfg.num_labels; }
  std::string arch() const override { return "transformer"; }
  // config.json ("mambaseq_arch": "transformer") + model.safetensors, names as
  // nn.TransformerEncoder's (encoder.layers.{i}.self_attn.in_proj_weight, ...).
  void save(const std::string& dir) override;
  // ReLU signs of the last forward (empty for GELU); see CnnClassifier::branch_pattern.
  std::vector<int32_t> branch_pattern() const;

  const TransformerConfig cfg;
  Param embedding;  // [V, D]
  Param cls_token;  // [1, 1, D]
  Param pos;        // [1, max_len + 1, D]
  struct Layer {
    Param norm1_w, norm1_b, in_w, in_b, out_w, out_b, norm2_w, norm2_b, w1, b1, w2, b2;
  };
  std::vector<Layer> layers;
  Param normf_w, normf_b, head_w, head_b;

 private:
  struct Acts {
    Tensor x;                       // [M, D] layer input (residual stream)
    Tensor a, mean1, rstd1;         // LN1 out [M, D], stats [M]
    Tensor qkv, att, lse, keep1;    // [M, 3D], [M, D], [B, H, Lt], [M, D]
    Tensor xmid, f, mean2, rstd2;   // x + attention branch [M, D]; LN2 out [M, D]
    Tensor h1, r, keep2, rd, keep3; // FFN: linear1 out, activation out, its dropout mask and output [M, F]; [M, D]
  };
  int64_t batch_ = 0, lt_ = 0;  // lt_ = len + 1 (CLS)
  bool training_ = false;
  uint64_t seed_ = 0;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> key_mask_;  // [B, Lt]
  std::vector<Acts> acts_;
  Tensor x_last_, cls_, cls_n_, cls_mean_, cls_rstd_, dropped_, keep_, out_, ws_, tmp_;
  Tensor dA_, dB_, dF1_, dF2_, dQKV_, dX_, d_cls_, d_dropped_, d_cls_n_;
  uint64_t site_seed(int64_t layer, int64_t site) const;
};

// Load a baseline written by save(): DIR/config.json + DIR/model.safetensors.
std::unique_ptr<CnnClassifier> load_cnn(const std::string& dir);
std::unique_ptr<TransformerClassifier> load_transformer(const std::string& dir);

// config.json text (validated first) and back; errors name the file and the key.
std::string cnn_config_to_json(const CnnConfig& cfg);
CnnConfig read_cnn_config(const std::string& path);
std::string transformer_config_to_json(const TransformerConfig& cfg);
TransformerConfig read_transformer_config(const std::string& path);

}  // namespace mambaseq
