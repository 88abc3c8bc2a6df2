#include "mambaseq/network.h"

#include <algorithm>
#include <cmath>

#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"

namespace mambaseq {

namespace {
const Tensor& last_output(const Tensor* p) {
  MS_CHECK(p != nullptr, "loss/backward called before forward");
  return *p;
}
void check_labels(const Batch& b, int64_t expected, HeadKind h) {
  const bool per_seq = h == HeadKind::SequenceClassification;
  MS_CHECK(static_cast<int64_t>(b.labels.size()) == expected, "loss: batch has {} labels, expected {} ({})",
           b.labels.size(), expected, per_seq ? "one per sequence" : "one per token");
}
// Multi-label: mean over rows × cols of BCE(sigmoid(z), y), in the stable form
// max(z, 0) − z·y + log(1 + e^−|z|); its gradient is (sigmoid(z) − y) / (rows · cols).
void check_multi_label(const Batch& b, HeadKind h, int64_t n) {
  MS_CHECK(h == HeadKind::SequenceClassification, "loss: multi-label batches need a sequence classification head");
  MS_CHECK(static_cast<int64_t>(b.targets.size()) == n, "loss: batch has {} multi-label targets, expected {}",
           b.targets.size(), n);
}
double bce_with_logits(const float* z, const float* y, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double x = z[i];
    s += std::max(x, 0.0) - x * y[i] + std::log1p(std::exp(-std::abs(x)));
  }
  return n > 0 ? s / n : 0.0;
}
}  // namespace

double Network::loss(const Batch& b) {
  const Tensor& out = last_output(out_ptr_);
  const int64_t rows = out.dim(0), cols = out.dim(1);
  if (b.multi_label) {
    check_multi_label(b, head(), rows * cols);
    return bce_with_logits(out.data(), b.targets.data(), rows * cols);
  }
  if (head() == HeadKind::Regression) {
    MS_CHECK(static_cast<int64_t>(b.targets.size()) == rows * cols, "loss: batch has {} targets, expected {}",
             b.targets.size(), rows * cols);
    return cpu::mse_forward<float>(out.data(), b.targets.data(), rows * cols);
  }
  check_labels(b, rows, head());
  return cpu::cross_entropy_forward<float>(out.data(), b.labels.data(), rows, cols, kIgnoreIndex, nullptr);
}

void Network::backward(const Batch& b) {
  const Tensor& out = last_output(out_ptr_);
  const int64_t rows = out.dim(0), cols = out.dim(1);
  d_out_.resize({rows, cols});
  d_out_.zero();
  if (b.multi_label) {
    check_multi_label(b, head(), rows * cols);
    const float* z = out.data();
    for (int64_t i = 0; i < rows * cols; ++i)
      d_out_.data()[i] = static_cast<float>((1.0 / (1.0 + std::exp(-double(z[i]))) - b.targets[i]) / (rows * cols));
  } else if (head() == HeadKind::Regression) {
    MS_CHECK(static_cast<int64_t>(b.targets.size()) == rows * cols, "backward: batch has {} targets, expected {}",
             b.targets.size(), rows * cols);
    cpu::mse_backward<float>(d_out_.data(), out.data(), b.targets.data(), rows * cols, 1.0);
  } else {
    check_labels(b, rows, head());
    int64_t n = 0;
    cpu::cross_entropy_forward<float>(out.data(), b.labels.data(), rows, cols, kIgnoreIndex, &n);
    if (n > 0)
      cpu::cross_entropy_backward<float>(d_out_.data(), out.data(), b.labels.data(), rows, cols, kIgnoreIndex,
                                         1.0 / n);
  }
  backward_from_output(d_out_.data(), b.batch, b.len);
}

void Network::zero_grad() {
  for (Param* p : params()) p->g.zero();
}

int64_t Network::num_parameters() {
  int64_t n = 0;
  for (Param* p : params()) n += p->w.numel();
  return n;
}

Param* Network::find(const std::string& name) {
  for (Param* p : params())
    if (p->name == name) return p;
  return nullptr;
}

}  // namespace mambaseq
