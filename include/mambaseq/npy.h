// Streaming output files: NumPy .npy and safetensors arrays whose row count is known only
// at the end, and atomic text outputs. Rows go to a temporary file as they are produced
// (in any order: positioned writes), so no caller holds a whole array in memory; finish()
// writes the final header, fsyncs and renames over the target. A writer destroyed
// without finish() removes its temporary files: never a half-written output.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "mambaseq/tensor.h"

namespace mambaseq {

// A float32 [rows, cols] array in .npy format (version 1.0, '<f4', C order).
class NpyWriter {
 public:
  NpyWriter(const std::string& path, int64_t cols);
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;
  void write_rows(int64_t row, const float* data, int64_t n);  // rows [row, row + n)
  void finish(int64_t rows);  // every row below `rows` must have been written
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  int64_t cols_;
};

struct NpyArray {
  Shape shape;
  std::vector<float> data;  // '<f4' or '<f8' (converted), C order
};
NpyArray read_npy(const std::string& path);

// A safetensors file of 2-D F32 tensors streamed row by row, plus small I64 tensors
// given whole at the end. Tensor 0 streams straight into the output's temporary file;
// the others into side files appended by finish().
class SafeTensorsStreamWriter {
 public:
  SafeTensorsStreamWriter(const std::string& path, std::vector<std::pair<std::string, int64_t>> tensors);
  ~SafeTensorsStreamWriter();
  SafeTensorsStreamWriter(const SafeTensorsStreamWriter&) = delete;
  SafeTensorsStreamWriter& operator=(const SafeTensorsStreamWriter&) = delete;
  void write_rows(size_t tensor, int64_t row, const float* data, int64_t n);
  void add_i64(const std::string& name, std::vector<int64_t> data);  // 1-D
  void set_metadata(const std::string& key, const std::string& value);
  void finish(const std::vector<int64_t>& rows);  // rows of each streamed tensor

 private:
  std::string path_, tmp_;
  std::vector<std::pair<std::string, int64_t>> tensors_;
  std::vector<int> fds_;
  std::vector<std::string> tmps_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> i64_;
  std::vector<std::pair<std::string, std::string>> meta_;
  bool done_ = false;
  void cleanup();
};

// A text output (stdout when path is "" or "-"): written to a temporary file and renamed
// over the path by commit(); without commit() the temporary file is removed.
class AtomicOutput {
 public:
  explicit AtomicOutput(const std::string& path);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;
  FILE* file() { return f_; }
  void write(const std::string& s);
  void commit();

 private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  bool is_stdout_ = false;
};

}  // namespace mambaseq
