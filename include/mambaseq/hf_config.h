// config.json <-> ModelConfig.
// Reads both the Hugging Face MambaForCausalLM config (model_type "mamba": hidden_size,
// num_hidden_layers, state_size, ...) and the original state-spaces one (d_model, n_layer,
// ssm_cfg {...}), plus our own keys: mambaseq_head, num_labels, head_dropout, pad_token_id,
// norm ("rms"/"layer"), mambaseq_vocab_size (vocabulary before padding),
// mambaseq_bidirectional (+ mambaseq_bidirectional_combine "add"/"ew_multiply").
// Writes the Hugging Face form, so HF tools can load LM checkpoints we produce.
// Hugging Face does not know mambaseq_bidirectional: transformers would load such a
// checkpoint as a causal model, warn about the unused mixer_rev.* weights and give
// different outputs. Bidirectional checkpoints load correctly only here.
#pragma once
#include <string>

#include "mambaseq/config.h"

namespace mambaseq {

// Errors are one line naming the file and the offending key. Unknown keys are ignored.
ModelConfig read_model_config(const std::string& path_to_config_json);

// HF-style JSON (validated first); read_model_config(write_model_config(c)) == c exactly.
std::string config_to_json(const ModelConfig& cfg);
void write_model_config(const std::string& path, const ModelConfig& cfg);  // atomic

}  // namespace mambaseq
