// mambaseq command line: one subcommand per job.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "mambaseq/error.h"

int main(int argc, char** argv) {
  CLI::App app{"mambaseq: Mamba (selective state-space models) for biological sequences"};
  app.require_subcommand(1);
  mambaseq::cli::register_info(app);
  mambaseq::cli::register_train(app);
  mambaseq::cli::register_generate(app);
  mambaseq::cli::register_score(app);
  mambaseq::cli::register_embed(app);
  mambaseq::cli::register_init(app);
  mambaseq::cli::register_eval_predict(app);
  mambaseq::cli::register_benchmark(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mambaseq::Error& e) {
    std::fprintf(stderr, "mambaseq: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mambaseq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
