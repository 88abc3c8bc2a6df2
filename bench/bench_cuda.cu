// Benchmark of the CUDA scan and conv1d kernels at the issue's shapes, bf16 inputs,
// f32 A/D, Δ-softplus and z, in the model's layout (x|z in one in_proj row, B|C inside
// the x_proj row). Prints a markdown table: our times (median of device-event timings),
// the reference's times from --ref (measured by the reference's own harness in the same
// run), speed-ups, the floor (bytes read + written once over the measured copy
// bandwidth) and the fraction of copy bandwidth achieved.
//
//   bench_cuda [--ref ref.csv] [--out table.md] [--profile I]
// ref.csv lines: scan,b,d,L,N,fwd_ms,fwdbwd_ms   conv,b,d,L,K,fwd_ms,fwdbwd_ms
// SWEEP_FWD / SWEEP_BWD / SWEEP_CONV (see below) time other launch shapes beside the plan's.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "mambaseq/cuda_kernels.h"

namespace cu = mambaseq::cuda;

#define CK(x)                                                                               \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

namespace {

__device__ inline uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return static_cast<uint32_t>(x);
}
// Uniform in [lo, hi): random data, never zeros (zeros can run faster than real data).
__global__ void fill_bf16(__nv_bfloat16* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16(lo + (hi - lo) * (hash32(seed * 0x9E3779B97F4A7C15ULL + i) * 2.3283064e-10f));
}
__global__ void fill_f32(float* p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = lo + (hi - lo) * (hash32(seed * 0x9E3779B97F4A7C15ULL + i) * 2.3283064e-10f);
}

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) { CK(cudaMalloc(&p, bytes)); }
  ~Dev() { cudaFree(p); }
  template <typename T = void>
  T* as() const { return static_cast<T*>(p); }
};
void rnd(const Dev& d, size_t n, bool bf16, uint64_t seed, float lo, float hi) {
  if (bf16)
    fill_bf16<<<1024, 256>>>(d.as<__nv_bfloat16>(), n, seed, lo, hi);
  else
    fill_f32<<<1024, 256>>>(d.as<float>(), n, seed, lo, hi);
  CK(cudaGetLastError());
}

// Per-call time (ms) of fn: median of `reps` timings, each of `iters` calls between two
// device events, after 3 warm-up calls. iters = 1 (per call) includes the host's launch
// latency, the GPU idling until the call's first launch arrives; iters = 20 (queued, see
// time_queued_ms) is the GPU time alone. The reference is timed both ways too.
double time_ms(const std::function<void()>& fn, int reps = 25, int iters = 1) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  CK(cudaDeviceSynchronize());
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / iters);
  }
  CK(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
double time_queued_ms(const std::function<void()>& fn) { return time_ms(fn, 5, 20); }

struct Shape {
  int64_t b, d, L, N;
};
const Shape kShapes[] = {{8, 1536, 2048, 16}, {2, 1536, 16384, 16}, {1, 2048, 65536, 16}, {256, 512, 500, 16}};

// Scan buffers in the model's layout.
struct ScanBufs {
  Shape s;
  int64_t rows, E, dt_rank;
  Dev xz, delta, xproj, A, D, bias, out, ckpt, dout, dxz, ddelta, dA, dBC, dD, dbias, ws;
  cu::ScanArgs a;
  cu::ScanGrads g;
  static constexpr int64_t kMaxSeg = 128;  // time segments the workspace holds (sweeps may force many)
  // Checkpoint floats at the shortest interval the API takes (32 tokens), so any sweep fits.
  static int64_t ckpt_room(const Shape& sh) {
    cu::ScanArgs q;
    q.batch = sh.b, q.len = sh.L, q.dim = sh.d, q.dstate = sh.N, q.ckpt_chunk = 32;
    return cu::scan_checkpoint_floats(q);
  }
  explicit ScanBufs(const Shape& s_)
      : s(s_),
        rows(s_.b * s_.L),
        E((s_.d / 2 + 15) / 16 + 2 * s_.N),
        dt_rank((s_.d / 2 + 15) / 16),
        xz(rows * 2 * s_.d * 2),
        delta(rows * s_.d * 2),
        xproj(rows * E * 2),
        A(s_.d * s_.N * 4),
        D(s_.d * 4),
        bias(s_.d * 4),
        out(rows * s_.d * 2),
        ckpt(ckpt_room(s_) * 4),
        dout(rows * s_.d * 2),
        dxz(rows * 2 * s_.d * 2),
        ddelta(rows * s_.d * 2),
        dA(s_.d * s_.N * 4),
        dBC(rows * 2 * s_.N * 4),
        dD(s_.d * 4),
        dbias(s_.d * 4),
        ws(s_.b * s_.d * kMaxSeg * 17 * 4) {
    rnd(xz, rows * 2 * s.d, true, 1, -2.f, 2.f);
    rnd(delta, rows * s.d, true, 2, -1.f, 1.f);
    rnd(xproj, rows * E, true, 3, -1.f, 1.f);
    rnd(A, s.d * s.N, false, 4, -8.f, -0.5f);
    rnd(D, s.d, false, 5, 0.5f, 1.5f);
    rnd(bias, s.d, false, 6, -6.f, -2.f);  // softplus⁻¹ of dt ∈ [2.5e-3, 0.13]
    rnd(dout, rows * s.d, true, 7, -1.f, 1.f);
    a.dtype = cu::DType::bf16, a.batch = s.b, a.len = s.L, a.dim = s.d, a.dstate = s.N;
    a.u = xz.as(), a.u_ld = 2 * s.d;
    a.z = xz.as<char>() + s.d * 2, a.z_ld = 2 * s.d;
    a.delta = delta.as(), a.delta_ld = s.d;
    a.B = xproj.as<char>() + dt_rank * 2, a.C = xproj.as<char>() + (dt_rank + s.N) * 2, a.bc_ld = E;
    a.A = A.as<float>(), a.D = D.as<float>(), a.delta_bias = bias.as<float>(), a.delta_softplus = true;
    g.du = dxz.as(), g.du_ld = 2 * s.d, g.dz = dxz.as<char>() + s.d * 2, g.dz_ld = 2 * s.d;
    g.ddelta = ddelta.as(), g.ddelta_ld = s.d;
    g.dA = dA.as<float>(), g.dB = dBC.as<float>(), g.dC = dBC.as<float>() + s.N, g.dbc_ld = 2 * s.N;
    g.dD = dD.as<float>(), g.ddelta_bias = dbias.as<float>();
    CK(cudaDeviceSynchronize());
  }
  // The workspace the plan under the current settings needs, checked against what is held.
  float* workspace() const {
    const int64_t need = cu::scan_workspace_floats(a), have = s.b * s.d * kMaxSeg * 17;
    if (need > have)
      throw std::runtime_error("needs " + std::to_string(need) + " floats of scan workspace, the bench holds " +
                               std::to_string(have) + " (at most " + std::to_string(kMaxSeg) + " time segments)");
    return ws.as<float>();
  }
  // Checkpoint interval: the API's default, or MAMBASEQ_BENCH_CKPT (32 or 64) for sweep items
  // (read by both passes of an item, so they always agree).
  void set_ckpt_chunk() {
    const char* v = std::getenv("MAMBASEQ_BENCH_CKPT");
    a.ckpt_chunk = v && *v ? std::atoi(v) : cu::ScanArgs{}.ckpt_chunk;
  }
  int64_t ck_written = 0;  // interval of the checkpoints in ckpt (0: none yet)
  void fwd(bool with_ckpt) {
    set_ckpt_chunk();
    if (with_ckpt && cu::scan_checkpoint_floats(a) > ckpt_room(s))
      throw std::runtime_error("ckpt_chunk=" + std::to_string(a.ckpt_chunk) + " needs more checkpoint floats than the bench holds");
    cu::selective_scan_fwd(a, out.as(), s.d, nullptr, with_ckpt ? ckpt.as<float>() : nullptr, nullptr, workspace());
    if (with_ckpt) ck_written = a.ckpt_chunk;
  }
  void zero_grads() {
    CK(cudaMemsetAsync(dA.p, 0, s.d * s.N * 4));
    CK(cudaMemsetAsync(dBC.p, 0, rows * 2 * s.N * 4));
    CK(cudaMemsetAsync(dD.p, 0, s.d * 4));
    CK(cudaMemsetAsync(dbias.p, 0, s.d * 4));
  }
  void bwd() {
    set_ckpt_chunk();
    if (a.ckpt_chunk != ck_written) fwd(true);  // a sweep item's first (warm-up) call
    cu::selective_scan_bwd(a, dout.as(), s.d, ckpt.as<float>(), g, nullptr, workspace());
  }
  // Bytes each pass must move at least once (bf16 activations, f32 dB/dC).
  double fwd_bytes() const { return rows * (4.0 * s.d * 2 + 2.0 * s.N * 2); }
  double bwd_bytes() const { return rows * (7.0 * s.d * 2 + 2.0 * s.N * 2 + 2.0 * s.N * 4); }
};

struct ConvBufs {
  Shape s;
  int64_t rows;
  Dev xz, w, bias, out, dout, dx, dw, dbias;
  cu::Conv1dArgs a;
  explicit ConvBufs(const Shape& s_)
      : s(s_),
        rows(s_.b * s_.L),
        xz(rows * 2 * s_.d * 2),
        w(s_.d * 4 * 4),
        bias(s_.d * 4),
        out(rows * s_.d * 2),
        dout(rows * s_.d * 2),
        dx(rows * 2 * s_.d * 2),
        dw(s_.d * 4 * 4),
        dbias(s_.d * 4) {
    rnd(xz, rows * 2 * s.d, true, 11, -2.f, 2.f);
    rnd(w, s.d * 4, false, 12, -0.5f, 0.5f);
    rnd(bias, s.d, false, 13, -0.5f, 0.5f);
    rnd(dout, rows * s.d, true, 14, -1.f, 1.f);
    a.dtype = cu::DType::bf16, a.batch = s.b, a.len = s.L, a.channels = s.d, a.width = 4;
    a.x = xz.as(), a.x_ld = 2 * s.d, a.w = w.as<float>(), a.bias = bias.as<float>(), a.silu = true;
    CK(cudaDeviceSynchronize());
  }
  void fwd() { cu::conv1d_fwd(a, out.as(), s.d, nullptr); }
  void bwd() {
    CK(cudaMemsetAsync(dw.p, 0, s.d * 4 * 4));
    CK(cudaMemsetAsync(dbias.p, 0, s.d * 4));
    cu::conv1d_bwd(a, dout.as(), s.d, dx.as(), 2 * s.d, dw.as<float>(), dbias.as<float>(), nullptr);
  }
  double fwd_bytes() const { return rows * 2.0 * s.d * 2; }
  double bwd_bytes() const { return rows * 3.0 * s.d * 2; }
};

double copy_bandwidth() {
  const size_t n = size_t(1) << 30;
  Dev a(n), b(n);
  CK(cudaMemset(a.p, 1, n));
  const double ms = time_ms([&] { CK(cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice)); }, 20);
  return 2.0 * n / (ms * 1e-3);  // bytes read + written per second
}

std::string key(const char* kind, const Shape& s) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%s,%lld,%lld,%lld", kind, (long long)s.b, (long long)s.d, (long long)s.L);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::string ref_path, out_path;
  int profile = -1;  // --profile I: run shape I's kernels once each (for ncu), no timing
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--profile") && i + 1 < argc) profile = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--ref") && i + 1 < argc) ref_path = argv[++i];
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
  }
  if (!cu::device_available()) {
    std::printf("bench_cuda: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  if (profile >= 0) {
    const Shape& s = kShapes[profile];
    {
      ScanBufs sb(s);
      sb.fwd(false);
      sb.fwd(true);
      sb.zero_grads();
      sb.bwd();
    }
    {
      ConvBufs cb(s);
      cb.fwd();
      cb.bwd();
    }
    CK(cudaDeviceSynchronize());
    return 0;
  }
  const double bw = copy_bandwidth();
  std::printf("device: %s, %d SMs; device copy bandwidth %.2f TB/s (read + write)\n", prop.name,
              prop.multiProcessorCount, bw / 1e12);

  // Reference times: key -> (fwd, fwd+bwd), per call and (qref) queued.
  std::map<std::string, std::pair<double, double>> ref, qref;
  if (!ref_path.empty()) {
    if (FILE* f = std::fopen(ref_path.c_str(), "r")) {
      char line[512];
      while (std::fgets(line, sizeof line, f)) {
        char kind[16];
        long long b, d, L, n;
        double f1, f2, q1, q2;
        const int got = std::sscanf(line, "%15[^,],%lld,%lld,%lld,%lld,%lf,%lf,%lf,%lf", kind, &b, &d, &L, &n, &f1,
                                    &f2, &q1, &q2);
        if (got >= 7) ref[key(kind, Shape{b, d, L, n})] = {f1, f2};
        if (got == 9) qref[key(kind, Shape{b, d, L, n})] = {q1, q2};
      }
      std::fclose(f);
    } else {
      std::printf("no reference file %s\n", ref_path.c_str());
    }
  }

  std::string table;
  auto add = [&](const std::string& s) {
    table += s;
    std::fputs(s.c_str(), stdout);
  };
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "\n%s, copy bandwidth %.2f TB/s. Times: median of 25 (ms). ref = reference kernels "
                "built from their public source, same machine, same run.\n\n",
                prop.name, bw / 1e12);
  add(buf);
  add("| kernel | (b, d_inner, L, N or K) | ours (ms) | ref (ms) | speed-up | floor (ms) | "
      "ours: floor/time (fraction of copy bw) |\n|---|---|---|---|---|---|---|\n");
  auto row = [&](const char* kernel, const Shape& s, long long last, double ours, double refv, double bytes) {
    const double floor_ms = bytes / bw * 1e3;
    char r[64] = "n/a", sp[64] = "n/a";
    if (refv > 0) std::snprintf(r, sizeof r, "%.3f", refv), std::snprintf(sp, sizeof sp, "%.2f×", refv / ours);
    std::snprintf(buf, sizeof buf, "| %s | (%lld, %lld, %lld, %lld) | %.3f | %s | %s | %.3f | %.2f |\n", kernel,
                  (long long)s.b, (long long)s.d, (long long)s.L, last, ours, r, sp, floor_ms, floor_ms / ours);
    add(buf);
  };

  std::string detail, queued;
  auto qrow = [&](const char* kernel, const Shape& s, long long last, double ours, double refv) {
    char r[64] = "n/a", sp[64] = "n/a";
    if (refv > 0) std::snprintf(r, sizeof r, "%.3f", refv), std::snprintf(sp, sizeof sp, "%.2f×", refv / ours);
    std::snprintf(buf, sizeof buf, "| %s | (%lld, %lld, %lld, %lld) | %.3f | %s | %s |\n", kernel, (long long)s.b,
                  (long long)s.d, (long long)s.L, last, ours, r, sp);
    queued += buf;
  };
  auto qget = [&](const char* kind, const Shape& s) {
    return qref.count(key(kind, s)) ? qref[key(kind, s)] : std::make_pair(0.0, 0.0);
  };
  // SWEEP_FWD / SWEEP_BWD / SWEEP_FB / SWEEP_CONV / SWEEP_CONV_FWD / SWEEP_CONV_BWD =
  // "VAR=VAL[,VAR=VAL] ...": the scan forward (without checkpoints), the scan backward, the
  // scan forward (with checkpoints) + backward, the conv forward + backward, forward or
  // backward timed under each item's settings in turn.
  auto sweep_items = [&](const Shape& s, const char* env, const char* what, const std::function<void()>& fn) {
    const char* sv = std::getenv(env);
    if (!sv) return;
    std::string all(sv), item;
    for (size_t i = 0; i <= all.size(); ++i) {
      if (i < all.size() && all[i] != ' ') {
        item += all[i];
        continue;
      }
      std::vector<std::string> vars;
      for (size_t pos = 0; pos < item.size();) {
        size_t e = item.find(',', pos);
        if (e == std::string::npos) e = item.size();
        std::string kv = item.substr(pos, e - pos);
        // a value may itself hold commas: VAR=a,b is read up to the next VAR=
        while (e < item.size()) {
          const size_t n = item.find(',', e + 1), stop = n == std::string::npos ? item.size() : n;
          if (item.substr(e + 1, stop - e - 1).find('=') != std::string::npos) break;
          kv = item.substr(pos, stop - pos), e = stop;
        }
        const size_t eq = kv.find('=');
        if (eq != std::string::npos) {
          vars.push_back(kv.substr(0, eq));
          setenv(vars.back().c_str(), kv.substr(eq + 1).c_str(), 1);
        }
        pos = e + 1;
      }
      if (!vars.empty()) {
        std::string result;
        try {
          std::snprintf(buf, sizeof buf, "%.3f ms", time_ms(fn));
          result = buf;
        } catch (const std::exception& e) {  // an item the bench cannot run: say so, go on
          result = std::string("not run: ") + e.what();
        }
        for (const auto& v : vars) unsetenv(v.c_str());
        std::snprintf(buf, sizeof buf, "sweep %s (%lld,%lld,%lld) %s: %s\n", what, (long long)s.b, (long long)s.d,
                      (long long)s.L, item.c_str(), result.c_str());
        detail += buf;
      }
      item.clear();
    }
  };
  try {
    for (const Shape& s : kShapes) {
      ScanBufs sb(s);
      const double f = time_ms([&] { sb.fwd(false); });
      const double fc = time_ms([&] { sb.fwd(true); });
      sb.fwd(true);
      const double bo = time_ms([&] { sb.zero_grads(); sb.bwd(); });
      const double fb = time_ms([&] { sb.zero_grads(); sb.fwd(true); sb.bwd(); });
      const auto r = ref.count(key("scan", s)) ? ref[key("scan", s)] : std::make_pair(0.0, 0.0);
      row("scan fwd", s, s.N, f, r.first, sb.fwd_bytes());
      row("scan fwd+bwd", s, s.N, fb, r.second, sb.fwd_bytes() + sb.bwd_bytes());
      const auto q = qget("scan", s);
      qrow("scan fwd", s, s.N, time_queued_ms([&] { sb.fwd(false); }), q.first);
      qrow("scan fwd+bwd", s, s.N, time_queued_ms([&] { sb.zero_grads(); sb.fwd(true); sb.bwd(); }), q.second);
      std::snprintf(buf, sizeof buf, "detail scan (%lld,%lld,%lld,%lld): fwd %.3f, fwd+ckpt %.3f, bwd %.3f, fwd+bwd %.3f ms\n",
                    (long long)s.b, (long long)s.d, (long long)s.L, (long long)s.N, f, fc, bo, fb);
      detail += buf;
      sweep_items(s, "SWEEP_FWD", "fwd", [&] { sb.fwd(false); });
      sb.fwd(true);
      sweep_items(s, "SWEEP_BWD", "bwd", [&] { sb.zero_grads(); sb.bwd(); });
      sweep_items(s, "SWEEP_FB", "fwd+bwd", [&] { sb.zero_grads(); sb.fwd(true); sb.bwd(); });
    }
    for (const Shape& s : kShapes) {
      ConvBufs cb(s);
      const double f = time_ms([&] { cb.fwd(); });
      const double b = time_ms([&] { cb.bwd(); });
      const double fb = time_ms([&] { cb.fwd(); cb.bwd(); });
      const auto r = ref.count(key("conv", s)) ? ref[key("conv", s)] : std::make_pair(0.0, 0.0);
      row("conv1d fwd", s, 4, f, r.first, cb.fwd_bytes());
      row("conv1d fwd+bwd", s, 4, fb, r.second, cb.fwd_bytes() + cb.bwd_bytes());
      const auto q = qget("conv", s);
      qrow("conv1d fwd", s, 4, time_queued_ms([&] { cb.fwd(); }), q.first);
      qrow("conv1d fwd+bwd", s, 4, time_queued_ms([&] { cb.fwd(); cb.bwd(); }), q.second);
      std::snprintf(buf, sizeof buf, "detail conv (%lld,%lld,%lld,4): fwd %.3f, bwd %.3f, fwd+bwd %.3f ms\n",
                    (long long)s.b, (long long)s.d, (long long)s.L, f, b, fb);
      detail += buf;
      sweep_items(s, "SWEEP_CONV", "conv fwd+bwd", [&] { cb.fwd(); cb.bwd(); });
      sweep_items(s, "SWEEP_CONV_FWD", "conv fwd", [&] { cb.fwd(); });
      sweep_items(s, "SWEEP_CONV_BWD", "conv bwd", [&] { cb.bwd(); });
    }
  } catch (const std::exception& e) {
    std::printf("bench_cuda: %s\n", e.what());
    return 1;
  }
  add("\nfloor = bytes read + written once (bf16 activations u, Δ, z, y and their gradients; "
      "B, C per token; f32 dB, dC) / copy bandwidth. fraction = floor / our time.\n");
  add("\nGPU time with the calls queued (20 back to back between two events, per call, median of 5; "
      "the reference timed the same way, same run): the host's launch latency, which the "
      "per-call times above include on both sides, is hidden here as in a training step.\n\n"
      "| kernel | (b, d_inner, L, N or K) | ours (ms) | ref (ms) | speed-up |\n|---|---|---|---|---|\n");
  add(queued);
  std::printf("\n%s", detail.c_str());
  if (!out_path.empty()) {
    if (FILE* f = std::fopen(out_path.c_str(), "w")) {
      std::fputs(table.c_str(), f);
      std::fputs("\n```\n", f);
      std::fputs(detail.c_str(), f);
      std::fputs("```\n", f);
      std::fclose(f);
    }
  }
  return 0;
}
