// The composition root: registers every step type and hands over to the CLI.
#include <iostream>

#include "stepflow/actors/cli.hpp"
#include "stepflow/connectors/registry.hpp"

int main(int argc, char** argv) {
  stepflow::step_registry registry;
  if (auto err = stepflow::connectors::register_all(registry)) {
    std::cerr << "stepflow: " << stepflow::message_of(err) << "\n";
    return 2;
  }
  stepflow::actors::cli_environment env{&registry, STEPFLOW_VERSION};
  return stepflow::actors::run_cli(argc, argv, env);
}
