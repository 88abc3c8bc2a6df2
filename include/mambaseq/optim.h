// AdamW, the learning-rate schedule and gradient clipping.
#pragma once
#include <cstdint>
#include <vector>

#include "mambaseq/tensor.h"

namespace mambaseq {

struct AdamWConfig {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.01;  // applied only to params with decay = true
};

// PyTorch's AdamW: p ← p − lr·wd·p (decoupled), then the bias-corrected Adam step.
class AdamW {
 public:
  AdamW(std::vector<Param*> params, AdamWConfig cfg);
  void step(double lr);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }
  const std::vector<Param*>& params() const { return params_; }
  Tensor& exp_avg(size_t i) { return m_[i]; }
  Tensor& exp_avg_sq(size_t i) { return v_[i]; }
  const AdamWConfig cfg;

 private:
  std::vector<Param*> params_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

// Global L2 norm of all gradients; if above max_norm (> 0), scales them to max_norm
// (PyTorch's clip_grad_norm_: coef = max_norm / (norm + 1e-6)). Returns the norm before.
double clip_grad_norm(const std::vector<Param*>& params, double max_norm);

// Linear warm-up from 0 to lr_max over `warmup` steps, then cosine decay to lr_min at
// `total` (the schedule of Hugging Face's get_cosine_schedule_with_warmup when lr_min = 0).
double cosine_lr(int64_t step, int64_t total, int64_t warmup, double lr_max, double lr_min = 0.0);

}  // namespace mambaseq
