// Tensor: an owning, contiguous, row-major fp32 buffer with a shape.
// Ownership is simple on purpose: a Tensor owns its memory, moves are cheap,
// copies are explicit (clone()). Kernels take raw pointers plus sizes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace mambaseq {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// Bytes currently held by all Tensors, and the high-water mark (for benchmarks).
struct MemStats {
  static int64_t current();
  static int64_t peak();
  static void reset_peak();
};

namespace detail {
struct TensorFree {  // frees an aligned buffer and keeps MemStats in step
  size_t bytes = 0;
  void operator()(float* p) const;
};
}  // namespace detail

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape);                 // zero-initialised
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  Tensor clone() const;
  // Re-shape; reallocates only when the element count grows beyond capacity.
  void resize(Shape shape);
  void zero();
  void fill(float v);

  float* data() { return ptr_.get(); }
  const float* data() const { return ptr_.get(); }
  int64_t numel() const { return numel_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  bool empty() const { return numel_ == 0; }
  float& operator[](int64_t i) { return ptr_.get()[i]; }
  float operator[](int64_t i) const { return ptr_.get()[i]; }
  size_t bytes() const { return static_cast<size_t>(numel_) * sizeof(float); }

 private:
  using Free = detail::TensorFree;
  Shape shape_;
  int64_t numel_ = 0;
  int64_t capacity_ = 0;
  std::unique_ptr<float[], Free> ptr_;
};

// A trainable parameter: value, gradient, and whether AdamW decays it.
struct Param {
  std::string name;  // Hugging Face name, e.g. backbone.layers.0.mixer.A_log
  Tensor w;
  Tensor g;
  bool decay = true;
  Param(std::string n, Shape s, bool d = true) : name(std::move(n)), w(s), g(s), decay(d) {}
};

}  // namespace mambaseq
