#include "mambaseq/model_data.h"
#include "mambaseq/network.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mambaseq/error.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

using json = nlohmann::json;

ModelDataInfo data_info_from(const Dataset& train, int64_t max_len, const std::string& sequence_column,
                             const std::string& label_column) {
  ModelDataInfo i;
  i.tokenizer = train.tokenizer;
  i.target = train.target;
  i.label_names = train.label_names;
  i.max_len = max_len;
  i.sequence_column = sequence_column;
  i.label_column = label_column;
  return i;
}

void save_model_data_info(const std::string& dir, const ModelDataInfo& i) {
  const SeqTokenizer& t = i.tokenizer;
  const char* kind = t.kind() == SeqTokenizerKind::Nucleotide ? "nucleotide"
                     : t.kind() == SeqTokenizerKind::Codon    ? "codon"
                                                              : "kmer";
  json j{{"tokenizer", {{"kind", kind}, {"k", t.k()}, {"frame", t.frame()}, {"stride", t.stride()}}},
         {"target", target_kind_name(i.target)},
         {"label_names", i.label_names},
         {"max_len", i.max_len},
         {"sequence_column", i.sequence_column},
         {"label_column", i.label_column}};
  write_file_atomic(dir + "/data.json", j.dump(2) + "\n");
}

ModelDataInfo load_model_data_info(const std::string& dir, const Network& net) {
  ModelDataInfo i;
  const std::string path = dir + "/data.json";
  MS_CHECK(std::filesystem::exists(path),
           "{} is missing: the model's tokenizer and label names are not known (training runs write it beside "
           "every model they save: model/, best/, checkpoint/)",
           path);
  std::ifstream f(path);
  json j;
  try {
    j = json::parse(f);
    const json& t = j.at("tokenizer");
    i.tokenizer = SeqTokenizer::from_name(t.at("kind").get<std::string>(), t.value("k", 3), t.value("frame", 0),
                                          t.value("stride", 1));
    i.target = target_kind_from_name(j.at("target").get<std::string>());
    i.label_names = j.at("label_names").get<std::vector<std::string>>();
    i.max_len = j.value("max_len", int64_t{0});
    i.sequence_column = j.value("sequence_column", std::string("sequence"));
    i.label_column = j.value("label_column", std::string("label"));
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: bad model data description: {}", path, e.what());
  }
  MS_CHECK(i.target == TargetKind::Regression || net.head() == HeadKind::LM ||
               static_cast<int64_t>(i.label_names.size()) == net.num_labels(),
           "{} names {} labels but the model has {} outputs", path, i.label_names.size(), net.num_labels());
  return i;
}

}  // namespace mambaseq
