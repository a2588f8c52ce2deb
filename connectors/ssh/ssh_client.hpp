#pragma once
// The one adapter over libssh: runs one command on a remote host through a
// fresh SSH session and returns its exit status and output. It blocks (DNS,
// connect, key exchange, authentication, the command), so it is called only
// from a blocking_pool thread. libssh's C types stay in ssh_client.cpp.
//
// Secrets (password, private key, passphrase) never appear in an error or a
// log line.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "stepflow/runtime/errc.hpp"

namespace stepflow::connectors {

/// How the server's host key is trusted.
enum class ssh_host_key_policy {
  /// The key must match host_key_fingerprint when one is given, else be
  /// listed for the host in the known_hosts file.
  strict,
  /// Like strict, but a host not yet listed is added to the known_hosts file
  /// and trusted; a listed host whose key changed is still refused.
  accept_new,
  /// No check at all (insecure: anyone on the path can impersonate the host).
  off,
};

/// Parses "strict", "accept-new" or "off" into `out`; false when unknown.
bool parse_ssh_host_key_policy(std::string_view text, ssh_host_key_policy& out) noexcept;

struct ssh_command_request {
  std::string host;
  uint16_t port = 22;
  std::string user;
  /// Credentials: a private key (PEM/OpenSSH text, or a file) is tried first,
  /// then the password (password, then keyboard-interactive answered with
  /// the password). At least one must be set.
  std::string password;
  std::string private_key;
  std::string private_key_file;
  /// Decrypts the private key; empty for an unencrypted key.
  std::string passphrase;
  /// The command line, passed as is to the remote user's shell.
  std::string command;
  /// Sent to the command's standard input, which is then closed (it is
  /// closed at once when empty).
  std::string stdin_data;
  ssh_host_key_policy host_key = ssh_host_key_policy::strict;
  /// known_hosts file to check (and, with accept_new, to extend); empty for
  /// libssh's default, ~/.ssh/known_hosts of the process user.
  std::string known_hosts_file;
  /// "SHA256:<base64>" as ssh-keygen -l prints it; empty for none.
  std::string host_key_fingerprint;
  /// The whole call (connect to exit status) ends by this time.
  std::chrono::steady_clock::time_point deadline;
  /// The timeout the deadline came from, in seconds (for messages only).
  double timeout_seconds = 0;
  /// Most bytes kept of stdout, and of stderr; more fails the call.
  std::size_t max_output_bytes = 16 * 1024 * 1024;
  /// Polled between phases and while the command runs; may be null.
  const std::atomic<bool>* cancelled = nullptr;
};

struct ssh_command_result {
  /// The command's exit status; -1 when the server reported none (killed by
  /// a signal: see exit_signal).
  int exit_status = -1;
  /// Signal name without "SIG" (e.g. "KILL") when the command was killed.
  std::string exit_signal;
  /// Output as received, with invalid UTF-8 replaced by U+FFFD.
  std::string stdout_text;
  std::string stderr_text;
};

/// Receives progress lines (level as in log_level.hpp); never secrets.
using ssh_logger = std::function<void(int level, std::string message)>;

/// Connects, checks the host key, authenticates, runs the command and
/// collects its output and exit status. Errors (one sentence, starting with
/// "ssh user@host:port: "): errc::timeout past the deadline, errc::cancelled,
/// errc::io_error (connection, protocol), errc::step_failed (host key
/// refused, authentication denied, output too large), errc::invalid_argument
/// (unreadable private key).
caf::expected<ssh_command_result> run_ssh_command(const ssh_command_request& req,
                                                  const ssh_logger& log);

/// `arg` as one POSIX shell word: wrapped in single quotes, each ' written
/// as '\'' (so $, `, \, spaces and newlines stay literal).
std::string shell_quote(std::string_view arg);

/// `command`, then each arg quoted by shell_quote, separated by spaces.
std::string ssh_command_line(std::string_view command, const std::vector<std::string>& args);

/// `text` with every invalid UTF-8 sequence replaced by U+FFFD.
std::string sanitize_utf8(std::string_view text);

} // namespace stepflow::connectors
