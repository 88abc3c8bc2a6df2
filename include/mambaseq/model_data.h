// What a trained model expects of its input — tokenizer, target kind, label names,
// maximum length — saved beside the weights as DIR/data.json, so that `eval` and
// `predict` need only the model directory.
#pragma once
#include <string>
#include <vector>

#include "mambaseq/data.h"
#include "mambaseq/tokenizers.h"

namespace mambaseq {

class Network;

struct ModelDataInfo {
  SeqTokenizer tokenizer;
  TargetKind target = TargetKind::Classification;
  std::vector<std::string> label_names;
  int64_t max_len = 0;
  std::string sequence_column = "sequence", label_column = "label";
};

ModelDataInfo data_info_from(const Dataset& train, int64_t max_len, const std::string& sequence_column,
                             const std::string& label_column);
void save_model_data_info(const std::string& dir, const ModelDataInfo& info);
// DIR/data.json of `net` (loaded from DIR); a directory without one (e.g. a published
// checkpoint) is an Error naming the missing file, and so are label names that do not
// match the model's outputs: either would give wrong predictions.
ModelDataInfo load_model_data_info(const std::string& dir, const Network& net);

}  // namespace mambaseq
