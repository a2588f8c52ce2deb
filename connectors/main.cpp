// The composition root: registers every built-in step type, and hands the
// CLI a hook that builds the connectors (their step types, pools and
// plugins) once the SyncPacks are loaded.
#include <iostream>
#include <memory>
#include <vector>

#include "stepflow/actors/cli.hpp"
#include "stepflow/connectors/connector.hpp"
#include "stepflow/connectors/registry.hpp"
#include "external/external.hpp"

int main(int argc, char** argv) {
  stepflow::step_registry registry;
  if (auto err = stepflow::connectors::register_all(registry)) {
    std::cerr << "stepflow: " << stepflow::message_of(err) << "\n";
    return 2;
  }
  // Declared after the registry: destroyed first, once every run is over.
  std::vector<std::shared_ptr<stepflow::connectors::connector>> connectors;
  stepflow::actors::cli_environment env{&registry, STEPFLOW_VERSION, {}};
  env.add_content_steps = [&connectors](const std::vector<stepflow::syncpack_content>& packs,
                                        stepflow::step_registry& r) -> caf::error {
    auto options = stepflow::connectors::load_connector_options();
    if (!options)
      return std::move(options.error());
    auto made = stepflow::connectors::connect_all(*options, packs, r);
    if (!made)
      return std::move(made.error());
    connectors = std::move(*made);
    return {};
  };
  env.install_step = [&connectors](const stepflow::json::object& definition,
                                   const std::string& data_dir) {
    return stepflow::connectors::install_uploaded_step(connectors, definition, data_dir);
  };
  env.connector_status = [&connectors] {
    return stepflow::connectors::external_status(connectors);
  };
  env.remove_step = [&connectors](const std::string& name) {
    stepflow::connectors::remove_uploaded_step(connectors, name);
  };
  return stepflow::actors::run_cli(argc, argv, env);
}
