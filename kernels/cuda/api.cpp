// Host side of the CUDA kernels: argument checks, launch configuration, error messages.
// Compiled by the C++ compiler (nvcc cannot parse fmt); the kernels live in the .cu files.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "kernels/cuda/launch.h"
#include "mambaseq/cuda_kernels.h"
#include "mambaseq/error.h"

namespace mambaseq::cuda {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
  }
  return "?";
}
int dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

int64_t scan_checkpoint_floats(const ScanArgs& a) {
  const int64_t every = a.ckpt_chunk > 0 ? a.ckpt_chunk : kScanChunk;
  return a.batch * a.dim * a.dstate * ((a.len + every - 1) / every);
}

namespace {

using detail::ConvK;
using detail::ScanK;

int pow2ceil(int64_t x) {
  int p = 1;
  while (p < x) p <<= 1;
  return p;
}
bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Every failure names the kernel and the shape it was called with. The shape string is
// built only on failure (the launch path stays cheap: small shapes take tens of µs).
struct Ctx {
  const char* kernel;
  const void* args;
  std::string (*shape_of)(const void*);
  [[noreturn]] void fail(const std::string& why) const {
    throw Error(fmt::format("cuda {} ({}): {}", kernel, shape_of(args), why));
  }
  void check(bool ok, const char* why) const {
    if (!ok) fail(why);
  }
  // Formatted message, built only when the check fails.
  template <typename... A>
  void check(bool ok, fmt::format_string<A...> f, A&&... a) const {
    if (!ok) fail(fmt::format(f, std::forward<A>(a)...));
  }
  // An activation pointer must be aligned to its element size.
  void ptr(const void* p, const char* name, int es, bool required) const {
    if (!p) {
      if (required) fail(fmt::format("{} is required (null)", name));
      return;
    }
    if (!aligned(p, es)) fail(fmt::format("{} is misaligned ({} bytes needed)", name, es));
  }
  void launched(int err) const {
    if (err == cudaErrorMemoryAllocation) fail(fmt::format("out of memory: {}", cudaGetErrorString(cudaError_t(err))));
    if (err != cudaSuccess) fail(fmt::format("launch failed: {}", cudaGetErrorString(cudaError_t(err))));
  }
};

std::string scan_shape(const void* p) {
  const ScanArgs& a = *static_cast<const ScanArgs*>(p);
  return fmt::format("batch={} len={} dim={} dstate={} ngroups={} {}", a.batch, a.len, a.dim, a.dstate, a.ngroups,
                     dtype_name(a.dtype));
}
Ctx scan_ctx(const char* kernel, const ScanArgs& a) { return {kernel, &a, scan_shape}; }

void check_scan(const Ctx& x, const ScanArgs& a) {
  x.check(a.dtype == DType::f32 || a.dtype == DType::f16 || a.dtype == DType::bf16, "unsupported dtype");
  x.check(a.batch >= 1 && a.len >= 1 && a.dim >= 1, "batch, len and dim must be positive");
  x.check(a.dstate >= 1 && a.dstate <= 64, "dstate must be in 1..64");
  x.check(a.batch <= 65535, "batch must be at most 65535");
  x.check(a.len <= (int64_t(1) << 30) && a.dim <= (int64_t(1) << 24), "len or dim too large");
  x.check(a.ngroups >= 1 && a.dim % a.ngroups == 0, "ngroups must divide dim");
  x.check(a.ckpt_chunk == 32 || a.ckpt_chunk == 64, "ckpt_chunk={} must be 32 or 64", a.ckpt_chunk);
  const int es = dtype_size(a.dtype);
  x.ptr(a.u, "u", es, true);
  x.ptr(a.delta, "delta", es, true);
  x.ptr(a.B, "B", es, true);
  x.ptr(a.C, "C", es, true);
  x.ptr(a.z, "z", es, false);
  x.ptr(a.A, "A", 4, true);
  x.ptr(a.D, "D", 4, false);
  x.ptr(a.delta_bias, "delta_bias", 4, false);
  x.ptr(a.h0, "h0", 4, false);
  x.check(a.u_ld >= a.dim && a.delta_ld >= a.dim && (!a.z || a.z_ld >= a.dim),
          "a row stride is smaller than dim (u_ld={} delta_ld={} z_ld={})", a.u_ld, a.delta_ld, a.z_ld);
  x.check(a.bc_ld >= a.ngroups * a.dstate, "bc_ld={} < ngroups*dstate", a.bc_ld);
}

// Optional "S,G,NT" override of the launch shape (benchmarks sweep it).
bool env_cfg(const char* name, int* S, int* G, int* NT) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  return std::sscanf(v, "%d,%d,%d", S, G, NT) == 3;
}

// Lanes per channel: more lanes (fewer states each) when there are few channels, so the
// chip has enough independent recurrences in flight.
void pick_split(int64_t channels, int Npad, int Smax, int* S, int* G) {
  *S = Npad < Smax ? Npad : Smax;
  *G = Npad / *S;
  while (channels * *G < 96 * 1024 && *S > 2 && *G < 32) *S /= 2, *G *= 2;
}

// Common launch fields; returns false when the "S,G,NT" shape is unusable here.
bool fill_block(const ScanArgs& a, ScanK& k, int S, int G, int NT) {
  if (S < 1 || G < 1 || (G & (G - 1)) || S * G < a.dstate || G > 32 || NT < G || NT > 256 || (NT % G))
    return false;
  int CB = NT / G;
  if (CB & (CB - 1)) return false;
  const int dpg = static_cast<int>(a.dim / a.ngroups);
  const int cap = pow2ceil(a.dim);
  while (CB > cap) CB /= 2;
  if (a.ngroups > 1)
    while (dpg % CB) CB /= 2;  // a block's channels share one B/C group
  k.S = S, k.G = G, k.Npad = S * G, k.CB = CB, k.NT = CB * G, k.dpg = dpg;
  return true;
}

void fill_common(ScanK& k, const ScanArgs& a) {
  k.dtype = static_cast<int>(a.dtype);
  k.batch = static_cast<int>(a.batch), k.len = static_cast<int>(a.len), k.dim = static_cast<int>(a.dim);
  k.N = static_cast<int>(a.dstate);
  k.ck_every = static_cast<int>(a.ckpt_chunk);
  k.nck = static_cast<int>((a.len + a.ckpt_chunk - 1) / a.ckpt_chunk);
  k.softplus = a.delta_softplus;
  k.u = a.u, k.delta = a.delta, k.B = a.B, k.C = a.C, k.z = a.z;
  k.u_ld = a.u_ld, k.delta_ld = a.delta_ld, k.bc_ld = a.bc_ld, k.z_ld = a.z_ld;
  k.A = a.A, k.D = a.D, k.bias = a.delta_bias, k.h0 = a.h0;
  const int es = dtype_size(a.dtype);
  auto bc_rows = [&](int w) {
    return (a.dstate * es) % w == 0 && aligned(a.B, w) && aligned(a.C, w) && (a.bc_ld * es) % w == 0;
  };
  k.bc4 = bc_rows(16) ? 2 : (bc_rows(4) ? 1 : 0);
}

// 16-byte rows for every [rows, dim] tensor the kernel stages.
bool rows16(const ScanK& k, int es, std::initializer_list<std::pair<const void*, int64_t>> t) {
  if ((k.CB * es) % 16 || (k.dim * es) % 16) return false;
  for (auto [p, ld] : t)
    if (p && (!aligned(p, 16) || (ld * es) % 16)) return false;
  return true;
}

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

// Time segments: enough independent (sequence, channel, segment) walkers to fill the
// chip, segments of at least `min_seg` tokens (a multiple of 64: the backward's longest
// chunk), at most max_p.
constexpr int64_t kBwdUnit = kScanChunk;
void pick_segments(const ScanArgs& a, int64_t lanes_per_seg, int64_t want, int min_seg, int max_p,
                   const char* env, int* P, int* Lseg) {
  int p = env_int(env, 0);
  if (p <= 0) {
    p = 1;
    while (lanes_per_seg * p < want && a.len / (2 * p) >= min_seg && p < max_p) p *= 2;
  }
  int64_t seg = (a.len + p - 1) / p;
  seg = (seg + kBwdUnit - 1) / kBwdUnit * kBwdUnit;
  *Lseg = static_cast<int>(seg);
  *P = static_cast<int>((a.len + seg - 1) / seg);
}

// Channels per block of the lane-per-channel kernels, or 0 when they do not apply.
int seq_width(const ScanArgs& a) {
  if (a.dstate > 16) return 0;
  int cw = 128;
  while (cw > 32 && cw / 2 >= a.dim) cw /= 2;
  if (a.ngroups > 1)
    while (cw > 1 && (a.dim / a.ngroups) % cw) cw /= 2;
  return cw;
}

struct FwdPlan {
  bool seq;
  int S, P, Lseg, CW;
};
// Forward for dstate <= 16: G = 16/S lanes per channel (S states each), CW channels per
// block (up to 4 warps of 32/G channels; a block's channels share one B/C group), and
// time segments only where channels × lanes do not fill the chip (measured on an H100,
// bench/NOTES-cuda.md): S = 4 for ~12K–64K channels (each exp once, ~1500+ warps),
// S = 16 otherwise, with segments (~128K walkers) when channels are few.
FwdPlan fwd_plan(const ScanArgs& a) {
  FwdPlan f{false, 16, 1, 0, 0};
  if (a.dstate > 16 || std::getenv("MAMBASEQ_SCAN_FWD_CFG")) return f;
  const int64_t ch = a.batch * a.dim;
  int S = ch * 4 >= 48 * 1024 && ch < 64 * 1024 ? 4 : 16, P = 0;
  // "S,P" override (tests and the benchmark's sweep)
  if (const char* v = std::getenv("MAMBASEQ_SCAN_FWD_Q"); v && *v) std::sscanf(v, "%d,%d", &S, &P);
  if (S != 2 && S != 4 && S != 8 && S != 16) return f;
  const int G = 16 / S, W = 32 / G;
  const int64_t dpg = a.dim / a.ngroups;
  if (a.ngroups > 1 && dpg % W) return f;
  int nw = 4;
  while (nw > 1 && (nw / 2) * W >= a.dim) nw /= 2;
  if (a.ngroups > 1)
    while (nw > 1 && dpg % (nw * W)) nw /= 2;
  f.seq = true, f.S = S, f.CW = nw * W;
  if (P <= 0) {  // S < 16 is chosen only where the chip fills without segments
    P = 1;
    while (S == 16 && ch * P < 128 * 1024 && a.len / (2 * P) >= 128 && P < 64) P *= 2;
  }
  int64_t seg = (a.len + P - 1) / P;
  seg = (seg + kScanChunk - 1) / kScanChunk * kScanChunk;
  f.Lseg = static_cast<int>(seg);
  f.P = static_cast<int>((a.len + seg - 1) / seg);
  return f;
}
struct BwdPlan {
  int S, G, NT, P, Lseg, CW;
  int seg_G;  // lanes a channel in the segment pass (P > 1)
};
BwdPlan bwd_plan(const ScanArgs& a) {
  BwdPlan p{};
  const int Npad = pow2ceil(a.dstate);
  p.NT = 128;
  if (!env_cfg("MAMBASEQ_SCAN_BWD_CFG", &p.S, &p.G, &p.NT)) {
    p.S = Npad < 4 ? Npad : 4, p.G = Npad / p.S;
    if (p.G >= 16) p.NT = 256;
  }
  p.CW = seq_width(a);
  p.P = 1, p.Lseg = static_cast<int>((a.len + kBwdUnit - 1) / kBwdUnit * kBwdUnit);
  // Time segments need the lane-per-channel local-adjoint kernel (dstate ≤ 16). ~384K
  // lanes, segments of ≥ 256 tokens, ≤ 32 of them (H100, session 7: (8,1536,2048) P = 8
  // 1.241 ms against P = 2 1.294 and P = 4 1.268; (2,1536,16384) P = 32 2.541 ≈ P = 16).
  if (p.CW >= 32)
    pick_segments(a, a.batch * a.dim * p.G, 384 * 1024, 256, 32, "MAMBASEQ_SCAN_BWD_SEG", &p.P, &p.Lseg);
  // Segment pass: G lanes a channel until ~40K lanes (its walkers are only channels ×
  // (P − 1): one warp a scheduler at 8·1536 channels and P = 2).
  p.seg_G = 1;
  while (p.P > 1 && p.seg_G < 8 && a.batch * a.dim * (p.P - 1) * p.seg_G < 40 * 1024) p.seg_G *= 2;
  p.seg_G = env_int("MAMBASEQ_SCAN_BWD_SEG_G", p.seg_G);
  return p;
}

// Device scratch for the segment pass, owned for one call when the caller gives none.
struct Scratch {
  float* p = nullptr;
  Stream s = nullptr;
  Scratch(const Ctx& x, float* given, int64_t floats, Stream st) : s(st) {
    if (given || floats == 0) {
      p = given;
      return;
    }
    void* q = nullptr;
    const cudaError_t e = cudaMallocAsync(&q, floats * 4, st);
    if (e != cudaSuccess) x.fail(fmt::format("cannot allocate {} bytes of workspace: {}", floats * 4, cudaGetErrorString(e)));
    p = static_cast<float*>(q);
    owned = true;
  }
  ~Scratch() {
    if (owned) cudaFreeAsync(p, s);
  }
  bool owned = false;
};

}  // namespace

int64_t scan_workspace_floats(const ScanArgs& a) {
  const FwdPlan f = fwd_plan(a);
  const BwdPlan b = bwd_plan(a);
  const int P = std::max(f.seq ? f.P : 1, b.P);
  return P > 1 ? a.batch * P * a.dim * 17 : 0;
}

void selective_scan_fwd(const ScanArgs& a, void* out, int64_t out_ld, float* h_final, float* ckpt,
                        Stream stream, float* workspace) {
  const Ctx x = scan_ctx("selective_scan_fwd", a);
  check_scan(x, a);
  const int es = dtype_size(a.dtype);
  x.ptr(out, "out", es, true);
  x.ptr(h_final, "h_final", 4, false);
  x.ptr(ckpt, "checkpoints", 4, false);
  x.check(out_ld >= a.dim, "out_ld < dim");
  ScanK k;
  fill_common(k, a);
  k.out = out, k.out_ld = out_ld, k.h_final = h_final, k.ckpt = ckpt;
  k.ck4 = a.dstate % 4 == 0 && aligned(ckpt, 16) && aligned(h_final, 16);  // 16-byte state rows
  k.tanh_gate = a.dtype != DType::f32 && env_int("MAMBASEQ_SCAN_TANH", 0) == 1;  // A/B, untimed
  const FwdPlan plan = fwd_plan(a);
  if (plan.seq) {
    k.seq = true, k.S = plan.S, k.CW = plan.CW, k.CB = plan.CW, k.P = plan.P, k.Lseg = plan.Lseg;
    k.dpg = static_cast<int>(a.dim / a.ngroups);
    k.vec = (plan.CW * es) % 16 == 0 && rows16(k, es, {{a.u, a.u_ld}, {a.delta, a.delta_ld}, {a.z, a.z_ld}});
    const Scratch ws(x, workspace, k.P > 1 ? a.batch * k.P * a.dim * 17 : 0, stream);
    k.ws = ws.p;
    x.launched(detail::scan_fwd_launch(k, stream));
    return;
  }
  int S, G, NT = 128;
  const int Npad = pow2ceil(a.dstate);
  if (!env_cfg("MAMBASEQ_SCAN_FWD_CFG", &S, &G, &NT)) pick_split(a.batch * a.dim, Npad, 16, &S, &G);
  x.check(S == 2 || S == 4 || S == 8 || S == 16, "unsupported states per lane");
  x.check(fill_block(a, k, S, G, NT), "unusable launch shape S={} G={} NT={}", S, G, NT);
  k.vec = rows16(k, es, {{a.u, a.u_ld}, {a.delta, a.delta_ld}, {a.z, a.z_ld}});
  // Largest tile that keeps a block under ~50 KB of shared memory (several blocks per SM).
  k.Tt = 16;
  for (int Tt : {64, 32}) {
    if (detail::scan_fwd_smem(es, k.NT, k.CB, Tt, k.N, k.Npad) <= 50 * 1024) {
      k.Tt = Tt;
      break;
    }
  }
  k.smem = detail::scan_fwd_smem(es, k.NT, k.CB, k.Tt, k.N, k.Npad);
  x.launched(detail::scan_fwd_launch(k, stream));
}

void selective_scan_bwd(const ScanArgs& a, const void* dout, int64_t dout_ld, const float* ckpt,
                        const ScanGrads& g, Stream stream, float* workspace) {
  const Ctx x = scan_ctx("selective_scan_bwd", a);
  check_scan(x, a);
  const int es = dtype_size(a.dtype);
  x.ptr(dout, "dout", es, true);
  x.ptr(ckpt, "checkpoints (from selective_scan_fwd)", 4, true);
  x.ptr(g.du, "du", es, true);
  x.ptr(g.ddelta, "ddelta", es, true);
  x.ptr(g.dz, "dz", es, a.z != nullptr);
  x.ptr(g.dA, "dA", 4, true);
  x.ptr(g.dB, "dB", 4, true);
  x.ptr(g.dC, "dC", 4, true);
  x.ptr(g.dD, "dD", 4, a.D != nullptr);
  x.ptr(g.ddelta_bias, "ddelta_bias", 4, a.delta_bias != nullptr);
  x.ptr(g.dh0, "dh0", 4, false);
  x.check(dout_ld >= a.dim && g.du_ld >= a.dim && g.ddelta_ld >= a.dim && (!a.z || g.dz_ld >= a.dim),
          "a gradient row stride is smaller than dim");
  x.check(g.dbc_ld >= a.ngroups * a.dstate, "dbc_ld < ngroups*dstate");
  ScanK k;
  fill_common(k, a);
  k.ckpt_in = ckpt, k.dout = dout, k.dout_ld = dout_ld;
  k.ck4 = a.dstate % 4 == 0 && aligned(ckpt, 16);
  k.du = g.du, k.du_ld = g.du_ld, k.ddelta = g.ddelta, k.ddelta_ld = g.ddelta_ld;
  k.dz = a.z ? g.dz : nullptr, k.dz_ld = g.dz_ld;
  k.dA = g.dA, k.dB = g.dB, k.dC = g.dC, k.dbc_ld = g.dbc_ld;
  k.dD = a.D ? g.dD : nullptr, k.dbias = a.delta_bias ? g.ddelta_bias : nullptr, k.dh0 = g.dh0;
  const BwdPlan plan = bwd_plan(a);
  const int S = plan.S, G = plan.G, NT = plan.NT;
  x.check(S == 1 || S == 2 || S == 4, "unsupported states per lane");
  x.check(fill_block(a, k, S, G, NT), "unusable launch shape S={} G={} NT={}", S, G, NT);
  k.P = plan.P, k.Lseg = plan.Lseg, k.CW = plan.CW;
  x.check(plan.seg_G == 1 || plan.seg_G == 2 || plan.seg_G == 4 || plan.seg_G == 8,
          "MAMBASEQ_SCAN_BWD_SEG_G must be 1, 2, 4 or 8");
  k.seg_S = 16 / plan.seg_G;
  const Scratch ws(x, workspace, k.P > 1 ? a.batch * k.P * a.dim * 17 : 0, stream);
  k.ws = ws.p;
  k.vec = rows16(k, es, {{a.u, a.u_ld}, {a.delta, a.delta_ld}, {a.z, a.z_ld}, {dout, dout_ld}});
  k.bwd_fixed = env_int("MAMBASEQ_SCAN_BWD_FIXED", 1) != 0;
  // 32-token chunks of 4 where the fixed shape applies and checkpoints are every 32 (3
  // blocks an SM), else 64 of 8 (MAMBASEQ_SCAN_BWD_CH=64 forces those: the A/B).
  k.Tsub = detail::scan_bwd_fixed_shape(k) && k.ck_every == 32 && env_int("MAMBASEQ_SCAN_BWD_CH", 32) == 32 ? 4 : 8;
  k.bwd_ve = env_int("MAMBASEQ_SCAN_BWD_VE", 0);
  k.bwd_ilp = env_int("MAMBASEQ_SCAN_BWD_ILP", 1) != 0;
  x.check(k.bwd_ve == 0 || k.bwd_ve == 1 || k.bwd_ve == 2 || k.bwd_ve == 4, "MAMBASEQ_SCAN_BWD_VE must be 1, 2 or 4");
  k.smem = detail::scan_bwd_smem(es, k.NT, k.CB, k.Tsub, k.N, k.Npad, k.S);
  x.check(k.smem <= 227 * 1024, "needs {} bytes of shared memory", k.smem);
  x.launched(detail::scan_bwd_launch(k, stream));
}

void selective_scan_step(const ScanArgs& a, float* h, void* out, int64_t out_ld, Stream stream) {
  const Ctx x = scan_ctx("selective_scan_step", a);
  check_scan(x, a);
  x.check(a.len == 1, "len must be 1");
  x.ptr(h, "h", 4, true);
  x.ptr(out, "out", dtype_size(a.dtype), true);
  x.check(out_ld >= a.dim, "out_ld < dim");
  ScanK k;
  fill_common(k, a);
  k.dpg = static_cast<int>(a.dim / a.ngroups);
  k.h_final = h, k.out = out, k.out_ld = out_ld;
  x.launched(detail::scan_step_launch(k, stream));
}

// ---- conv1d -------------------------------------------------------------------------
namespace {

int env_int_conv(const char* name, int dflt) {
  const char* v = std::getenv(name);
  const int x = v && *v ? std::atoi(v) : 0;
  return x > 0 ? x : dflt;
}

std::string conv_shape(const void* p) {
  const Conv1dArgs& a = *static_cast<const Conv1dArgs*>(p);
  return fmt::format("batch={} len={} channels={} width={} {}", a.batch, a.len, a.channels, a.width,
                     dtype_name(a.dtype));
}
Ctx conv_ctx(const char* kernel, const Conv1dArgs& a) { return {kernel, &a, conv_shape}; }

void check_conv(const Ctx& x, const Conv1dArgs& a) {
  x.check(a.dtype == DType::f32 || a.dtype == DType::f16 || a.dtype == DType::bf16, "unsupported dtype");
  x.check(a.batch >= 1 && a.len >= 1 && a.channels >= 1, "batch, len and channels must be positive");
  x.check(a.width >= 1 && a.width <= 64, "width must be in 1..64");
  x.check(a.batch <= 65535 && a.len <= (int64_t(1) << 30) && a.channels <= (int64_t(1) << 24),
          "shape too large");
  const int es = dtype_size(a.dtype);
  x.ptr(a.x, "x", es, true);
  x.ptr(a.w, "w", 4, true);
  x.ptr(a.bias, "bias", 4, false);
  x.ptr(a.init_state, "init_state", es, false);
  x.check(a.x_ld >= a.channels, "x_ld < channels");
  x.check(a.x_ld < (int64_t(1) << 31), "x_ld >= 2^31");  // the kernels' row strides are 32-bit
}

// The fast path's map for runs of `run` tokens, `bytes` of channels a thread.
detail::FastMap conv_map(const Conv1dArgs& a, int64_t run, int bytes) {
  return detail::fast_map(static_cast<int>(a.channels), bytes / dtype_size(a.dtype), static_cast<int>(a.len),
                          static_cast<int>(run));
}
// Blocks for runs of `run` tokens.
int64_t conv_blocks(const Conv1dArgs& a, int64_t run, int bytes = 8) {
  const detail::FastMap m = conv_map(a, run, bytes);
  return int64_t(m.groups()) * m.run_groups() * a.batch;
}
// The shortest run (≥ 32 tokens) for which the blocks fill `slots` resident blocks at
// most, or 0 when even one run group per sequence needs more.
int64_t run_for_slots(const Conv1dArgs& a, int64_t slots, int bytes = 8) {
  const int64_t groups = slots / conv_blocks(a, a.len, bytes);  // run groups that fit
  if (groups < 1) return 0;
  const int64_t RB = conv_map(a, a.len, bytes).RB;
  return std::max<int64_t>(32, (a.len + groups * RB - 1) / (groups * RB));
}

ConvK conv_fill(const Conv1dArgs& a) {
  ConvK k;
  k.dtype = static_cast<int>(a.dtype);
  k.batch = static_cast<int>(a.batch), k.len = static_cast<int>(a.len);
  k.C = static_cast<int>(a.channels), k.K = static_cast<int>(a.width);
  k.silu = a.silu;
  k.x = a.x, k.x_ld = a.x_ld, k.w = a.w, k.bias = a.bias, k.init = a.width > 1 ? a.init_state : nullptr;
  // 8 bytes of channels a thread and runs of 32 tokens measured best on an H100 (runs
  // amortise the K−1 halo rows; shorter ones only when the chip would not fill).
  k.ring = env_int("MAMBASEQ_CONV_RING", 0) == 1;
  k.narrow = env_int("MAMBASEQ_CONV_NARROW_FWD", 0) == 1;  // forward only (A/B, untimed)
  k.tanh = a.dtype != DType::f32 && env_int("MAMBASEQ_CONV_TANH", 0) == 1;  // fast paths (A/B, untimed)
  k.rows_bwd = env_int_conv("MAMBASEQ_CONV_ROWS_BWD", 4) == 8 ? 8 : 4;
  k.interior = env_int("MAMBASEQ_CONV_INTERIOR", 1) != 0;
  const int64_t vecs = a.batch * a.channels / (8 / dtype_size(a.dtype));
  k.run = 32;
  while (k.run > 8 && vecs * ((a.len + k.run - 1) / k.run) < 64 * 1024) k.run /= 2;
  // Long runs (128, else 256) where they fit in one partial wave, measured faster there
  // than several waves of short ones; short runs where even 256 would need more.
  if (const int cap = detail::conv_fast_capacity(k, false); cap > 0) {
    const int bytes = k.narrow ? 4 : 8;
    if (env_int("MAMBASEQ_CONV_FWD_FILL", 0) == 1) {
      // One wave at full residency: the shortest run whose blocks all fit.
      if (const int64_t run = run_for_slots(a, cap, bytes); run > 0) k.run = static_cast<int>(run);
    } else if (conv_blocks(a, 128, bytes) <= cap) {
      k.run = 128;
    } else if (conv_blocks(a, 256, bytes) <= cap) {
      k.run = 256;
    }
  }
  k.run = env_int_conv("MAMBASEQ_CONV_RUN", k.run);
  k.run = env_int_conv("MAMBASEQ_CONV_RUN_FWD", k.run);

  return k;
}

bool conv_vec(const Conv1dArgs& a, std::initializer_list<std::pair<const void*, int64_t>> t) {
  const int es = dtype_size(a.dtype);
  if ((a.channels * es) % 16) return false;
  for (auto [p, ld] : t)
    if (p && (!aligned(p, 16) || (ld * es) % 16)) return false;
  return true;
}

}  // namespace

void conv1d_fwd(const Conv1dArgs& a, void* out, int64_t out_ld, void* final_state, Stream stream) {
  const Ctx x = conv_ctx("conv1d_fwd", a);
  check_conv(x, a);
  const int es = dtype_size(a.dtype);
  x.ptr(out, "out", es, true);
  x.ptr(final_state, "final_state", es, false);
  x.check(out_ld >= a.channels, "out_ld < channels");
  ConvK k = conv_fill(a);
  k.out = out, k.out_ld = out_ld, k.final_state = a.width > 1 ? final_state : nullptr;
  k.vec = conv_vec(a, {{a.x, a.x_ld}, {out, out_ld}});
  x.launched(detail::conv_fwd_launch(k, stream));
}

void conv1d_bwd(const Conv1dArgs& a, const void* dout, int64_t dout_ld, void* dx, int64_t dx_ld, float* dw,
                float* dbias, void* dinit_state, Stream stream) {
  const Ctx x = conv_ctx("conv1d_bwd", a);
  check_conv(x, a);
  const int es = dtype_size(a.dtype);
  x.ptr(dout, "dout", es, true);
  x.ptr(dx, "dx", es, true);
  x.ptr(dw, "dw", 4, true);
  x.ptr(dbias, "dbias", 4, a.bias != nullptr);
  x.ptr(dinit_state, "dinit_state", es, false);
  x.check(dout_ld >= a.channels && dx_ld >= a.channels, "dout_ld or dx_ld < channels");
  x.check(dout_ld < (int64_t(1) << 31) && dx_ld < (int64_t(1) << 31), "dout_ld or dx_ld >= 2^31");
  ConvK k = conv_fill(a);
  k.dout = dout, k.dout_ld = dout_ld, k.dx = dx, k.dx_ld = dx_ld, k.dw = dw;
  k.dbias = a.bias ? dbias : nullptr, k.dinit = a.width > 1 ? dinit_state : nullptr;
  k.vec = conv_vec(a, {{a.x, a.x_ld}, {dout, dout_ld}, {dx, dx_ld}});
  // Run length: a fallback by thread count, then (fast path) a per-wave cost model.
  {
    const int64_t vecs = a.batch * a.channels / (8 / dtype_size(a.dtype));
    k.run = 128;
    while (k.run > 16 && vecs * ((a.len + k.run - 1) / k.run) < 24 * 1024) k.run /= 2;
    // Each thread walks its run serially: time ≈ waves × (run + overhead). Pick the run
    // (32..512 tokens) that minimises it for the resident-block capacity.
    if (const int cap = detail::conv_fast_capacity(k, true); cap > 0 && k.vec && a.width >= 2 && a.width <= 4) {
      // candidates: for w = 1, 2, … waves, the shortest run that fits in w waves
      int64_t best = -1;
      for (int64_t w = 1; w <= 64; ++w) {
        int64_t run = run_for_slots(a, w * cap);
        if (run == 0) continue;
        run = std::min<int64_t>(512, run);
        const int64_t cost = (conv_blocks(a, run) + cap - 1) / cap * (run + 24);
        if (best < 0 || cost < best) best = cost, k.run = static_cast<int>(run);
        if (run == 32) break;
      }
    }
    k.run = env_int_conv("MAMBASEQ_CONV_RUN", k.run);
    k.run = env_int_conv("MAMBASEQ_CONV_RUN_BWD", k.run);
  }
  x.launched(detail::conv_bwd_launch(k, stream));
}

void conv1d_step(const Conv1dArgs& a, void* conv_state, void* out, int64_t out_ld, Stream stream) {
  const Ctx x = conv_ctx("conv1d_step", a);
  check_conv(x, a);
  x.check(a.len == 1, "len must be 1");
  const int es = dtype_size(a.dtype);
  x.ptr(conv_state, "conv_state", es, a.width > 1);
  x.ptr(out, "out", es, true);
  x.check(out_ld >= a.channels, "out_ld < channels");
  ConvK k = conv_fill(a);
  k.state = conv_state, k.out = out, k.out_ld = out_ld;
  x.launched(detail::conv_step_launch(k, stream));
}

}  // namespace mambaseq::cuda
