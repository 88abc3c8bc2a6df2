#include "mambaseq/hf_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mambaseq/error.h"
#include "mambaseq/safetensors.h"

namespace mambaseq {

using json = nlohmann::json;

namespace {

// Typed access to one JSON object; every error names the file and the (dotted) key.
// A key set to null counts as absent: HF configs write null for unset optional ids.
class Keys {
 public:
  Keys(const std::string& file, const json& obj, std::string prefix = "")
      : file_(file), obj_(obj), prefix_(std::move(prefix)) {}

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  template <typename... Args>
  [[noreturn]] void bad(const char* key, fmt::format_string<Args...> f, Args&&... args) const {
    fail("{}: key '{}{}' {}", file_, prefix_, key, fmt::format(f, std::forward<Args>(args)...));
  }

  int64_t integer(const char* key, int64_t def, int64_t min) const {
    const json* v = find(key);
    if (!v) return def;
    int64_t r = 0;
    if (v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))) {
      r = v->get<int64_t>();
    } else if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      r = static_cast<int64_t>(v->get<double>());  // 2.0 is an integer too (Python float configs)
    } else {
      bad(key, "must be an integer, got {}", v->dump());
    }
    if (r < min) bad(key, "must be an integer >= {}, got {}", min, r);
    return r;
  }
  int64_t required_integer(const char* key, int64_t min) const {
    if (!has(key)) bad(key, "is missing (required)");
    return integer(key, 0, min);
  }
  double number(const char* key, double def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_number()) bad(key, "must be a number, got {}", v->dump());
    return v->get<double>();
  }
  double positive(const char* key, double def) const {
    double r = number(key, def);
    if (!(r > 0) || !std::isfinite(r)) bad(key, "must be a positive number, got {}", r);
    return r;
  }
  bool boolean(const char* key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) bad(key, "must be true or false, got {}", v->dump());
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string()) bad(key, "must be a string, got {}", v->dump());
    return v->get<std::string>();
  }
  // "auto" -> 0, else a positive integer.
  int64_t rank(const char* key) const {
    const json* v = find(key);
    if (!v) return 0;
    if (v->is_string()) {
      if (v->get<std::string>() == "auto") return 0;
      bad(key, "must be \"auto\" or a positive integer, got {}", v->dump());
    }
    if (!v->is_number()) bad(key, "must be \"auto\" or a positive integer, got {}", v->dump());
    return integer(key, 0, 1);
  }
  bool init_random(const char* key) const {
    std::string s = string(key, "random");
    if (s != "random" && s != "constant") bad(key, "must be \"random\" or \"constant\", got \"{}\"", s);
    return s == "random";
  }

 private:
  const std::string& file_;
  const json& obj_;
  std::string prefix_;
};

void read_hf(const Keys& k, MambaConfig& m) {
  m.d_model = k.required_integer("hidden_size", 1);
  m.n_layer = k.required_integer("num_hidden_layers", 1);
  m.vocab_size = k.required_integer("vocab_size", 1);  // embedding rows: already padded
  m.pad_vocab_size_multiple = k.integer("pad_vocab_size_multiple", 1, 0);
  m.d_state = k.integer("state_size", 16, 1);
  m.d_conv = k.integer("conv_kernel", 4, 1);
  m.expand = k.integer("expand", 2, 1);
  m.dt_rank = k.rank("time_step_rank");
  if (k.has("intermediate_size") && k.integer("intermediate_size", 0, 1) != m.d_inner())
    k.bad("intermediate_size", "is {}, but expand * hidden_size = {}", k.integer("intermediate_size", 0, 1),
          m.d_inner());
  if (std::string act = k.string("hidden_act", "silu"); act != "silu")
    k.bad("hidden_act", "is \"{}\"; only \"silu\" is supported", act);
  m.norm = NormKind::RMS;
  m.norm_eps = k.positive("layer_norm_epsilon", 1e-5);
  m.use_bias = k.boolean("use_bias", false);
  m.use_conv_bias = k.boolean("use_conv_bias", true);
  m.residual_in_fp32 = k.boolean("residual_in_fp32", true);
  m.tie_embeddings = k.boolean("tie_word_embeddings", true);
  m.dt_min = k.positive("time_step_min", 1e-3);
  m.dt_max = k.positive("time_step_max", 0.1);
  m.dt_init_floor = k.positive("time_step_floor", 1e-4);
  m.dt_scale = k.positive("time_step_scale", 1.0);
  m.dt_init_random = k.init_random("time_step_init_scheme");
  // transformers' defaults, which differ from the original repository's.
  m.initializer_range = k.positive("initializer_range", 0.1);
  m.rescale_prenorm_residual = k.boolean("rescale_prenorm_residual", false);
  if (m.dt_max < m.dt_min) k.bad("time_step_max", "({}) is below time_step_min ({})", m.dt_max, m.dt_min);

  // Our unpadded vocabulary, so that writing and re-reading a config is exact.
  const int64_t rows = m.vocab_size;
  if (k.has("mambaseq_vocab_size")) {
    m.vocab_size = k.integer("mambaseq_vocab_size", 0, 1);
    if (m.vocab_size > rows || m.vocab_padded() != rows)
      k.bad("mambaseq_vocab_size", "{} padded to a multiple of {} is {}, but vocab_size is {}", m.vocab_size,
            m.pad_vocab_size_multiple, m.vocab_padded(), rows);
  } else if (m.vocab_padded() != rows) {
    k.bad("pad_vocab_size_multiple", "is {}, but vocab_size {} (the embedding rows) is not a multiple of it",
          m.pad_vocab_size_multiple, rows);
  }
}

void read_original(const Keys& k, const std::string& file, MambaConfig& m) {
  m.d_model = k.required_integer("d_model", 1);
  m.n_layer = k.required_integer("n_layer", 1);
  m.vocab_size = k.required_integer("vocab_size", 1);  // before padding
  m.pad_vocab_size_multiple = k.integer("pad_vocab_size_multiple", 8, 0);
  if (k.integer("d_intermediate", 0, 0) != 0) k.bad("d_intermediate", "is non-zero: MLP blocks are not supported");
  if (const json* a = k.find("attn_layer_idx"); a && !(a->is_array() && a->empty()))
    k.bad("attn_layer_idx", "is not empty: attention layers are not supported");
  m.norm = k.boolean("rms_norm", true) ? NormKind::RMS : NormKind::Layer;
  m.norm_eps = k.positive("norm_epsilon", 1e-5);
  m.residual_in_fp32 = k.boolean("residual_in_fp32", true);
  m.tie_embeddings = k.boolean("tie_embeddings", true);
  m.initializer_range = k.positive("initializer_range", 0.02);
  m.rescale_prenorm_residual = k.boolean("rescale_prenorm_residual", true);

  static const json empty = json::object();
  const json* sp = k.find("ssm_cfg");
  if (sp && !sp->is_object()) k.bad("ssm_cfg", "must be an object, got {}", sp->dump());
  Keys s(file, sp ? *sp : empty, "ssm_cfg.");
  if (std::string layer = s.string("layer", "Mamba1"); layer != "Mamba1")
    s.bad("layer", "is \"{}\"; only Mamba1 is supported", layer);
  m.d_state = s.integer("d_state", 16, 1);
  m.d_conv = s.integer("d_conv", 4, 1);
  m.expand = s.integer("expand", 2, 1);
  m.dt_rank = s.rank("dt_rank");
  m.dt_min = s.positive("dt_min", 1e-3);
  m.dt_max = s.positive("dt_max", 0.1);
  m.dt_init_floor = s.positive("dt_init_floor", 1e-4);
  m.dt_scale = s.positive("dt_scale", 1.0);
  m.dt_init_random = s.init_random("dt_init");
  m.use_conv_bias = s.boolean("conv_bias", true);
  m.use_bias = s.boolean("bias", false);
  if (m.dt_max < m.dt_min) s.bad("dt_max", "({}) is below dt_min ({})", m.dt_max, m.dt_min);
}

}  // namespace

ModelConfig read_model_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open config file {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  json root;
  try {
    root = json::parse(ss.str());
  } catch (const json::exception& e) {
    fail("{}: bad JSON: {}", path, e.what());
  }
  if (!root.is_object()) fail("{}: the config is not a JSON object", path);
  Keys k(path, root);

  ModelConfig cfg;
  MambaConfig& m = cfg.mamba;
  if (std::string mt = k.string("model_type", "mamba"); mt != "mamba")
    k.bad("model_type", "is \"{}\"; only \"mamba\" (Mamba-1) is supported", mt);
  // The original config is recognised by its own key names; everything else is read as HF.
  if (k.has("d_model") || k.has("n_layer") || k.has("ssm_cfg")) read_original(k, path, m);
  else read_hf(k, m);

  // Our extra keys (either format).
  if (std::string n = k.string("norm", m.norm == NormKind::RMS ? "rms" : "layer"); n == "rms" || n == "layer")
    m.norm = n == "rms" ? NormKind::RMS : NormKind::Layer;
  else
    k.bad("norm", "must be \"rms\" or \"layer\", got \"{}\"", n);
  if (k.has("mambaseq_head")) {
    try {
      cfg.head = head_from_name(k.string("mambaseq_head", "lm"));
    } catch (const Error& e) {
      k.bad("mambaseq_head", "{}", e.what());
    }
  }
  cfg.num_labels = k.integer("num_labels", cfg.num_labels, 1);
  cfg.head_dropout = k.number("head_dropout", cfg.head_dropout);
  if (!(cfg.head_dropout >= 0 && cfg.head_dropout < 1))
    k.bad("head_dropout", "must be in [0, 1), got {}", cfg.head_dropout);
  // Bidirectional blocks (ours; transformers' MambaModel has no such option).
  m.bidirectional = k.boolean("mambaseq_bidirectional", false);
  m.bidir_combine = k.string("mambaseq_bidirectional_combine", "add");
  if (m.bidir_combine != "add" && m.bidir_combine != "ew_multiply")
    k.bad("mambaseq_bidirectional_combine", "must be \"add\" or \"ew_multiply\", got \"{}\"", m.bidir_combine);
  int64_t pad = k.integer("pad_token_id", 0, 0);
  if (pad >= m.vocab_padded() || pad > INT32_MAX) k.bad("pad_token_id", "({}) is outside the vocabulary ({})", pad, m.vocab_padded());
  cfg.pad_token_id = static_cast<int32_t>(pad);

  try {
    cfg.validate();  // cross-checks not tied to one key (e.g. implausible sizes)
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return cfg;
}

std::string config_to_json(const ModelConfig& cfg) {
  cfg.validate();
  const MambaConfig& m = cfg.mamba;
  nlohmann::ordered_json j;
  if (cfg.head == HeadKind::LM) j["architectures"] = {"MambaForCausalLM"};
  j["model_type"] = "mamba";
  j["hidden_size"] = m.d_model;
  j["intermediate_size"] = m.d_inner();
  j["num_hidden_layers"] = m.n_layer;
  j["vocab_size"] = m.vocab_padded();  // HF's vocab_size is the embedding row count
  j["pad_vocab_size_multiple"] = m.pad_vocab_size_multiple;
  j["state_size"] = m.d_state;
  j["conv_kernel"] = m.d_conv;
  j["expand"] = m.expand;
  if (m.dt_rank > 0) j["time_step_rank"] = m.dt_rank;
  else j["time_step_rank"] = "auto";
  j["hidden_act"] = "silu";
  j["layer_norm_epsilon"] = m.norm_eps;
  j["use_bias"] = m.use_bias;
  j["use_conv_bias"] = m.use_conv_bias;
  j["residual_in_fp32"] = m.residual_in_fp32;
  j["tie_word_embeddings"] = m.tie_embeddings;
  j["time_step_min"] = m.dt_min;
  j["time_step_max"] = m.dt_max;
  j["time_step_floor"] = m.dt_init_floor;
  j["time_step_scale"] = m.dt_scale;
  j["time_step_init_scheme"] = m.dt_init_random ? "random" : "constant";
  j["initializer_range"] = m.initializer_range;
  j["rescale_prenorm_residual"] = m.rescale_prenorm_residual;
  j["pad_token_id"] = cfg.pad_token_id;
  // Ours; HF ignores unknown keys.
  j["norm"] = m.norm == NormKind::RMS ? "rms" : "layer";
  if (m.vocab_size != m.vocab_padded()) j["mambaseq_vocab_size"] = m.vocab_size;
  j["mambaseq_head"] = head_name(cfg.head);
  if (m.bidirectional) {  // written only when set: unidirectional configs stay as before
    j["mambaseq_bidirectional"] = true;
    j["mambaseq_bidirectional_combine"] = m.bidir_combine;
  }
  j["num_labels"] = cfg.num_labels;
  j["head_dropout"] = cfg.head_dropout;
  return j.dump(2) + "\n";
}

void write_model_config(const std::string& path, const ModelConfig& cfg) {
  std::string text;
  try {
    text = config_to_json(cfg);
  } catch (const Error& e) {
    fail("cannot write {}: {}", path, e.what());
  }
  write_file_atomic(path, text);
}

}  // namespace mambaseq
