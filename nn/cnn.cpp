// The seed-001 CNN baseline (see baselines.h):
//   h_0 = Embedding(ids)                                   [B, L, E]
//   h_{i+1} = MaxPool(ReLU(BatchNorm(Conv1d_i(h_i))))      [B, L_i/2, C]
//   out = Linear(Dropout(mean_t h_n))                      [B, num_labels]
// Rows are tokens ([B·L_i, C]); activations are sized once per (batch, len) and reused.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "baselines_common.h"
#include "mambaseq/baselines.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/kernels_cpu_extra.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

using baseline::json;

void CnnConfig::validate() const {
  auto pos = [](const char* name, int64_t v) {
    MS_CHECK(v > 0, "invalid cnn config: {} must be a positive integer, got {}", name, v);
  };
  pos("vocab_size", vocab_size);
  pos("d_embed", d_embed);
  pos("channels", channels);
  MS_CHECK(!kernel_sizes.empty() && kernel_sizes.size() <= 32,
           "invalid cnn config: kernel_sizes must list 1 to 32 blocks, got {}", kernel_sizes.size());
  for (int64_t k : kernel_sizes)
    MS_CHECK(k > 0 && k % 2 == 1 && k <= 1025,
             "invalid cnn config: kernel size {} in kernel_sizes must be odd and positive ('same' padding)", k);
  MS_CHECK(pool >= 1 && pool <= 64, "invalid cnn config: pool must be in [1, 64], got {}", pool);
  MS_CHECK(bn_momentum >= 0 && bn_momentum <= 1, "invalid cnn config: bn_momentum must be in [0, 1], got {}",
           bn_momentum);
  MS_CHECK(bn_eps > 0 && bn_eps < 1, "invalid cnn config: bn_eps must be in (0, 1), got {}", bn_eps);
  MS_CHECK(head_dropout >= 0 && head_dropout < 1, "invalid cnn config: head_dropout must be in [0, 1), got {}",
           head_dropout);
  MS_CHECK(d_embed <= (1 << 16) && channels <= (1 << 16) && vocab_size <= (1 << 24),
           "invalid cnn config: a size is implausibly large (d_embed={} channels={} vocab_size={})", d_embed,
           channels, vocab_size);
  baseline::check_head("cnn", head, num_labels);
  MS_CHECK(pad_token_id >= 0 && pad_token_id < vocab_size, "invalid cnn config: pad_token_id {} is outside [0, {})",
           pad_token_id, vocab_size);
}

CnnConfig seed001_cnn(int64_t num_classes) {
  CnnConfig c;
  c.num_labels = num_classes;
  return c;
}

int64_t count_parameters(const CnnConfig& c) {
  int64_t n = c.vocab_size * c.d_embed, cin = c.d_embed;
  for (int64_t k : c.kernel_sizes) {
    n += c.channels * cin * k + c.channels  // conv
         + 2 * c.channels;                  // BatchNorm affine
    cin = c.channels;
  }
  return n + c.num_labels * c.channels + c.num_labels;
}

namespace {
std::string blk(size_t i, const char* rest) { return "blocks." + std::to_string(i) + "." + rest; }

// Rows whose mask is 0 become zero (forward of a 0/1 mask, and its backward).
void zero_rows(float* x, const uint8_t* mask, int64_t M, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i)
    if (!mask[i]) std::fill(x + i * D, x + (i + 1) * D, 0.0f);
}
}  // namespace

CnnClassifier::CnnClassifier(const CnnConfig& c, uint64_t seed)
    : cfg(c),
      embedding("embedding.weight", {c.vocab_size, c.d_embed}),
      head_w("classifier.weight", {c.num_labels, c.channels}),
      head_b("classifier.bias", {c.num_labels}, false) {
  cfg.validate();
  blocks.reserve(c.kernel_sizes.size());  // params() hands out pointers into the blocks
  int64_t cin = c.d_embed;
  for (size_t i = 0; i < c.kernel_sizes.size(); ++i) {
    const int64_t K = c.kernel_sizes[i], C = c.channels;
    blocks.push_back(Block{Param(blk(i, "conv.weight"), {C, cin, K}), Param(blk(i, "conv.bias"), {C}, false),
                           Param(blk(i, "bn.weight"), {C}, false), Param(blk(i, "bn.bias"), {C}, false),
                           Buffer(blk(i, "bn.running_mean"), {C}), Buffer(blk(i, "bn.running_var"), {C}), K});
    cin = C;
  }
  tracked_.assign(blocks.size(), 0);
  // PyTorch defaults: Embedding N(0, 1); Conv1d and Linear U(±1/sqrt(fan_in)) for weight
  // and bias; BatchNorm weight 1, bias 0, running mean 0, running variance 1.
  Rng rng(seed);
  baseline::normal_fill(embedding.w, rng, 1.0);
  cin = c.d_embed;
  for (auto& b : blocks) {
    const double bound = 1.0 / std::sqrt(double(cin * b.K));
    baseline::uniform_fill(b.conv_w.w, rng, bound);
    baseline::uniform_fill(b.conv_b.w, rng, bound);
    b.bn_w.w.fill(1.0f);
    b.bn_b.w.zero();
    b.run_mean.w.zero();
    b.run_var.w.fill(1.0f);
    cin = c.channels;
  }
  const double hb = 1.0 / std::sqrt(double(c.channels));
  baseline::uniform_fill(head_w.w, rng, hb);
  baseline::uniform_fill(head_b.w, rng, hb);
}

std::vector<Param*> CnnClassifier::params() {
  std::vector<Param*> v{&embedding};
  for (auto& b : blocks) v.insert(v.end(), {&b.conv_w, &b.conv_b, &b.bn_w, &b.bn_b});
  v.insert(v.end(), {&head_w, &head_b});
  return v;
}

std::vector<Buffer*> CnnClassifier::buffers() {
  std::vector<Buffer*> v;
  for (auto& b : blocks) v.insert(v.end(), {&b.run_mean, &b.run_var});
  return v;
}

const Tensor& CnnClassifier::forward(const Batch& bt, bool training, uint64_t dropout_seed) {
  const int64_t B = bt.batch, L = bt.len, E = cfg.d_embed, C = cfg.channels, n = int64_t(blocks.size());
  MS_CHECK(B > 0 && L > 0, "cnn forward: empty batch ({} x {})", B, L);
  MS_CHECK(static_cast<int64_t>(bt.ids.size()) == B * L, "cnn forward: batch has {} ids, expected batch*len = {}",
           bt.ids.size(), B * L);
  MS_CHECK(bt.mask.empty() || static_cast<int64_t>(bt.mask.size()) == B * L,
           "cnn forward: mask has {} entries, expected {}", bt.mask.size(), B * L);
  batch_ = B;
  training_ = training;
  ids_ = bt.ids;
  // Lengths per level: L_{i+1} = floor(L_i / pool) (MaxPool1d's floor mode).
  std::vector<int64_t> Ls{L};
  for (int64_t i = 0; i < n; ++i) Ls.push_back(cpu::maxpool_out_len(Ls.back(), cfg.pool, cfg.pool));
  MS_CHECK(Ls.back() > 0, "cnn forward: length {} is too short for {} poolings of {} (needs at least {})", L, n,
           cfg.pool, int64_t(std::pow(cfg.pool, n)));
  // Row masks per level. Plain (seed) mode: every row counts. Masked mode: t < n_b at
  // level 0 (n_b = last real token + 1), then floor(n_b / pool) per level.
  masks_.resize(n + 1);
  lens_.assign((n + 1) * B, 0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t nb = L;
    if (cfg.mask_padding) {
      nb = 0;
      for (int64_t t = 0; t < L; ++t) {
        const bool real = bt.mask.empty() ? bt.ids[b * L + t] != cfg.pad_token_id : bt.mask[b * L + t] != 0;
        if (real) nb = t + 1;
      }
    }
    for (int64_t i = 0; i <= n; ++i) {
      lens_[i * B + b] = nb;
      nb /= (i < n ? cfg.pool : 1);
    }
    MS_CHECK(lens_[n * B + b] > 0,
             "cnn forward (mask_padding): sequence {} of the batch has {} real tokens; {} poolings of {} need at "
             "least {}",
             b, lens_[b], n, cfg.pool, int64_t(std::pow(cfg.pool, n)));
  }
  for (int64_t i = 0; i <= n; ++i) {
    masks_[i].resize(B * Ls[i]);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < Ls[i]; ++t) masks_[i][b * Ls[i] + t] = t < lens_[i * B + b];
  }

  // Buffers, sized for this (batch, len); reallocated only when they grow.
  inputs_.resize(n + 1);
  acts_.resize(n);
  int64_t wsz = 0, cin = E;
  for (int64_t i = 0; i <= n; ++i) inputs_[i].resize({B * Ls[i], i == 0 ? E : C});
  for (int64_t i = 0; i < n; ++i) {
    Acts& a = acts_[i];
    a.len = Ls[i];
    a.c.resize({B * Ls[i], C});
    a.r.resize({B * Ls[i], C});
    a.mean.resize({C});
    a.rstd.resize({C});
    a.idx.resize(B * Ls[i + 1] * C);
    wsz = std::max(wsz, cpu::conv_dense_workspace(B, Ls[i], cin, C, blocks[i].K));
    cin = C;
  }
  ws_.resize({wsz});

  cpu::embedding_forward<float>(inputs_[0].data(), ids_.data(), embedding.w.data(), B * L, cfg.vocab_size, E);
  if (cfg.mask_padding) zero_rows(inputs_[0].data(), masks_[0].data(), B * L, E);
  cin = E;
  for (int64_t i = 0; i < n; ++i) {
    Block& k = blocks[i];
    Acts& a = acts_[i];
    const int64_t Mi = B * Ls[i];
    cpu::conv_dense_forward<float>(a.c.data(), inputs_[i].data(), k.conv_w.w.data(), k.conv_b.w.data(), B, Ls[i], cin,
                                   C, k.K, ws_.data());
    cpu::batchnorm_forward<float>(a.r.data(), a.mean.data(), a.rstd.data(), k.run_mean.w.data(), k.run_var.w.data(),
                                  a.c.data(), k.bn_w.w.data(), k.bn_b.w.data(),
                                  cfg.mask_padding ? masks_[i].data() : nullptr, Mi, C, training, cfg.bn_momentum,
                                  cfg.bn_eps);
    if (training) ++tracked_[i];
    cpu::relu_forward<float>(a.r.data(), a.r.data(), Mi * C);
    cpu::maxpool_forward<float>(inputs_[i + 1].data(), a.idx.data(), a.r.data(), B, Ls[i], C, cfg.pool, cfg.pool);
    // Windows that produce a kept position lie inside the real length, so zeroing the
    // positions beyond it after the pooling is all the masking the next block needs.
    if (cfg.mask_padding) zero_rows(inputs_[i + 1].data(), masks_[i + 1].data(), B * Ls[i + 1], C);
    cin = C;
  }
  pooled_.resize({B, C});
  cpu::mean_pool_forward<float>(pooled_.data(), inputs_[n].data(), masks_[n].data(), B, Ls[n], C);
  dropped_.resize({B, C});
  keep_.resize({B, C});
  Rng rng = Rng::derive(dropout_seed, 0x68656164);
  cpu::dropout_forward<float>(dropped_.data(), keep_.data(), pooled_.data(), B * C, training ? cfg.head_dropout : 0.0,
                              rng);
  out_.resize({B, cfg.num_labels});
  cpu::linear_forward<float>(out_.data(), cfg.num_labels, dropped_.data(), C, head_w.w.data(), head_b.w.data(), B, C,
                             cfg.num_labels);
  out_ptr_ = &out_;
  return out_;
}

void CnnClassifier::backward_from_output(const float* dout, int64_t batch, int64_t len) {
  MS_CHECK(out_ptr_ == &out_ && batch == batch_ && !inputs_.empty() && len == acts_[0].len,
           "cnn backward: no forward of this batch ({} x {}) to differentiate", batch, len);
  const int64_t B = batch, E = cfg.d_embed, C = cfg.channels, n = int64_t(blocks.size());
  d_dropped_.resize({B, C});
  d_dropped_.zero();
  cpu::linear_backward<float>(d_dropped_.data(), C, head_w.g.data(), head_b.g.data(), dout, cfg.num_labels,
                              dropped_.data(), C, head_w.w.data(), B, C, cfg.num_labels);
  d_pool_.resize({B, C});
  d_pool_.zero();
  cpu::dropout_backward<float>(d_pool_.data(), d_dropped_.data(), keep_.data(), B * C);
  // g1: ∂/∂(block output = next block's input); g2, g3: scratch at the block's length.
  const int64_t cap = B * len * std::max(C, E);
  for (Tensor* t : {&g1_, &g2_, &g3_}) t->resize({cap});
  const int64_t Ln = inputs_[n].dim(0) / B;
  std::fill(g1_.data(), g1_.data() + B * Ln * C, 0.0f);
  cpu::mean_pool_backward<float>(g1_.data(), d_pool_.data(), masks_[n].data(), B, Ln, C);
  for (int64_t i = n - 1; i >= 0; --i) {
    Block& k = blocks[i];
    Acts& a = acts_[i];
    const int64_t Li = a.len, Mi = B * Li, cin = i == 0 ? E : C;
    if (cfg.mask_padding) zero_rows(g1_.data(), masks_[i + 1].data(), B * (Li / cfg.pool), C);
    std::fill(g2_.data(), g2_.data() + Mi * C, 0.0f);
    cpu::maxpool_backward<float>(g2_.data(), g1_.data(), a.idx.data(), B, Li, C, cfg.pool, cfg.pool);
    std::fill(g3_.data(), g3_.data() + Mi * C, 0.0f);
    cpu::relu_backward<float>(g3_.data(), g2_.data(), a.r.data(), Mi * C);
    std::fill(g2_.data(), g2_.data() + Mi * C, 0.0f);
    cpu::batchnorm_backward<float>(g2_.data(), k.bn_w.g.data(), k.bn_b.g.data(), g3_.data(), a.c.data(),
                                   k.bn_w.w.data(), a.mean.data(), a.rstd.data(),
                                   cfg.mask_padding ? masks_[i].data() : nullptr, Mi, C, training_);
    std::fill(g1_.data(), g1_.data() + Mi * cin, 0.0f);
    cpu::conv_dense_backward<float>(g1_.data(), k.conv_w.g.data(), k.conv_b.g.data(), g2_.data(), inputs_[i].data(),
                                    k.conv_w.w.data(), B, Li, cin, C, k.K, ws_.data());
  }
  if (cfg.mask_padding) zero_rows(g1_.data(), masks_[0].data(), B * len, E);
  cpu::embedding_backward<float>(embedding.g.data(), g1_.data(), ids_.data(), B * len, cfg.vocab_size, E);
}

std::vector<int32_t> CnnClassifier::branch_pattern() const {
  std::vector<int32_t> v;
  for (const Acts& a : acts_) {
    for (int64_t i = 0; i < a.r.numel(); ++i) v.push_back(a.r[i] > 0.0f);
    v.insert(v.end(), a.idx.begin(), a.idx.end());
  }
  return v;
}

// ---- checkpoints -------------------------------------------------------------------------

std::string cnn_config_to_json(const CnnConfig& c) {
  c.validate();
  nlohmann::ordered_json j;
  j["mambaseq_arch"] = "cnn";
  j["vocab_size"] = c.vocab_size;
  j["d_embed"] = c.d_embed;
  j["channels"] = c.channels;
  j["kernel_sizes"] = c.kernel_sizes;
  j["pool"] = c.pool;
  j["bn_momentum"] = c.bn_momentum;
  j["bn_eps"] = c.bn_eps;
  j["head_dropout"] = c.head_dropout;
  j["mask_padding"] = c.mask_padding;
  j["mambaseq_head"] = head_name(c.head);
  j["num_labels"] = c.num_labels;
  j["pad_token_id"] = c.pad_token_id;
  return j.dump(2) + "\n";
}

CnnConfig read_cnn_config(const std::string& path) {
  const json j = baseline::Keys::parse_file(path);
  baseline::Keys k(path, j);
  k.expect_arch("cnn");
  CnnConfig c;
  c.vocab_size = k.integer("vocab_size", c.vocab_size);
  c.d_embed = k.integer("d_embed", c.d_embed);
  c.channels = k.integer("channels", c.channels);
  c.kernel_sizes = k.integers("kernel_sizes", c.kernel_sizes);
  c.pool = k.integer("pool", c.pool);
  c.bn_momentum = k.number("bn_momentum", c.bn_momentum);
  c.bn_eps = k.number("bn_eps", c.bn_eps);
  c.head_dropout = k.number("head_dropout", c.head_dropout);
  c.mask_padding = k.boolean("mask_padding", c.mask_padding);
  k.finish(c);
  return c;
}

void CnnClassifier::save(const std::string& dir) {
  baseline::make_dir(dir);
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  for (Param* p : params()) w.add(p->name, p->w.data(), p->w.shape());
  for (size_t i = 0; i < blocks.size(); ++i) {
    w.add(blocks[i].run_mean.name, blocks[i].run_mean.w.data(), blocks[i].run_mean.w.shape());
    w.add(blocks[i].run_var.name, blocks[i].run_var.w.data(), blocks[i].run_var.w.shape());
    w.add_i64(blk(i, "bn.num_batches_tracked"), &tracked_[i], {});
  }
  w.write(dir + "/model.safetensors");
  write_file_atomic(dir + "/config.json", cnn_config_to_json(cfg));
}

void CnnClassifier::load_state(const SafeTensorsReader& f) {
  std::set<std::string> used;
  auto read = [&](const std::string& name, Tensor& t) {
    MS_CHECK(f.has(name), "checkpoint {}: tensor '{}' is missing (the config asks for it)", f.path(), name);
    MS_CHECK(f.info(name).shape == t.shape(), "checkpoint {}: tensor '{}' has shape {}, expected {} from config.json",
             f.path(), name, shape_str(f.info(name).shape), shape_str(t.shape()));
    f.read_f32_into(name, t);
    used.insert(name);
  };
  for (Param* p : params()) read(p->name, p->w);
  for (Buffer* b : buffers()) read(b->name, b->w);
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string name = blk(i, "bn.num_batches_tracked");
    if (!f.has(name)) continue;  // optional, as in PyTorch's BatchNorm
    const auto v = f.read_i64(name);
    MS_CHECK(v.size() == 1, "checkpoint {}: tensor '{}' must hold one integer, has {}", f.path(), name, v.size());
    tracked_[i] = v[0];
    used.insert(name);
  }
  for (const auto& name : f.names())
    MS_CHECK(used.count(name), "checkpoint {}: unexpected tensor '{}' (the config does not use it: wrong config.json?)",
             f.path(), name);
}

std::unique_ptr<CnnClassifier> load_cnn(const std::string& dir) {
  MS_CHECK(std::filesystem::is_directory(dir), "model directory {} does not exist", dir);
  auto m = std::make_unique<CnnClassifier>(read_cnn_config(dir + "/config.json"), 0);
  m->load_state(SafeTensorsReader(dir + "/model.safetensors"));
  return m;
}

}  // namespace mambaseq
