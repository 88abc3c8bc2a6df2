// The seed-001 Transformer baseline (see baselines.h): nn.TransformerEncoder of
// pre-norm nn.TransformerEncoderLayer(norm_first=True, batch_first=True):
//   x_0 = [cls; Embedding(ids)] + pos[0 .. L]                       [B, Lt = L+1, D]
//   x'  = x + Drop(out_proj(MHA(in_proj(LN1(x)), key_padding_mask)))
//   x_{l+1} = x' + Drop(linear2(Drop(act(linear1(LN2(x'))))))
//   out = Linear(Drop(LN_f(x_n[:, 0])))                              [B, num_labels]
// The final LayerNorm is applied to the CLS rows only: the other rows are never read.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "baselines_common.h"
#include "mambaseq/baselines.h"
#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/kernels_cpu_extra.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

using baseline::json;

void TransformerConfig::validate() const {
  auto pos = [](const char* name, int64_t v) {
    MS_CHECK(v > 0, "invalid transformer config: {} must be a positive integer, got {}", name, v);
  };
  pos("vocab_size", vocab_size);
  pos("d_model", d_model);
  pos("n_layer", n_layer);
  pos("n_head", n_head);
  pos("d_ff", d_ff);
  pos("max_len", max_len);
  MS_CHECK(d_model % n_head == 0, "invalid transformer config: d_model {} is not divisible by n_head {}", d_model,
           n_head);
  MS_CHECK(d_model <= (1 << 16) && d_ff <= (1 << 18) && n_layer <= 1024 && max_len <= (1 << 20) &&
               vocab_size <= (1 << 24),
           "invalid transformer config: a size is implausibly large (d_model={} d_ff={} n_layer={} max_len={})",
           d_model, d_ff, n_layer, max_len);
  MS_CHECK(dropout >= 0 && dropout < 1, "invalid transformer config: dropout must be in [0, 1), got {}", dropout);
  MS_CHECK(head_dropout >= 0 && head_dropout < 1,
           "invalid transformer config: head_dropout must be in [0, 1), got {}", head_dropout);
  MS_CHECK(activation == "relu" || activation == "gelu",
           "invalid transformer config: activation must be \"relu\" or \"gelu\", got \"{}\"", activation);
  MS_CHECK(norm_eps > 0 && norm_eps < 1, "invalid transformer config: norm_eps must be in (0, 1), got {}", norm_eps);
  baseline::check_head("transformer", head, num_labels);
  MS_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size,
           "invalid transformer config: pad_token_id {} is outside [0, {})", pad_token_id, vocab_size);
}

TransformerConfig seed001_transformer(int64_t num_classes) {
  TransformerConfig c;
  c.num_labels = num_classes;
  return c;
}

int64_t count_parameters(const TransformerConfig& c) {
  const int64_t D = c.d_model, F = c.d_ff;
  const int64_t layer = 3 * D * D + 3 * D  // in_proj
                        + D * D + D        // out_proj
                        + D * F + F        // linear1
                        + F * D + D        // linear2
                        + 4 * D;           // norm1, norm2
  return c.vocab_size * D + D + (c.max_len + 1) * D + c.n_layer * layer + 2 * D + c.num_labels * D + c.num_labels;
}

namespace {
std::string lay(int64_t i, const char* rest) { return "encoder.layers." + std::to_string(i) + "." + rest; }
}  // namespace

TransformerClassifier::TransformerClassifier(const TransformerConfig& c, uint64_t seed)
    : cfg(c),
      embedding("embedding.weight", {c.vocab_size, c.d_model}),
      cls_token("cls_token", {1, 1, c.d_model}),
      pos("pos_embedding", {1, c.max_len + 1, c.d_model}),
      normf_w("norm.weight", {c.d_model}, false),
      normf_b("norm.bias", {c.d_model}, false),
      head_w("classifier.weight", {c.num_labels, c.d_model}),
      head_b("classifier.bias", {c.num_labels}, false) {
  cfg.validate();
  const int64_t D = c.d_model, F = c.d_ff;
  layers.reserve(c.n_layer);  // params() hands out pointers into the layers
  for (int64_t i = 0; i < c.n_layer; ++i)
    layers.push_back(Layer{Param(lay(i, "norm1.weight"), {D}, false), Param(lay(i, "norm1.bias"), {D}, false),
                           Param(lay(i, "self_attn.in_proj_weight"), {3 * D, D}),
                           Param(lay(i, "self_attn.in_proj_bias"), {3 * D}, false),
                           Param(lay(i, "self_attn.out_proj.weight"), {D, D}),
                           Param(lay(i, "self_attn.out_proj.bias"), {D}, false),
                           Param(lay(i, "norm2.weight"), {D}, false), Param(lay(i, "norm2.bias"), {D}, false),
                           Param(lay(i, "linear1.weight"), {F, D}), Param(lay(i, "linear1.bias"), {F}, false),
                           Param(lay(i, "linear2.weight"), {D, F}), Param(lay(i, "linear2.bias"), {D}, false)});
  // PyTorch defaults: Embedding N(0, 1); MultiheadAttention in_proj xavier-uniform with
  // zero bias, out_proj U(±1/sqrt(D)) with zero bias; Linear U(±1/sqrt(fan_in)) weight and
  // bias; LayerNorm 1, 0. CLS token and positions N(0, 0.02) (the usual ViT/BERT choice).
  Rng rng(seed);
  baseline::normal_fill(embedding.w, rng, 1.0);
  baseline::normal_fill(cls_token.w, rng, 0.02);
  baseline::normal_fill(pos.w, rng, 0.02);
  for (auto& l : layers) {
    l.norm1_w.w.fill(1.0f);
    l.norm2_w.w.fill(1.0f);
    baseline::uniform_fill(l.in_w.w, rng, std::sqrt(6.0 / double(D + 3 * D)));
    baseline::uniform_fill(l.out_w.w, rng, 1.0 / std::sqrt(double(D)));
    baseline::uniform_fill(l.w1.w, rng, 1.0 / std::sqrt(double(D)));
    baseline::uniform_fill(l.b1.w, rng, 1.0 / std::sqrt(double(D)));
    baseline::uniform_fill(l.w2.w, rng, 1.0 / std::sqrt(double(F)));
    baseline::uniform_fill(l.b2.w, rng, 1.0 / std::sqrt(double(F)));
  }
  normf_w.w.fill(1.0f);
  const double hb = 1.0 / std::sqrt(double(D));
  baseline::uniform_fill(head_w.w, rng, hb);
  baseline::uniform_fill(head_b.w, rng, hb);
}

std::vector<Param*> TransformerClassifier::params() {
  std::vector<Param*> v{&embedding, &cls_token, &pos};
  for (auto& l : layers)
    v.insert(v.end(), {&l.in_w, &l.in_b, &l.out_w, &l.out_b, &l.w1, &l.b1, &l.w2, &l.b2, &l.norm1_w, &l.norm1_b,
                       &l.norm2_w, &l.norm2_b});
  v.insert(v.end(), {&normf_w, &normf_b, &head_w, &head_b});
  return v;
}

// One stream per dropout site: 0 attention weights, 1 attention output, 2 FFN hidden, 3 FFN output.
uint64_t TransformerClassifier::site_seed(int64_t layer, int64_t site) const {
  return Rng::derive(seed_, 0x7472616e00000000ULL + uint64_t(layer) * 4 + uint64_t(site)).next_u64();
}

const Tensor& TransformerClassifier::forward(const Batch& bt, bool training, uint64_t dropout_seed) {
  const int64_t B = bt.batch, L = bt.len, D = cfg.d_model, F = cfg.d_ff, H = cfg.n_head, V = cfg.vocab_size;
  MS_CHECK(B > 0 && L > 0, "transformer forward: empty batch ({} x {})", B, L);
  MS_CHECK(L <= cfg.max_len, "transformer forward: batch length {} exceeds max_len {} (learned positions)", L,
           cfg.max_len);
  MS_CHECK(static_cast<int64_t>(bt.ids.size()) == B * L,
           "transformer forward: batch has {} ids, expected batch*len = {}", bt.ids.size(), B * L);
  MS_CHECK(bt.mask.empty() || static_cast<int64_t>(bt.mask.size()) == B * L,
           "transformer forward: mask has {} entries, expected {}", bt.mask.size(), B * L);
  for (int64_t i = 0; i < B * L; ++i)
    MS_CHECK(bt.ids[i] >= 0 && bt.ids[i] < V, "token id {} at position {} is outside the vocabulary [0, {})",
             bt.ids[i], i, V);
  const int64_t Lt = L + 1, M = B * Lt;
  batch_ = B;
  lt_ = Lt;
  training_ = training;
  seed_ = dropout_seed;
  ids_ = bt.ids;
  key_mask_.resize(B * Lt);
  for (int64_t b = 0; b < B; ++b) {
    key_mask_[b * Lt] = 1;  // CLS is always a key
    for (int64_t t = 0; t < L; ++t)
      key_mask_[b * Lt + 1 + t] = bt.mask.empty() ? bt.ids[b * L + t] != cfg.pad_token_id : bt.mask[b * L + t] != 0;
  }
  acts_.resize(cfg.n_layer);
  for (auto& a : acts_) {
    for (Tensor* t : {&a.x, &a.a, &a.att, &a.keep1, &a.xmid, &a.f, &a.keep3}) t->resize({M, D});
    for (Tensor* t : {&a.mean1, &a.rstd1, &a.mean2, &a.rstd2}) t->resize({M});
    a.qkv.resize({M, 3 * D});
    a.lse.resize({B, H, Lt});
    for (Tensor* t : {&a.h1, &a.r, &a.keep2, &a.rd}) t->resize({M, F});
  }
  x_last_.resize({M, D});
  tmp_.resize({M, D});
  ws_.resize({cpu::attention_workspace(B, H, Lt)});

  float* x0 = acts_.empty() ? x_last_.data() : acts_[0].x.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < M; ++r) {
    const int64_t b = r / Lt, t = r % Lt;
    const float* src = t == 0 ? cls_token.w.data() : embedding.w.data() + int64_t(bt.ids[b * L + t - 1]) * D;
    const float* p = pos.w.data() + t * D;
    for (int64_t j = 0; j < D; ++j) x0[r * D + j] = src[j] + p[j];
  }
  const double p = training ? cfg.dropout : 0.0;
  for (int64_t l = 0; l < cfg.n_layer; ++l) {
    Layer& w = layers[l];
    Acts& a = acts_[l];
    float* next = l + 1 < cfg.n_layer ? acts_[l + 1].x.data() : x_last_.data();
    cpu::layernorm_forward<float>(a.a.data(), a.mean1.data(), a.rstd1.data(), a.x.data(), w.norm1_w.w.data(),
                                  w.norm1_b.w.data(), M, D, cfg.norm_eps);
    cpu::linear_forward<float>(a.qkv.data(), 3 * D, a.a.data(), D, w.in_w.w.data(), w.in_b.w.data(), M, D, 3 * D);
    cpu::AttnParams<float> ap{B, Lt, H, D / H, a.qkv.data(), 3 * D, key_mask_.data(), p, site_seed(l, 0)};
    cpu::attention_forward<float>(ap, a.att.data(), D, a.lse.data(), ws_.data());
    cpu::linear_forward<float>(tmp_.data(), D, a.att.data(), D, w.out_w.w.data(), w.out_b.w.data(), M, D, D);
    cpu::dropout_hashed_forward<float>(tmp_.data(), a.keep1.data(), tmp_.data(), M * D, p, site_seed(l, 1));
    cpu::add_forward<float>(a.xmid.data(), a.x.data(), tmp_.data(), M * D);
    cpu::layernorm_forward<float>(a.f.data(), a.mean2.data(), a.rstd2.data(), a.xmid.data(), w.norm2_w.w.data(),
                                  w.norm2_b.w.data(), M, D, cfg.norm_eps);
    cpu::linear_forward<float>(a.h1.data(), F, a.f.data(), D, w.w1.w.data(), w.b1.w.data(), M, D, F);
    if (cfg.activation == "gelu") cpu::gelu_forward<float>(a.r.data(), a.h1.data(), M * F);
    else cpu::relu_forward<float>(a.r.data(), a.h1.data(), M * F);
    cpu::dropout_hashed_forward<float>(a.rd.data(), a.keep2.data(), a.r.data(), M * F, p, site_seed(l, 2));
    cpu::linear_forward<float>(tmp_.data(), D, a.rd.data(), F, w.w2.w.data(), w.b2.w.data(), M, F, D);
    cpu::dropout_hashed_forward<float>(tmp_.data(), a.keep3.data(), tmp_.data(), M * D, p, site_seed(l, 3));
    cpu::add_forward<float>(next, a.xmid.data(), tmp_.data(), M * D);
  }
  cls_.resize({B, D});
  for (int64_t b = 0; b < B; ++b) std::memcpy(cls_.data() + b * D, x_last_.data() + b * Lt * D, sizeof(float) * D);
  cls_n_.resize({B, D});
  cls_mean_.resize({B});
  cls_rstd_.resize({B});
  cpu::layernorm_forward<float>(cls_n_.data(), cls_mean_.data(), cls_rstd_.data(), cls_.data(), normf_w.w.data(),
                                normf_b.w.data(), B, D, cfg.norm_eps);
  dropped_.resize({B, D});
  keep_.resize({B, D});
  Rng rng = Rng::derive(dropout_seed, 0x68656164);
  cpu::dropout_forward<float>(dropped_.data(), keep_.data(), cls_n_.data(), B * D, training ? cfg.head_dropout : 0.0,
                              rng);
  out_.resize({B, cfg.num_labels});
  cpu::linear_forward<float>(out_.data(), cfg.num_labels, dropped_.data(), D, head_w.w.data(), head_b.w.data(), B, D,
                             cfg.num_labels);
  out_ptr_ = &out_;
  return out_;
}

void TransformerClassifier::backward_from_output(const float* dout, int64_t batch, int64_t len) {
  MS_CHECK(out_ptr_ == &out_ && batch == batch_ && len + 1 == lt_,
           "transformer backward: no forward of this batch ({} x {}) to differentiate", batch, len);
  const int64_t B = batch, Lt = lt_, M = B * Lt, D = cfg.d_model, F = cfg.d_ff, H = cfg.n_head;
  const int64_t K = cfg.num_labels;
  const double p = training_ ? cfg.dropout : 0.0;
  for (Tensor* t : {&d_dropped_, &d_cls_n_, &d_cls_}) {
    t->resize({B, D});
    t->zero();
  }
  cpu::linear_backward<float>(d_dropped_.data(), D, head_w.g.data(), head_b.g.data(), dout, K, dropped_.data(), D,
                              head_w.w.data(), B, D, K);
  cpu::dropout_backward<float>(d_cls_n_.data(), d_dropped_.data(), keep_.data(), B * D);
  cpu::layernorm_backward<float>(d_cls_.data(), normf_w.g.data(), normf_b.g.data(), d_cls_n_.data(), cls_.data(),
                                 normf_w.w.data(), cls_mean_.data(), cls_rstd_.data(), B, D);
  dX_.resize({M, D});
  dX_.zero();
  for (int64_t b = 0; b < B; ++b) std::memcpy(dX_.data() + b * Lt * D, d_cls_.data() + b * D, sizeof(float) * D);
  dA_.resize({M, D});
  dB_.resize({M, D});
  dF1_.resize({M, F});
  dF2_.resize({M, F});
  dQKV_.resize({M, 3 * D});
  // dX_ holds ∂loss/∂x_{l+1}; each branch's LayerNorm backward adds into it, leaving ∂x_l.
  for (int64_t l = cfg.n_layer - 1; l >= 0; --l) {
    Layer& w = layers[l];
    Acts& a = acts_[l];
    dA_.zero();
    cpu::dropout_backward<float>(dA_.data(), dX_.data(), a.keep3.data(), M * D);
    dF1_.zero();
    cpu::linear_backward<float>(dF1_.data(), F, w.w2.g.data(), w.b2.g.data(), dA_.data(), D, a.rd.data(), F,
                                w.w2.w.data(), M, F, D);
    dF2_.zero();
    cpu::dropout_backward<float>(dF2_.data(), dF1_.data(), a.keep2.data(), M * F);
    dF1_.zero();
    if (cfg.activation == "gelu") cpu::gelu_backward<float>(dF1_.data(), dF2_.data(), a.h1.data(), M * F);
    else cpu::relu_backward<float>(dF1_.data(), dF2_.data(), a.r.data(), M * F);
    dB_.zero();
    cpu::linear_backward<float>(dB_.data(), D, w.w1.g.data(), w.b1.g.data(), dF1_.data(), F, a.f.data(), D,
                                w.w1.w.data(), M, D, F);
    cpu::layernorm_backward<float>(dX_.data(), w.norm2_w.g.data(), w.norm2_b.g.data(), dB_.data(), a.xmid.data(),
                                   w.norm2_w.w.data(), a.mean2.data(), a.rstd2.data(), M, D);
    dA_.zero();
    cpu::dropout_backward<float>(dA_.data(), dX_.data(), a.keep1.data(), M * D);
    dB_.zero();
    cpu::linear_backward<float>(dB_.data(), D, w.out_w.g.data(), w.out_b.g.data(), dA_.data(), D, a.att.data(), D,
                                w.out_w.w.data(), M, D, D);
    dQKV_.zero();
    cpu::AttnParams<float> ap{B, Lt, H, D / H, a.qkv.data(), 3 * D, key_mask_.data(), p, site_seed(l, 0)};
    cpu::attention_backward<float>(ap, dB_.data(), D, a.lse.data(), dQKV_.data(), 3 * D, ws_.data());
    dA_.zero();
    cpu::linear_backward<float>(dA_.data(), D, w.in_w.g.data(), w.in_b.g.data(), dQKV_.data(), 3 * D, a.a.data(), D,
                                w.in_w.w.data(), M, D, 3 * D);
    cpu::layernorm_backward<float>(dX_.data(), w.norm1_w.g.data(), w.norm1_b.g.data(), dA_.data(), a.x.data(),
                                   w.norm1_w.w.data(), a.mean1.data(), a.rstd1.data(), M, D);
  }
  // x_0 = [cls; E[ids]] + pos: positions and CLS sum over the batch; token rows go
  // through the embedding's backward (gathered so that its column split applies).
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < Lt; ++t) {
    float* g = pos.g.data() + t * D;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < D; ++j) g[j] += dX_[(b * Lt + t) * D + j];
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < D; ++j) cls_token.g[j] += dX_[b * Lt * D + j];
  const int64_t L = Lt - 1;
  tmp_.resize({B * L, D});
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(tmp_.data() + b * L * D, dX_.data() + (b * Lt + 1) * D, sizeof(float) * L * D);
  cpu::embedding_backward<float>(embedding.g.data(), tmp_.data(), ids_.data(), B * L, cfg.vocab_size, D);
}

std::vector<int32_t> TransformerClassifier::branch_pattern() const {
  std::vector<int32_t> v;
  if (cfg.activation == "relu")
    for (const Acts& a : acts_)
      for (int64_t i = 0; i < a.h1.numel(); ++i) v.push_back(a.h1[i] > 0.0f);
  return v;
}

// ---- checkpoints -------------------------------------------------------------------------

std::string transformer_config_to_json(const TransformerConfig& c) {
  c.validate();
  nlohmann::ordered_json j;
  j["mambaseq_arch"] = "transformer";
  j["vocab_size"] = c.vocab_size;
  j["d_model"] = c.d_model;
  j["n_layer"] = c.n_layer;
  j["n_head"] = c.n_head;
  j["d_ff"] = c.d_ff;
  j["max_len"] = c.max_len;
  j["dropout"] = c.dropout;
  j["head_dropout"] = c.head_dropout;
  j["activation"] = c.activation;
  j["norm_eps"] = c.norm_eps;
  j["norm_first"] = true;  // informational: the only layout implemented
  j["mambaseq_head"] = head_name(c.head);
  j["num_labels"] = c.num_labels;
  j["pad_token_id"] = c.pad_token_id;
  return j.dump(2) + "\n";
}

TransformerConfig read_transformer_config(const std::string& path) {
  const json j = baseline::Keys::parse_file(path);
  baseline::Keys k(path, j);
  k.expect_arch("transformer");
  MS_CHECK(k.boolean("norm_first", true), "{}: key 'norm_first' is false; only pre-norm layers are implemented",
           path);
  TransformerConfig c;
  c.vocab_size = k.integer("vocab_size", c.vocab_size);
  c.d_model = k.integer("d_model", c.d_model);
  c.n_layer = k.integer("n_layer", c.n_layer);
  c.n_head = k.integer("n_head", c.n_head);
  c.d_ff = k.integer("d_ff", c.d_ff);
  c.max_len = k.integer("max_len", c.max_len);
  c.dropout = k.number("dropout", c.dropout);
  c.head_dropout = k.number("head_dropout", c.head_dropout);
  c.activation = k.string("activation", c.activation);
  c.norm_eps = k.number("norm_eps", c.norm_eps);
  k.finish(c);
  return c;
}

void TransformerClassifier::save(const std::string& dir) {
  baseline::make_dir(dir);
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  for (Param* p : params()) w.add(p->name, p->w.data(), p->w.shape());
  w.write(dir + "/model.safetensors");
  write_file_atomic(dir + "/config.json", transformer_config_to_json(cfg));
}

std::unique_ptr<TransformerClassifier> load_transformer(const std::string& dir) {
  MS_CHECK(std::filesystem::is_directory(dir), "model directory {} does not exist", dir);
  auto m = std::make_unique<TransformerClassifier>(read_transformer_config(dir + "/config.json"), 0);
  load_weights(*m, SafeTensorsReader(dir + "/model.safetensors"));
  return m;
}

}  // namespace mambaseq
