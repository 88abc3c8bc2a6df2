// Internal device helpers shared by the CUDA kernels: dtype conversion, fast math,
// asynchronous copies.
#pragma once
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace mambaseq::cuda::detail {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- dtypes -----------------------------------------------------------------------
template <typename T>
struct Cvt;
template <>
struct Cvt<float> {
  static __device__ __forceinline__ float to(float v) { return v; }
  static __device__ __forceinline__ float from(float v) { return v; }
};
template <>
struct Cvt<__half> {
  static __device__ __forceinline__ float to(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from(float v) { return __float2half_rn(v); }
};
template <>
struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ float to(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from(float v) { return __float2bfloat16_rn(v); }
};
template <typename T>
__device__ __forceinline__ float to_f(T v) {
  return Cvt<T>::to(v);
}
template <typename T>
__device__ __forceinline__ T from_f(float v) {
  return Cvt<T>::from(v);
}

// Elements in 16 bytes.
template <typename T>
constexpr int kVec = 16 / sizeof(T);

// 16 bytes of T (from shared or global memory) to floats, and back.
template <typename T>
__device__ __forceinline__ void unpack16(const uint4& v, float (&f)[kVec<T>]) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) f[i] = to_f(e[i]);
}
template <typename T>
__device__ __forceinline__ uint4 pack16(const float (&f)[kVec<T>]) {
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) e[i] = from_f<T>(f[i]);
  return v;
}

// V elements of T as one 4-, 8- or 16-byte register vector.
template <int Bytes>
struct RawVec;
template <>
struct RawVec<4> {
  using type = unsigned;
};
template <>
struct RawVec<8> {
  using type = uint2;
};
template <>
struct RawVec<16> {
  using type = uint4;
};
template <typename T, int V>
using raw_t = typename RawVec<V * static_cast<int>(sizeof(T))>::type;
template <typename T, int V>
__device__ __forceinline__ void unpack(const raw_t<T, V>& r, float (&f)[V]) {
  const T* e = reinterpret_cast<const T*>(&r);
#pragma unroll
  for (int i = 0; i < V; ++i) f[i] = to_f(e[i]);
}
// 16-bit types two at a time (one paired convert, whole-register moves: element-wise
// 16-bit writes into the vector made the compiler split some 8-byte stores in two).
template <typename T, int V>
__device__ __forceinline__ raw_t<T, V> pack(const float (&f)[V]) {
  raw_t<T, V> r;
  if constexpr (sizeof(T) == 2 && V % 2 == 0) {
    unsigned* w = reinterpret_cast<unsigned*>(&r);
#pragma unroll
    for (int i = 0; i < V / 2; ++i) {
      if constexpr (std::is_same_v<T, __nv_bfloat16>) {
        const __nv_bfloat162 q = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
        w[i] = *reinterpret_cast<const unsigned*>(&q);
      } else {
        const __half2 q = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
        w[i] = *reinterpret_cast<const unsigned*>(&q);
      }
    }
  } else {
    T* e = reinterpret_cast<T*>(&r);
#pragma unroll
    for (int i = 0; i < V; ++i) e[i] = from_f<T>(f[i]);
  }
  return r;
}

// ---- fast math ----------------------------------------------------------------------
// The scan is bound by the special-function unit (one exp per state update), so the
// hardware approximations are used directly; each is within a few ulp.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float lg2(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float rcp(float x) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float sigmoid_f(float x) { return rcp(1.f + ex2(-x * kLog2e)); }
__device__ __forceinline__ float silu_f(float x) { return x * sigmoid_f(x); }
// d silu / dx = σ(x)·(1 + x·(1 − σ(x)))
__device__ __forceinline__ float silu_grad_f(float x) {
  const float s = sigmoid_f(x);
  return s * (1.f + x * (1.f - s));
}
// SiLU through one tanh on the special-function unit (tanh.approx.f32: relative error
// ~2^-11, so for 16-bit activations only), from h = x/2, which callers get for free by
// halving the weights and bias that produce x. With t = tanh h, σ(x) = (1 + t)/2:
//   silu(x) = h·(1 + t),   2·silu'(x) − 1 = t + h·(1 − t²)
// one MUFU op and 1–2 FMAs where σ costs two MUFU ops (ex2, rcp) and silu' three more.
__device__ __forceinline__ float tanh_approx(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float silu_of_half(float h) { return fmaf(h, tanh_approx(h), h); }
__device__ __forceinline__ float silu_grad2m1_of_half(float h) {
  const float t = tanh_approx(h);
  return fmaf(h, fmaf(-t, t, 1.f), t);
}
// PyTorch's softplus (threshold 20). log1p(e) by its series where e is small: lg2 near 1
// has an absolute error that would be large relative to a small δ (Mamba's Δ bias puts
// typical δ near 1e-3).
__device__ __forceinline__ float softplus_f(float x) {
  if (x > 20.f) return x;
  const float e = ex2(x * kLog2e);
  if (e < 0.0625f) {
    float p = fmaf(e, -1.f / 6, 1.f / 5);
    p = fmaf(e, p, -1.f / 4);
    p = fmaf(e, p, 1.f / 3);
    p = fmaf(e, p, -1.f / 2);
    p = fmaf(e, p, 1.f);
    return e * p;
  }
  return kLn2 * lg2(1.f + e);
}
// The same function without branches (lanes of a warp disagreeing on the branch would
// run both): both forms computed, the right one selected.
__device__ __forceinline__ float softplus_nb(float x) {
  const float e = ex2(x * kLog2e);
  float p = fmaf(e, -1.f / 6, 1.f / 5);
  p = fmaf(e, p, -1.f / 4);
  p = fmaf(e, p, 1.f / 3);
  p = fmaf(e, p, -1.f / 2);
  p = fmaf(e, p, 1.f);
  const float r = e < 0.0625f ? e * p : kLn2 * lg2(1.f + e);
  return x > 20.f ? x : r;
}
__device__ __forceinline__ float softplus_grad_f(float x) { return x > 20.f ? 1.f : sigmoid_f(x); }

// ---- asynchronous copies (sm_80+) ----------------------------------------------------
// `valid` false zero-fills the destination without reading the source.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int n = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four consecutive elements of T (8- or 16-byte aligned) to floats.
template <typename T>
__device__ __forceinline__ void load4(const T* p, float (&f)[4]) {
  if constexpr (sizeof(T) == 4) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
  } else {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) f[i] = to_f(e[i]);
  }
}

// Two consecutive elements of T (4- or 8-byte aligned) to floats.
template <typename T>
__device__ __forceinline__ void load2(const T* p, float (&f)[2]) {
  if constexpr (sizeof(T) == 4) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    f[0] = v.x, f[1] = v.y;
  } else {
    const unsigned v = *reinterpret_cast<const unsigned*>(p);
    const T* e = reinterpret_cast<const T*>(&v);
    f[0] = to_f(e[0]), f[1] = to_f(e[1]);
  }
}

__host__ __device__ constexpr int align16(int x) { return (x + 15) & ~15; }

}  // namespace mambaseq::cuda::detail
