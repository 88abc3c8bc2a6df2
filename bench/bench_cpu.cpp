// CPU speed and memory benchmarks (Google Benchmark), then Markdown tables.
//
//   bench_cpu [--quick] [--no-memory] [--out FILE] [--scan-dim N] [--wait-idle S] [--benchmark_* flags]
//
// Benchmarks (all wall-clock time; tokens/s is a rate counter = batch·len / time):
//   seed001/forward/B8/L{300,500}    seed-001 classifier, inference forward (training=false)
//   seed001/train/B8/L{300,500}      zero_grad + forward(training) + loss + backward
//                                    + clip_grad_norm(1.0) + AdamW step
//   130m/forward/B1/L2048            Mamba-130m backbone forward (inference)
//   130m/train/B1/L2048              zero_grad + backbone forward(training) + backward of a
//                                    random ∂hidden + AdamW step over all backbone params
//   models/{mamba,cnn,transformer}/{forward,train}/B32/L300
//                                    the three seed-001 models side by side (issue 5):
//                                    inference forward, and the same training step
//   scan/fwd/L{1k,4k,16k,64k}        selective_scan_forward, batch 1, d_state 16
//   scan/fwdbwd/L{...}               selective_scan_forward + selective_scan_backward
// After the run: a throughput table, the scan linearity table (ns/token vs L = 1k,
// PASS within ±25%) and the peak Tensor memory of one training step with the share
// held by activations. --out FILE writes the same Markdown to FILE.
// --quick (CI smoke): small sizes and short runs; its figures are not the committed ones.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mambaseq/baselines.h"
#include "mambaseq/config.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/model.h"
#include "mambaseq/optim.h"
#include "mambaseq/rng.h"
#include "mambaseq/tensor.h"

extern "C" char* openblas_get_config(void);

using namespace mambaseq;

namespace {

// ---- settings --------------------------------------------------------------------
struct Settings {
  bool quick = false;
  int64_t seed_batch = 8;
  std::vector<int64_t> seed_lens{300, 500};
  int64_t models_batch = 32, models_len = 300;  // the three seed-001 models side by side
  int64_t m130_batch = 1, m130_len = 2048;
  int64_t m130_iters = 1, m130_reps = 3;  // 130m: 1 iteration per repetition (a step takes seconds)
  std::vector<int64_t> scan_lens{1024, 4096, 16384, 65536};
  int64_t scan_dim = 1536;  // 130m's d_inner
  int64_t scan_dstate = 16;
  int reps = 3;                // repetitions of every benchmark; the tables use the fastest
  double min_time = 1.0;       // seconds per repetition (seed-001 and scan)
  double warmup_time = 0.2;    // seconds of untimed warm-up (at least one iteration)
  double wait_idle = 0;  // --wait-idle N: seconds to wait for an idle machine before each call
  bool memory = true;  // --no-memory skips the memory table (for quick experiments)
  std::string out;
};
Settings S;

struct CpuSnapshot {
  double wall = 0, busy = 0, self = 0;  // seconds
  static CpuSnapshot now() {
    CpuSnapshot c;
    c.wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    std::ifstream f("/proc/stat");
    std::string cpu;
    double v[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // user nice system idle iowait irq softirq steal
    f >> cpu;
    for (double& x : v) f >> x;
    c.busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / double(sysconf(_SC_CLK_TCK));
    struct rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    c.self = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return c;
  }
};

// Other processes' CPU use (in CPUs) over the next `secs` seconds.
double other_cpus_over(double secs) {
  const CpuSnapshot a = CpuSnapshot::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  const CpuSnapshot b = CpuSnapshot::now();
  return std::max(0.0, (b.busy - a.busy) - (b.self - a.self)) / (b.wall - a.wall);
}

// --wait-idle N: before every benchmark call (outside the timed loop), wait up to N s for
// 1.5 s in which other processes use < 0.15 CPUs. Calls that give up run anyway
// and are counted; the "other load" column shows what they met.
double g_waited_s = 0;
int g_wait_calls = 0, g_wait_timeouts = 0;
double g_last_quiet_end = -1e9;  // wall time at which a timed loop of >= 0.25 s ended with no other load
void wait_idle() {
  if (S.wait_idle <= 0) return;
  if (CpuSnapshot::now().wall - g_last_quiet_end < 0.5) return;  // the run just before showed a quiet machine
  ++g_wait_calls;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  int quiet = 0;  // consecutive quiet 0.5 s windows; 3 are needed
  while (quiet < 3) {
    quiet = other_cpus_over(0.5) < 0.15 ? quiet + 1 : 0;
    if (quiet < 3 && elapsed() > S.wait_idle) {
      ++g_wait_timeouts;
      break;
    }
  }
  g_waited_s += elapsed();
}

// Per-run contention record: CPUs used by other processes while the timed loop ran,
// reported as the counter "other_cpus" (a plain counter: not divided by time).
struct LoadProbe {
  CpuSnapshot a = CpuSnapshot::now();
  void finish(benchmark::State& st) const {
    const CpuSnapshot b = CpuSnapshot::now();
    const double dt = b.wall - a.wall;
    const double other = dt > 0 ? std::max(0.0, (b.busy - a.busy) - (b.self - a.self)) / dt : 0.0;
    st.counters["other_cpus"] = other;
    if (dt >= 0.25 && other < 0.15) g_last_quiet_end = b.wall;
  }
};


// ---- random inputs (never zeros) ---------------------------------------------------
// Counter-based so large buffers fill in parallel and reproducibly.
inline uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline float unit(uint64_t seed, int64_t i) {  // uniform in [-1, 1)
  return static_cast<float>(splitmix(seed * 0x100000001B3ull + static_cast<uint64_t>(i)) >> 40) *
             (2.0f / 16777216.0f) -
         1.0f;
}
void fill_uniform(float* p, int64_t n, uint64_t seed, float lo, float hi) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] = lo + (hi - lo) * 0.5f * (unit(seed, i) + 1.0f);
}

std::vector<int32_t> random_ids(int64_t n, int32_t lo, int32_t hi, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& v : ids) v = lo + static_cast<int32_t>(rng.below(static_cast<uint64_t>(hi - lo)));
  return ids;
}

// ---- seed-001 classifier -----------------------------------------------------------
Batch seed_batch(int64_t B, int64_t L, uint64_t seed) {
  Batch b;
  b.batch = B;
  b.len = L;
  b.ids = random_ids(B * L, 1, 6, seed);  // A C G T N (no PAD), so every position counts
  Rng rng(seed + 1);
  b.labels.resize(B);
  for (auto& y : b.labels) y = static_cast<int32_t>(rng.below(2));
  return b;
}

// ---- seed-001 models (Mamba classifier, CNN, Transformer) ----------------------------
// One Network per architecture, built with seed 001's sizes, trained with the step the
// trainer runs (zero_grad, forward with dropout, loss, backward, clipping, AdamW).
struct NetFixture {
  std::unique_ptr<Network> net;
  Model* mamba = nullptr;  // net, when it is the Mamba classifier (for activation_bytes)
  std::vector<Param*> params;
  std::unique_ptr<AdamW> opt;
  uint64_t step = 0;
  explicit NetFixture(const std::string& arch) {
    if (arch == "mamba") {
      auto m = std::make_unique<Model>(seed001_classifier(2), 1);
      mamba = m.get();
      net = std::move(m);
    } else if (arch == "cnn") {
      net = std::make_unique<CnnClassifier>(seed001_cnn(2), 1);
    } else {
      net = std::make_unique<TransformerClassifier>(seed001_transformer(2), 1);
    }
    params = net->params();
    opt = std::make_unique<AdamW>(params, AdamWConfig{});
  }
};
std::map<std::string, std::unique_ptr<NetFixture>> g_nets;
NetFixture& net_fixture(const std::string& arch) {
  auto& f = g_nets[arch];
  if (!f) f = std::make_unique<NetFixture>(arch);
  return *f;
}

double train_step(NetFixture& f, const Batch& b) {
  f.net->zero_grad();
  f.net->forward(b, /*training=*/true, /*dropout_seed=*/++f.step);
  const double loss = f.net->loss(b);
  f.net->backward(b);
  clip_grad_norm(f.params, 1.0);
  f.opt->step(1e-4);
  return loss;
}

void set_rate(benchmark::State& st, int64_t tokens_per_iter) {
  st.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens_per_iter) * st.iterations(),
                                               benchmark::Counter::kIsRate);
}

void BM_net_forward(benchmark::State& st, const std::string& arch, int64_t B, int64_t L) {
  wait_idle();
  auto& f = net_fixture(arch);
  const Batch b = seed_batch(B, L, 42 + L);
  LoadProbe probe;
  for (auto _ : st) {
    const Tensor& out = f.net->forward(b, /*training=*/false);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_rate(st, B * L);
}

void BM_net_train(benchmark::State& st, const std::string& arch, int64_t B, int64_t L) {
  wait_idle();
  auto& f = net_fixture(arch);
  const Batch b = seed_batch(B, L, 42 + L);
  double loss = 0;
  LoadProbe probe;
  for (auto _ : st) {
    loss = train_step(f, b);
    benchmark::DoNotOptimize(loss);
  }
  probe.finish(st);
  set_rate(st, B * L);
  st.counters["loss"] = loss;
}

// ---- 130m backbone -------------------------------------------------------------------
struct M130Fixture {
  std::unique_ptr<Backbone> bb;
  std::vector<Param*> params;
  std::unique_ptr<AdamW> opt;
  std::vector<int32_t> ids;
  Tensor dhidden;
  bool warm_fwd = false, warm_train = false;  // untimed first call done (buffers allocated, pages touched)
  M130Fixture(int64_t B, int64_t L) {
    bb = std::make_unique<Backbone>(variant_config("130m"));
    Rng rng(7);
    bb->init(rng);
    params = bb->params();
    opt = std::make_unique<AdamW>(params, AdamWConfig{});
    ids = random_ids(B * L, 0, static_cast<int32_t>(bb->cfg.vocab_size), 99);
    dhidden = Tensor({B * L, bb->cfg.d_model});
    fill_uniform(dhidden.data(), dhidden.numel(), 1234, -1e-3f, 1e-3f);
  }
};
std::unique_ptr<M130Fixture> g_m130;
M130Fixture& m130_fixture() {
  if (!g_m130) g_m130 = std::make_unique<M130Fixture>(S.m130_batch, S.m130_len);
  return *g_m130;
}

void m130_train_step(M130Fixture& f, int64_t B, int64_t L) {
  for (Param* p : f.params) p->g.zero();
  f.bb->forward(f.ids.data(), B, L, /*training=*/true);
  f.bb->backward(f.dhidden.data());
  f.opt->step(1e-5);
}

void BM_m130_forward(benchmark::State& st, int64_t B, int64_t L) {
  wait_idle();
  auto& f = m130_fixture();
  // Fixed iteration counts exclude MinWarmUpTime in Google Benchmark 1.7: warm up by hand.
  if (!f.warm_fwd) f.bb->forward(f.ids.data(), B, L, /*training=*/false), f.warm_fwd = true;
  LoadProbe probe;
  for (auto _ : st) {
    const Tensor& h = f.bb->forward(f.ids.data(), B, L, /*training=*/false);
    benchmark::DoNotOptimize(h.data());
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_rate(st, B * L);
}

void BM_m130_train(benchmark::State& st, int64_t B, int64_t L) {
  wait_idle();
  auto& f = m130_fixture();
  if (!f.warm_train) m130_train_step(f, B, L), f.warm_train = true;
  LoadProbe probe;
  for (auto _ : st) {
    m130_train_step(f, B, L);
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_rate(st, B * L);
}

// ---- selective scan ------------------------------------------------------------------
// Inputs laid out as in the model: u, delta [L, Di]; B | C inside a [L, R+2N] x_proj
// output; z in the second half of an [L, 2Di] in_proj output. Values follow the model's
// initialisation: A = −(n+1), δ bias = inverse-softplus(dt), dt log-uniform [1e-3, 0.1].
struct ScanData {
  int64_t L = 0, Di = 0, N = 0, R = 48;
  Tensor u, delta, dbc, xz, A, Dp, bias, out, dout;
  Tensor du, ddelta, ddbc, dxz, dA, dD, dbias;
  cpu::ScanParams<float> p;
  cpu::ScanGrads<float> g;
  ScanData(int64_t L_, int64_t Di_, int64_t N_) : L(L_), Di(Di_), N(N_) {
    const int64_t E = R + 2 * N;
    u = Tensor({L, Di});
    delta = Tensor({L, Di});
    dbc = Tensor({L, E});
    xz = Tensor({L, 2 * Di});
    A = Tensor({Di, N});
    Dp = Tensor({Di});
    bias = Tensor({Di});
    out = Tensor({L, Di});
    dout = Tensor({L, Di});
    fill_uniform(u.data(), u.numel(), 1, -2.f, 2.f);
    fill_uniform(delta.data(), delta.numel(), 2, -0.5f, 0.5f);
    fill_uniform(dbc.data(), dbc.numel(), 3, -1.f, 1.f);
    fill_uniform(xz.data(), xz.numel(), 4, -2.f, 2.f);
    fill_uniform(dout.data(), dout.numel(), 5, -1.f, 1.f);
    fill_uniform(Dp.data(), Dp.numel(), 6, 0.5f, 1.5f);
    for (int64_t c = 0; c < Di; ++c) {
      for (int64_t n = 0; n < N; ++n) A[c * N + n] = -static_cast<float>(n + 1);
      const double dt = std::exp(std::log(1e-3) + 0.5 * (unit(7, c) + 1.0) * (std::log(0.1) - std::log(1e-3)));
      bias[c] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
    p.batch = 1;
    p.len = L;
    p.dim = Di;
    p.dstate = N;
    p.u = u.data();
    p.u_ld = Di;
    p.delta = delta.data();
    p.delta_ld = Di;
    p.A = A.data();
    p.B = dbc.data() + R;
    p.C = dbc.data() + R + N;
    p.bc_ld = E;
    p.D = Dp.data();
    p.z = xz.data() + Di;
    p.z_ld = 2 * Di;
    p.delta_bias = bias.data();
    p.delta_softplus = true;
  }
  void alloc_grads() {
    if (!du.empty()) return;
    const int64_t E = R + 2 * N;
    du = Tensor({L, Di});
    ddelta = Tensor({L, Di});
    ddbc = Tensor({L, E});
    dxz = Tensor({L, 2 * Di});
    dA = Tensor({Di, N});
    dD = Tensor({Di});
    dbias = Tensor({Di});
    g.du = du.data();
    g.du_ld = Di;
    g.ddelta = ddelta.data();
    g.ddelta_ld = Di;
    g.dA = dA.data();
    g.dB = ddbc.data() + R;
    g.dC = ddbc.data() + R + N;
    g.dbc_ld = E;
    g.dD = dD.data();
    g.dz = dxz.data() + Di;
    g.dz_ld = 2 * Di;
    g.ddelta_bias = dbias.data();
  }
};
std::unique_ptr<ScanData> g_scan;  // one length at a time (64k × 1536 is ~3 GB with grads)
ScanData& scan_data(int64_t L) {
  if (!g_scan || g_scan->L != L || g_scan->Di != S.scan_dim) {
    g_scan.reset();
    g_scan = std::make_unique<ScanData>(L, S.scan_dim, S.scan_dstate);
  }
  return *g_scan;
}

void set_scan_counters(benchmark::State& st, int64_t L) {
  set_rate(st, L);
  st.counters["s/token"] = benchmark::Counter(static_cast<double>(L) * st.iterations(),
                                              benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_scan_fwd(benchmark::State& st, int64_t L) {
  wait_idle();
  auto& d = scan_data(L);
  LoadProbe probe;
  for (auto _ : st) {
    cpu::selective_scan_forward<float>(d.p, d.out.data(), nullptr);
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_scan_counters(st, L);
}

// Diagnostic: the same forward with the caches flushed before every iteration (a
// 96 MiB buffer, 3× this machine class's L3, is rewritten with the timer paused), so
// that every L reads its inputs from DRAM. Separates "the scan is not linear" from
// "a small L's inputs stay in the last-level cache between iterations".
std::vector<char> g_flush;
void flush_caches() {
  if (g_flush.empty()) g_flush.resize(96u << 20);
  static char v = 0;
  ++v;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < g_flush.size(); i += 64) g_flush[i] = v;
}

void BM_scan_fwd_cold(benchmark::State& st, int64_t L) {
  wait_idle();
  auto& d = scan_data(L);
  LoadProbe probe;
  for (auto _ : st) {
    st.PauseTiming();
    flush_caches();
    st.ResumeTiming();
    cpu::selective_scan_forward<float>(d.p, d.out.data(), nullptr);
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_scan_counters(st, L);
}

// Gradients accumulate across iterations (the kernel adds); zeroing them each time
// would time a memset that is not part of the scan.
void BM_scan_fwdbwd(benchmark::State& st, int64_t L) {
  wait_idle();
  auto& d = scan_data(L);
  d.alloc_grads();
  LoadProbe probe;
  for (auto _ : st) {
    cpu::selective_scan_forward<float>(d.p, d.out.data(), nullptr);
    cpu::selective_scan_backward<float>(d.p, d.dout.data(), d.g);
    benchmark::ClobberMemory();
  }
  probe.finish(st);
  set_scan_counters(st, L);
}

// ---- result capture ------------------------------------------------------------------
// The machine may be shared: besides wall time, each benchmark records the CPU time of
// this process (cores it kept busy) and the CPU time that other processes used while it
// ran (from /proc/stat), so contention is visible in the tables instead of silently
// inflating a figure.
struct Entry {
  std::string name, group, what;
  int64_t batch = 0, len = 0;
  std::vector<double> sec_per_iter;  // wall seconds per iteration, one per repetition
  std::vector<double> cpu_per_iter;  // process CPU seconds per iteration, one per repetition
  std::vector<double> other_cpus;    // CPUs used by other processes during each repetition
  int64_t iterations = 0;
  bool error = false;
  std::string error_msg;
  bool ok() const { return !error && !sec_per_iter.empty(); }
  size_t best_rep() const {
    return static_cast<size_t>(std::min_element(sec_per_iter.begin(), sec_per_iter.end()) - sec_per_iter.begin());
  }
  double best() const { return sec_per_iter[best_rep()]; }
  double median() const {
    auto v = sec_per_iter;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  }
  double cores_used() const { return cpu_per_iter[best_rep()] / best(); }
  double other_load() const { return other_cpus[best_rep()]; }
  double tokens_per_s() const { return double(batch * len) / best(); }
  double ns_per_token() const { return 1e9 * best() / double(batch * len); }
};
std::vector<Entry> g_entries;
Entry* find_entry(const std::string& name) {
  for (auto& e : g_entries)
    if (e.name == name) return &e;
  return nullptr;
}

class CaptureReporter : public benchmark::ConsoleReporter {
 public:
  explicit CaptureReporter(OutputOptions o) : ConsoleReporter(o) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration) continue;
      Entry* e = find_entry(r.run_name.function_name);
      if (!e) continue;
      if (r.error_occurred) {
        e->error = true;
        e->error_msg = r.error_message;
        continue;
      }
      if (r.iterations > 0) {
        e->sec_per_iter.push_back(r.real_accumulated_time / double(r.iterations));
        e->cpu_per_iter.push_back(r.cpu_accumulated_time / double(r.iterations));
        const auto it = r.counters.find("other_cpus");
        e->other_cpus.push_back(it != r.counters.end() ? it->second.value : NAN);
      }
      e->iterations += r.iterations;
    }
  }
};

template <class Fn>
benchmark::internal::Benchmark* reg(const std::string& name, const std::string& group, const std::string& what,
                                    int64_t batch, int64_t len, Fn&& fn) {
  Entry e;
  e.name = name;
  e.group = group;
  e.what = what;
  e.batch = batch;
  e.len = len;
  g_entries.push_back(e);
  return benchmark::RegisterBenchmark(name.c_str(), std::forward<Fn>(fn))
      ->UseRealTime()
      ->MeasureProcessCPUTime()
      ->Repetitions(S.reps)
      ->Unit(benchmark::kMillisecond);
}

std::string lkey(int64_t L) { return L % 1024 == 0 ? std::to_string(L / 1024) + "k" : std::to_string(L); }

void register_all() {
  for (int64_t L : S.seed_lens) {
    const int64_t B = S.seed_batch;
    const std::string sfx = "/B" + std::to_string(B) + "/L" + std::to_string(L);
    reg("seed001/forward" + sfx, "seed001", "forward (inference)", B, L,
        [B, L](benchmark::State& st) { BM_net_forward(st, "mamba", B, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
    reg("seed001/train" + sfx, "seed001", "training step", B, L,
        [B, L](benchmark::State& st) { BM_net_train(st, "mamba", B, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
  }
  for (const std::string arch : {"mamba", "cnn", "transformer"}) {
    const int64_t B = S.models_batch, L = S.models_len;
    const std::string sfx = "/B" + std::to_string(B) + "/L" + std::to_string(L);
    reg("models/" + arch + "/forward" + sfx, "models", arch + " forward (inference)", B, L,
        [arch, B, L](benchmark::State& st) { BM_net_forward(st, arch, B, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
    reg("models/" + arch + "/train" + sfx, "models", arch + " training step", B, L,
        [arch, B, L](benchmark::State& st) { BM_net_train(st, arch, B, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
  }
  {
    const int64_t B = S.m130_batch, L = S.m130_len;
    const std::string sfx = "/B" + std::to_string(B) + "/L" + std::to_string(L);
    reg("130m/forward" + sfx, "130m", "backbone forward (inference)", B, L,
        [B, L](benchmark::State& st) { BM_m130_forward(st, B, L); })
        ->Iterations(S.m130_iters)
        ->Repetitions(S.m130_reps);
    reg("130m/train" + sfx, "130m", "backbone training step", B, L,
        [B, L](benchmark::State& st) { BM_m130_train(st, B, L); })
        ->Iterations(S.m130_iters)
        ->Repetitions(S.m130_reps);
  }
  for (int64_t L : S.scan_lens) {
    reg("scan/fwd/D" + std::to_string(S.scan_dim) + "/L" + lkey(L), "scan", "fwd", 1, L,
        [L](benchmark::State& st) { BM_scan_fwd(st, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
    reg("scan/fwdbwd/D" + std::to_string(S.scan_dim) + "/L" + lkey(L), "scan", "fwd+bwd", 1, L,
        [L](benchmark::State& st) { BM_scan_fwdbwd(st, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
    reg("scan/fwd_cold/D" + std::to_string(S.scan_dim) + "/L" + lkey(L), "scan", "fwd, caches flushed", 1, L,
        [L](benchmark::State& st) { BM_scan_fwd_cold(st, L); })
        ->MinTime(S.min_time)
        ->MinWarmUpTime(S.warmup_time);
  }
}

// ---- memory of one training step -------------------------------------------------------
struct MemRow {
  std::string model;
  int64_t batch = 0, len = 0;
  int64_t state = 0;        // params + grads + AdamW m, v
  int64_t before = 0;       // Tensor bytes held just before the step (state + small caches)
  int64_t peak = 0;         // Tensor high-water mark during the step
  int64_t activations = 0;  // Backbone::activation_bytes() after the step
};

int64_t state_bytes(const std::vector<Param*>& ps) {
  int64_t b = 0;
  for (Param* p : ps) b += 4 * static_cast<int64_t>(p->w.bytes());  // w, g, m, v
  return b;
}

MemRow measure_seed(int64_t B, int64_t L) {
  const int64_t base = MemStats::current();
  MemRow r{"seed-001 classifier", B, L};
  NetFixture f("mamba");
  const Batch b = seed_batch(B, L, 4242);
  r.state = state_bytes(f.params);
  r.before = MemStats::current() - base;
  MemStats::reset_peak();
  train_step(f, b);
  r.peak = MemStats::peak() - base;
  r.activations = f.mamba->backbone.activation_bytes();
  return r;
}

MemRow measure_m130(int64_t B, int64_t L) {
  const int64_t base = MemStats::current();
  MemRow r{"130m backbone", B, L};
  M130Fixture f(B, L);
  r.state = state_bytes(f.params);
  // dhidden is the benchmark's input (the head's output gradient), not part of the step.
  r.before = MemStats::current() - base - static_cast<int64_t>(f.dhidden.bytes());
  MemStats::reset_peak();
  m130_train_step(f, B, L);
  r.peak = MemStats::peak() - base - static_cast<int64_t>(f.dhidden.bytes());
  r.activations = f.bb->activation_bytes();
  return r;
}

// ---- report ---------------------------------------------------------------------------
std::string trim(std::string s) {
  const auto a = s.find_first_not_of(" \t\n");
  const auto b = s.find_last_not_of(" \t\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      if (p != std::string::npos) return trim(line.substr(p + 1));
    }
  return "unknown";
}

std::string git_commit() {
  if (const char* c = std::getenv("MAMBASEQ_COMMIT"); c && *c) return c;
  std::string r;
  if (FILE* p = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    char buf[128];
    while (std::fgets(buf, sizeof buf, p)) r += buf;
    if (pclose(p) != 0) r.clear();
  }
  r = trim(r);
  return r.empty() ? "unknown" : r;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string mib(int64_t b) { return fmt("%.1f", double(b) / (1024.0 * 1024.0)); }
std::string thousands(double v) {
  std::string s = fmt("%.0f", v), r;
  int k = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (k && k % 3 == 0 && *it != '-') r.insert(r.begin(), ',');
    r.insert(r.begin(), *it);
    ++k;
  }
  return r;
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a.empty() ? "unknown" : a + " " + b + " " + c;
}
std::string g_load_start;

// "0.03", or "⚠ 1.02" when other processes took more than 0.2 CPUs during the reported
// (fastest) repetition: that figure is slowed by contention.
std::string load_cell(const Entry& e) {
  const double l = e.other_load();
  return (l > 0.2 ? "⚠ " : "") + fmt("%.2f", l);
}

std::string report(const std::vector<MemRow>& mem) {
  std::ostringstream o;
  const char* blas = openblas_get_config();
  o << "# mambaseq CPU benchmark" << (S.quick ? " (--quick: smoke sizes, not for comparison)" : "") << "\n\n";
  o << "- machine: " << cpu_model() << ", " << std::thread::hardware_concurrency() << " hardware threads\n";
  o << "- OpenMP threads (omp_get_max_threads): " << omp_get_max_threads() << "\n";
  o << "- OpenBLAS: " << (blas ? trim(blas) : std::string("unknown")) << "\n";
  o << "- commit: " << git_commit() << "\n";
  o << "- date: " << now_utc() << "\n";
  o << "- compiler: " << __VERSION__
#ifdef NDEBUG
    << ", NDEBUG"
#else
    << ", assertions ON (not a Release build)"
#endif
    << "\n";
  o << "- timing: wall clock. Every benchmark runs " << S.reps
    << " repetition(s) after an untimed warm-up; tables give the fastest repetition (time/iter = its total / "
       "its iterations) and the median. `cores used` = this process's CPU time / wall time in the fastest "
       "repetition ("
    << omp_get_max_threads()
    << " = all threads busy); `other load` = CPUs used by other processes during that repetition's timed "
       "loop (from /proc/stat); ⚠ marks more than 0.2, i.e. a figure slowed by contention.\n";
  o << "- load average at start / end: " << g_load_start << " / " << loadavg() << "\n";
  if (S.wait_idle > 0)
    o << "- --wait-idle " << S.wait_idle << ": " << g_wait_calls << " benchmark calls waited "
      << fmt("%.0f", g_waited_s) << " s in all for an idle machine; " << g_wait_timeouts
      << " gave up and ran with other load\n";
  o << "\n";

  auto status = [](const Entry& e) { return e.error ? "error: " + e.error_msg : std::string("not run"); };
  auto has = [](std::initializer_list<const char*> groups) {
    for (const auto& e : g_entries)
      for (const char* g : groups)
        if (e.group == g) return true;
    return false;
  };
  if (has({"seed001", "130m"})) {
    o << "## Throughput\n\n";
    o << "| model | benchmark | batch | L | tokens/iter | ms/iter (best) | tokens/s (best) | ms/iter (median) | "
         "reps × iters | cores used | other load |\n";
    o << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& e : g_entries) {
      if (e.group == "scan" || e.group == "models") continue;
      const std::string model = e.group == "seed001" ? "seed-001 classifier" : "130m backbone";
      o << "| " << model << " | " << e.what << " | " << e.batch << " | " << e.len << " | " << e.batch * e.len;
      if (!e.ok()) {
        o << " | " << status(e) << " | | | | | |\n";
        continue;
      }
      o << " | " << fmt("%.1f", e.best() * 1e3) << " | " << thousands(e.tokens_per_s()) << " | "
        << fmt("%.1f", e.median() * 1e3) << " | " << e.sec_per_iter.size() << " × "
        << e.iterations / int64_t(e.sec_per_iter.size()) << " | " << fmt("%.2f", e.cores_used()) << " | "
        << load_cell(e) << " |\n";
    }
    o << "\nTraining step: seed-001 = zero_grad + forward(training, dropout 0.1) + loss + backward + "
         "clip_grad_norm(1.0) + AdamW; 130m = zero_grad + backbone forward(training) + backward of a random "
         "∂hidden + AdamW over all backbone parameters (no LM head, no clipping). Forward = inference "
         "(training=false).\n\n";
  }

  if (has({"models"})) {
    o << "## The three seed-001 models side by side\n\n";
    o << "Seed 001's Mamba classifier (" << thousands(double(count_parameters(seed001_classifier(2))))
      << " params), CNN (" << thousands(double(count_parameters(seed001_cnn(2)))) << ") and Transformer ("
      << thousands(double(count_parameters(seed001_transformer(2))))
      << ") on random A/C/G/T/N sequences (no padding), 2 classes. Training step = zero_grad + "
         "forward(training, dropout) + loss + backward + clip_grad_norm(1.0) + AdamW (what `train` runs per "
         "batch); inference = forward(training=false). Ratio = tokens/s ÷ Mamba's tokens/s in the same run.\n\n";
    o << "| model | pass | batch | L | ms/iter (best) | tokens/s (best) | × Mamba | ms/iter (median) | reps × iters | "
         "cores used | other load |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    {
      std::map<std::string, double> mamba_rate;
      for (const auto& e : g_entries)
        if (e.group == "models" && e.ok() && e.what.rfind("mamba ", 0) == 0)
          mamba_rate[e.what.substr(6)] = e.tokens_per_s();
      bool any = false;
      for (const auto& e : g_entries) {
        if (e.group != "models") continue;
        any = true;
        const auto sp = e.what.find(' ');
        const std::string arch = e.what.substr(0, sp), pass = e.what.substr(sp + 1);
        o << "| " << arch << " | " << pass << " | " << e.batch << " | " << e.len;
        if (!e.ok()) {
          o << " | " << status(e) << " | | | | | | |\n";
          continue;
        }
        const auto m = mamba_rate.find(pass);
        o << " | " << fmt("%.1f", e.best() * 1e3) << " | " << thousands(e.tokens_per_s()) << " | "
          << (m == mamba_rate.end() ? std::string("–") : fmt("%.2f", e.tokens_per_s() / m->second)) << " | "
          << fmt("%.1f", e.median() * 1e3) << " | " << e.sec_per_iter.size() << " × "
          << e.iterations / int64_t(e.sec_per_iter.size()) << " | " << fmt("%.2f", e.cores_used()) << " | "
          << load_cell(e) << " |\n";
      }
      if (!any) o << "| (not run) | | | | | | | | | | |\n";
    }
    o << "\n";
  }

  if (has({"scan"})) {
    o << "## Selective scan: time per token vs L\n\n";
    o << "selective_scan_forward / _backward alone: batch 1, d_inner " << S.scan_dim << ", d_state " << S.scan_dstate
      << ", δ softplus + bias, D skip and SiLU(z) gate on, strides as in the model. ns/token from the fastest "
         "repetition; ratio = ns/token ÷ ns/token at L = "
      << S.scan_lens.front() << "; PASS when within ±25%.\n\n";
    o << "| pass | L | ns/token (best) | ratio | check | ns/token (median) | reps × iters | cores used | other load "
         "|\n|---|---:|---:|---:|---|---:|---:|---:|---:|\n";
    bool all_pass = true, any_contended = false;
    for (const std::string what : {"fwd", "fwd+bwd", "fwd, caches flushed"}) {
      double ref = NAN;
      for (const auto& e : g_entries) {
        if (e.group != "scan" || e.what != what) continue;
        if (!e.ok()) {
          o << "| " << what << " | " << e.len << " | | | " << status(e) << " | | | | |\n";
          continue;
        }
        const double ns = e.ns_per_token();
        if (std::isnan(ref)) ref = ns;
        const double ratio = ns / ref;
        const bool pass = std::fabs(ratio - 1.0) <= 0.25;
        if (what != "fwd, caches flushed") {
          all_pass = all_pass && pass;
          any_contended = any_contended || e.other_load() > 0.2;
        }
        o << "| " << what << " | " << e.len << " | " << fmt("%.1f", ns) << " | " << fmt("%.3f", ratio) << " | "
          << (pass ? "PASS" : "FAIL") << " | " << fmt("%.1f", 1e9 * e.median() / double(e.len)) << " | "
          << e.sec_per_iter.size() << " × " << e.iterations / int64_t(e.sec_per_iter.size()) << " | "
          << fmt("%.2f", e.cores_used()) << " | " << load_cell(e) << " |\n";
      }
    }
    o << "\nLinearity of fwd and fwd+bwd (every L within 25% of L = " << S.scan_lens.front() << "): **"
      << (all_pass ? "PASS" : "FAIL") << "**"
      << (any_contended ? " (⚠ some rows were measured while other processes used the CPUs; re-measure on an "
                          "idle machine before trusting the verdict)"
                        : "")
      << ". The `caches flushed` rows are a diagnostic: the same forward with a 96 MiB buffer rewritten "
         "(untimed) before each iteration, so no L starts with its inputs in the last-level cache.\n\n";
  }

  if (S.memory) {
    o << "## Peak memory of one training step\n\n";
    o << "Bytes held by Tensors (MemStats), measured on a fresh model + AdamW: `before` is what is held "
         "when the step starts, `peak` the high-water mark during the step (MemStats::reset_peak() just "
         "before it). Activations = Backbone::activation_bytes() (residual stream + every layer's saved "
         "activations). Scratch std::vectors inside the scan kernel are not Tensors and are not counted.\n\n";
    o << "| model | batch | L | peak (MiB) | held before (MiB) | params+grads+AdamW (MiB) | activations (MiB) | "
         "activations / peak | other (MiB) |\n";
    o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    if (mem.empty()) o << "| (skipped: --no-memory) | | | | | | | | |\n";
    for (const auto& r : mem) {
      const int64_t other = r.peak - r.state - r.activations;
      o << "| " << r.model << " | " << r.batch << " | " << r.len << " | " << mib(r.peak) << " | " << mib(r.before)
        << " | " << mib(r.state) << " | " << mib(r.activations) << " | "
        << fmt("%.1f%%", 100.0 * double(r.activations) / double(r.peak)) << " | " << mib(other) << " |\n";
    }
    o << "\n`other` = peak − state − activations: the shared backward scratch (one layer's gradients), the "
         "gradient of the residual stream, head buffers and the cached A = −exp(A_log) per layer.\n";
  }
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  o << "\nProcess peak RSS over the whole run: " << mib(int64_t(ru.ru_maxrss) * 1024) << " MiB.\n";
  return o.str();
}

void usage_error(const char* msg) {
  std::fprintf(stderr, "bench_cpu: %s\nusage: bench_cpu [--quick] [--no-memory] [--out FILE] [--scan-dim N] [--wait-idle SECONDS] [--benchmark_*]\n",
               msg);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first; everything else goes to Google Benchmark.
  std::vector<char*> rest{argv[0]};
  int64_t scan_dim = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") S.quick = true;
    else if (a == "--no-memory") S.memory = false;
    else if (a == "--out" || a == "--scan-dim" || a == "--wait-idle") {
      if (i + 1 >= argc) usage_error((a + " needs a value").c_str());
      if (a == "--out") S.out = argv[++i];
      else if (a == "--scan-dim") scan_dim = std::atoll(argv[++i]);
      else S.wait_idle = std::atof(argv[++i]);
    } else if (a.rfind("--out=", 0) == 0) S.out = a.substr(6);
    else if (a.rfind("--wait-idle=", 0) == 0) S.wait_idle = std::atof(a.c_str() + 12);
    else if (a.rfind("--scan-dim=", 0) == 0) scan_dim = std::atoll(a.c_str() + 11);
    else rest.push_back(argv[i]);
  }
  if (S.quick) {
    S.seed_batch = 2;
    S.models_batch = 2;
    S.models_len = 64;
    S.m130_len = 128;
    S.m130_reps = 1;
    S.scan_dim = 128;
    S.min_time = 0.05;
    S.reps = 1;
    S.warmup_time = 0.0;
  }
  if (scan_dim > 0) S.scan_dim = scan_dim;
  if (S.scan_dim % 16 != 0) usage_error("--scan-dim must be a positive multiple of 16");

  int bargc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&bargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return 2;

  g_load_start = loadavg();
  register_all();
  CaptureReporter rep(isatty(fileno(stdout)) ? benchmark::ConsoleReporter::OO_Defaults
                                             : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();

  // Free the benchmark fixtures so the memory measurement starts from (almost) nothing.
  g_nets.clear();
  g_m130.reset();
  g_scan.reset();
  std::vector<MemRow> mem;
  if (S.memory) {
    std::fprintf(stderr, "measuring peak memory of one training step...\n");
    mem.push_back(measure_seed(S.seed_batch, S.seed_lens.back()));
    mem.push_back(measure_m130(S.m130_batch, S.m130_len));
  }

  // Benchmarks a --benchmark_filter left out are not reported (nor their sections).
  g_entries.erase(std::remove_if(g_entries.begin(), g_entries.end(),
                                 [](const Entry& e) { return !e.ok() && !e.error; }),
                  g_entries.end());
  const std::string md = report(mem);
  std::printf("\n%s", md.c_str());
  std::fflush(stdout);
  if (!S.out.empty()) {
    std::ofstream f(S.out);
    if (!f) {
      std::fprintf(stderr, "bench_cpu: cannot write %s\n", S.out.c_str());
      return 1;
    }
    f << md;
  }
  return 0;
}
