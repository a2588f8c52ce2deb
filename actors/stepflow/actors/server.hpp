#pragma once
// `stepflow serve`: the long-running server (REST API, durable queues,
// workers). Options are read once at start-up.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "stepflow/actors/cli.hpp"

namespace stepflow::actors {

struct serve_options {
  /// HOST:PORT to listen on. Default: 127.0.0.1:8080 (port 0 picks one).
  std::string listen = "127.0.0.1:8080";
  /// Store directory. Default: $STEPFLOW_DATA_DIR or ~/.local/share/stepflow.
  std::string data_dir;
  /// Runs at once per queue. Default: 64.
  size_t workers = 64;
  /// Per-queue worker counts, "name=N" (0: the queue keeps its runs).
  std::vector<std::string> queue_workers;
  /// Accepted-but-unfinished runs above which POST .../run answers 503.
  size_t max_queue_depth = 100000;
  /// HTTP I/O threads. Default: 1.
  size_t http_threads = 1;
  std::string tls_cert;
  std::string tls_key;
  /// Extra SyncPack directories installed at start (with the bundled ones).
  std::vector<std::string> syncpacks;
  /// Write the bound port to this file once listening (tests, scripts).
  std::string port_file;
  /// fsync every commit. Default: true (never turn off in production).
  bool sync = true;
  /// Seconds to let running runs finish on SIGTERM before exiting anyway
  /// (unfinished runs stay queued and run again at the next start).
  int shutdown_grace_s = 10;
  int retention_days = 7;
};

int run_server(const serve_options& opts, const cli_environment& env);

} // namespace stepflow::actors
