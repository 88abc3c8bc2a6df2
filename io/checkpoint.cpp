#include "mambaseq/checkpoint.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <set>

#include "mambaseq/error.h"
#include "mambaseq/hf_config.h"

namespace mambaseq {

namespace fs = std::filesystem;

void save_model(const std::string& dir, Model& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  MS_CHECK(!ec, "cannot create checkpoint directory {}: {}", dir, ec.message());
  SafeTensorsWriter w;
  w.set_metadata("format", "pt");
  for (Param* p : model.params()) w.add(p->name, p->w.data(), p->w.shape());
  w.write(dir + "/model.safetensors");
  write_model_config(dir + "/config.json", model.cfg);
}

namespace {
// The original state-spaces checkpoints say "embedding"; HF says "embeddings".
std::string alias(const std::string& name) {
  if (name == "backbone.embeddings.weight") return "backbone.embedding.weight";
  return "";
}
}  // namespace

void load_weights(Network& model, const SafeTensorsReader& file) {
  std::set<std::string> used;
  for (Param* p : model.params()) {
    std::string name = p->name;
    if (!file.has(name) && !alias(name).empty() && file.has(alias(name))) name = alias(name);
    MS_CHECK(file.has(name), "checkpoint {}: tensor '{}' is missing (the config asks for it)", file.path(), p->name);
    const TensorInfo& info = file.info(name);
    MS_CHECK(info.shape == p->w.shape(),
             "checkpoint {}: tensor '{}' has shape {}, expected {} from config.json", file.path(), name,
             shape_str(info.shape), shape_str(p->w.shape()));
    file.read_f32_into(name, p->w);
    used.insert(name);
  }
  for (const auto& n : file.names()) {
    if (used.count(n)) continue;
    // A tied head may still be stored (some writers duplicate it): it must equal the embedding.
    if (n == "lm_head.weight" && model.tied_lm_head()) continue;
    fail("checkpoint {}: unexpected tensor '{}' (the config does not use it: wrong config.json?)", file.path(), n);
  }
}

std::unique_ptr<Model> load_model(const std::string& dir) {
  MS_CHECK(fs::is_directory(dir), "model directory {} does not exist", dir);
  ModelConfig cfg = read_model_config(dir + "/config.json");
  auto model = std::make_unique<Model>(cfg, 0);
  SafeTensorsReader file(dir + "/model.safetensors");
  load_weights(*model, file);
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
  fail("{}/config.json: unknown architecture '{}' (mambaseq_arch)", dir, arch);
}

}  // namespace mambaseq
