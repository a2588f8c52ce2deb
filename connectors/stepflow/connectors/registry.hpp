#pragma once
// The one explicit list of every step type the binary provides.
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors {

/// Registers every built-in and connector step type. Fails on a duplicate.
caf::error register_all(step_registry& registry);

} // namespace stepflow::connectors
