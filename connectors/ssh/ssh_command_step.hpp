#pragma once
// The SSHCommand step type (PowerFlow's Base Step "Run a command through an
// SSH tunnel"). Internal to the SSH connector; tests build it directly with
// their own pool.
#include <cstddef>
#include <memory>
#include <string>

#include "stepflow/runtime/blocking_pool.hpp"
#include "stepflow/runtime/step.hpp"

namespace stepflow::connectors {

/// What the connector's options give every SSHCommand step.
struct ssh_step_settings {
  /// Most bytes kept of a command's stdout, and of its stderr.
  std::size_t max_output_bytes = 16 * 1024 * 1024;
  /// known_hosts file used when a step sets none; empty for
  /// ~/.ssh/known_hosts of the process user.
  std::string known_hosts_file;
};

/// The step type named `name` ("SSHCommand", or the alias "RunSSHCommand").
/// run() only validates and posts the call to `pool`, which must outlive
/// every run.
std::shared_ptr<const step_type> make_ssh_command_step(std::string name,
                                                        std::shared_ptr<blocking_pool> pool,
                                                        ssh_step_settings settings);

} // namespace stepflow::connectors
