#include "cli/commands.h"
namespace mambaseq::cli {
void register_train(CLI::App& app) { app.add_subcommand("train", "Train a model (not yet)"); }
}  // namespace mambaseq::cli
