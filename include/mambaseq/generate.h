// Text/sequence generation on top of the recurrent engine: prefill the prompts, then one
// step per token, sampling each sequence's next token from its logits.
//
// Sampling order (as transformers): repetition penalty → temperature → top-k → top-p →
// draw. Each sequence draws from its own stream Rng::derive(seed, index), so a prompt
// continues the same way whatever else is in the batch. Neither the sampler nor the
// step allocates per token, and nothing per sequence grows with the tokens produced
// (the repetition penalty keeps a fixed-size seen-set over the vocabulary).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mambaseq/inference.h"
#include "mambaseq/rng.h"

namespace mambaseq {

struct GenerateOptions {
  int64_t max_new_tokens = 64;      // generated tokens per sequence, stop token included
  bool greedy = false;              // argmax (also when temperature <= 0)
  double temperature = 1.0;
  int64_t top_k = 0;                // keep the k most likely tokens; 0 = off
  double top_p = 1.0;               // nucleus: smallest set with probability >= p; 1 = off
  double repetition_penalty = 1.0;  // CTRL / transformers: seen token's logit /p if > 0, else ·p; 1 = off
  uint64_t seed = 0;
  std::vector<int32_t> stop_tokens;  // a sequence ends when it draws one of these
  int64_t vocab_limit = 0;           // draw only ids below this (0: the model's unpadded vocabulary)
  void validate() const;             // Error naming the bad option
};

enum class StopReason { MaxTokens, StopToken };

struct GenerateResult {
  std::vector<std::vector<int32_t>> tokens;  // per sequence, stop token excluded (empty unless kept)
  std::vector<StopReason> reason;
  std::vector<int64_t> generated;  // tokens drawn per sequence (stop token included)
  int64_t steps = 0;               // recurrent steps run
  double prefill_seconds = 0, decode_seconds = 0;
};

// Called for every drawn token that is not a stop token, as soon as it is drawn
// (sequences in index order within a step).
using TokenCallback = std::function<void(int64_t seq, int32_t token)>;

// Turns one row of logits into a token. Buffers sized once for the vocabulary.
class Sampler {
 public:
  Sampler(const GenerateOptions& o, int64_t vocab_rows, int64_t batch, int64_t vocab_limit);
  // Marks a token as seen by sequence b (prompt and generated tokens: repetition penalty).
  void observe(int64_t b, int32_t token);
  // Draws from logits (modified in place) with rng.
  int32_t sample(int64_t b, float* logits, Rng& rng);

 private:
  GenerateOptions o_;
  int64_t V_, limit_;
  std::vector<uint8_t> seen_;  // [batch, V]
  std::vector<int32_t> idx_;
  std::vector<double> prob_;
};

GenerateResult generate(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& prompts,
                        const GenerateOptions& opts, const TokenCallback& on_token = {}, bool keep_tokens = true);

}  // namespace mambaseq
