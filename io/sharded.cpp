// Sharded checkpoints (model.safetensors.index.json + model-0000k-of-0000n.safetensors)
// and the single-file case behind one interface (checkpoint.h).
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/checkpoint.h"
#include "mambaseq/error.h"

namespace mambaseq {

namespace fs = std::filesystem;

namespace {
std::string printable(const std::string& s) {
  std::string r;
  for (unsigned char c : s.substr(0, 120)) {
    if (c < 0x20 || c == 0x7f) r += fmt::format("\\x{:02x}", c);
    else r += static_cast<char>(c);
  }
  return s.size() > 120 ? r + "..." : r;
}
}  // namespace

std::map<std::string, std::string> parse_safetensors_index(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad JSON: {}", origin, e.what());
  }
  MS_CHECK(j.is_object(), "{}: the index is not a JSON object", origin);
  if (j.contains("metadata"))
    MS_CHECK(j["metadata"].is_object() || j["metadata"].is_null(), "{}: 'metadata' must be an object", origin);
  MS_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), "{}: no 'weight_map' object", origin);
  std::map<std::string, std::string> m;
  for (auto& [name, file] : j["weight_map"].items()) {
    MS_CHECK(file.is_string(), "{}: weight_map entry '{}' must be a file name string, found {}", origin,
             printable(name), file.type_name());
    const std::string f = file.get<std::string>();
    // Shards sit beside the index: a path could read any file on the machine.
    MS_CHECK(!f.empty() && f != "." && f != ".." && f.find('/') == std::string::npos &&
                 f.find('\\') == std::string::npos && f.find('\0') == std::string::npos,
             "{}: weight_map entry '{}' names '{}', which is not a plain file name beside the index", origin,
             printable(name), printable(f));
    m.emplace(name, f);
  }
  MS_CHECK(!m.empty(), "{}: weight_map is empty", origin);
  return m;
}

CheckpointTensors CheckpointTensors::single(const std::string& path) {
  CheckpointTensors c;
  c.source_ = path;
  c.files_.emplace_back(path);
  for (const auto& n : c.files_[0].names()) c.where_.emplace(n, 0);
  return c;
}

CheckpointTensors::CheckpointTensors(const std::string& dir) {
  MS_CHECK(fs::is_directory(dir), "model directory {} does not exist", dir);
  const std::string single_path = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  if (fs::exists(single_path)) {
    *this = single(single_path);
    return;
  }
  if (!fs::exists(index)) {
    MS_CHECK(!fs::exists(dir + "/pytorch_model.bin") && !fs::exists(dir + "/pytorch_model.bin.index.json"),
             "{}: only PyTorch pickle weights (pytorch_model.bin) are there; mambaseq reads safetensors: convert "
             "them (e.g. transformers' save_pretrained(..., safe_serialization=True))",
             dir);
    fail("{}: neither model.safetensors nor model.safetensors.index.json is there", dir);
  }
  source_ = index;
  std::ifstream in(index, std::ios::binary);
  MS_CHECK(in.good(), "cannot open {}", index);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto map = parse_safetensors_index(ss.str(), index);
  std::map<std::string, size_t> shard;
  for (const auto& [name, file] : map) {
    auto it = shard.find(file);
    if (it == shard.end()) {
      const std::string p = dir + "/" + file;
      MS_CHECK(fs::exists(p), "{}: shard {} (holding '{}') is missing", index, file, printable(name));
      files_.emplace_back(p);
      it = shard.emplace(file, files_.size() - 1).first;
    }
    MS_CHECK(files_[it->second].has(name), "{}: the index puts tensor '{}' in {}, which does not hold it", index,
             printable(name), file);
    where_.emplace(name, it->second);
  }
}

const SafeTensorsReader& CheckpointTensors::file_of(const std::string& name) const {
  auto it = where_.find(name);
  MS_CHECK(it != where_.end(), "tensor '{}' not found in {}", printable(name), source_);
  return files_[it->second];
}

std::vector<std::string> CheckpointTensors::names() const {
  std::vector<std::string> r;
  for (auto& [n, _] : where_) r.push_back(n);
  return r;
}

}  // namespace mambaseq
