#pragma once
// The SSH connector: step type SSHCommand (alias RunSSHCommand), PowerFlow's
// Base Step "Run a command through an SSH tunnel". libssh calls block, so
// they run on a blocking_pool the connector owns; steps only post to it.
// Documented in docs/connectors/ssh.md.
#include <cstddef>
#include <memory>
#include <string>

#include "stepflow/connectors/connector.hpp"

namespace stepflow::connectors {

/// The "ssh" member of the connectors options.
struct ssh_connector_options {
  /// Threads running SSH calls at once (1 to 256). Default: 8.
  std::size_t threads = 8;
  /// Most bytes kept of a command's stdout, and of its stderr; a command
  /// printing more fails its step (1 KiB to 1 GiB). Default: 16 MiB.
  std::size_t max_output_bytes = 16 * 1024 * 1024;
  /// known_hosts file for steps that name none; empty for
  /// ~/.ssh/known_hosts of the user running stepflow. Default: empty.
  std::string known_hosts_file;
};

/// Reads and validates the options (errors name the field, "ssh.threads: ...").
caf::expected<ssh_connector_options> parse_ssh_connector_options(const json::object& options);

/// Validates setup.options once and builds the connector with its pool.
caf::expected<std::shared_ptr<connector>> make_ssh_connector(const connector_setup& setup);

} // namespace stepflow::connectors
