// Backbone (reference/mamba.md, "The backbone"), as a residual stream:
//   x_0 = Embedding(ids);  x_{l+1} = x_l + Mixer_l(Norm_l(x_l));  out = Norm_f(x_L)
// which is the reference's "residual = h + residual; h = mixer(norm(residual))" unrolled.
#include <cmath>

#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/model.h"

namespace mambaseq {

Backbone::Backbone(const MambaConfig& c)
    : cfg(c),
      embedding("backbone.embeddings.weight", {c.vocab_padded(), c.d_model}),
      normf_w("backbone.norm_f.weight", {c.d_model}, false) {
  c.validate();
  for (int i = 0; i < c.n_layer; ++i) layers.push_back(std::make_unique<MambaLayer>(c, i));
  if (c.norm == NormKind::Layer) normf_b = std::make_unique<Param>("backbone.norm_f.bias", Shape{c.d_model}, false);
}

void Backbone::init(Rng& rng) {
  for (int64_t i = 0; i < embedding.w.numel(); ++i)
    embedding.w[i] = static_cast<float>(rng.normal() * cfg.initializer_range);
  for (auto& l : layers) l->init(rng);
  normf_w.w.fill(1.0f);
  if (normf_b) normf_b->w.zero();
}

std::vector<Param*> Backbone::params() {
  std::vector<Param*> v{&embedding};
  for (auto& l : layers)
    for (Param* p : l->params()) v.push_back(p);
  v.push_back(&normf_w);
  if (normf_b) v.push_back(normf_b.get());
  return v;
}

int64_t Backbone::activation_bytes() const {
  int64_t b = 0;
  for (auto& t : stream_) b += t.bytes();
  for (auto& a : acts_) {
    for (const MixerActs* m : {static_cast<const MixerActs*>(&a), static_cast<const MixerActs*>(a.rev.get())})
      if (m)
        for (const Tensor* t : {&m->xn, &m->mean, &m->rstd, &m->xz, &m->xc, &m->u, &m->dbc, &m->dt, &m->yg})
          b += t->bytes();
    b += a.y_fwd.bytes() + a.y_rev.bytes();
  }
  return b;
}

const Tensor& Backbone::forward(const int32_t* ids, int64_t batch, int64_t len, bool training,
                                const uint8_t* mask) {
  MS_CHECK(batch > 0 && len > 0, "backbone forward: empty batch ({} x {})", batch, len);
  const int64_t M = batch * len, D = cfg.d_model;
  batch_ = batch;
  len_ = len;
  trained_forward_ = training;
  ids_.assign(ids, ids + M);
  if (cfg.bidirectional) {  // reversal span of each sequence: up to its last real token
    lens_.assign(batch, mask ? 0 : len);
    if (mask)
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < len; ++t)
          if (mask[b * len + t]) lens_[b] = t + 1;
  }
  const int64_t* lens = cfg.bidirectional ? lens_.data() : nullptr;
  // Inference keeps two stream buffers and one layer's activations; training keeps all.
  const size_t nstream = training ? layers.size() + 1 : 2, nacts = training ? layers.size() : 1;
  if (stream_.size() < nstream) stream_.resize(nstream);
  if (acts_.size() < nacts) acts_.resize(nacts);
  for (size_t i = 0; i < nstream; ++i) stream_[i].resize({M, D});
  mix_out_.resize({M, D});
  hidden_.resize({M, D});
  nf_mean_.resize({M});
  nf_rstd_.resize({M});

  cpu::embedding_forward<float>(stream_[0].data(), ids, embedding.w.data(), M, embedding.w.dim(0), D);
  for (size_t l = 0; l < layers.size(); ++l) {
    const Tensor& in = stream_[training ? l : l % 2];
    Tensor& out = stream_[training ? l + 1 : (l + 1) % 2];
    layers[l]->forward(in.data(), mix_out_.data(), batch, len, acts_[training ? l : 0], lens);
    cpu::add_forward<float>(out.data(), in.data(), mix_out_.data(), M * D);
  }
  const Tensor& last = stream_[training ? layers.size() : layers.size() % 2];
  if (cfg.norm == NormKind::RMS)
    cpu::rmsnorm_forward<float>(hidden_.data(), nf_rstd_.data(), last.data(), normf_w.w.data(), M, D, cfg.norm_eps);
  else
    cpu::layernorm_forward<float>(hidden_.data(), nf_mean_.data(), nf_rstd_.data(), last.data(), normf_w.w.data(),
                           normf_b->w.data(), M, D, cfg.norm_eps);
  return hidden_;
}

void Backbone::backward(const float* dhidden) {
  MS_CHECK(trained_forward_, "backbone backward: the last forward was not a training forward");
  const int64_t M = batch_ * len_, D = cfg.d_model;
  d_stream_.resize({M, D});
  d_stream_.zero();
  const Tensor& last = stream_[layers.size()];
  if (cfg.norm == NormKind::RMS)
    cpu::rmsnorm_backward<float>(d_stream_.data(), normf_w.g.data(), dhidden, last.data(), normf_w.w.data(),
                          nf_rstd_.data(), M, D);
  else
    cpu::layernorm_backward<float>(d_stream_.data(), normf_w.g.data(), normf_b->g.data(), dhidden, last.data(),
                            normf_w.w.data(), nf_mean_.data(), nf_rstd_.data(), M, D);
  // ∂x_l = ∂x_{l+1} + Mixer_lᵀ(∂x_{l+1}): the layer adds its part into the same buffer.
  for (size_t l = layers.size(); l-- > 0;)
    layers[l]->backward(d_stream_.data(), d_stream_.data(), stream_[l].data(), batch_, len_, acts_[l], scratch_,
                        cfg.bidirectional ? lens_.data() : nullptr);
  cpu::embedding_backward<float>(embedding.g.data(), d_stream_.data(), ids_.data(), M, embedding.w.dim(0), D);
}

}  // namespace mambaseq
