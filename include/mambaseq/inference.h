// Inference on the CPU: recurrent (constant-time) steps, chunked parallel prefill,
// log-likelihood scoring and pooled embeddings.
//
// A sequence's whole memory is its InferenceState row: per layer the conv window
// (d_inner × (d_conv−1)) and the SSM state (d_inner × d_state). Nothing grows with the
// number of tokens seen, so generation costs O(1) time and memory per token.
//
// Prefill runs prompts through the parallel (scan) forward and leaves each sequence's
// state exactly where step() continues from. Prompts of different lengths are grouped
// by length and each group runs as one batch, chunk by chunk: a chunk continues from
// the state (the conv window is prepended to the chunk's conv input, the SSM state is
// the scan's h0), so the arithmetic is the same as the full-sequence forward, only
// split. No padding ever enters a state. Scoring and embeddings need no final state, so
// they right-pad a batch instead (causal: padding after a token cannot change it).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "mambaseq/model.h"
#include "mambaseq/tensor.h"

namespace mambaseq {

struct InferenceState {
  InferenceState() = default;
  InferenceState(const MambaConfig& c, int64_t batch);
  int64_t batch = 0;
  std::vector<Tensor> conv;  // per layer [batch, d_inner, d_conv−1]: last conv inputs, oldest first
  std::vector<Tensor> ssm;   // per layer [batch, d_inner, d_state]
  std::vector<int64_t> pos;  // tokens consumed by each sequence
  void reset();              // every row back to "no token seen"
  void reset_row(int64_t row);
  int64_t bytes() const;     // state memory, independent of pos
};

class InferenceEngine {
 public:
  // The model must outlive the engine; its weights are read in place (no copy).
  // max_chunk_tokens bounds the rows (batch × chunk length) of one parallel chunk and
  // with it the activation memory of prefill, scoring and embedding.
  explicit InferenceEngine(Model& model, int64_t max_chunk_tokens = 4096);
  // Re-derive A = −exp(A_log) after the model's weights changed.
  void refresh();

  const ModelConfig& config() const { return model_.cfg; }
  int64_t vocab_rows() const;  // width of the logits (padded vocabulary)
  int64_t d_model() const { return model_.cfg.mamba.d_model; }
  InferenceState new_state(int64_t batch) const { return InferenceState(model_.cfg.mamba, batch); }

  // Feeds prompts[b] (≥ 1 token each) to row b of st, continuing from its state, and
  // writes each prompt's last-token logits to row b of logits (resized to [B, V]).
  void prefill(InferenceState& st, const std::vector<std::vector<int32_t>>& prompts, Tensor& logits);

  // One token per row (ids: [st.batch]); returns the logits [st.batch, V] (engine-owned,
  // valid until the next call; the caller may overwrite it). Once warm (the first steps at a
  // batch size, which also time the thread count) it allocates nothing: tests/test_inference.cpp
  // counts every allocation call.
  Tensor& step(InferenceState& st, const int32_t* ids);

  // Parallel forward of len tokens for g rows of st (rows: g indices, or null for rows
  // 0..g−1), continuing from and advancing their states. ids: [g, len]. Returns the final
  // (norm_f) hidden states [g·len, D], valid until the next call.
  const Tensor& forward_chunk(InferenceState& st, const int32_t* ids, int64_t g, int64_t len,
                              const int64_t* rows = nullptr);

  // out[M, V] = hidden[M, D] · Wᵀ (the LM head; the embedding when tied).
  void lm_logits(const float* hidden, int64_t M, float* out);

  // Threads for step(): 0 (default) chooses by timing: the first steps at a batch size
  // run on all OpenMP threads and on one, then the faster is kept (on a machine other
  // processes keep busy, one thread can be ten times faster: every parallel region waits
  // for a descheduled thread). n > 0: at most n threads, always.
  void set_step_threads(int n) { step_threads_ = n; }
  int step_threads_in_use() const { return tune_.chosen; }  // 0 while still timing

  int64_t max_chunk_tokens() const { return max_chunk_tokens_; }
  // Heap bytes of the engine's own buffers (Tensors), for the memory benchmark.
  int64_t buffer_bytes() const;

 private:
  Model& model_;
  int64_t max_chunk_tokens_;
  std::vector<Tensor> A_;  // per layer −exp(A_log)
  // Chunk (parallel) buffers, grown on demand.
  Tensor res_[2], xn_, mean_, rstd_, xz_, xext_, xcext_, u_, dbc_, dt_, yg_, mix_, hidden_, hbuf_;
  // Step buffers for step_batch_ rows, allocated once per batch size.
  int64_t step_batch_ = -1;
  int step_threads_ = 0;
  struct Tune {
    int64_t batch = -1;
    int phase = 0;  // steps timed so far: 3 on all threads, then 3 on one (−1: first step)
    double t_all = 0, t_one = 0;
    int chosen = 0;
  } tune_;
  Tensor sx_, sxn_, sxz_, sxc_, su_, sdbc_, sdt_, syg_, smix_, shid_, slogits_;
  void ensure_step_buffers(int64_t B);
  const Param& lm_weight() const;
};

// log p(x_t | x_<t) for t = 1..L−1 of each sequence (the first token has no prediction).
struct SequenceScore {
  double total = 0;                // Σ log-probabilities (natural log)
  int64_t count = 0;               // scored tokens: L − 1
  std::vector<float> per_token;    // filled when asked: count entries
  double mean() const { return count > 0 ? total / count : 0.0; }
};
// Sequences of any lengths (≥ 1 token); runs them as one right-padded batch, chunk by
// chunk. The log-softmax is over the full (padded) vocabulary, as transformers does.
std::vector<SequenceScore> score_sequences(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& seqs,
                                           bool per_token);

// Mean of the final hidden states over each sequence's tokens: pooled [B, D].
// per_token (optional) receives each sequence's hidden rows as they are computed:
// (sequence b, first position, rows [n, D], n), in increasing position per sequence.
using HiddenSink = std::function<void(int64_t b, int64_t pos, const float* rows, int64_t n)>;
void embed_sequences(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& seqs, float* pooled,
                     const HiddenSink& per_token = {});
// The same for any model, bidirectional ones included (which the engine refuses): the
// batch goes through Backbone::forward as whole sequences, right-padded with a mask, so
// its activation memory grows with the longest sequence.
void embed_whole_sequences(Model& model, const std::vector<std::vector<int32_t>>& seqs, float* pooled,
                           const HiddenSink& per_token = {});

}  // namespace mambaseq
