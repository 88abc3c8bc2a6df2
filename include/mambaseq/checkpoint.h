// Model checkpoints: a directory with config.json (Hugging Face MambaForCausalLM keys
// plus ours) and model.safetensors (HF tensor names), so published Mamba checkpoints
// load here and ours load in transformers.
#pragma once
#include <memory>
#include <string>

#include "mambaseq/model.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

// Writes DIR/config.json and DIR/model.safetensors (each atomically). Creates DIR.
void save_model(const std::string& dir, Model& model);

// Reads DIR/config.json, builds the model and loads DIR/model.safetensors.
std::unique_ptr<Model> load_model(const std::string& dir);

// Loads every parameter of `model` from the file: accepts the HF names and the
// original ones (backbone.embedding.weight); a missing tensor, a wrong shape or an
// unexpected tensor is an Error naming it and the file.
void load_weights(Network& model, const SafeTensorsReader& file);

// Any architecture: reads "mambaseq_arch" from DIR/config.json (absent: mamba).
std::unique_ptr<Network> load_network(const std::string& dir);

}  // namespace mambaseq
