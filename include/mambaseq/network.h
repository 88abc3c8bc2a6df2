// What the trainer, evaluation and checkpoints need from a model: the Mamba model
// and the CNN / Transformer baselines all implement this. The head's loss and its
// gradient are shared here, so every architecture trains with the same objective.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mambaseq/config.h"
#include "mambaseq/tensor.h"

namespace mambaseq {

class SafeTensorsReader;

// What a batch carries; which fields a head reads depends on the head.
struct Batch {
  int64_t batch = 0, len = 0;
  std::vector<int32_t> ids;      // [batch, len]
  std::vector<uint8_t> mask;     // [batch, len], 1 = real token (empty: ids != pad)
  std::vector<int32_t> labels;   // LM/token: [batch, len] (−100 = ignore); class: [batch]
  std::vector<float> targets;    // regression: [batch, num_labels]; multi-label: 0/1 the same
  bool multi_label = false;      // classification head, one sigmoid per label: BCE with logits
};

constexpr int32_t kIgnoreIndex = -100;

class Network {
 public:
  virtual ~Network() = default;
  // Head output: logits [rows, classes] or predictions [batch, targets]; rows are tokens
  // (LM, token classification) or sequences. Kept for loss() and backward().
  virtual const Tensor& forward(const Batch& b, bool training, uint64_t dropout_seed = 0) = 0;
  // Backward from ∂loss/∂(head output); accumulates into every parameter's .g.
  virtual void backward_from_output(const float* dout, int64_t batch, int64_t len) = 0;
  virtual std::vector<Param*> params() = 0;
  virtual HeadKind head() const = 0;
  // Classes (classification heads) or targets (regression); unused for the LM head.
  virtual int64_t num_labels() const = 0;
  virtual std::string arch() const = 0;  // "mamba", "cnn", "transformer"
  // Writes DIR/config.json and DIR/model.safetensors.
  virtual void save(const std::string& dir) = 0;
  // Loads every parameter (and non-trained buffer) from a model.safetensors; the default
  // is load_weights (checkpoint.h). Errors name the missing/misshapen/unexpected tensor.
  virtual void load_state(const SafeTensorsReader& file);
  // True when lm_head.weight is the embedding (a stored copy may be skipped on load).
  virtual bool tied_lm_head() const { return false; }

  // Mean loss of the last forward: cross-entropy (−100 ignored), MSE for regression, or
  // BCE with logits averaged over batch × labels when b.multi_label.
  double loss(const Batch& b);
  // Backward of loss(): requires forward(training = true) first.
  void backward(const Batch& b);
  void zero_grad();
  int64_t num_parameters();
  Param* find(const std::string& name);

 protected:
  const Tensor* out_ptr_ = nullptr;  // set by forward()
  Tensor d_out_;
};

}  // namespace mambaseq
