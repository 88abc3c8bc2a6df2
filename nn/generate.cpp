#include "mambaseq/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "mambaseq/error.h"

namespace mambaseq {

void GenerateOptions::validate() const {
  MS_CHECK(max_new_tokens >= 0, "generate: max_new_tokens must be >= 0, got {}", max_new_tokens);
  MS_CHECK(std::isfinite(temperature) && temperature >= 0, "generate: temperature must be >= 0, got {}", temperature);
  MS_CHECK(top_k >= 0, "generate: top_k must be >= 0, got {}", top_k);
  MS_CHECK(top_p > 0 && top_p <= 1, "generate: top_p must be in (0, 1], got {}", top_p);
  MS_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
           "generate: repetition_penalty must be positive, got {}", repetition_penalty);
  MS_CHECK(vocab_limit >= 0, "generate: vocab_limit must be >= 0, got {}", vocab_limit);
}

Sampler::Sampler(const GenerateOptions& o, int64_t V, int64_t batch, int64_t limit)
    : o_(o), V_(V), limit_(limit > 0 ? std::min(limit, V) : V) {
  if (o.repetition_penalty != 1.0) seen_.assign(batch * V, 0);
  idx_.resize(V);
  prob_.resize(V);
}

void Sampler::observe(int64_t b, int32_t t) {
  if (!seen_.empty() && t >= 0 && t < V_) seen_[b * V_ + t] = 1;
}

int32_t Sampler::sample(int64_t b, float* z, Rng& rng) {
  const int64_t V = limit_;
  if (!seen_.empty()) {
    const uint8_t* s = seen_.data() + b * V_;
    const float p = static_cast<float>(o_.repetition_penalty);
    for (int64_t v = 0; v < V; ++v)
      if (s[v]) z[v] = z[v] > 0 ? z[v] / p : z[v] * p;
  }
  if (o_.greedy || o_.temperature <= 0) return static_cast<int32_t>(std::max_element(z, z + V) - z);
  const float inv_t = static_cast<float>(1.0 / o_.temperature);
  for (int64_t v = 0; v < V; ++v) z[v] *= inv_t;
  // Candidates: all ids, or the top k (ties at the k-th value broken by nth_element).
  int64_t n = V;
  for (int64_t v = 0; v < V; ++v) idx_[v] = static_cast<int32_t>(v);
  auto by_logit = [z](int32_t a, int32_t c) { return z[a] > z[c] || (z[a] == z[c] && a < c); };
  if (o_.top_k > 0 && o_.top_k < V) {
    std::nth_element(idx_.begin(), idx_.begin() + o_.top_k, idx_.begin() + V, by_logit);
    n = o_.top_k;
  }
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, z[idx_[i]]);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += (prob_[i] = std::exp(double(z[idx_[i]]) - mx));
  if (o_.top_p < 1.0) {
    // Most likely first; keep the shortest prefix whose mass reaches top_p (at least one).
    std::sort(idx_.begin(), idx_.begin() + n, by_logit);
    for (int64_t i = 0; i < n; ++i) prob_[i] = std::exp(double(z[idx_[i]]) - mx);
    double cum = 0;
    int64_t keep = n;
    for (int64_t i = 0; i < n; ++i) {
      cum += prob_[i];
      if (cum >= o_.top_p * total) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    total = cum;
  }
  double u = rng.uniform() * total;
  for (int64_t i = 0; i < n; ++i) {
    u -= prob_[i];
    if (u < 0) return idx_[i];
  }
  return idx_[n - 1];  // rounding left u a hair above zero
}

GenerateResult generate(InferenceEngine& eng, const std::vector<std::vector<int32_t>>& prompts,
                        const GenerateOptions& o, const TokenCallback& on_token, bool keep_tokens) {
  o.validate();
  const int64_t B = static_cast<int64_t>(prompts.size());
  MS_CHECK(B > 0, "generate: no prompts");
  const int64_t V = eng.vocab_rows();
  const int64_t limit = o.vocab_limit > 0 ? o.vocab_limit : eng.config().mamba.vocab_size;
  for (int32_t s : o.stop_tokens)
    MS_CHECK(s >= 0 && s < V, "generate: stop token {} is outside the vocabulary [0, {})", s, V);
  GenerateResult r;
  r.tokens.resize(B);
  r.reason.assign(B, StopReason::MaxTokens);
  r.generated.assign(B, 0);
  if (o.max_new_tokens == 0) return r;

  Sampler sampler(o, V, B, limit);
  for (int64_t b = 0; b < B; ++b)
    for (int32_t t : prompts[b]) sampler.observe(b, t);
  std::vector<Rng> rngs;
  for (int64_t b = 0; b < B; ++b) rngs.push_back(Rng::derive(o.seed, static_cast<uint64_t>(b)));
  std::vector<uint8_t> done(B, 0);
  std::vector<int32_t> next(B, 0);
  if (keep_tokens)
    for (auto& v : r.tokens) v.reserve(static_cast<size_t>(std::min<int64_t>(o.max_new_tokens, 1 << 20)));

  InferenceState st = eng.new_state(B);
  Tensor logits;
  auto t0 = std::chrono::steady_clock::now();
  eng.prefill(st, prompts, logits);
  auto t1 = std::chrono::steady_clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  int64_t active = B;
  auto draw = [&](float* rows) {
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      const int32_t t = sampler.sample(b, rows + b * V, rngs[b]);
      ++r.generated[b];
      next[b] = t;
      if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), t) != o.stop_tokens.end()) {
        r.reason[b] = StopReason::StopToken;
        done[b] = 1;
        --active;
        continue;
      }
      sampler.observe(b, t);
      if (keep_tokens) r.tokens[b].push_back(t);
      if (on_token) on_token(b, t);
      if (r.generated[b] >= o.max_new_tokens) {
        done[b] = 1;
        --active;
      }
    }
  };
  draw(logits.data());
  // Finished rows keep stepping on their last token (their output is ignored): the batch
  // shape, and so the step's buffers, never change.
  while (active > 0) {
    Tensor& z = eng.step(st, next.data());
    ++r.steps;
    draw(z.data());
  }
  r.decode_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  return r;
}

}  // namespace mambaseq
