// safetensors reading (memory-mapped, fully validated) and writing (atomic).
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}},
// then the raw little-endian tensor data; offsets are relative to the data section.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mambaseq/tensor.h"

namespace mambaseq {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType d);              // "F32", "BF16", ... as in the file format
DType dtype_from_name(const std::string& s);  // Error "unsupported dtype 'X'" otherwise
size_t dtype_size(DType d);                   // bytes per element

// IEEE half / bfloat16 <-> float. Narrowing rounds to nearest even; NaN stays NaN
// (quiet), overflow goes to inf, subnormals are exact both ways.
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // byte offsets relative to the start of the data section
};

class SafeTensorsReader {
 public:
  // Maps `path` read-only and validates the whole header; every problem is an Error
  // naming the file. The file must not be truncated while the reader lives (SIGBUS).
  explicit SafeTensorsReader(const std::string& path);
  ~SafeTensorsReader();
  SafeTensorsReader(SafeTensorsReader&&) noexcept;
  SafeTensorsReader& operator=(SafeTensorsReader&&) noexcept;
  SafeTensorsReader(const SafeTensorsReader&) = delete;
  SafeTensorsReader& operator=(const SafeTensorsReader&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // Error naming tensor and file if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Float dtypes (F32, F16, BF16, F64) converted to fp32.
  Tensor read_f32(const std::string& name) const;
  // Same, but first checks the shape: "tensor X in FILE has shape [..], expected [..]".
  Tensor read_f32(const std::string& name, const Shape& expected) const;
  // Converts into an existing tensor without reallocating; its shape is the expected one.
  void read_f32_into(const std::string& name, Tensor& dst) const;
  std::vector<int64_t> read_i64(const std::string& name) const;  // I64 I32 I16 I8 U8 BOOL
  std::vector<double> read_f64(const std::string& name) const;   // F64 F32 F16 BF16
  // Pointer to the tensor's bytes inside the mapping (valid while the reader lives).
  // Not necessarily aligned to the element size: copy with memcpy.
  const void* raw(const std::string& name) const;

 private:
  void parse_header();
  void check_shape(const std::string& name, const Shape& expected) const;
  const uint8_t* data(const TensorInfo& t) const { return base_ + data_start_ + t.begin; }

  std::string path_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;        // file size in bytes
  size_t data_start_ = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

class SafeTensorsWriter {
 public:
  // The data is copied (converted) immediately, so the caller's buffer may be reused.
  // out: F32, F16, BF16 (both round-to-nearest-even) or F64.
  void add(const std::string& name, const float* data, Shape shape, DType out = DType::F32);
  void add_i64(const std::string& name, const int64_t* data, Shape shape);
  // out: F64 or F32.
  void add_f64(const std::string& name, const double* data, Shape shape, DType out = DType::F64);
  void set_metadata(const std::string& key, const std::string& value);
  // Tensors in insertion order, contiguous; header space-padded to a multiple of 8.
  // Atomic: written to path.tmp.<pid>, fsync'd, renamed over path.
  void write(const std::string& path) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    std::vector<uint8_t> bytes;
  };
  Entry& new_entry(const std::string& name, DType dtype, Shape shape);
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Replace `path` with `bytes` atomically (temp file + fsync + rename); on failure the
// temp file is removed, `path` is untouched, and an Error names the path.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace mambaseq
