// Inference benchmarks (Google Benchmark), then a Markdown report.
//
//   bench_generate [--quick] [--out FILE] [--benchmark_* flags]
//
//   130m/step/B{1,16}/T{0,1,all}  one recurrent step of the 130m configuration (random
//                         weights) for B sequences + greedy choice of the next token, with the
//                         engine's automatic thread choice (T0, what the CLI does), on 1 thread
//                         and on all: generation tokens/s = B / step time. Heap
//                         allocations per token are counted (operator new and the C
//                         allocation functions): must be 0.
//   130m/prefill/L2048/T{1,all}  prefill of one 2048-token prompt (parallel scan, logits of
//                         the last token): prompt tokens/s.
// Threads: OpenMP and OpenBLAS both set to T. On a machine that other processes keep busy,
// more threads can be much slower (every barrier waits for a descheduled thread): compare.
// Memory (not timed): a generating sequence's memory at 1k and 100k generated tokens
// (a small model, streaming generate(): state bytes, Tensor bytes, heap bytes and RSS),
// and the 130m model's at 256 and 1024 tokens.
// --quick (CI smoke): a small model and short runs; its figures are not the committed ones.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mambaseq/config.h"
#include "mambaseq/generate.h"
#include "mambaseq/inference.h"
#include "mambaseq/model.h"

extern "C" char* openblas_get_config(void);
extern "C" int openblas_get_num_threads(void);
extern "C" void openblas_set_num_threads(int);

// ---- allocation counting (malloc & co.; see tests/alloc_count.h) ---------------------
#include "../tests/alloc_count.h"

using namespace mambaseq;

namespace {

struct Settings {
  bool quick = false;
  std::string out;
  std::string variant = "130m";
  int64_t prefill_len = 2048;
  int64_t mem_long = 100000;
  double min_time = 5.0;
} S;

ModelConfig lm(const std::string& variant) {
  ModelConfig c;
  c.head = HeadKind::LM;
  if (variant == "small") {  // the memory run and --quick
    c.mamba.d_model = 128;
    c.mamba.n_layer = 4;
    c.mamba.vocab_size = 512;
  } else {
    c.mamba = variant_config(variant);
  }
  return c;
}

std::unique_ptr<Model> g_model;
std::unique_ptr<InferenceEngine> g_eng;
Model& model() {
  if (!g_model) {
    std::fprintf(stderr, "bench_generate: building the %s model (random weights)...\n", S.variant.c_str());
    g_model = std::make_unique<Model>(lm(S.variant), 1);
    for (Param* p : g_model->params()) p->g = Tensor();  // inference reads no gradients
    g_eng = std::make_unique<InferenceEngine>(*g_model);
  }
  return *g_model;
}

struct StepResult {
  double tokens_per_s = 0, allocs_per_token = 0;
  int chosen = 0;  // automatic mode: the thread count it kept
};
std::map<std::pair<int64_t, int64_t>, StepResult> g_step;  // (batch, threads)
std::map<int64_t, double> g_prefill_tps;                    // threads → tokens/s

// Runs a benchmark body on `t` OpenMP and OpenBLAS threads.
class Threads {
 public:
  explicit Threads(int t) : omp_(omp_get_max_threads()), blas_(openblas_get_num_threads()) {
    omp_set_num_threads(t);
    openblas_set_num_threads(t);
  }
  ~Threads() {
    omp_set_num_threads(omp_);
    openblas_set_num_threads(blas_);
  }

 private:
  int omp_, blas_;
};

void BM_Step(benchmark::State& state) {
  const int64_t B = state.range(0), T = state.range(1);  // T = 0: the engine's automatic choice
  model();
  std::optional<Threads> threads;
  if (T > 0) threads.emplace(static_cast<int>(T));
  InferenceEngine& eng = *g_eng;
  eng.set_step_threads(static_cast<int>(T));
  InferenceState st = eng.new_state(B);
  Tensor logits;
  std::vector<std::vector<int32_t>> prompts(B);
  for (int64_t b = 0; b < B; ++b) prompts[b] = {1, static_cast<int32_t>(2 + b), 3, 4, 5};
  eng.prefill(st, prompts, logits);
  std::vector<int32_t> next(B, 7);
  const int64_t V = eng.vocab_rows(), lim = g_model->cfg.mamba.vocab_size;
  for (int w = 0; w < 8; ++w) eng.step(st, next.data());  // sizes the buffers, times the thread count
  const int64_t allocs0 = g_mallocs.load(), news_bytes0 = MemStats::current();
  int64_t steps = 0;
  for (auto _ : state) {
    Tensor& z = eng.step(st, next.data());
    for (int64_t b = 0; b < B; ++b) {
      const float* r = z.data() + b * V;
      next[b] = static_cast<int32_t>(std::max_element(r, r + lim) - r);
    }
    ++steps;
  }
  const int64_t allocs = g_mallocs.load() - allocs0;
  state.SetItemsProcessed(steps * B);
  state.counters["tokens/s"] = benchmark::Counter(double(steps * B), benchmark::Counter::kIsRate);
  state.counters["allocs/token"] = double(allocs) / double(std::max<int64_t>(1, steps * B));
  state.counters["tensor_bytes_delta"] = double(MemStats::current() - news_bytes0);
  state.counters["state_MB"] = double(st.bytes()) / 1e6;
  StepResult& r = g_step[{B, T}];
  r.chosen = eng.step_threads_in_use();
  eng.set_step_threads(0);
  r.allocs_per_token = double(allocs) / double(std::max<int64_t>(1, steps * B));
}

void BM_Prefill(benchmark::State& state) {
  const int64_t L = state.range(0), T = state.range(1);
  model();
  Threads threads(static_cast<int>(T));
  InferenceEngine& eng = *g_eng;
  std::vector<std::vector<int32_t>> prompt(1, std::vector<int32_t>(L));
  Rng rng(3);
  for (auto& t : prompt[0]) t = static_cast<int32_t>(rng.below(g_model->cfg.mamba.vocab_size));
  Tensor logits;
  InferenceState st = eng.new_state(1);
  eng.prefill(st, {std::vector<int32_t>(prompt[0].begin(), prompt[0].begin() + 16)}, logits);  // warm-up
  for (auto _ : state) {
    st.reset();
    eng.prefill(st, prompt, logits);
    benchmark::DoNotOptimize(logits.data());
  }
  state.SetItemsProcessed(state.iterations() * L);
  state.counters["tokens/s"] = benchmark::Counter(double(state.iterations() * L), benchmark::Counter::kIsRate);
}

// Fastest repetition's rate of each benchmark, from the reporter.
class Capture : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      auto it = r.counters.find("tokens/s");
      if (it == r.counters.end()) continue;
      const std::string n = r.benchmark_name();
      const double tps = it->second.value;
      const int64_t T = std::stoll(n.substr(n.find("/T") + 2));
      if (n.find("step") != std::string::npos) {
        const int64_t B = std::stoll(n.substr(n.find("/B") + 2));
        g_step[{B, T}].tokens_per_s = std::max(g_step[{B, T}].tokens_per_s, tps);
      } else {
        g_prefill_tps[T] = std::max(g_prefill_tps[T], tps);
      }
    }
  }
};

int64_t rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

struct MemRow {
  std::string model;
  int64_t tokens = 0, state = 0, tensors = 0, heap = 0, rss = 0, allocs_per_token_x1000 = 0;
  double seconds = 0;
};

// One generating sequence, streamed (tokens go to a callback and are not kept): memory
// after `tokens` generated tokens.
MemRow generate_memory(Model& m, const std::string& name, int64_t tokens) {
  InferenceEngine eng(m);
  GenerateOptions o;
  o.max_new_tokens = tokens;
  o.temperature = 1.0;
  o.top_k = 50;
  o.seed = 5;
  int64_t seen = 0;
  MemRow r;
  r.model = name;
  r.tokens = tokens;
  int64_t allocs_at_1k = -1;
  auto t0 = std::chrono::steady_clock::now();
  generate(eng, {{1, 2, 3}}, o, [&](int64_t, int32_t) {
    ++seen;
    if (seen == std::min<int64_t>(1000, tokens / 2)) allocs_at_1k = g_mallocs.load();
    if (seen == tokens) {  // measured while the sequence is still live
      r.allocs_per_token_x1000 = allocs_at_1k < 0 ? -1
                                                  : (g_mallocs.load() - allocs_at_1k) * 1000 /
                                                        std::max<int64_t>(1, seen - std::min<int64_t>(1000, tokens / 2));
      r.tensors = MemStats::current();
      const struct mallinfo2 mi = mallinfo2();
      r.heap = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
      r.rss = rss_bytes();
    }
  }, /*keep_tokens=*/false);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.state = eng.new_state(1).bytes();
  return r;
}

std::string mb(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", double(b) / (1024.0 * 1024.0));
  return buf;
}

double loadavg1() {
  double l = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") S.quick = true;
    else if (a == "--out" && i + 1 < argc) S.out = argv[++i];
    else rest.push_back(argv[i]);
  }
  if (S.quick) {
    S.variant = "small";
    S.prefill_len = 256;
    S.mem_long = 5000;
    S.min_time = 0.2;
  }
  int bargc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&bargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(bargc, rest.data())) return 2;
  const double load0 = loadavg1();

  // Memory of the small model first, before the benchmark model is built.
  std::fprintf(stderr, "bench_generate: memory of a generating sequence...\n");
  std::vector<MemRow> mem;
  {
    Threads one(1);
    Model small(lm("small"), 2);
    for (Param* p : small.params()) p->g = Tensor();
    for (int64_t n : {int64_t(1000), S.mem_long}) mem.push_back(generate_memory(small, "small (d_model 128, 4 layers)", n));
  }

  const std::string v = S.variant;
  const int all = omp_get_max_threads();
  std::vector<int> tcounts{1};
  if (all > 1) tcounts.push_back(all);
  for (int64_t B : {1, 16})
    for (int t : all > 1 ? std::vector<int>{0, 1, all} : std::vector<int>{1})
      benchmark::RegisterBenchmark((v + "/step/B" + std::to_string(B) + "/T" + std::to_string(t)).c_str(), BM_Step)
          ->Args({B, t})->MinTime(S.min_time)->Repetitions(2)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (int t : tcounts)
    benchmark::RegisterBenchmark((v + "/prefill/L" + std::to_string(S.prefill_len) + "/T" + std::to_string(t)).c_str(),
                                 BM_Prefill)
        ->Args({S.prefill_len, t})->Iterations(S.quick ? 2 : 1)->Repetitions(S.quick ? 1 : 2)
        ->Unit(benchmark::kSecond)->UseRealTime();
  Capture rep(isatty(fileno(stdout)) ? benchmark::ConsoleReporter::OO_Defaults : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();
  const double load1 = loadavg1();

  if (!S.quick) {
    Threads one(1);
    for (int64_t n : {int64_t(256), int64_t(1024)}) mem.push_back(generate_memory(model(), v, n));
  }

  std::ostringstream md;
  const ModelConfig cfg = lm(v);
  md << "# Inference benchmarks (CPU)\n\n";
  md << "`bench/bench_generate" << (S.quick ? " --quick" : "") << "` (bench/bench_generate.cpp). Model: " << v
     << " configuration (d_model " << cfg.mamba.d_model << ", " << cfg.mamba.n_layer << " layers, d_inner "
     << cfg.mamba.d_inner() << ", d_state " << cfg.mamba.d_state << ", vocabulary " << cfg.mamba.vocab_padded()
     << "), random weights, fp32. Machine: " << sysconf(_SC_NPROCESSORS_ONLN) << " CPUs, " << omp_get_max_threads()
     << " OpenMP threads, OpenBLAS " << openblas_get_config() << ". Load average (1 min) " << load0 << " before, "
     << load1 << " after: other processes shared these CPUs, so the rates are lower bounds.\n\n";
  md << "## Throughput\n\n| benchmark | threads | tokens/s | heap allocations per token |\n|---|---:|---:|---:|\n";
  for (auto& [key, r] : g_step) {
    char buf[200];
    const std::string threads = key.second > 0 ? std::to_string(key.second)
                                               : "auto (kept " + std::to_string(r.chosen) + ")";
    std::snprintf(buf, sizeof buf, "| generation, batch %ld (step + greedy pick) | %s | %.1f | %.3g |\n",
                  static_cast<long>(key.first), threads.c_str(), r.tokens_per_s, r.allocs_per_token);
    md << buf;
  }
  for (auto& [t, tps] : g_prefill_tps) {
    char buf[200];
    std::snprintf(buf, sizeof buf, "| prefill, one prompt of L = %ld | %ld | %.1f | — |\n", static_cast<long>(S.prefill_len),
                  static_cast<long>(t), tps);
    md << buf;
  }
  md << "\n";
  md << "Heap allocations are counted over the timed steps: operator new and malloc, calloc,\n"
        "realloc, memalign, aligned_alloc and posix_memalign of every library in the process\n"
        "(libgomp, OpenBLAS) — the step path allocates nothing.\n\n";
  md << "## Memory of a generating sequence\n\nOne sequence generating with `generate()` (top-k 50 "
        "sampling, tokens streamed to a callback and not kept), measured when the last token is "
        "produced (1 thread).\n\n| model | generated tokens | recurrent state | Tensor memory | heap in use | RSS | heap allocations per token after the first 1k | time |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const MemRow& r : mem) {
    char buf[400];
    std::snprintf(buf, sizeof buf, "| %s | %ld | %s MiB | %s MiB | %s MiB | %s MiB | %s | %.1f s |\n", r.model.c_str(),
                  static_cast<long>(r.tokens), mb(r.state).c_str(), mb(r.tensors).c_str(), mb(r.heap).c_str(),
                  mb(r.rss).c_str(),
                  r.allocs_per_token_x1000 < 0 ? "—" : std::to_string(r.allocs_per_token_x1000 / 1000.0).c_str(),
                  r.seconds);
    md << buf;
  }
  md << "\nThe recurrent state is n_layer × d_inner × (d_conv − 1 + d_state) floats per sequence, whatever the\n"
        "number of tokens; Tensor memory is the weights, the engine's fixed buffers and that state.\n";
  std::printf("\n%s", md.str().c_str());
  if (!S.out.empty()) {
    std::ofstream f(S.out);
    f << md.str();
    if (!f) {
      std::fprintf(stderr, "bench_generate: cannot write %s\n", S.out.c_str());
      return 1;
    }
  }
  return 0;
}
