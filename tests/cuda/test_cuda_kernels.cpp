// The CUDA kernels against the CPU kernels (double precision), on fresh random inputs:
// relative L2 error < 1e-5 for f32 inputs and < 1e-2 for f16/bf16, for the outputs, the
// final states and every gradient. Written outputs are poisoned with NaN before each run
// (an unwritten element fails), accumulated ones start from random values (the kernel
// must add, not overwrite). Without a CUDA device every test reports SKIPPED.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "mambaseq/cuda_kernels.h"
#include "mambaseq/error.h"
#include "mambaseq/kernels_cpu.h"
#include "mambaseq/rng.h"

using namespace mambaseq;
namespace cu = mambaseq::cuda;
using Vec = std::vector<double>;

namespace {

#define CUDA_OK(expr)                                                          \
  do {                                                                         \
    cudaError_t e_ = (expr);                                                   \
    ASSERT_EQ(e_, cudaSuccess) << #expr << ": " << cudaGetErrorString(e_);     \
  } while (0)

class Gpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cu::device_available()) GTEST_SKIP() << "no CUDA device";
  }
};

// Host values rounded to the dtype, as the device will see them.
double round_to(double v, cu::DType t) {
  switch (t) {
    case cu::DType::f32: return static_cast<float>(v);
    case cu::DType::f16: return __half2float(__float2half_rn(static_cast<float>(v)));
    case cu::DType::bf16: return __bfloat162float(__float2bfloat16_rn(static_cast<float>(v)));
  }
  return v;
}

// A device buffer of n elements of a dtype (or f32), filled from / read back to doubles.
struct Buf {
  void* p = nullptr;
  size_t n = 0;
  int es = 4;
  cu::DType t = cu::DType::f32;
  Buf() = default;
  Buf(size_t n_, cu::DType t_) : n(n_), es(cu::dtype_size(t_)), t(t_) {
    if (cudaMalloc(&p, n * es + 64) != cudaSuccess) p = nullptr;
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept { *this = std::move(o); }
  Buf& operator=(Buf&& o) noexcept {
    std::swap(p, o.p), std::swap(n, o.n), std::swap(es, o.es), std::swap(t, o.t);
    return *this;
  }
  ~Buf() {
    if (p) cudaFree(p);
  }
  void put(const Vec& v) {
    std::vector<unsigned char> h(n * es);
    for (size_t i = 0; i < n; ++i) {
      const float f = static_cast<float>(v[i]);
      if (t == cu::DType::f32) std::memcpy(&h[i * 4], &f, 4);
      if (t == cu::DType::f16) { __half x = __float2half_rn(f); std::memcpy(&h[i * 2], &x, 2); }
      if (t == cu::DType::bf16) { __nv_bfloat16 x = __float2bfloat16_rn(f); std::memcpy(&h[i * 2], &x, 2); }
    }
    cudaMemcpy(p, h.data(), n * es, cudaMemcpyHostToDevice);
  }
  Vec get() const {
    std::vector<unsigned char> h(n * es);
    cudaMemcpy(h.data(), p, n * es, cudaMemcpyDeviceToHost);
    Vec v(n);
    for (size_t i = 0; i < n; ++i) {
      if (t == cu::DType::f32) { float f; std::memcpy(&f, &h[i * 4], 4); v[i] = f; }
      if (t == cu::DType::f16) { __half x; std::memcpy(&x, &h[i * 2], 2); v[i] = __half2float(x); }
      if (t == cu::DType::bf16) { __nv_bfloat16 x; std::memcpy(&x, &h[i * 2], 2); v[i] = __bfloat162float(x); }
    }
    return v;
  }
  void poison() { cudaMemset(p, 0xFF, n * es); }  // NaN in every dtype
  template <typename P = void>
  P* ptr() const { return static_cast<P*>(p); }
  float* f() const { return static_cast<float*>(p); }
};

Vec randn(size_t n, Rng& rng, double scale = 1.0) {
  Vec v(n);
  for (auto& x : v) x = rng.normal() * scale;
  return v;
}
Vec rounded(Vec v, cu::DType t) {
  for (auto& x : v) x = round_to(x, t);
  return v;
}

// ‖a − b‖ / ‖b‖ over the selected entries; NaN or Inf anywhere fails.
double rel_err(const Vec& a, const Vec& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
// Strided [rows, cols] view of a buffer.
Vec cols(const Vec& v, int64_t rows, int64_t cols_, int64_t ld, int64_t off = 0) {
  Vec o(rows * cols_);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols_; ++c) o[r * cols_ + c] = v[r * ld + off + c];
  return o;
}
Vec minus(const Vec& a, const Vec& b) {
  Vec o(a.size());
  for (size_t i = 0; i < a.size(); ++i) o[i] = a[i] - b[i];
  return o;
}
// Starting values for an accumulated output, on the scale of what is added (so the f32
// sum does not round the addend away).
Vec seed_like(const Vec& ref, Rng& rng) {
  double ss = 0;
  for (double v : ref) ss += v * v;
  return randn(ref.size(), rng, ref.empty() ? 1.0 : std::sqrt(ss / ref.size()) + 1e-30);
}
double tol(cu::DType t) { return t == cu::DType::f32 ? 1e-5 : 1e-2; }

// ---- selective scan --------------------------------------------------------------------

struct ScanCase {
  const char* name;
  cu::DType t;
  int64_t B, L, D, N, G = 1;  // G: ngroups
  bool z = true, Dp = true, bias = true, softplus = true, h0 = false;
  int64_t pad = 8;      // extra columns in the u/delta/z rows (strided views)
  int64_t bc_off = 8;   // column of B within the x_proj-like row
  const char* cfg_fwd = nullptr;  // "S,G,NT" launch-shape override, or null
  const char* cfg_bwd = nullptr;
  const char* seg_fwd = nullptr;  // forward "S,P" (states per lane, time segments) override, or null
                                  // (backward: time segments), or null
  const char* seg_bwd = nullptr;
  const char* seg_g = nullptr;    // backward segment pass: lanes per channel, or null (the plan's)
  bool stream = false;            // run on a user-created non-blocking stream (else the legacy one)
  int64_t ck_off = 0;             // checkpoints and h_final this many floats into their buffers (1: scalar accesses)
  int64_t ck_chunk = 64;          // ScanArgs::ckpt_chunk (32: the backward's 32-token kernel on its shape)
  bool tanh = false;              // MAMBASEQ_SCAN_TANH=1: the forward's gate through tanh (16-bit types; f32 stays exact)
};

std::string case_name(const ::testing::TestParamInfo<ScanCase>& i) { return i.param.name; }
void PrintTo(const ScanCase& c, std::ostream* os) { *os << c.name; }

struct EnvCfg {
  EnvCfg(const char* fwd, const char* bwd, const char* sf = nullptr, const char* sb = nullptr,
         const char* sg = nullptr) {
    if (fwd) setenv("MAMBASEQ_SCAN_FWD_CFG", fwd, 1);
    if (bwd) setenv("MAMBASEQ_SCAN_BWD_CFG", bwd, 1);
    if (sf) setenv("MAMBASEQ_SCAN_FWD_Q", sf, 1);
    if (sb) setenv("MAMBASEQ_SCAN_BWD_SEG", sb, 1);
    if (sg) setenv("MAMBASEQ_SCAN_BWD_SEG_G", sg, 1);
  }
  ~EnvCfg() {
    for (const char* v : {"MAMBASEQ_SCAN_FWD_CFG", "MAMBASEQ_SCAN_BWD_CFG", "MAMBASEQ_SCAN_FWD_Q", "MAMBASEQ_SCAN_BWD_SEG",
                          "MAMBASEQ_SCAN_BWD_SEG_G"})
      unsetenv(v);
  }
};

// Inputs in the model's layout: x|z in one in_proj-like row (stride 2D + pad), delta in
// its own rows, B|C inside a wider x_proj-like row.
struct ScanData {
  ScanCase c;
  int64_t rows, ld, E;
  Vec xz, delta, A, bcrow, D, bias, h0, dout;
  ScanData(const ScanCase& c_, Rng& rng) : c(c_) {
    rows = c.B * c.L;
    ld = 2 * c.D + c.pad;
    E = c.bc_off + 2 * c.G * c.N + 3;
    xz = rounded(randn(rows * ld, rng), c.t);
    delta = rounded(randn(rows * ld, rng, 0.5), c.t);
    if (!c.softplus)
      for (auto& d : delta) d = round_to(std::abs(d) + 0.05, c.t);
    A.resize(c.D * c.N);
    for (auto& a : A) a = -static_cast<double>(static_cast<float>(rng.uniform(0.1, 2.0)));
    bcrow = rounded(randn(rows * E, rng), c.t);
    D = rounded(randn(c.D, rng), cu::DType::f32);
    // Mamba's Δ bias: softplus⁻¹ of dt ∈ [1e-3, 0.1] (small δ, the realistic regime).
    bias.resize(c.D);
    for (auto& b : bias) {
      const double dt = std::exp(rng.uniform(std::log(1e-3), std::log(0.1)));
      b = static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
    if (!c.softplus) bias = rounded(randn(c.D, rng, 0.05), cu::DType::f32);
    h0 = rounded(randn(c.B * c.D * c.N, rng), cu::DType::f32);
    dout = rounded(randn(rows * c.D, rng), c.t);
  }
};

cpu::ScanParams<double> cpu_params(const ScanData& d) {
  const auto& c = d.c;
  cpu::ScanParams<double> p;
  p.batch = c.B, p.len = c.L, p.dim = c.D, p.dstate = c.N, p.ngroups = c.G;
  p.u = d.xz.data(), p.u_ld = d.ld;
  p.delta = d.delta.data(), p.delta_ld = d.ld;
  p.A = d.A.data();
  p.B = d.bcrow.data() + c.bc_off, p.C = d.bcrow.data() + c.bc_off + c.G * c.N, p.bc_ld = d.E;
  p.D = c.Dp ? d.D.data() : nullptr;
  p.z = c.z ? d.xz.data() + c.D : nullptr, p.z_ld = d.ld;
  p.delta_bias = c.bias ? d.bias.data() : nullptr;
  p.delta_softplus = c.softplus;
  p.h0 = c.h0 ? d.h0.data() : nullptr;
  return p;
}

class ScanGpu : public Gpu, public ::testing::WithParamInterface<ScanCase> {};

TEST_P(ScanGpu, ForwardAndBackwardMatchTheCpu) {
  const ScanCase c = GetParam();
  EnvCfg env(c.cfg_fwd, c.cfg_bwd, c.seg_fwd, c.seg_bwd, c.seg_g);
  if (c.tanh) setenv("MAMBASEQ_SCAN_TANH", "1", 1);
  struct UnsetTanh {
    ~UnsetTanh() { unsetenv("MAMBASEQ_SCAN_TANH"); }
  } unset_tanh;
  // A non-blocking stream shares no implicit order with the legacy stream the buffers'
  // copies use, so every result is read after syncing it: work the call forks elsewhere
  // must be joined back into it.
  cudaStream_t st = nullptr;
  if (c.stream) CUDA_OK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() {
      if (s) cudaStreamDestroy(s);
    }
  } guard{st};
  Rng rng(1000 + c.B * 31 + c.L * 7 + c.N);
  ScanData d(c, rng);
  const auto t = c.t;
  const int64_t rows = d.rows, D = c.D, N = c.N;

  // CPU reference (double).
  const auto p = cpu_params(d);
  Vec ref_out(rows * D), ref_hf(c.B * D * N);
  cpu::selective_scan_forward(p, ref_out.data(), ref_hf.data());
  Vec r_du(rows * D, 0.0), r_dd(rows * D, 0.0), r_dz(rows * D, 0.0), r_dA(D * N, 0.0),
      r_dBC(rows * d.E, 0.0), r_dD(D, 0.0), r_db(D, 0.0), r_dh0(c.B * D * N, 0.0);
  {
    cpu::ScanGrads<double> g;
    g.du = r_du.data(), g.du_ld = D, g.ddelta = r_dd.data(), g.ddelta_ld = D;
    g.dz = r_dz.data(), g.dz_ld = D, g.dA = r_dA.data();
    g.dB = r_dBC.data() + c.bc_off, g.dC = r_dBC.data() + c.bc_off + c.G * N, g.dbc_ld = d.E;
    g.dD = r_dD.data(), g.ddelta_bias = r_db.data(), g.dh0 = c.h0 ? r_dh0.data() : nullptr;
    cpu::selective_scan_backward(p, d.dout.data(), g);
  }

  // Device.
  Buf xz(rows * d.ld, t), dl(rows * d.ld, t), bc(rows * d.E, t), A(D * N, cu::DType::f32),
      Dv(D, cu::DType::f32), bias(D, cu::DType::f32), h0(c.B * D * N, cu::DType::f32);
  xz.put(d.xz), dl.put(d.delta), bc.put(d.bcrow), A.put(d.A), Dv.put(d.D), bias.put(d.bias), h0.put(d.h0);
  cu::ScanArgs a;
  a.dtype = t, a.batch = c.B, a.len = c.L, a.dim = D, a.dstate = N, a.ngroups = c.G;
  const int es = cu::dtype_size(t);
  a.u = xz.ptr(), a.u_ld = d.ld;
  a.delta = dl.ptr(), a.delta_ld = d.ld;
  a.A = A.f();
  a.B = bc.ptr<char>() + c.bc_off * es;
  a.C = bc.ptr<char>() + (c.bc_off + c.G * N) * es;
  a.bc_ld = d.E;
  a.D = c.Dp ? Dv.f() : nullptr;
  a.z = c.z ? xz.ptr<char>() + D * es : nullptr, a.z_ld = d.ld;
  a.delta_bias = c.bias ? bias.f() : nullptr;
  a.delta_softplus = c.softplus;
  a.h0 = c.h0 ? h0.f() : nullptr;
  a.ckpt_chunk = c.ck_chunk;

  const int64_t off = c.ck_off;
  Buf out(rows * D, t), hf(c.B * D * N + off, cu::DType::f32), ck(cu::scan_checkpoint_floats(a) + off, cu::DType::f32);
  out.poison(), hf.poison(), ck.poison();
  CUDA_OK(cudaDeviceSynchronize());
  cu::selective_scan_fwd(a, out.ptr(), D, hf.f() + off, ck.f() + off, st);
  CUDA_OK(cudaStreamSynchronize(st));
  EXPECT_LT(rel_err(out.get(), ref_out), tol(t)) << "out";
  Vec hfv = hf.get();
  hfv.erase(hfv.begin(), hfv.begin() + off);
  EXPECT_LT(rel_err(hfv, ref_hf), 1e-5 * (t == cu::DType::f32 ? 1 : 1000)) << "h_final";

  // Backward: written gradients poisoned, accumulated ones start from random values.
  Buf dout(rows * D, t), du(rows * D, t), dd(rows * D, t), dz(rows * D, t), dA(D * N, cu::DType::f32),
      dB(rows * c.G * N, cu::DType::f32), dC(rows * c.G * N, cu::DType::f32), dD(D, cu::DType::f32),
      db(D, cu::DType::f32), dh0(c.B * D * N, cu::DType::f32);
  dout.put(d.dout);
  du.poison(), dd.poison(), dz.poison();
  const Vec s_dA = seed_like(r_dA, rng), s_dB = seed_like(cols(r_dBC, rows, c.G * N, d.E, c.bc_off), rng),
            s_dC = seed_like(cols(r_dBC, rows, c.G * N, d.E, c.bc_off + c.G * N), rng), s_dD = seed_like(r_dD, rng),
            s_db = seed_like(r_db, rng), s_dh0 = seed_like(r_dh0, rng);
  dA.put(s_dA), dB.put(s_dB), dC.put(s_dC), dD.put(s_dD), db.put(s_db), dh0.put(s_dh0);
  cu::ScanGrads g;
  g.du = du.ptr(), g.du_ld = D, g.ddelta = dd.ptr(), g.ddelta_ld = D, g.dz = dz.ptr(), g.dz_ld = D;
  g.dA = dA.f(), g.dB = dB.f(), g.dC = dC.f(), g.dbc_ld = c.G * N, g.dD = dD.f(), g.ddelta_bias = db.f();
  g.dh0 = c.h0 ? dh0.f() : nullptr;
  CUDA_OK(cudaDeviceSynchronize());
  cu::selective_scan_bwd(a, dout.ptr(), D, ck.f() + off, g, st);
  CUDA_OK(cudaStreamSynchronize(st));
  EXPECT_LT(rel_err(du.get(), r_du), tol(t)) << "du";
  EXPECT_LT(rel_err(dd.get(), r_dd), tol(t)) << "ddelta";
  if (c.z) {
    EXPECT_LT(rel_err(dz.get(), r_dz), tol(t)) << "dz";
  }
  EXPECT_LT(rel_err(minus(dA.get(), s_dA), r_dA), tol(t)) << "dA";
  EXPECT_LT(rel_err(minus(dB.get(), s_dB), cols(r_dBC, rows, c.G * N, d.E, c.bc_off)), tol(t)) << "dB";
  EXPECT_LT(rel_err(minus(dC.get(), s_dC), cols(r_dBC, rows, c.G * N, d.E, c.bc_off + c.G * N)), tol(t)) << "dC";
  if (c.Dp) {
    EXPECT_LT(rel_err(minus(dD.get(), s_dD), r_dD), tol(t)) << "dD";
  }
  if (c.bias) {
    EXPECT_LT(rel_err(minus(db.get(), s_db), r_db), tol(t)) << "ddelta_bias";
  }
  if (c.h0) {
    EXPECT_LT(rel_err(minus(dh0.get(), s_dh0), r_dh0), tol(t)) << "dh0";
  }
}

using T = cu::DType;
// clang-format off
INSTANTIATE_TEST_SUITE_P(Shapes, ScanGpu, ::testing::Values(
    ScanCase{"L1_f32", T::f32, 1, 1, 64, 16},
    ScanCase{"L1_bf16_h0", T::bf16, 2, 1, 64, 16, 1, true, true, true, true, true},
    ScanCase{"oddL_f32_h0", T::f32, 2, 37, 96, 16, 1, true, true, true, true, true},
    ScanCase{"oddL_bf16", T::bf16, 2, 37, 96, 16},
    ScanCase{"L200_f16_groups", T::f16, 3, 200, 128, 16, 2, true, true, true, true, true},
    ScanCase{"L200_f32_groups4", T::f32, 2, 200, 64, 16, 4, true, true, true, true, true},
    ScanCase{"L65536_f32", T::f32, 1, 65536, 16, 16},
    ScanCase{"L65536_bf16_h0", T::bf16, 1, 65536, 32, 16, 1, true, true, true, true, true},
    ScanCase{"batch256_bf16", T::bf16, 256, 33, 64, 16},
    ScanCase{"batch256_f32_N8", T::f32, 256, 21, 32, 8},
    ScanCase{"N1_f32", T::f32, 2, 70, 48, 1},
    ScanCase{"N3_f32_h0", T::f32, 2, 45, 40, 3, 1, true, true, true, true, true},
    ScanCase{"N5_bf16", T::bf16, 2, 45, 40, 5},
    ScanCase{"N33_f32", T::f32, 2, 80, 24, 33},
    ScanCase{"N64_f32_h0", T::f32, 2, 130, 32, 64, 1, true, true, true, true, true},
    ScanCase{"N64_bf16", T::bf16, 1, 100, 64, 64},
    ScanCase{"bare_f32", T::f32, 2, 90, 48, 16, 1, false, false, false, false, false},
    ScanCase{"noz_bf16", T::bf16, 2, 90, 48, 16, 1, false, true, true, true, false},
    ScanCase{"dim20_unaligned_f32", T::f32, 2, 77, 20, 16, 1, true, true, true, true, true, 1, 3},
    ScanCase{"dim20_unaligned_bf16", T::bf16, 2, 77, 20, 16, 1, true, true, true, true, false, 3, 1},
    ScanCase{"dim24_groups3_bf16", T::bf16, 2, 50, 24, 16, 3, true, true, true, true, true},
    // every kernel variant: states per lane S, lanes per channel G, threads NT
    ScanCase{"cfg_S16_G1_f32", T::f32, 2, 150, 256, 16, 1, true, true, true, true, true, 8, 8, "16,1,128", "4,4,128"},
    ScanCase{"cfg_S8_G2_bf16", T::bf16, 2, 150, 256, 16, 1, true, true, true, true, true, 8, 8, "8,2,128", "2,8,128"},
    ScanCase{"cfg_S4_G4_f16", T::f16, 2, 150, 256, 16, 1, true, true, true, true, true, 8, 8, "4,4,64", "1,16,128"},
    ScanCase{"cfg_S2_G8_f32", T::f32, 2, 150, 256, 16, 1, true, true, true, true, true, 8, 8, "2,8,256", "2,8,256"},
    ScanCase{"cfg_S2_G8_NT64_bf16", T::bf16, 2, 150, 256, 16, 1, true, true, true, true, true, 8, 8, "2,8,64", "1,16,64"},
    // time segments (forward lane-per-channel kernel, backward local adjoints)
    ScanCase{"seg3_bf16_h0", T::bf16, 2, 300, 128, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,3", "3"},
    ScanCase{"seg5_f32_groups2", T::f32, 3, 333, 64, 16, 2, true, true, true, true, true, 8, 8, nullptr, nullptr, "2,5", "2"},
    ScanCase{"seg4_f16_N7_noz", T::f16, 2, 260, 96, 7, 1, false, true, true, true, true, 8, 8, nullptr, nullptr, "8,4", "4"},
    ScanCase{"seg2_f32_bare_N12", T::f32, 1, 200, 40, 12, 1, false, false, false, false, false, 1, 3, nullptr, nullptr, "2,2", "2"},
    // the backward segment pass at each lane split (the plan picks by walkers; small shapes get 8 lanes)
    ScanCase{"segG1_bf16_h0", T::bf16, 2, 300, 128, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,3", "3", "1"},
    ScanCase{"segG2_f32_N7", T::f32, 2, 260, 96, 7, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,4", "4", "2"},
    ScanCase{"segG4_f16_groups2", T::f16, 3, 333, 64, 16, 2, true, true, true, true, true, 8, 8, nullptr, nullptr, "2,5", "5", "4"},
    ScanCase{"segG4_f32_dim40_N12", T::f32, 1, 200, 40, 12, 1, false, false, false, false, false, 1, 3, nullptr, nullptr, "2,2", "2", "4"},
    // a user's non-blocking stream (results read after syncing it alone)
    ScanCase{"seg2_bf16_user_stream", T::bf16, 3, 2100, 96, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, "2", "2", true},
    // checkpoints and h_final 4 bytes off 16-byte alignment (scalar accesses), per kernel family
    ScanCase{"ckpt_unaligned_q4_bf16", T::bf16, 2, 300, 128, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,1", "2", nullptr, false, 1},
    ScanCase{"ckpt_unaligned_seq_f32", T::f32, 2, 300, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,3", "3", nullptr, false, 1},
    ScanCase{"ckpt_unaligned_N32_f32", T::f32, 2, 130, 32, 32, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 1},
    // the backward plan's segments (256-token minimum) on a mid-length sequence
    ScanCase{"seg8_bf16_h0_plan", T::bf16, 2, 2048, 64, 16, 1, true, true, true, true, true},
    ScanCase{"ckpt_N12_seq_bf16", T::bf16, 2, 300, 64, 12, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,3", "3"},
    // forward lanes per channel (S states a lane) without segments, odd tails, groups
    ScanCase{"q4_f32_h0", T::f32, 3, 151, 96, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,1"},
    ScanCase{"q8_bf16_h0", T::bf16, 2, 77, 160, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "8,1"},
    ScanCase{"q2_f16_groups4", T::f16, 2, 99, 64, 16, 4, true, true, true, true, true, 8, 8, nullptr, nullptr, "2,1"},
    ScanCase{"q4_f32_N5_unaligned", T::f32, 2, 45, 40, 5, 1, true, true, true, true, true, 1, 3, nullptr, nullptr, "4,1"},
    ScanCase{"q8_f32_seg7_N16", T::f32, 1, 1000, 48, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "8,7"},
    // lane per channel (S = 16), with and without segments
    ScanCase{"q16_f32_seg4_h0", T::f32, 2, 700, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,4"},
    ScanCase{"q16_f32_bare", T::f32, 2, 131, 96, 16, 1, false, false, false, false, false, 8, 8, nullptr, nullptr, "16,1"},
    ScanCase{"q16_bf16_groups2_N9", T::bf16, 2, 300, 128, 9, 2, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,3"},
    ScanCase{"q4_bf16_seg16_groups2", T::bf16, 2, 2048, 64, 16, 2, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,16"},
    ScanCase{"cfg_S16_G4_N64_f32", T::f32, 1, 70, 64, 64, 1, true, true, true, true, true, 8, 8, "16,4,128", "4,16,256"},
    ScanCase{"cfg_S8_G8_N64_bf16", T::bf16, 1, 70, 64, 64, 2, true, true, true, true, true, 8, 8, "8,8,256", "2,32,128"},
    // checkpoints every 32 tokens: the backward's 32-token kernel (dim ≥ 32, dstate 16) with
    // and without segments, each dtype, odd tails, h0; the forward kernels' mid-tile stores
    // (64-token tiles of the q-kernel and of the dstate > 16 kernel); the other backward shapes
    // reading every 32-token checkpoint
    ScanCase{"ck32_L1_bf16_h0", T::bf16, 2, 1, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_oddL_f32_h0", T::f32, 2, 37, 96, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_L200_f16_groups", T::f16, 3, 200, 128, 16, 2, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_plan_bf16_h0", T::bf16, 2, 2048, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_L65536_bf16_h0", T::bf16, 1, 65536, 32, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_seg3_f32_unaligned", T::f32, 2, 300, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,3", "3", nullptr, false, 1, 32},
    ScanCase{"ck32_q4_bf16_noz", T::bf16, 3, 151, 96, 16, 1, false, true, true, true, true, 8, 8, nullptr, nullptr, "4,1", nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_q8_f16_seg2", T::f16, 2, 333, 160, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "8,2", "2", nullptr, false, 0, 32},
    ScanCase{"ck32_N64_f32_h0", T::f32, 2, 130, 32, 64, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_N7_bf16", T::bf16, 2, 100, 48, 7, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    ScanCase{"ck32_dim20_f32", T::f32, 2, 77, 20, 16, 1, true, true, true, true, true, 1, 3, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 32},
    // the forward's gate through tanh: q-kernels (S = 2, 4, 8) and the lane-per-channel kernel
    // with segments, bf16 and f16; f32 asks for it and must stay exact (1e-5)
    ScanCase{"tanh_q4_bf16_h0", T::bf16, 3, 151, 96, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "4,1", nullptr, nullptr, false, 0, 64, true},
    ScanCase{"tanh_q8_f16_seg2", T::f16, 2, 333, 160, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "8,2", "2", nullptr, false, 0, 64, true},
    ScanCase{"tanh_q2_bf16_groups4", T::bf16, 2, 99, 64, 16, 4, true, true, true, true, true, 8, 8, nullptr, nullptr, "2,1", nullptr, nullptr, false, 0, 64, true},
    ScanCase{"tanh_seq_bf16_seg4_ck32", T::bf16, 2, 700, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,4", "4", nullptr, false, 0, 32, true},
    ScanCase{"tanh_plan_bf16_L65536", T::bf16, 1, 65536, 32, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, nullptr, nullptr, nullptr, false, 0, 64, true},
    ScanCase{"tanh_seq_f32_stays_exact", T::f32, 2, 700, 64, 16, 1, true, true, true, true, true, 8, 8, nullptr, nullptr, "16,4", "4", nullptr, false, 0, 64, true}),
    case_name);
// clang-format on

TEST_F(Gpu, ScanErrorsNameTheKernelAndShape) {
  Buf u(64 * 16, T::bf16), A(16 * 16, T::f32), out(64 * 16, T::bf16);
  cu::ScanArgs a;
  a.dtype = T::bf16, a.batch = 1, a.len = 64, a.dim = 16, a.dstate = 65;
  a.u = a.delta = a.B = a.C = u.ptr(), a.u_ld = a.delta_ld = 16, a.bc_ld = 16 * 65, a.A = A.f();
  try {
    cu::selective_scan_fwd(a, out.ptr(), 16, nullptr, nullptr);
    FAIL() << "dstate 65 accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("selective_scan_fwd"), std::string::npos) << m;
    EXPECT_NE(m.find("dstate=65"), std::string::npos) << m;
  }
  a.dstate = 16, a.bc_ld = 16;
  a.u = u.ptr<char>() + 1;  // not aligned to its element size
  EXPECT_THROW(cu::selective_scan_fwd(a, out.ptr(), 16, nullptr, nullptr), Error);
  a.u = u.ptr();
  a.z = u.ptr(), a.z_ld = 16;
  cu::ScanGrads g;  // dz (and the rest) missing
  EXPECT_THROW(cu::selective_scan_bwd(a, out.ptr(), 16, A.f(), g), Error);
  a.ngroups = 3;  // does not divide dim
  EXPECT_THROW(cu::selective_scan_fwd(a, out.ptr(), 16, nullptr, nullptr), Error);
  a.ngroups = 1;
  a.ckpt_chunk = 48;  // neither 32 nor 64
  try {
    cu::selective_scan_fwd(a, out.ptr(), 16, nullptr, nullptr);
    FAIL() << "ckpt_chunk 48 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt_chunk=48"), std::string::npos) << e.what();
  }
  a.ckpt_chunk = 64;
  a.dtype = static_cast<T>(7);
  EXPECT_THROW(cu::selective_scan_fwd(a, out.ptr(), 16, nullptr, nullptr), Error);
  a.dtype = T::bf16;
  EXPECT_THROW(cu::selective_scan_fwd(a, nullptr, 16, nullptr, nullptr), Error);
}

// Prefill with the scan, then one token at a time with the step kernel: the steps
// reproduce the scan's outputs and its final state.
class StepGpu : public Gpu, public ::testing::WithParamInterface<std::tuple<T, int>> {};
TEST_P(StepGpu, ScanStepsReproduceTheScan) {
  const auto [t, ngroups] = GetParam();
  const int64_t B = 3, L = 40, D = 48, N = 16, L1 = 13;
  ScanCase c{"step", t, B, L, D, N, ngroups, true, true, true, true, true};
  Rng rng(77 + ngroups);
  ScanData d(c, rng);
  const int es = cu::dtype_size(t);
  Buf xz(d.rows * d.ld, t), dl(d.rows * d.ld, t), bc(d.rows * d.E, t), A(D * N, T::f32), Dv(D, T::f32),
      bias(D, T::f32), h0(B * D * N, T::f32);
  xz.put(d.xz), dl.put(d.delta), bc.put(d.bcrow), A.put(d.A), Dv.put(d.D), bias.put(d.bias), h0.put(d.h0);
  cu::ScanArgs a;
  a.dtype = t, a.batch = B, a.len = L, a.dim = D, a.dstate = N, a.ngroups = ngroups;
  a.u = xz.ptr(), a.u_ld = d.ld, a.delta = dl.ptr(), a.delta_ld = d.ld, a.A = A.f();
  a.B = bc.ptr<char>() + c.bc_off * es, a.C = bc.ptr<char>() + (c.bc_off + ngroups * N) * es, a.bc_ld = d.E;
  a.D = Dv.f(), a.z = xz.ptr<char>() + D * es, a.z_ld = d.ld, a.delta_bias = bias.f();
  a.delta_softplus = true, a.h0 = h0.f();
  Buf full(d.rows * D, t), hf(B * D * N, T::f32);
  full.poison();
  cu::selective_scan_fwd(a, full.ptr(), D, hf.f(), nullptr);
  // Prefill the first L1 tokens of each sequence (copied into their own rows), keeping
  // the state in h.
  Buf h(B * D * N, T::f32);
  Vec xz1(B * L1 * d.ld), dl1(B * L1 * d.ld), bc1(B * L1 * d.E);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t tt = 0; tt < L1; ++tt) {
      for (int64_t j = 0; j < d.ld; ++j) {
        xz1[(b * L1 + tt) * d.ld + j] = d.xz[(b * L + tt) * d.ld + j];
        dl1[(b * L1 + tt) * d.ld + j] = d.delta[(b * L + tt) * d.ld + j];
      }
      for (int64_t j = 0; j < d.E; ++j) bc1[(b * L1 + tt) * d.E + j] = d.bcrow[(b * L + tt) * d.E + j];
    }
  Buf bx(xz1.size(), t), bd(dl1.size(), t), bb(bc1.size(), t), po(B * L1 * D, t);
  bx.put(xz1), bd.put(dl1), bb.put(bc1);
  {
    cu::ScanArgs p = a;
    p.len = L1, p.u = bx.ptr(), p.delta = bd.ptr(), p.z = bx.ptr<char>() + D * es;
    p.B = bb.ptr<char>() + c.bc_off * es, p.C = bb.ptr<char>() + (c.bc_off + ngroups * N) * es;
    cu::selective_scan_fwd(p, po.ptr(), D, h.f(), nullptr);
  }
  CUDA_OK(cudaDeviceSynchronize());
  const Vec ref = full.get();
  Vec steps(d.rows * D, NAN);
  Buf ut(B * d.ld, t), dt(B * d.ld, t), bct(B * d.E, t), ot(B * D, t);
  for (int64_t tt = L1; tt < L; ++tt) {
    Vec u1(B * d.ld), d1(B * d.ld), b1(B * d.E);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < d.ld; ++j) {
        u1[b * d.ld + j] = d.xz[(b * L + tt) * d.ld + j];
        d1[b * d.ld + j] = d.delta[(b * L + tt) * d.ld + j];
      }
      for (int64_t j = 0; j < d.E; ++j) b1[b * d.E + j] = d.bcrow[(b * L + tt) * d.E + j];
    }
    ut.put(u1), dt.put(d1), bct.put(b1);
    ot.poison();
    cu::ScanArgs s = a;
    s.len = 1, s.u = ut.ptr(), s.delta = dt.ptr(), s.z = ut.ptr<char>() + D * es;
    s.B = bct.ptr<char>() + c.bc_off * es, s.C = bct.ptr<char>() + (c.bc_off + ngroups * N) * es;
    cu::selective_scan_step(s, h.f(), ot.ptr(), D);
    const Vec o = ot.get();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < D; ++k) steps[(b * L + tt) * D + k] = o[b * D + k];
  }
  Vec got, want;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t tt = L1; tt < L; ++tt)
      for (int64_t k = 0; k < D; ++k) got.push_back(steps[(b * L + tt) * D + k]), want.push_back(ref[(b * L + tt) * D + k]);
  EXPECT_LT(rel_err(got, want), tol(t)) << "step outputs";
  EXPECT_LT(rel_err(h.get(), hf.get()), 1e-5) << "state after the steps";
}
INSTANTIATE_TEST_SUITE_P(Dtypes, StepGpu,
                         ::testing::Values(std::make_tuple(T::f32, 1), std::make_tuple(T::bf16, 1),
                                           std::make_tuple(T::f32, 3), std::make_tuple(T::f16, 2)));

// ---- conv1d ----------------------------------------------------------------------------

struct ConvCase {
  const char* name;
  T t;
  int64_t B, L, C, K;
  bool silu = true, bias = true, init = false;
  int64_t pad = 8;  // extra columns of the x rows
  const char* run = nullptr;  // tokens per thread of the fast path (override), or null
  const char* ring = nullptr;  // forward fast path through the shared-memory ring ("1") or not ("0")
  const char* rows = nullptr;  // backward fast path rows per batch ("4" or "8")
  bool narrow = false;         // forward fast path with 4 bytes of channels a thread
  bool fill = false;           // forward run length from the one-full-wave rule
  bool tanh = false;           // SiLU through tanh (16-bit types; f32 must keep the exact form)
};
std::string conv_name(const ::testing::TestParamInfo<ConvCase>& i) { return i.param.name; }
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class ConvGpu : public Gpu, public ::testing::WithParamInterface<ConvCase> {};
TEST_P(ConvGpu, ForwardAndBackwardMatchTheCpu) {
  const ConvCase c = GetParam();
  const T t = c.t;
  if (c.run) setenv("MAMBASEQ_CONV_RUN", c.run, 1);
  if (c.ring) setenv("MAMBASEQ_CONV_RING", c.ring, 1);
  if (c.rows) setenv("MAMBASEQ_CONV_ROWS_BWD", c.rows, 1);
  if (c.narrow) setenv("MAMBASEQ_CONV_NARROW_FWD", "1", 1);
  if (c.fill) setenv("MAMBASEQ_CONV_FWD_FILL", "1", 1);
  if (c.tanh) setenv("MAMBASEQ_CONV_TANH", "1", 1);
  struct Unset {
    ~Unset() {
      for (const char* v : {"MAMBASEQ_CONV_RUN", "MAMBASEQ_CONV_RING", "MAMBASEQ_CONV_ROWS_BWD", "MAMBASEQ_CONV_NARROW_FWD",
                            "MAMBASEQ_CONV_FWD_FILL", "MAMBASEQ_CONV_TANH"})
        unsetenv(v);
    }
  } unset;
  Rng rng(500 + c.L + c.K);
  const int64_t rows = c.B * c.L, ld = c.C + c.pad, W = c.K - 1;
  const Vec x = rounded(randn(rows * ld, rng), t), w = rounded(randn(c.C * c.K, rng, 0.5), T::f32),
            bias = rounded(randn(c.C, rng), T::f32), init = rounded(randn(c.B * c.C * std::max<int64_t>(W, 1), rng), t),
            dout = rounded(randn(rows * c.C, rng), t);
  cpu::Conv1dParams<double> p;
  p.batch = c.B, p.len = c.L, p.C = c.C, p.K = c.K, p.x = x.data(), p.ldx = ld, p.w = w.data();
  p.bias = c.bias ? bias.data() : nullptr, p.init_state = c.init && W > 0 ? init.data() : nullptr, p.silu = c.silu;
  Vec r_out(rows * c.C), r_fs(c.B * c.C * std::max<int64_t>(W, 1), 0.0);
  cpu::conv1d_forward(p, r_out.data(), W > 0 ? r_fs.data() : nullptr);
  Vec r_dx(rows * c.C, 0.0), r_dw(c.C * c.K, 0.0), r_db(c.C, 0.0), r_di(r_fs.size(), 0.0);
  cpu::conv1d_backward(p, dout.data(), r_dx.data(), c.C, r_dw.data(), r_db.data(), W > 0 ? r_di.data() : nullptr);

  Buf bx(rows * ld, t), bw(c.C * c.K, T::f32), bb(c.C, T::f32), bi(init.size(), t), bo(rows * c.C, t),
      bfs(r_fs.size(), t), bdo(rows * c.C, t), bdx(rows * c.C, t), bdw(c.C * c.K, T::f32), bdb(c.C, T::f32),
      bdi(r_fs.size(), t);
  bx.put(x), bw.put(w), bb.put(bias), bi.put(init), bdo.put(dout);
  cu::Conv1dArgs a;
  a.dtype = t, a.batch = c.B, a.len = c.L, a.channels = c.C, a.width = c.K, a.x = bx.ptr(), a.x_ld = ld;
  a.w = bw.f(), a.bias = c.bias ? bb.f() : nullptr, a.init_state = c.init ? bi.ptr() : nullptr, a.silu = c.silu;
  bo.poison(), bfs.poison();
  cu::conv1d_fwd(a, bo.ptr(), c.C, W > 0 ? bfs.ptr() : nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_LT(rel_err(bo.get(), r_out), tol(t)) << "out";
  if (W > 0) {
    EXPECT_LT(rel_err(bfs.get(), r_fs), 1e-12) << "final_state (a copy of inputs)";
  }

  bdx.poison(), bdi.poison();
  const Vec s_dw = seed_like(r_dw, rng), s_db = seed_like(r_db, rng);
  bdw.put(s_dw), bdb.put(s_db);
  cu::conv1d_bwd(a, bdo.ptr(), c.C, bdx.ptr(), c.C, bdw.f(), bdb.f(), W > 0 ? bdi.ptr() : nullptr);
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_LT(rel_err(bdx.get(), r_dx), tol(t)) << "dx";
  EXPECT_LT(rel_err(minus(bdw.get(), s_dw), r_dw), tol(t)) << "dw";
  if (c.bias) {
    EXPECT_LT(rel_err(minus(bdb.get(), s_db), r_db), tol(t)) << "dbias";
  }
  if (W > 0) {
    EXPECT_LT(rel_err(bdi.get(), r_di), tol(t)) << "dinit_state";
  }
}
// clang-format off
INSTANTIATE_TEST_SUITE_P(Shapes, ConvGpu, ::testing::Values(
    ConvCase{"K4_bf16_silu", T::bf16, 2, 300, 256, 4},
    ConvCase{"K4_f32_init", T::f32, 3, 129, 64, 4, true, true, true},
    ConvCase{"K4_f16_init_nosilu", T::f16, 2, 77, 128, 4, false, true, true},
    ConvCase{"K3_bf16_init", T::bf16, 2, 65, 64, 3, true, true, true},
    ConvCase{"K2_f32_nobias", T::f32, 2, 50, 32, 2, true, false, false},
    ConvCase{"K4_L1_init", T::f32, 4, 1, 64, 4, true, true, true},
    ConvCase{"K4_L2_bf16_init", T::bf16, 3, 2, 64, 4, true, true, true},
    ConvCase{"K4_batch256_bf16", T::bf16, 256, 40, 64, 4},
    ConvCase{"K4_L65536_bf16", T::bf16, 1, 65536, 64, 4, true, true, true},
    ConvCase{"K1_f32", T::f32, 2, 30, 16, 1},
    ConvCase{"K5_bf16_init", T::bf16, 2, 100, 64, 5, true, true, true},
    ConvCase{"K7_f32", T::f32, 2, 60, 24, 7, false, true, true},
    ConvCase{"K4_unaligned_bf16", T::bf16, 2, 90, 20, 4, true, true, true, 3},
    ConvCase{"K4_run128_bf16_init", T::bf16, 3, 300, 64, 4, true, true, true, 8, "128"},
    ConvCase{"K3_run64_f32", T::f32, 2, 200, 32, 3, false, true, true, 8, "64"},
    // both forward variants (register batches, shared-memory ring), both backward batch sizes
    ConvCase{"K4_ring1_bf16_init", T::bf16, 3, 301, 128, 4, true, true, true, 8, "64", "1", "8"},
    ConvCase{"K4_ring0_bf16_init", T::bf16, 3, 301, 128, 4, true, true, true, 8, "64", "0", "4"},
    ConvCase{"K3_ring1_f32_run16", T::f32, 2, 77, 64, 3, true, true, true, 8, "16", "1", "8"},
    ConvCase{"K2_ring1_f16_nosilu", T::f16, 2, 150, 64, 2, false, true, true, 8, "32", "1"},
    ConvCase{"K4_ring0_f32_L5", T::f32, 2, 5, 64, 4, true, true, true, 8, "256", "0", "8"},
    ConvCase{"K4_ring1_bf16_L5", T::bf16, 2, 5, 64, 4, true, true, true, 8, "256", "1"},
    // runs of odd lengths (the backward's run comes from a cost model)
    ConvCase{"K4_f32_run40", T::f32, 2, 333, 32, 4, true, true, true, 8, "40", "0", "8"},
    ConvCase{"K3_f16_nosilu_run33", T::f16, 3, 130, 96, 3, false, false, true, 8, "33", "0"},
    ConvCase{"K4_bf16_default_run", T::bf16, 3, 1000, 256, 4, true, true, true},
    ConvCase{"K4_bf16_init_C1024", T::bf16, 2, 700, 1024, 4, true, true, true, 8, nullptr, "0", "4"},
    // 48 channel vectors: 128 threads are not a multiple of them (idle threads must stay idle)
    ConvCase{"K3_C96_f32_rows8", T::f32, 3, 100, 96, 3, true, true, true, 8, "16", "1", "8"},
    // 10 channel vectors: 128 threads are not a multiple of them (idle threads must stay idle)
    ConvCase{"K4_C40_bf16_init", T::bf16, 2, 300, 40, 4, true, true, true, 8, "16"},
    // rows narrower than one 8-byte vector (the general path; the run rules must not divide by 0)
    ConvCase{"K4_C2_bf16_init", T::bf16, 2, 50, 2, 4, true, true, true},
    ConvCase{"K3_C1_f32", T::f32, 2, 20, 1, 3, true, true, false},
    // the forward with 4 bytes of channels a thread, and with the one-full-wave run rule
    ConvCase{"K4_narrow_bf16_init", T::bf16, 3, 301, 128, 4, true, true, true, 8, "64", nullptr, nullptr, true},
    ConvCase{"K3_narrow_f32_nosilu", T::f32, 2, 77, 64, 3, false, true, true, 8, "16", nullptr, nullptr, true},
    ConvCase{"K2_narrow_f16_C40", T::f16, 2, 150, 40, 2, true, false, true, 8, "32", nullptr, nullptr, true},
    ConvCase{"K4_fill_bf16_init", T::bf16, 3, 1000, 256, 4, true, true, true, 8, nullptr, nullptr, nullptr, false, true},
    ConvCase{"K4_fill_narrow_bf16_L5", T::bf16, 2, 5, 64, 4, true, true, true, 8, nullptr, nullptr, nullptr, true, true},
    // SiLU through tanh: both directions, every width, interior and edge batches, the ring,
    // 8-row batches, the narrow forward, f16; f32 asks for it and must stay exact (1e-5)
    ConvCase{"K4_tanh_bf16_init", T::bf16, 3, 1000, 256, 4, true, true, true, 8, nullptr, nullptr, nullptr, false, false, true},
    ConvCase{"K4_tanh_bf16_L65536", T::bf16, 1, 65536, 64, 4, true, true, true, 8, nullptr, nullptr, nullptr, false, false, true},
    ConvCase{"K3_tanh_f16_ring_rows8", T::f16, 2, 301, 128, 3, true, true, true, 8, "64", "1", "8", false, false, true},
    ConvCase{"K2_tanh_bf16_nobias_L5", T::bf16, 2, 5, 64, 2, true, false, true, 8, "256", "0", "4", false, false, true},
    ConvCase{"K4_tanh_narrow_bf16_C40", T::bf16, 2, 300, 40, 4, true, true, true, 8, "16", nullptr, nullptr, true, false, true},
    ConvCase{"K4_tanh_f32_stays_exact", T::f32, 3, 129, 64, 4, true, true, true, 8, nullptr, nullptr, nullptr, false, false, true}),
    conv_name);
// clang-format on

TEST_F(Gpu, ConvStepsReproduceTheConv) {
  for (T t : {T::f32, T::bf16}) {
    const int64_t B = 3, L = 20, C = 64, K = 4, W = K - 1;
    Rng rng(900);
    const Vec x = rounded(randn(B * L * C, rng), t), w = rounded(randn(C * K, rng), T::f32),
              bias = rounded(randn(C, rng), T::f32), init = rounded(randn(B * C * W, rng), t);
    Buf bx(B * L * C, t), bw(C * K, T::f32), bb(C, T::f32), bi(B * C * W, t), bo(B * L * C, t);
    bx.put(x), bw.put(w), bb.put(bias), bi.put(init);
    cu::Conv1dArgs a;
    a.dtype = t, a.batch = B, a.len = L, a.channels = C, a.width = K, a.x = bx.ptr(), a.x_ld = C;
    a.w = bw.f(), a.bias = bb.f(), a.init_state = bi.ptr(), a.silu = true;
    cu::conv1d_fwd(a, bo.ptr(), C, nullptr);
    const Vec full = bo.get();
    Buf state(B * C * W, t), xt(B * C, t), ot(B * C, t);
    state.put(init);
    Vec got, want;
    for (int64_t tt = 0; tt < L; ++tt) {
      Vec x1(B * C);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t k = 0; k < C; ++k) x1[b * C + k] = x[(b * L + tt) * C + k];
      xt.put(x1);
      ot.poison();
      cu::Conv1dArgs s = a;
      s.len = 1, s.x = xt.ptr(), s.init_state = nullptr;
      cu::conv1d_step(s, state.ptr(), ot.ptr(), C);
      const Vec o = ot.get();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t k = 0; k < C; ++k) got.push_back(o[b * C + k]), want.push_back(full[(b * L + tt) * C + k]);
    }
    EXPECT_LT(rel_err(got, want), t == T::f32 ? 1e-6 : 1e-2) << cu::dtype_name(t);
    EXPECT_THROW(cu::conv1d_step(a, state.ptr(), ot.ptr(), C), Error);  // len ≠ 1
  }
}

// Row strides past 32 bits (the fast paths' address arithmetic) are refused before any
// launch, with the stride named.
TEST_F(Gpu, ConvRefusesRowStridesPast32Bits) {
  const int64_t C = 64, huge = int64_t(1) << 31;
  Buf bx(4 * C, T::bf16), bw(C * 4, T::f32), bo(4 * C, T::bf16), bdw(C * 4, T::f32);
  cu::Conv1dArgs a;
  a.dtype = T::bf16, a.batch = 1, a.len = 4, a.channels = C, a.width = 4, a.x = bx.ptr(), a.x_ld = huge;
  a.w = bw.f();
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  std::string m = message([&] { cu::conv1d_fwd(a, bo.ptr(), C, nullptr); });
  EXPECT_NE(m.find("x_ld >= 2^31"), std::string::npos) << m;
  EXPECT_NE(m.find("conv1d_fwd"), std::string::npos) << m;
  a.x_ld = C;
  m = message([&] { cu::conv1d_bwd(a, bo.ptr(), huge, bo.ptr(), C, bdw.f(), nullptr, nullptr); });
  EXPECT_NE(m.find("dout_ld or dx_ld >= 2^31"), std::string::npos) << m;
}

}  // namespace
