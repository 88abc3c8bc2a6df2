// A training run described by a YAML file (configs/*.yaml): data, model, training
// options, output directory. Unknown keys and bad values are errors naming the file
// and the key, because a typo silently ignored is a wrong experiment.
#pragma once
#include <string>

#include "mambaseq/config.h"
#include "mambaseq/trainer.h"

namespace mambaseq {

struct DataSpec {
  std::string source = "synthetic";  // built-in synthetic tasks
  std::string task = "motif";
  int64_t train_size = 2000, test_size = 400, length = 100;
  double val_fraction = 0.1;
  uint64_t seed = 1;
};

struct RunConfig {
  std::string path;  // the YAML file, for messages
  DataSpec data;
  ModelConfig model;
  TrainOptions train;
  std::string output = "runs/default";
};

RunConfig load_run_config(const std::string& yaml_path);

// Builds the train / validation / test sets the spec describes.
void load_datasets(const DataSpec& spec, Dataset* train, Dataset* val, Dataset* test);

}  // namespace mambaseq
