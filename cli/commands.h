// Each subcommand registers itself on the CLI11 app; the callback runs the job.
#pragma once
#include <CLI/CLI.hpp>

namespace mambaseq::cli {
void register_info(CLI::App& app);
void register_train(CLI::App& app);
}  // namespace mambaseq::cli
