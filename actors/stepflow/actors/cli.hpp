#pragma once
// The `stepflow` command line: run, validate, steps, help, --version.
// Exit codes: 0 success, 1 the application failed (or was revoked),
// 2 usage, validation or set-up errors (one plain sentence on stderr).
#include <string>

#include "stepflow/runtime/step.hpp"

namespace stepflow::actors {

struct cli_environment {
  /// Every step type the binary provides.
  const step_registry* registry = nullptr;
  std::string version;
};

int run_cli(int argc, char** argv, const cli_environment& env);

} // namespace stepflow::actors
