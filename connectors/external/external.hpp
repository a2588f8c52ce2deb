#pragma once
// The "external" connector: step types implemented by other programs over
// the external-process protocol (docs/step-protocol.md), kept warm in a
// process_pool. It provides
//  - every PowerFlow Python step of the loaded SyncPacks (steps/<Class>.py),
//    run unmodified by the Python host (connectors/python/), and
//  - every manifest steps/<Name>.step.json (any program).
#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// Options ("external" in the connectors options), all optional:
///  python           interpreter for Python steps (default /usr/bin/python3)
///  python_lib       folder of stepflow_step_host.py (default: found beside
///                   the binary, or $STEPFLOW_PYTHON_LIB)
///  concurrency      processes per step type (default 4)
///  memory_limit_mb  resident memory after which a process is recycled
///                   between tasks (default 1024; 0 for none)
///  max_tasks        tasks after which a process is recycled (default 0: none)
///  start_timeout    seconds a process gets to say "ready" (default 30)
/// Manifests may override concurrency, memory_limit_mb, max_tasks and add a
/// timeout of their own.
caf::expected<std::shared_ptr<connector>> make_external_connector(const connector_setup& setup);

} // namespace stepflow::connectors
