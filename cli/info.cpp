// `mambaseq info [--variant NAME] [overrides]`: configurations and exact parameter counts.
#include <fmt/format.h>

#include "cli/commands.h"
#include "mambaseq/config.h"

namespace mambaseq::cli {

namespace {
std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), r;
  int c = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (c && c % 3 == 0) r.insert(r.begin(), ',');
    r.insert(r.begin(), *it);
    ++c;
  }
  return r;
}

void print_row(const std::string& name, const ModelConfig& m) {
  const MambaConfig& c = m.mamba;
  fmt::print("{:<10} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7} {:>5} {:>18}\n", name, c.d_model, c.n_layer,
             c.d_inner(), c.d_state, c.d_conv, c.expand, c.dt_rank_value(), c.vocab_padded(),
             c.norm == NormKind::RMS ? "rms" : "layer", with_commas(count_parameters(m)));
}
}  // namespace

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print model configurations and exact parameter counts");
  auto variant = std::make_shared<std::string>();
  auto ov = std::make_shared<MambaConfig>();
  auto set = std::make_shared<std::map<std::string, int64_t>>();
  cmd->add_option("--variant", *variant, "130m, 370m, 790m, 1.4b, 2.8b or seed001 (default: all)");
  for (const char* k : {"d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "dt_rank"})
    cmd->add_option(std::string("--") + k, (*set)[k], std::string("override ") + k);
  cmd->callback([=] {
    std::vector<std::string> names;
    if (variant->empty()) {
      names = variant_names();
      names.push_back("seed001");
    } else {
      names = {*variant};
    }
    std::vector<std::pair<std::string, ModelConfig>> rows;
    for (const auto& n : names) {
      ModelConfig m;
      if (n == "seed001") m = seed001_classifier(2);
      else m.mamba = variant_config(n);
      for (const auto& [k, v] : *set) {
        if (!cmd->count("--" + k)) continue;
        if (k == "d_model") m.mamba.d_model = v;
        else if (k == "n_layer") m.mamba.n_layer = v;
        else if (k == "vocab_size") m.mamba.vocab_size = v;
        else if (k == "d_state") m.mamba.d_state = v;
        else if (k == "d_conv") m.mamba.d_conv = v;
        else if (k == "expand") m.mamba.expand = v;
        else if (k == "dt_rank") m.mamba.dt_rank = v;
      }
      m.validate();
      rows.emplace_back(n, m);
    }
    // Validate everything first: a bad value prints one error line and no partial table.
    fmt::print("{:<10} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7} {:>5} {:>18}\n", "variant", "d_model",
               "n_layer", "d_inner", "d_state", "d_conv", "expand", "dt_rank", "vocab", "norm", "parameters");
    for (const auto& [n, m] : rows) print_row(n, m);
#ifdef MAMBASEQ_HAS_CUDA
    fmt::print("\nCUDA backend: built\n");
#else
    fmt::print("\nCUDA backend: not built (no nvcc at configure time)\n");
#endif
  });
}

}  // namespace mambaseq::cli
