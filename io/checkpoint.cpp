#include "mambaseq/checkpoint.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <set>

#include "mambaseq/baselines.h"
#include "mambaseq/error.h"
#include "mambaseq/hf_config.h"

namespace mambaseq {

namespace fs = std::filesystem;

void save_model(const std::string& dir, Model& model) { save_model(dir, model, SaveOptions{}); }

namespace {
// The config a checkpoint carries. rescale_prenorm_residual only shapes the initialisation,
// which a checkpoint's weights are past; transformers 5.x (seen in 5.17) re-applies that
// rescale (out_proj.weight / sqrt(n_layer)) to the *loaded* weights when the flag is true,
// so checkpoints say false.
ModelConfig checkpoint_config(const Model& model) {
  ModelConfig c = model.cfg;
  c.mamba.rescale_prenorm_residual = false;
  return c;
}
}  // namespace

void save_model(const std::string& dir, Model& model, const SaveOptions& opt) {
  MS_CHECK(opt.dtype == DType::F32 || opt.dtype == DType::F16 || opt.dtype == DType::BF16 || opt.dtype == DType::F64,
           "cannot save {}: weights can be stored as F32, F16, BF16 or F64, not {}", dir, dtype_name(opt.dtype));
  std::error_code ec;
  fs::create_directories(dir, ec);
  MS_CHECK(!ec, "cannot create checkpoint directory {}: {}", dir, ec.message());
  const std::string single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json";
  auto params = model.params();
  if (opt.max_shard_bytes <= 0) {
    SafeTensorsWriter w;
    w.set_metadata("format", "pt");
    for (Param* p : params) w.add(p->name, p->w.data(), p->w.shape(), opt.dtype);
    w.write(single);
    write_model_config(dir + "/config.json", checkpoint_config(model));
    fs::remove(index, ec);  // stale sharded layout: model.safetensors is what loads now
    return;
  }
  // Greedy shards in parameter order, as transformers' save_pretrained(max_shard_size=...).
  std::vector<std::vector<Param*>> shards(1);
  int64_t bytes = 0, total = 0;
  for (Param* p : params) {
    const int64_t b = p->w.numel() * static_cast<int64_t>(dtype_size(opt.dtype));
    if (!shards.back().empty() && bytes + b > opt.max_shard_bytes) {
      shards.emplace_back();
      bytes = 0;
    }
    shards.back().push_back(p);
    bytes += b;
    total += b;
  }
  nlohmann::ordered_json idx;
  idx["metadata"] = {{"total_size", total}};
  idx["weight_map"] = nlohmann::ordered_json::object();
  const size_t n = shards.size();
  for (size_t k = 0; k < n; ++k) {
    const std::string file = fmt::format("model-{:05}-of-{:05}.safetensors", k + 1, n);
    SafeTensorsWriter w;
    w.set_metadata("format", "pt");
    for (Param* p : shards[k]) {
      w.add(p->name, p->w.data(), p->w.shape(), opt.dtype);
      idx["weight_map"][p->name] = file;
    }
    w.write(dir + "/" + file);
  }
  write_file_atomic(index, idx.dump(2) + "\n");
  write_model_config(dir + "/config.json", checkpoint_config(model));
  fs::remove(single, ec);  // would shadow the index
}

namespace {
// The original state-spaces checkpoints say "embedding"; HF says "embeddings".
std::string alias(const std::string& name) {
  if (name == "backbone.embeddings.weight") return "backbone.embedding.weight";
  return "";
}
}  // namespace

namespace {
// has(name), file(name) → the reader holding it, names(), where → text for messages.
template <typename Src>
void load_weights_from(Network& model, const Src& src) {
  const std::string& where = src.source();
  std::set<std::string> used;
  for (Param* p : model.params()) {
    std::string name = p->name;
    if (!src.has(name) && !alias(name).empty() && src.has(alias(name))) name = alias(name);
    MS_CHECK(src.has(name), "checkpoint {}: tensor '{}' is missing (the config asks for it)", where, p->name);
    const SafeTensorsReader& file = src.file_of(name);
    const TensorInfo& info = file.info(name);
    MS_CHECK(info.shape == p->w.shape(),
             "checkpoint {}: tensor '{}' has shape {}, expected {} from config.json", file.path(), name,
             shape_str(info.shape), shape_str(p->w.shape()));
    MS_CHECK(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
                 info.dtype == DType::F64,
             "checkpoint {}: tensor '{}' has dtype {}; weights must be F32, F16, BF16 or F64", file.path(), name,
             dtype_name(info.dtype));
    file.read_f32_into(name, p->w);
    used.insert(name);
  }
  for (const auto& n : src.names()) {
    if (used.count(n)) continue;
    // A tied head may still be stored (some writers duplicate it): it must equal the embedding.
    if (n == "lm_head.weight" && model.tied_lm_head()) continue;
    fail("checkpoint {}: unexpected tensor '{}' (the config does not use it: wrong config.json?)", where, n);
  }
}

// A single reader seen through the same interface.
struct OneFile {
  const SafeTensorsReader& f;
  bool has(const std::string& n) const { return f.has(n); }
  const SafeTensorsReader& file_of(const std::string&) const { return f; }
  std::vector<std::string> names() const { return f.names(); }
  const std::string& source() const { return f.path(); }
};
}  // namespace

void load_weights(Network& model, const SafeTensorsReader& file) { load_weights_from(model, OneFile{file}); }

void load_weights(Network& model, const CheckpointTensors& files) { load_weights_from(model, files); }

void Network::load_state(const SafeTensorsReader& file) { load_weights(*this, file); }

std::unique_ptr<Model> load_model(const std::string& dir) {
  MS_CHECK(fs::is_directory(dir), "model directory {} does not exist", dir);
  ModelConfig cfg = read_model_config(dir + "/config.json");
  auto model = std::make_unique<Model>(cfg, 0);
  CheckpointTensors files(dir);
  load_weights(*model, files);
  return model;
}

}  // namespace mambaseq

namespace mambaseq {

std::unique_ptr<Network> load_network(const std::string& dir) {
  MS_CHECK(fs::is_directory(dir), "model directory {} does not exist", dir);
  std::ifstream f(dir + "/config.json");
  MS_CHECK(f.good(), "cannot read {}/config.json", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("{}/config.json is not valid JSON: {}", dir, e.what());
  }
  const std::string arch = j.is_object() && j.contains("mambaseq_arch") && j["mambaseq_arch"].is_string()
                               ? j["mambaseq_arch"].get<std::string>()
                               : "mamba";
  if (arch == "mamba") return load_model(dir);
  if (arch == "cnn") return load_cnn(dir);
  if (arch == "transformer") return load_transformer(dir);
  fail("{}/config.json: unknown architecture '{}' (mambaseq_arch: mamba, cnn or transformer)", dir, arch);
}

}  // namespace mambaseq
