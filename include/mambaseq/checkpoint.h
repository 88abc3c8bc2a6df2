// Model checkpoints: a directory with config.json (Hugging Face MambaForCausalLM keys
// plus ours) and model.safetensors (HF tensor names), so published Mamba checkpoints
// load here and ours load in transformers.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mambaseq/model.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

// Writes DIR/config.json and DIR/model.safetensors (each atomically). Creates DIR.
void save_model(const std::string& dir, Model& model);

struct SaveOptions {
  DType dtype = DType::F32;     // F32, F16, BF16 or F64 (A_log, D and norms included)
  int64_t max_shard_bytes = 0;  // > 0: model-0000k-of-0000n.safetensors shards of at most this
                                // size (a larger single tensor gets a shard of its own) plus
                                // model.safetensors.index.json, as transformers writes them
};
// Same, with a dtype and optional sharding. A stale model.safetensors or index left by an
// earlier save in the other layout is removed once the new files are in place.
void save_model(const std::string& dir, Model& model, const SaveOptions& opt);

// The tensors of a checkpoint directory: DIR/model.safetensors, or (when that file is
// absent) the shards listed in DIR/model.safetensors.index.json, each memory-mapped.
class CheckpointTensors {
 public:
  explicit CheckpointTensors(const std::string& dir);
  // One file.
  static CheckpointTensors single(const std::string& safetensors_path);
  bool has(const std::string& name) const { return where_.count(name) != 0; }
  const SafeTensorsReader& file_of(const std::string& name) const;  // Error naming the tensor
  std::vector<std::string> names() const;                           // sorted
  const std::string& source() const { return source_; }             // file or index path
  size_t num_files() const { return files_.size(); }

 private:
  CheckpointTensors() = default;
  std::string source_;
  std::vector<SafeTensorsReader> files_;
  std::map<std::string, size_t> where_;
};

// model.safetensors.index.json → {tensor name: shard file name}. Untrusted input: every
// problem is an Error naming `origin` (a shard name must be a plain file name).
std::map<std::string, std::string> parse_safetensors_index(const std::string& json_text, const std::string& origin);

// Reads DIR/config.json, builds the model and loads DIR/model.safetensors (or its shards).
// Weights may be F32, F16, BF16 or F64; HF or original (state-spaces) names and config.
std::unique_ptr<Model> load_model(const std::string& dir);

// Loads every parameter of `model` from the file: accepts the HF names and the
// original ones (backbone.embedding.weight); a missing tensor, a wrong shape or an
// unexpected tensor is an Error naming it and the file.
void load_weights(Network& model, const SafeTensorsReader& file);
// Same over a (possibly sharded) checkpoint.
void load_weights(Network& model, const CheckpointTensors& files);

// Any architecture: reads "mambaseq_arch" from DIR/config.json (absent: mamba).
std::unique_ptr<Network> load_network(const std::string& dir);

}  // namespace mambaseq
