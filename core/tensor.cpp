#include "mambaseq/tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "mambaseq/error.h"

namespace mambaseq {

namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};

float* alloc_floats(int64_t n) {
  if (n == 0) return nullptr;
  size_t bytes = ((static_cast<size_t>(n) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail("out of memory: could not allocate {} MiB for a tensor", bytes >> 20);
  int64_t cur = g_current.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
  int64_t pk = g_peak.load();
  while (cur > pk && !g_peak.compare_exchange_weak(pk, cur)) {}
  return static_cast<float*>(p);
}
size_t padded_bytes(int64_t n) { return ((static_cast<size_t>(n) * sizeof(float) + 63) / 64) * 64; }
}  // namespace

int64_t MemStats::current() { return g_current.load(); }
int64_t MemStats::peak() { return g_peak.load(); }
void MemStats::reset_peak() { g_peak.store(g_current.load()); }

void detail::TensorFree::operator()(float* p) const {
  if (!p) return;
  g_current.fetch_sub(static_cast<int64_t>(bytes));
  std::free(p);
}

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) {
    MS_CHECK(d >= 0, "negative dimension in shape {}", shape_str(s));
    n *= d;
  }
  return n;
}

Tensor::Tensor(Shape shape) { resize(std::move(shape)); }

void Tensor::resize(Shape shape) {
  int64_t n = shape_numel(shape);
  shape_ = std::move(shape);
  if (n > capacity_) {
    ptr_ = std::unique_ptr<float[], Free>(alloc_floats(n), Free{padded_bytes(n)});
    capacity_ = n;
    numel_ = n;
    zero();
  }
  numel_ = n;
}

Tensor Tensor::clone() const {
  Tensor t(shape_);
  if (numel_) std::memcpy(t.data(), data(), bytes());
  return t;
}

void Tensor::zero() {
  if (numel_) std::memset(ptr_.get(), 0, bytes());
}

void Tensor::fill(float v) {
  for (int64_t i = 0; i < numel_; ++i) ptr_[i] = v;
}

}  // namespace mambaseq
