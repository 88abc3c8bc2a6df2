// The Mamba model on the CPU: mixer, pre-norm residual block, backbone, task heads.
// Each layer has an explicit forward and backward; activations live in buffers that
// are sized once per (batch, len) and reused, so the training loop does not allocate.
//
// Shapes: M = batch·len tokens, D = d_model, Di = d_inner, N = d_state, R = dt_rank,
// K = d_conv, V = padded vocabulary.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mambaseq/config.h"
#include "mambaseq/network.h"
#include "mambaseq/rng.h"
#include "mambaseq/tensor.h"

namespace mambaseq {

// Activations one mixer keeps for its backward.
struct MixerActs {
  Tensor xn;    // [M, D]      normalised block input (in_proj's input)
  Tensor mean;  // [M]         LayerNorm only
  Tensor rstd;  // [M]
  Tensor xz;    // [M, 2·Di]   in_proj output: x | z
  Tensor xc;    // [M, Di]     conv output, before SiLU
  Tensor u;     // [M, Di]     SiLU(conv): the scan input
  Tensor dbc;   // [M, R+2N]   x_proj output: dt_low | B | C
  Tensor dt;    // [M, Di]     dt_proj output without bias (bias + softplus happen in the scan)
  Tensor yg;    // [M, Di]     gated scan output (out_proj's input)
  // Bidirectional only: the reversed mixer's activations (its xn is this xn reversed
  // within each sequence), and the outputs the combination needs for its backward:
  // add keeps y_rev (reversed order, a temporary); ew_multiply keeps y_fwd and y_rev
  // (sequence order).
  std::unique_ptr<MixerActs> rev;
  Tensor y_fwd, y_rev;  // [M, D]
  void resize(int64_t M, const MambaConfig& c);
};

// Gradient scratch shared by all layers during backward.
struct MixerGradScratch {
  Tensor d_xn, d_xz, d_xc, d_u, d_dbc, d_dt, d_yg, d_A;
  Tensor d_fwd, d_rev, d_xn_rev;  // bidirectional: [M, D] each
  void resize(int64_t M, const MambaConfig& c);
};

// Norm + mixer of one block:  x_{l+1} = x_l + Mixer(Norm(x_l)).
// Bidirectional (Caduceus' BiMamba, untied): x_{l+1} = x_l + Mixer(n) ∘ R(Mixer_rev(R(n))),
// n = Norm(x_l), R = reversal within each sequence's real length (padding stays at the
// end, so no real position ever sees padding), ∘ = + (add) or ⊙ (ew_multiply).
class MambaLayer {
 public:
  MambaLayer(const MambaConfig& c, int index);
  // x: [M, D] block input; out: [M, D] mixer output (without the residual).
  // lens: [batch] real lengths for the reversal (null: len); used when bidirectional.
  void forward(const float* x, float* out, int64_t batch, int64_t len, MixerActs& a,
               const int64_t* lens = nullptr);
  // dout: ∂loss/∂(mixer output); accumulates ∂loss/∂x into dx and parameter grads.
  void backward(const float* dout, float* dx, const float* x, int64_t batch, int64_t len,
                const MixerActs& a, MixerGradScratch& s, const int64_t* lens = nullptr);
  void init(Rng& rng);
  std::vector<Param*> params();  // norm, mixer, then mixer_rev's parameters

  const MambaConfig cfg;
  // Parameters, Hugging Face names under backbone.layers.{i}.
  Param norm_w;
  std::unique_ptr<Param> norm_b;  // LayerNorm only
  Param in_w;                     // [2Di, D]
  std::unique_ptr<Param> in_b;    // use_bias
  Param conv_w;                   // [Di, 1, K]
  std::unique_ptr<Param> conv_b;  // use_conv_bias
  Param x_w;                      // [R+2N, Di]
  Param dt_w;                     // [Di, R]
  Param dt_b;                     // [Di]
  Param A_log;                    // [Di, N]
  Param Dp;                       // [Di]
  Param out_w;                    // [D, Di]
  std::unique_ptr<Param> out_b;   // use_bias
  // Bidirectional: the reversed-direction mixer, parameters under
  // backbone.layers.{i}.mixer_rev.* (its own norm_w is unused: the block has one norm).
  std::unique_ptr<MambaLayer> rev;

 private:
  MambaLayer(const MambaConfig& c, int index, bool is_rev);
  const bool is_rev_ = false;
  Tensor A_;  // −exp(A_log), recomputed each forward
  void norm_forward(const float* x, int64_t M, MixerActs& a);
  // The mixer alone: reads a.xn, writes out [M, D].
  void mixer_forward(float* out, int64_t batch, int64_t len, MixerActs& a);
  // Leaves ∂loss/∂xn in s.d_xn (overwritten); accumulates the mixer's parameter grads.
  void mixer_backward(const float* dout, int64_t batch, int64_t len, const MixerActs& a, MixerGradScratch& s);
};

// Embedding → n_layer blocks → final norm.
class Backbone {
 public:
  explicit Backbone(const MambaConfig& c);
  // ids: [batch, len]. Returns the final normalised hidden states [M, D].
  // training=false keeps one layer's activations only (inference memory).
  // mask: [batch, len] 1 = real token, or null (all real); a bidirectional backbone
  // reverses each sequence within [0, last real token], so padding must be at the end.
  const Tensor& forward(const int32_t* ids, int64_t batch, int64_t len, bool training,
                        const uint8_t* mask = nullptr);
  // dhidden: ∂loss/∂(final hidden) [M, D]; accumulates parameter gradients.
  void backward(const float* dhidden);
  const Tensor& hidden() const { return hidden_; }  // output of the last forward
  void init(Rng& rng);
  std::vector<Param*> params();
  int64_t activation_bytes() const;

  const MambaConfig cfg;
  Param embedding;  // [V, D] backbone.embeddings.weight
  std::vector<std::unique_ptr<MambaLayer>> layers;
  Param normf_w;
  std::unique_ptr<Param> normf_b;

 private:
  int64_t batch_ = 0, len_ = 0;
  bool trained_forward_ = false;
  std::vector<int32_t> ids_;
  std::vector<int64_t> lens_;  // bidirectional: real length of each sequence
  std::vector<Tensor> stream_;  // residual stream: input of each layer, then of norm_f
  std::vector<MixerActs> acts_;
  MixerGradScratch scratch_;
  Tensor mix_out_, hidden_, nf_mean_, nf_rstd_, d_stream_, d_tmp_;
};


// Backbone + head (the Mamba network).
class Model : public Network {
 public:
  explicit Model(const ModelConfig& cfg, uint64_t seed = 0);
  // Head output: LM/token [M, V or num_labels] logits; classification [batch, num_labels]
  // logits; regression [batch, num_labels] predictions.
  const Tensor& forward(const Batch& b, bool training, uint64_t dropout_seed = 0) override;
  void backward_from_output(const float* dout, int64_t batch, int64_t len) override;
  std::vector<Param*> params() override;
  HeadKind head() const override { return cfg.head; }
  int64_t num_labels() const override { return cfg.num_labels; }
  std::string arch() const override { return "mamba"; }
  void save(const std::string& dir) override;
  bool tied_lm_head() const override { return cfg.head == HeadKind::LM && cfg.mamba.tie_embeddings; }

  const ModelConfig cfg;
  Backbone backbone;
  std::unique_ptr<Param> head_w;  // lm_head.weight [V, D] (untied) or classifier.weight [K, D]
  std::unique_ptr<Param> head_b;  // classifier.bias [K]

 private:
  Tensor out_, pooled_, dropped_, keep_, d_dropped_, d_pool_, d_hidden_;
  std::vector<uint8_t> mask_;
  const Param& lm_weight();
};

}  // namespace mambaseq
