#pragma once
// The `stepflow` command line: run, validate, steps, help, --version.
// Exit codes: 0 success, 1 the application failed (or was revoked),
// 2 usage, validation or set-up errors (one plain sentence on stderr).
#include <functional>
#include <string>
#include <vector>

#include "stepflow/runtime/content.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::actors {

struct cli_environment {
  /// Every step type the binary provides; the hook below may add more.
  step_registry* registry = nullptr;
  std::string version;
  /// Adds the step types that come with content (the SyncPacks' Python and
  /// external-process steps, plugins, connectors); called at most once per
  /// command, after the SyncPacks are loaded and before anything is planned.
  /// May be empty.
  std::function<caf::error(const std::vector<syncpack_content>&, step_registry&)>
    add_content_steps;
  /// Makes a step uploaded through POST /api/v1/steps runnable (definition,
  /// data directory); called after add_content_steps. May be empty.
  std::function<caf::error(const json::object&, const std::string&)> install_step;
  /// Forgets an uploaded step. May be empty.
  std::function<void(const std::string&)> remove_step;
  /// What the connectors report for GET /api/v1/status (step processes...),
  /// merged into its answer. May be empty.
  std::function<json::object()> connector_status;
};

int run_cli(int argc, char** argv, const cli_environment& env);

} // namespace stepflow::actors
