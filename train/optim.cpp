#include "mambaseq/optim.h"

#include <cmath>

#include "mambaseq/error.h"

namespace mambaseq {

AdamW::AdamW(std::vector<Param*> params, AdamWConfig c) : cfg(c), params_(std::move(params)) {
  MS_CHECK(c.lr >= 0, "AdamW: learning rate must be >= 0, got {}", c.lr);
  MS_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1,
           "AdamW: betas must be in [0, 1), got ({}, {})", c.beta1, c.beta2);
  MS_CHECK(c.eps > 0, "AdamW: eps must be positive, got {}", c.eps);
  MS_CHECK(c.weight_decay >= 0, "AdamW: weight_decay must be >= 0, got {}", c.weight_decay);
  for (Param* p : params_) {
    m_.emplace_back(p->w.shape());
    v_.emplace_back(p->w.shape());
  }
}

void AdamW::step(double lr) {
  ++t_;
  const double bc1 = 1.0 - std::pow(cfg.beta1, double(t_));
  const double bc2 = 1.0 - std::pow(cfg.beta2, double(t_));
  const float b1 = float(cfg.beta1), b2 = float(cfg.beta2);
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float eps = float(cfg.eps);
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    float* w = p.w.data();
    const float* g = p.g.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const float decay = p.decay ? float(1.0 - lr * cfg.weight_decay) : 1.0f;
    const int64_t n = p.w.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t j = 0; j < n; ++j) {
      w[j] *= decay;
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      w[j] -= step_size * m[j] / (std::sqrt(v[j]) / bc2_sqrt + eps);
    }
  }
}

double clip_grad_norm(const std::vector<Param*>& params, double max_norm) {
  double ss = 0;
  for (Param* p : params) {
    const float* g = p->g.data();
    const int64_t n = p->g.numel();
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
    for (int64_t j = 0; j < n; ++j) s += double(g[j]) * g[j];
    ss += s;
  }
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (Param* p : params) {
        float* g = p->g.data();
        for (int64_t j = 0; j < p->g.numel(); ++j) g[j] = float(g[j] * coef);
      }
  }
  return norm;
}

double cosine_lr(int64_t step, int64_t total, int64_t warmup, double lr_max, double lr_min) {
  if (warmup > 0 && step < warmup) return lr_max * double(step) / double(warmup);
  if (total <= warmup) return lr_max;
  double progress = double(step - warmup) / double(total - warmup);
  progress = std::min(1.0, std::max(0.0, progress));
  return lr_min + (lr_max - lr_min) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace mambaseq
