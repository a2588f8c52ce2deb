#pragma once
// The remote CLI (PowerFlow's iscli counterpart): `stepflow --server URL
// [--user U] [--password P] <command> ...` talks to a running `stepflow
// serve` over its REST API. Exit codes as the local CLI: 0 ok, 1 a run
// failed, 2 usage / request errors (one sentence on stderr).
#include "stepflow/actors/cli.hpp"

namespace stepflow::actors {

/// True when argv selects the remote CLI (--server, or $STEPFLOW_SERVER with
/// a client command).
bool wants_client(int argc, char** argv);

int run_client(int argc, char** argv, const cli_environment& env);

} // namespace stepflow::actors
