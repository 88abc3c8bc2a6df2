// Each subcommand registers itself on the CLI11 app; the callback runs the job.
#pragma once
#include <CLI/CLI.hpp>

namespace mambaseq::cli {
void register_info(CLI::App& app);
void register_train(CLI::App& app);
void register_generate(CLI::App& app);  // cli/generate.cpp
void register_score(CLI::App& app);     // cli/score.cpp
void register_embed(CLI::App& app);     // cli/embed.cpp
void register_init(CLI::App& app);      // cli/init.cpp
void register_eval_predict(CLI::App& app);  // cli/eval_predict.cpp
void register_benchmark(CLI::App& app);      // cli/benchmark.cpp
}  // namespace mambaseq::cli
