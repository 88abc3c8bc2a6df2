// Recurrent inference: prefill + steps equal the full-sequence forward at every position
// (random models of every option, prompts of different lengths in one batch, chunked
// prefill), the step path allocates nothing, scoring and embeddings match the model's
// forward, and checkpoints (dtypes, shards, original names, errors).
#include <gtest/gtest.h>
#include <cerrno>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>

#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"
#include "mambaseq/generate.h"
#include "mambaseq/hf_config.h"
#include "mambaseq/inference.h"
#include "mambaseq/safetensors.h"

using namespace mambaseq;
namespace fs = std::filesystem;

// Counting allocation: the step path must not allocate. Global operator new is replaced
// (plain malloc underneath), and outside sanitizer builds the C allocation functions are
// interposed too, so that allocations inside libraries (libgomp teams, BLAS) count as well.
#include "alloc_count.h"

namespace {
std::atomic<int64_t> g_news{0};
}
// noinline: GCC's -Wmismatched-new-delete misreads an inlined free() of our own new.
#define MS_NOINLINE __attribute__((noinline))
MS_NOINLINE void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
MS_NOINLINE void* operator new[](size_t n) { return operator new(n); }
MS_NOINLINE void* operator new(size_t n, const std::nothrow_t&) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n ? n : 1);
}
MS_NOINLINE void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
MS_NOINLINE void operator delete(void* p) noexcept { std::free(p); }
MS_NOINLINE void operator delete[](void* p) noexcept { std::free(p); }
MS_NOINLINE void operator delete(void* p, size_t) noexcept { std::free(p); }
MS_NOINLINE void operator delete[](void* p, size_t) noexcept { std::free(p); }
MS_NOINLINE void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
MS_NOINLINE void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

const std::string kTiny = std::string(MAMBASEQ_TEST_DATA) + "/hf-tiny";

std::string tmpdir(const std::string& name) {
  const std::string d = ::testing::TempDir() + "mambaseq_inf_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct Opt {
  const char* name;
  int64_t d_state, d_conv, dt_rank;
  NormKind norm;
  bool tied, bias, conv_bias;
};

ModelConfig lm_config(const Opt& o, int64_t vocab = 29) {
  ModelConfig c;
  c.head = HeadKind::LM;
  MambaConfig& m = c.mamba;
  m.d_model = 24;
  m.n_layer = 3;
  m.vocab_size = vocab;
  m.d_state = o.d_state;
  m.d_conv = o.d_conv;
  m.dt_rank = o.dt_rank;
  m.norm = o.norm;
  m.tie_embeddings = o.tied;
  m.use_bias = o.bias;
  m.use_conv_bias = o.conv_bias;
  return c;
}

// Weights away from their initial values (D = 1, zero biases, A = −n), and larger dt so
// the state carries real information across tokens.
void perturb(Model& m, uint64_t seed) {
  Rng rng(seed);
  for (Param* p : m.params()) {
    const bool big = p->name.find("dt_proj.bias") != std::string::npos;
    for (int64_t i = 0; i < p->w.numel(); ++i)
      p->w[i] += static_cast<float>((big ? 0.5 : 0.05) * rng.normal());
  }
}

std::vector<int32_t> random_ids(int64_t n, int64_t V, Rng& rng) {
  std::vector<int32_t> v(n);
  for (auto& x : v) x = static_cast<int32_t>(rng.below(V));
  return v;
}

// logits [L, V] of the full-sequence (parallel) forward of one sequence.
std::vector<float> full_logits(Model& m, const std::vector<int32_t>& ids) {
  Batch b;
  b.batch = 1;
  b.len = static_cast<int64_t>(ids.size());
  b.ids = ids;
  b.mask.assign(ids.size(), 1);
  const Tensor& out = m.forward(b, false);
  return std::vector<float>(out.data(), out.data() + out.numel());
}

double rel_err(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Prefill prompts of different lengths, then S teacher-forced steps; every position's
// logits against the full forward. Returns the worst relative error.
double prefill_steps_vs_full(Model& m, const std::vector<int64_t>& prompt_lens, int64_t S, int64_t chunk,
                             uint64_t seed) {
  const int64_t V = m.cfg.mamba.vocab_padded(), B = static_cast<int64_t>(prompt_lens.size());
  Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs, prompts;
  for (int64_t L : prompt_lens) {
    seqs.push_back(random_ids(L + S, m.cfg.mamba.vocab_size, rng));
    prompts.emplace_back(seqs.back().begin(), seqs.back().begin() + L);
  }
  std::vector<std::vector<float>> full;
  for (auto& s : seqs) full.push_back(full_logits(m, s));
  InferenceEngine eng(m, chunk);
  InferenceState st = eng.new_state(B);
  Tensor logits;
  eng.prefill(st, prompts, logits);
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    EXPECT_EQ(st.pos[b], prompt_lens[b]);
    worst = std::max(worst, rel_err(logits.data() + b * V, full[b].data() + (prompt_lens[b] - 1) * V, V));
  }
  std::vector<int32_t> next(B);
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t b = 0; b < B; ++b) next[b] = seqs[b][prompt_lens[b] + s];
    const Tensor& z = eng.step(st, next.data());
    for (int64_t b = 0; b < B; ++b)
      worst = std::max(worst, rel_err(z.data() + b * V, full[b].data() + (prompt_lens[b] + s) * V, V));
  }
  return worst;
}

}  // namespace

class PrefillSteps : public ::testing::TestWithParam<Opt> {};

TEST_P(PrefillSteps, EqualTheFullForwardAtEveryPosition) {
  const Opt o = GetParam();
  Model m(lm_config(o), 11);
  perturb(m, 12);
  // One batch, prompts of lengths 1..9: prefill positions and step positions together
  // cover every position of every sequence. Chunks of 4096 (whole prompts), 5 and 2
  // tokens (windows shorter than the conv's K−1 carried across chunks).
  for (int64_t chunk : {4096, 5, 2}) {
    const double e = prefill_steps_vs_full(m, {1, 9, 4, 9, 2}, 12, chunk, 13 + chunk);
    EXPECT_LT(e, 1e-5) << o.name << " chunk " << chunk;
    std::printf("prefill+steps vs full forward (%s, chunk %ld): max relative error %.2e\n", o.name,
                static_cast<long>(chunk), e);
  }
}

// A batch wide enough (96 × d_inner 48 > 4096) for the step kernels' threaded path.
TEST(Inference, WideBatchPrefillStepsEqualTheFullForward) {
  Model m(lm_config(Opt{"wide", 16, 4, 0, NormKind::RMS, false, true, true}), 17);
  perturb(m, 18);
  std::vector<int64_t> lens;
  for (int i = 0; i < 96; ++i) lens.push_back(1 + (i * 5) % 11);
  const double e = prefill_steps_vs_full(m, lens, 4, 4096, 19);
  EXPECT_LT(e, 1e-5);
  std::printf("prefill+steps vs full forward, batch 96: max relative error %.2e\n", e);
}

INSTANTIATE_TEST_SUITE_P(
    Inference, PrefillSteps,
    ::testing::Values(Opt{"rms_tied", 16, 4, 0, NormKind::RMS, true, false, true},
                      Opt{"layer_untied_bias", 8, 3, 5, NormKind::Layer, false, true, true},
                      Opt{"conv2_nobias_dstate4", 4, 2, 2, NormKind::RMS, false, false, false},
                      Opt{"conv1", 6, 1, 3, NormKind::RMS, true, true, true}),
    [](const auto& i) { return std::string(i.param.name); });

TEST(Inference, HfTinyPrefillAndStepsMatchTransformers) {
  auto model = load_model(kTiny);
  SafeTensorsReader ref(kTiny + "/reference.safetensors");
  auto ids64 = ref.read_i64("input_ids");
  auto want = ref.read_f64("logits");  // [2, 33, 37], transformers in float64
  const int64_t L = 33, V = 37;
  InferenceEngine eng(*model);
  // Sequence 0 prefilled with 10 tokens, sequence 1 with 3; then steps to the end.
  std::vector<std::vector<int32_t>> seqs(2);
  for (int b = 0; b < 2; ++b) seqs[b].assign(ids64.begin() + b * L, ids64.begin() + (b + 1) * L);
  const int64_t P[2] = {10, 3};
  InferenceState st = eng.new_state(2);
  Tensor logits;
  eng.prefill(st, {{seqs[0].begin(), seqs[0].begin() + P[0]}, {seqs[1].begin(), seqs[1].begin() + P[1]}}, logits);
  double worst = 0;
  auto check = [&](int b, int64_t pos, const float* z) {
    double num = 0, den = 0;
    for (int64_t v = 0; v < V; ++v) {
      const double w = want[(b * L + pos) * V + v];
      num += (z[v] - w) * (z[v] - w);
      den += w * w;
    }
    worst = std::max(worst, std::sqrt(num / den));
  };
  for (int b = 0; b < 2; ++b) check(b, P[b] - 1, logits.data() + b * V);
  for (int64_t s = 0; P[1] + s < L; ++s) {
    int32_t next[2];
    for (int b = 0; b < 2; ++b) next[b] = seqs[b][std::min(P[b] + s, L - 1)];
    const Tensor& z = eng.step(st, next);
    for (int b = 0; b < 2; ++b)
      if (P[b] + s < L) check(b, P[b] + s, z.data() + b * V);
  }
  EXPECT_LT(worst, 1e-5);
  std::printf("hf-tiny: prefill+steps vs transformers (float64) logits: %.2e\n", worst);
}

TEST(Inference, StepPathAllocatesNothingAndStateIsConstant) {
  Opt o{"alloc", 16, 4, 0, NormKind::RMS, false, true, true};
  Model m(lm_config(o, 50), 3);
  InferenceEngine eng(m);
  // 100 × d_inner 48 rows·channels: the threaded step kernels' side of the 4096 threshold.
  for (int64_t B : {1, 4, 100}) {
    InferenceState st = eng.new_state(B);
    Tensor logits;
    std::vector<std::vector<int32_t>> prompts(B, std::vector<int32_t>{1, 2, 3});
    eng.prefill(st, prompts, logits);
    std::vector<int32_t> ids(B, 5);
    // Warm-up: the first step at a batch size sizes the buffers, the next six time the
    // thread count (InferenceEngine::set_step_threads).
    for (int w = 0; w < 8; ++w) eng.step(st, ids.data());
    GenerateOptions go;
    go.top_k = 10;
    go.top_p = 0.9;
    go.repetition_penalty = 1.3;
    Sampler sampler(go, eng.vocab_rows(), B, 50);
    Rng rng(1);
    const int64_t state_bytes = st.bytes(), tensors = MemStats::current();
    const int64_t news = g_news.load(), mallocs = g_mallocs.load();
    for (int t = 0; t < 300; ++t) {
      Tensor& z = eng.step(st, ids.data());
      for (int64_t b = 0; b < B; ++b) {
        ids[b] = sampler.sample(b, z.data() + b * eng.vocab_rows(), rng);
        sampler.observe(b, ids[b]);
      }
    }
    EXPECT_EQ(g_news.load() - news, 0) << "operator new called in the step/sample loop, batch " << B;
#ifdef MS_COUNT_MALLOC
    EXPECT_EQ(g_mallocs.load() - mallocs, 0) << "malloc-family calls in the step/sample loop, batch " << B;
#endif
    (void)mallocs;
    EXPECT_EQ(MemStats::current(), tensors);
    EXPECT_EQ(st.bytes(), state_bytes);
    EXPECT_EQ(st.pos[0], 3 + 308);
    // Per sequence: n_layer × d_inner × (d_conv − 1 + d_state) floats, whatever pos is.
    EXPECT_EQ(st.bytes(), 3 * 48 * (3 + 16) * 4 * B + B * 8);
  }
}

TEST(Inference, ScoresAndEmbeddingsMatchTheForward) {
  Opt o{"score", 8, 4, 0, NormKind::RMS, true, false, true};
  Model m(lm_config(o), 5);
  perturb(m, 6);
  Rng rng(7);
  std::vector<std::vector<int32_t>> seqs = {random_ids(1, 29, rng), random_ids(17, 29, rng), random_ids(6, 29, rng)};
  InferenceEngine eng(m, 7);  // several chunks, each sequence padded differently
  auto scores = score_sequences(eng, seqs, true);
  Tensor pooled({3, 24});
  std::vector<std::vector<float>> rows(3);
  embed_sequences(eng, seqs, pooled.data(), [&](int64_t b, int64_t pos, const float* h, int64_t n) {
    EXPECT_EQ(pos * 24, static_cast<int64_t>(rows[b].size()));
    rows[b].insert(rows[b].end(), h, h + n * 24);
  });
  const int64_t V = m.cfg.mamba.vocab_padded();
  for (int b = 0; b < 3; ++b) {
    const auto& s = seqs[b];
    auto z = full_logits(m, s);
    const Tensor& hid = m.backbone.hidden();
    double total = 0;
    for (size_t t = 1; t < s.size(); ++t) {
      const float* zr = z.data() + (t - 1) * V;
      double mx = *std::max_element(zr, zr + V), sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(zr[v] - mx);
      const double lp = zr[s[t]] - mx - std::log(sum);
      EXPECT_NEAR(scores[b].per_token[t - 1], lp, 1e-5);
      total += lp;
    }
    EXPECT_EQ(scores[b].count, static_cast<int64_t>(s.size()) - 1);
    EXPECT_NEAR(scores[b].total, total, 1e-4);
    ASSERT_EQ(rows[b].size(), s.size() * 24);
    EXPECT_LT(rel_err(rows[b].data(), hid.data(), hid.numel()), 1e-5);
    for (int j = 0; j < 24; ++j) {
      double mean = 0;
      for (size_t t = 0; t < s.size(); ++t) mean += hid[t * 24 + j];
      EXPECT_NEAR(pooled[b * 24 + j], mean / s.size(), 1e-5);
    }
  }
  EXPECT_THROW(score_sequences(eng, {{1, 2, 99}}, false), Error);  // id outside the vocabulary
  EXPECT_THROW(score_sequences(eng, {{}}, false), Error);
}

// ---- checkpoints ----------------------------------------------------------------------

namespace {
void expect_same_logits(Model& a, Model& b, double tol) {
  std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6};
  auto za = full_logits(a, ids), zb = full_logits(b, ids);
  EXPECT_LT(rel_err(zb.data(), za.data(), za.size()), tol);
}
}  // namespace

// A bidirectional model has no token-by-token state: the engine refuses it (rather than
// run only the forward half), and embeddings go through whole sequences, each one's
// equal to running it alone despite the padding of the batch.
TEST(Inference, BidirectionalModelsEmbedWholeAndAreRefusedByTheEngine) {
  ModelConfig c;
  c.head = HeadKind::SequenceClassification;
  c.mamba.d_model = 16;
  c.mamba.n_layer = 2;
  c.mamba.vocab_size = 6;
  c.mamba.bidirectional = true;
  Model m(c, 3);
  perturb(m, 4);
  try {
    InferenceEngine eng(m);
    ADD_FAILURE() << "the engine accepted a bidirectional model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bidirectional"), std::string::npos) << e.what();
  }
  Rng rng(9);
  std::vector<std::vector<int32_t>> seqs = {random_ids(5, 6, rng), random_ids(13, 6, rng), random_ids(1, 6, rng)};
  for (auto& s : seqs)
    for (auto& x : s) x = 1 + x % 5;  // no PAD inside a sequence
  Tensor pooled({3, 16});
  std::vector<std::vector<float>> rows(3);
  embed_whole_sequences(m, seqs, pooled.data(), [&](int64_t b, int64_t pos, const float* h, int64_t n) {
    EXPECT_EQ(pos, 0);
    rows[b].assign(h, h + n * 16);
  });
  for (int b = 0; b < 3; ++b) {
    const int64_t L = static_cast<int64_t>(seqs[b].size());
    const Tensor& alone = m.backbone.forward(seqs[b].data(), 1, L, false);
    ASSERT_EQ(static_cast<int64_t>(rows[b].size()), L * 16);
    double num = 0, den = 0, pnum = 0, pden = 0;
    for (int64_t j = 0; j < 16; ++j) {
      double mean = 0;
      for (int64_t t = 0; t < L; ++t) {
        const double ref = alone[t * 16 + j];
        num += (rows[b][t * 16 + j] - ref) * (rows[b][t * 16 + j] - ref);
        den += ref * ref;
        mean += ref / double(L);
      }
      pnum += (pooled[b * 16 + j] - mean) * (pooled[b * 16 + j] - mean);
      pden += mean * mean;
    }
    EXPECT_LT(std::sqrt(num / den), 1e-5) << "sequence " << b;
    EXPECT_LT(std::sqrt(pnum / pden), 1e-5) << "sequence " << b;
  }
}

TEST(Checkpoints, DtypesShardsAndTiedOrUntiedHeads) {
  const std::string dir = tmpdir("dtypes");
  for (bool tied : {true, false}) {
    Opt o{"ck", 16, 4, 0, NormKind::RMS, tied, !tied, true};
    Model m(lm_config(o), 21);
    perturb(m, 22);
    for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
      for (int64_t shard : {int64_t(0), int64_t(20000)}) {
        SaveOptions so;
        so.dtype = dt;
        so.max_shard_bytes = shard;
        const std::string d = dir + "/" + dtype_name(dt) + (tied ? "_tied" : "_untied") + std::to_string(shard);
        save_model(d, m, so);
        EXPECT_EQ(fs::exists(d + "/model.safetensors.index.json"), shard > 0);
        EXPECT_EQ(fs::exists(d + "/model.safetensors"), shard == 0);
        auto m2 = load_model(d);
        EXPECT_EQ(m2->head_w != nullptr, !tied);
        for (Param* p : m.params()) {
          Param* q = m2->find(p->name);
          ASSERT_NE(q, nullptr) << p->name;
          for (int64_t i = 0; i < p->w.numel(); ++i) {
            const float w = p->w[i];
            const float want = dt == DType::BF16 ? bf16_to_f32(f32_to_bf16(w))
                               : dt == DType::F16 ? f16_to_f32(f32_to_f16(w))
                                                  : w;
            ASSERT_EQ(q->w[i], want) << p->name << " " << dtype_name(dt);
          }
        }
        expect_same_logits(m, *m2, dt == DType::F32 || dt == DType::F64 ? 1e-6 : 3e-2);
      }
    }
  }
  // Re-saving in the other layout removes what would shadow or confuse the new files.
  Opt o{"ck", 16, 4, 0, NormKind::RMS, true, false, true};
  Model m(lm_config(o), 23);
  save_model(dir + "/flip", m, SaveOptions{DType::F32, 20000});
  save_model(dir + "/flip", m);
  EXPECT_FALSE(fs::exists(dir + "/flip/model.safetensors.index.json"));
  save_model(dir + "/flip", m, SaveOptions{DType::F32, 20000});
  EXPECT_FALSE(fs::exists(dir + "/flip/model.safetensors"));
  expect_same_logits(m, *load_model(dir + "/flip"), 1e-7);
  fs::remove_all(dir);
}

// transformers wrote these BF16 shards (untied head, use_bias, d_conv 3, dt_rank 5).
TEST(Checkpoints, HfWrittenShardsLoadAndMatchTransformers) {
  const std::string dir = std::string(MAMBASEQ_TEST_DATA) + "/hf-sharded";
  auto m = load_model(dir);
  EXPECT_EQ(m->cfg.mamba.d_conv, 3);
  EXPECT_EQ(m->cfg.mamba.dt_rank_value(), 5);
  ASSERT_NE(m->head_w, nullptr);
  SafeTensorsReader ref(dir + "/reference.safetensors");
  auto ids64 = ref.read_i64("input_ids");
  Tensor want = ref.read_f32("logits");
  const int64_t L = 21, V = 56;
  InferenceEngine eng(*m);
  InferenceState st = eng.new_state(2);
  Tensor logits;
  std::vector<std::vector<int32_t>> seqs(2);
  for (int b = 0; b < 2; ++b) seqs[b].assign(ids64.begin() + b * L, ids64.begin() + (b + 1) * L);
  double worst = 0;
  for (int b = 0; b < 2; ++b) {
    auto full = full_logits(*m, seqs[b]);
    worst = std::max(worst, rel_err(full.data(), want.data() + b * L * V, L * V));
  }
  eng.prefill(st, {{seqs[0].begin(), seqs[0].begin() + 4}, {seqs[1].begin(), seqs[1].begin() + 11}}, logits);
  worst = std::max(worst, rel_err(logits.data(), want.data() + 3 * V, V));
  worst = std::max(worst, rel_err(logits.data() + V, want.data() + (L + 10) * V, V));
  for (int64_t s = 0; 11 + s < L; ++s) {
    int32_t next[2] = {seqs[0][4 + s], seqs[1][11 + s]};
    const Tensor& z = eng.step(st, next);
    worst = std::max(worst, rel_err(z.data(), want.data() + (4 + s) * V, V));
    worst = std::max(worst, rel_err(z.data() + V, want.data() + (L + 11 + s) * V, V));
  }
  EXPECT_LT(worst, 1e-5);
  std::printf("hf-sharded (transformers BF16 shards): logits vs transformers %.2e\n", worst);
}

TEST(Checkpoints, SavedConfigDoesNotAskTransformersToRescale) {
  // transformers 5.17 divides the loaded out_proj.weight by sqrt(n_layer) again when the
  // config says rescale_prenorm_residual: checkpoints must say false.
  const std::string dir = tmpdir("rescale");
  Opt o{"r", 16, 4, 0, NormKind::RMS, true, false, true};
  ModelConfig c = lm_config(o);
  ASSERT_TRUE(c.mamba.rescale_prenorm_residual);
  Model m(c, 1);
  save_model(dir, m, SaveOptions{DType::F32, 20000});
  EXPECT_FALSE(read_model_config(dir + "/config.json").mamba.rescale_prenorm_residual);
  fs::remove_all(dir);
}

TEST(Checkpoints, HfTinyAsBf16ShardsThroughTheEngine) {
  const std::string dir = tmpdir("tiny");
  auto m = load_model(kTiny);
  save_model(dir + "/s", *m, SaveOptions{DType::BF16, 40000});
  auto m2 = load_model(dir + "/s");
  expect_same_logits(*m, *m2, 2e-2);
  fs::remove_all(dir);
}

TEST(Checkpoints, OriginalStateSpacesNamesAndConfig) {
  const std::string dir = tmpdir("orig");
  Opt o{"orig", 16, 4, 0, NormKind::RMS, true, false, true};
  Model m(lm_config(o, 32), 31);
  perturb(m, 32);
  // The original repository's layout: backbone.embedding.weight, a duplicated lm_head,
  // and its config.json keys.
  SafeTensorsWriter w;
  for (Param* p : m.params()) {
    const std::string n = p->name == "backbone.embeddings.weight" ? "backbone.embedding.weight" : p->name;
    w.add(n, p->w.data(), p->w.shape(), DType::F16);
  }
  w.add("lm_head.weight", m.backbone.embedding.w.data(), m.backbone.embedding.w.shape(), DType::F16);
  w.write(dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << R"({"d_model": 24, "n_layer": 3, "vocab_size": 32, "ssm_cfg": {},
    "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8})";
  auto m2 = load_model(dir);
  EXPECT_EQ(m2->cfg.mamba.d_model, 24);
  expect_same_logits(m, *m2, 3e-2);
  fs::remove_all(dir);
}

TEST(Checkpoints, ErrorsNameTheProblem) {
  const std::string dir = tmpdir("errors");
  Opt o{"err", 16, 4, 0, NormKind::RMS, false, false, true};
  Model m(lm_config(o), 41);
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected one containing: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
    }
  };
  // Sharded: a missing shard, a tensor the index misplaces, a path in the index.
  save_model(dir + "/sh", m, SaveOptions{DType::F32, 20000});
  for (auto& e : fs::directory_iterator(dir + "/sh"))
    if (e.path().filename().string().rfind("model-00002-of-", 0) == 0) fs::remove(e.path());
  expect_error([&] { load_model(dir + "/sh"); }, "is missing");
  expect_error([&] { parse_safetensors_index(R"({"weight_map": {"a": "../../etc/passwd"}})", "idx.json"); },
               "not a plain file name");
  expect_error([&] { parse_safetensors_index(R"({"weight_map": [1]})", "idx.json"); }, "no 'weight_map' object");
  expect_error([&] { parse_safetensors_index("{", "idx.json"); }, "idx.json: bad JSON");
  save_model(dir + "/mis", m, SaveOptions{DType::F32, 20000});
  {
    std::ifstream in(dir + "/mis/model.safetensors.index.json");
    std::string s((std::istreambuf_iterator<char>(in)), {});
    const std::string key = "\"backbone.norm_f.weight\": \"model-";
    const size_t at = s.find(key);
    ASSERT_NE(at, std::string::npos) << s;
    s[at + key.size() + 4] = s[at + key.size() + 4] == '1' ? '2' : '1';  // point at another shard
    std::ofstream(dir + "/mis/model.safetensors.index.json") << s;
  }
  expect_error([&] { load_model(dir + "/mis"); }, "puts tensor 'backbone.norm_f.weight' in");
  // Missing tensor, wrong shape, unsupported dtype, config disagreeing with the tensors.
  auto write_with = [&](const std::string& d, const std::string& skip, const std::string& reshape, bool i64) {
    fs::create_directories(d);
    SafeTensorsWriter w;
    for (Param* p : m.params()) {
      if (p->name == skip) continue;
      Shape s = p->w.shape();
      if (p->name == reshape) s = {s[0] / 2, s[1] * 2};
      if (i64 && p->name == "backbone.norm_f.weight") {
        std::vector<int64_t> v(p->w.numel(), 1);
        w.add_i64(p->name, v.data(), s);
      } else {
        w.add(p->name, p->w.data(), s);
      }
    }
    w.write(d + "/model.safetensors");
    write_model_config(d + "/config.json", m.cfg);
  };
  write_with(dir + "/a", "lm_head.weight", "", false);
  expect_error([&] { load_model(dir + "/a"); }, "tensor 'lm_head.weight' is missing");
  write_with(dir + "/b", "", "backbone.layers.1.mixer.in_proj.weight", false);
  expect_error([&] { load_model(dir + "/b"); }, "has shape [48, 48], expected [96, 24]");
  write_with(dir + "/c", "", "", true);
  expect_error([&] { load_model(dir + "/c"); }, "dtype I64");
  fs::create_directories(dir + "/pt");
  std::ofstream(dir + "/pt/pytorch_model.bin") << "x";
  write_model_config(dir + "/pt/config.json", m.cfg);
  expect_error([&] { load_model(dir + "/pt"); }, "pytorch_model.bin");
  fs::remove_all(dir);
}
