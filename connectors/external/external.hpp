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

/// Makes an uploaded step (the body of POST /api/v1/steps: "name", "code",
/// optional "syncpack", "language" (only "python"), "friendly_name",
/// "description", "version") runnable through the external connector among
/// `connectors`, or points an existing one at new code. Errors start with the
/// offending field ("code: ...").
caf::error install_uploaded_step(const std::vector<std::shared_ptr<connector>>& connectors,
                                 const json::object& definition, const std::string& data_dir);

/// {"step_processes": {"<step type>": {processes, busy, queued, started,
/// recycled, died, tasks}}} for the step types that have started a process.
json::object external_status(const std::vector<std::shared_ptr<connector>>& connectors);

/// The uploaded step `name` is no longer found; running tasks finish.
void remove_uploaded_step(const std::vector<std::shared_ptr<connector>>& connectors,
                          const std::string& name);

} // namespace stepflow::connectors
