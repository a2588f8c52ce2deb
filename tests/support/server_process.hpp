#pragma once
// `stepflow serve` as a child process for integration tests: on
// 127.0.0.1 port 0 with --port-file, waited for (30 s at most) until it has
// written the port it listens on; stopped with SIGTERM (SIGKILL after a
// grace period), or killed from outside and reaped. The destructor SIGKILLs
// and reaps a server that still runs, so a failed REQUIRE leaves none behind.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "support/binary_runner.hpp"

namespace stepflow::test {

class temp_dir;

struct server_options {
  std::string data_dir;           ///< --data-dir; "" is <dir>/data
  std::vector<std::string> args;  ///< after --listen, --data-dir and --port-file
  env_vars env;                   ///< set in its environment (ours otherwise)
  std::vector<std::string> unset; ///< removed from its environment
  /// Its files in the directory: <name>-stdout.txt, <name>-stderr.txt and a
  /// port file <name>-port-<n> for the n-th start.
  std::string name = "server";
};

/// A server whose admin is isadmin with `password` (STEPFLOW_ADMIN_PASSWORD
/// set, STEPFLOW_ADMIN_USER removed) and which has the SyncPacks of the
/// source tree (STEPFLOW_SYNCPACKS_DIR); `args` as in server_options.
server_options admin_server(const std::string& password, std::vector<std::string> args = {});

class server_process {
public:
  /// Starts the server (see start()).
  server_process(const temp_dir& dir, server_options opts);
  ~server_process();
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  /// Starts it (again, after terminate() or reap(): the same data directory,
  /// a new port; its output is appended to the same files). Throws
  /// std::runtime_error, with what it printed, when it exits during start-up
  /// or writes no port file within 30 s (it is killed then); std::logic_error
  /// when it is running.
  void start();

  /// SIGTERM, then a wait of at most `grace` (SIGKILL after that). The exit
  /// code when it exited in time; -signal when a signal ended it; -SIGKILL
  /// when it had to be killed; -1000 when it was not running.
  int terminate(std::chrono::milliseconds grace);

  /// Waits for a server that was signalled from outside (kill(pid(), ...));
  /// the waitpid status.
  int reap();

  bool running() const noexcept { return pid_ > 0; }
  int pid() const noexcept { return pid_; }
  uint16_t port() const noexcept { return port_; }
  /// "http://127.0.0.1:<port>"
  std::string url() const;
  const std::string& data_dir() const noexcept { return data_dir_; }
  std::string out() const; ///< all it printed to stdout
  std::string err() const; ///< all it printed to stderr

private:
  server_options opts_;
  std::string dir_;
  std::string data_dir_;
  std::string out_path_;
  std::string err_path_;
  int pid_ = -1;
  uint16_t port_ = 0;
  int starts_ = 0;
};

} // namespace stepflow::test
