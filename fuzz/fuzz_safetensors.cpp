// safetensors reader: header JSON, dtypes, shapes, offsets (truncated files, overlaps,
// offsets past the end, overflowing shapes), then reading every tensor it accepted.
#include "fuzz/fuzz_util.h"
#include "mambaseq/error.h"
#include "mambaseq/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::as_file(data, size);
  try {
    mambaseq::SafeTensorsReader r(path);
    for (const std::string& name : r.names()) {
      const mambaseq::TensorInfo& t = r.info(name);
      if (t.end - t.begin > (uint64_t{1} << 22)) continue;  // keep each run fast
      try {
        switch (t.dtype) {
          case mambaseq::DType::F64: case mambaseq::DType::F32: case mambaseq::DType::F16: case mambaseq::DType::BF16:
            (void)r.read_f32(name);
            (void)r.read_f64(name);
            break;
          default:
            (void)r.read_i64(name);
        }
        (void)r.raw(name);
      } catch (const mambaseq::Error&) {
      }
    }
    (void)r.metadata();
  } catch (const mambaseq::Error&) {
    // A clear error is the expected outcome for a bad file.
  }
  return 0;
}
