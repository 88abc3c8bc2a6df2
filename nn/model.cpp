// Heads on the backbone, and the loss each one trains with.
//   LM:                    logits = hidden · Wᵀ (W = embedding when tied)      → CE
//   token classification:  logits = Linear(Dropout(hidden))                   → CE (−100 ignored)
//   sequence classif.:     logits = Linear(Dropout(MeanPool_mask(hidden)))    → CE
//   regression:            pred   = Linear(Dropout(MeanPool_mask(hidden)))    → MSE
#include <cmath>

#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/model.h"

namespace mambaseq {

Model::Model(const ModelConfig& c, uint64_t seed) : cfg(c), backbone(c.mamba) {
  cfg.validate();
  const int64_t D = c.mamba.d_model;
  if (c.head == HeadKind::LM) {
    if (!c.mamba.tie_embeddings) head_w = std::make_unique<Param>("lm_head.weight", Shape{c.mamba.vocab_padded(), D});
  } else {
    head_w = std::make_unique<Param>("classifier.weight", Shape{c.num_labels, D});
    head_b = std::make_unique<Param>("classifier.bias", Shape{c.num_labels}, false);
  }
  Rng rng(seed);
  backbone.init(rng);
  if (head_w) {
    if (c.head == HeadKind::LM) {
      for (int64_t i = 0; i < head_w->w.numel(); ++i)
        head_w->w[i] = static_cast<float>(rng.normal() * c.mamba.initializer_range);
    } else {  // PyTorch's nn.Linear default
      const double bound = 1.0 / std::sqrt(double(D));
      for (int64_t i = 0; i < head_w->w.numel(); ++i) head_w->w[i] = static_cast<float>(rng.uniform(-bound, bound));
      for (int64_t i = 0; i < head_b->w.numel(); ++i) head_b->w[i] = static_cast<float>(rng.uniform(-bound, bound));
    }
  }
}

std::vector<Param*> Model::params() {
  auto v = backbone.params();
  if (head_w) v.push_back(head_w.get());
  if (head_b) v.push_back(head_b.get());
  return v;
}

void Model::save(const std::string& dir) { save_model(dir, *this); }

const Param& Model::lm_weight() { return head_w ? *head_w : backbone.embedding; }

const Tensor& Model::forward(const Batch& b, bool training, uint64_t dropout_seed) {
  MS_CHECK(b.batch > 0 && b.len > 0, "model forward: empty batch");
  MS_CHECK(static_cast<int64_t>(b.ids.size()) == b.batch * b.len,
           "model forward: batch has {} ids, expected batch*len = {}", b.ids.size(), b.batch * b.len);
  const int64_t M = b.batch * b.len, D = cfg.mamba.d_model;
  if (!b.mask.empty()) {
    MS_CHECK(static_cast<int64_t>(b.mask.size()) == M, "model forward: mask has {} entries, expected {}",
             b.mask.size(), M);
    mask_ = b.mask;
  } else {
    mask_.resize(M);
    for (int64_t i = 0; i < M; ++i) mask_[i] = b.ids[i] != cfg.pad_token_id;
  }
  const Tensor& h = backbone.forward(b.ids.data(), b.batch, b.len, training, mask_.data());
  const double p = training ? cfg.head_dropout : 0.0;
  Rng rng = Rng::derive(dropout_seed, 0x68656164);
  switch (cfg.head) {
    case HeadKind::LM: {
      const Param& W = lm_weight();
      out_.resize({M, W.w.dim(0)});
      cpu::linear_forward<float>(out_.data(), W.w.dim(0), h.data(), D, W.w.data(), nullptr, M, D, W.w.dim(0));
      break;
    }
    case HeadKind::TokenClassification: {
      dropped_.resize({M, D});
      keep_.resize({M, D});
      cpu::dropout_forward<float>(dropped_.data(), keep_.data(), h.data(), M * D, p, rng);
      out_.resize({M, cfg.num_labels});
      cpu::linear_forward<float>(out_.data(), cfg.num_labels, dropped_.data(), D, head_w->w.data(), head_b->w.data(), M, D,
                          cfg.num_labels);
      break;
    }
    case HeadKind::SequenceClassification:
    case HeadKind::Regression: {
      pooled_.resize({b.batch, D});
      cpu::mean_pool_forward<float>(pooled_.data(), h.data(), mask_.data(), b.batch, b.len, D);
      dropped_.resize({b.batch, D});
      keep_.resize({b.batch, D});
      cpu::dropout_forward<float>(dropped_.data(), keep_.data(), pooled_.data(), b.batch * D, p, rng);
      out_.resize({b.batch, cfg.num_labels});
      cpu::linear_forward<float>(out_.data(), cfg.num_labels, dropped_.data(), D, head_w->w.data(), head_b->w.data(),
                          b.batch, D, cfg.num_labels);
      break;
    }
  }
  out_ptr_ = &out_;
  return out_;
}

void Model::backward_from_output(const float* dout, int64_t batch, int64_t len) {
  MS_CHECK(out_ptr_ == &out_, "backward: forward was not called");
  const int64_t M = batch * len, D = cfg.mamba.d_model, cols = out_.dim(1);
  if (dout != d_out_.data()) {
    d_out_.resize(out_.shape());
    std::copy(dout, dout + out_.numel(), d_out_.data());
  }
  d_hidden_.resize({M, D});
  d_hidden_.zero();
  const Tensor& h = backbone.hidden();
  switch (cfg.head) {
    case HeadKind::LM: {
      Param& W = head_w ? *head_w : backbone.embedding;
      cpu::linear_backward<float>(d_hidden_.data(), D, W.g.data(), nullptr, d_out_.data(), cols, h.data(), D, W.w.data(), M,
                           D, cols);
      break;
    }
    case HeadKind::TokenClassification: {
      d_dropped_.resize({M, D});
      d_dropped_.zero();
      cpu::linear_backward<float>(d_dropped_.data(), D, head_w->g.data(), head_b->g.data(), d_out_.data(), cols,
                           dropped_.data(), D, head_w->w.data(), M, D, cols);
      cpu::dropout_backward<float>(d_hidden_.data(), d_dropped_.data(), keep_.data(), M * D);
      break;
    }
    case HeadKind::SequenceClassification:
    case HeadKind::Regression: {
      d_dropped_.resize({batch, D});
      d_dropped_.zero();
      d_pool_.resize({batch, D});
      d_pool_.zero();
      cpu::linear_backward<float>(d_dropped_.data(), D, head_w->g.data(), head_b->g.data(), d_out_.data(), cols,
                           dropped_.data(), D, head_w->w.data(), batch, D, cols);
      cpu::dropout_backward<float>(d_pool_.data(), d_dropped_.data(), keep_.data(), batch * D);
      cpu::mean_pool_backward<float>(d_hidden_.data(), d_pool_.data(), mask_.data(), batch, len, D);
      break;
    }
  }
  backbone.backward(d_hidden_.data());
}

}  // namespace mambaseq
