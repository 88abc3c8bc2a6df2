// Shared by nn/cnn.cpp and nn/transformer.cpp (internal): config.json keys, PyTorch's
// default initialisations, head parsing and checkpoint writing.
#pragma once
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mambaseq/config.h"
#include "mambaseq/error.h"
#include "mambaseq/rng.h"
#include "mambaseq/safetensors.h"
#include "mambaseq/tensor.h"

namespace mambaseq::baseline {

using json = nlohmann::json;

inline void uniform_fill(Tensor& t, Rng& rng, double bound) {
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.uniform(-bound, bound));
}
inline void normal_fill(Tensor& t, Rng& rng, double std) {
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal() * std);
}

// Heads a pooled baseline can have.
inline void check_head(const char* arch, HeadKind h, int64_t num_labels) {
  MS_CHECK(h == HeadKind::SequenceClassification || h == HeadKind::Regression,
           "invalid {} config: head must be sequence_classification or regression, got {}", arch, head_name(h));
  MS_CHECK(num_labels >= 1 && num_labels <= (1 << 20), "invalid {} config: num_labels must be >= 1, got {}", arch,
           num_labels);
  if (h == HeadKind::SequenceClassification)
    MS_CHECK(num_labels >= 2, "invalid {} config: a classifier needs num_labels >= 2, got {}", arch, num_labels);
}

// Typed reads of config.json; errors name the file and the key.
class Keys {
 public:
  Keys(std::string file, const json& j) : file_(std::move(file)), j_(j) {}
  static json parse_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    MS_CHECK(in.good(), "cannot open config file {}", path);
    std::stringstream ss;
    ss << in.rdbuf();
    json j;
    try {
      j = json::parse(ss.str());
    } catch (const json::exception& e) {
      fail("{}: bad JSON: {}", path, e.what());
    }
    MS_CHECK(j.is_object(), "{}: the config is not a JSON object", path);
    return j;
  }
  const json* find(const char* k) const {
    auto it = j_.find(k);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* k, int64_t def) const {
    const json* v = find(k);
    if (!v) return def;
    MS_CHECK(v->is_number_integer(), "{}: key '{}' must be an integer, got {}", file_, k, v->dump());
    return v->get<int64_t>();
  }
  double number(const char* k, double def) const {
    const json* v = find(k);
    if (!v) return def;
    MS_CHECK(v->is_number(), "{}: key '{}' must be a number, got {}", file_, k, v->dump());
    return v->get<double>();
  }
  bool boolean(const char* k, bool def) const {
    const json* v = find(k);
    if (!v) return def;
    MS_CHECK(v->is_boolean(), "{}: key '{}' must be true or false, got {}", file_, k, v->dump());
    return v->get<bool>();
  }
  std::string string(const char* k, const std::string& def) const {
    const json* v = find(k);
    if (!v) return def;
    MS_CHECK(v->is_string(), "{}: key '{}' must be a string, got {}", file_, k, v->dump());
    return v->get<std::string>();
  }
  std::vector<int64_t> integers(const char* k, const std::vector<int64_t>& def) const {
    const json* v = find(k);
    if (!v) return def;
    MS_CHECK(v->is_array(), "{}: key '{}' must be a list of integers, got {}", file_, k, v->dump());
    std::vector<int64_t> r;
    for (const auto& e : *v) {
      MS_CHECK(e.is_number_integer(), "{}: key '{}' must be a list of integers, got {}", file_, k, v->dump());
      r.push_back(e.get<int64_t>());
    }
    return r;
  }
  HeadKind head(HeadKind def) const {
    const json* v = find("mambaseq_head");
    if (!v) return def;
    try {
      return head_from_name(string("mambaseq_head", ""));
    } catch (const Error& e) {
      fail("{}: key 'mambaseq_head': {}", file_, e.what());
    }
  }
  void expect_arch(const char* arch) const {
    const std::string a = string("mambaseq_arch", "");
    MS_CHECK(a == arch, "{}: key 'mambaseq_arch' is '{}', expected '{}'", file_, a, arch);
  }
  // The head keys every baseline shares (mambaseq_head, num_labels, pad_token_id), then
  // the whole config's validation: what ends every read_*_config.
  template <typename Config>
  void finish(Config& c) const {
    c.head = head(c.head);
    c.num_labels = integer("num_labels", c.num_labels);
    const int64_t pad = integer("pad_token_id", 0);
    MS_CHECK(pad >= 0 && pad <= INT32_MAX, "{}: key 'pad_token_id' ({}) is out of range", file_, pad);
    c.pad_token_id = static_cast<int32_t>(pad);
    validate([&] { c.validate(); });
  }
  // Validation errors of the whole config, prefixed with the file.
  template <typename F>
  void validate(F&& f) const {
    try {
      f();
    } catch (const Error& e) {
      fail("{}: {}", file_, e.what());
    }
  }

 private:
  std::string file_;
  const json& j_;
};

inline void make_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  MS_CHECK(!ec, "cannot create checkpoint directory {}: {}", dir, ec.message());
}

}  // namespace mambaseq::baseline
