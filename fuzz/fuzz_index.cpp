// model.safetensors.index.json: weight_map parsing and the shard-name check (no paths).
#include <cstdlib>

#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto m = mambaseq::parse_safetensors_index(std::string(reinterpret_cast<const char*>(data), size), "index.json");
    for (const auto& [name, file] : m)
      if (file.empty() || file.find('/') != std::string::npos || file == "..") std::abort();
  } catch (const mambaseq::Error&) {
  }
  return 0;
}
