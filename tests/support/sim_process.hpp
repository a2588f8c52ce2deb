#pragma once
// build/stepflow-sim (the ServiceNow and SL1 simulators of tests/sim) in its
// own process, for tests: started on a random port on 127.0.0.1, stopped on
// scope exit; plus blocking request helpers for the tests that talk to it.
// Failures throw std::runtime_error saying what went wrong.
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

#include "stepflow/runtime/http_client.hpp"
#include "stepflow/runtime/json.hpp"
#include "support/temp_dir.hpp"

namespace stepflow::test {

/// build/stepflow-sim: beside $STEPFLOW_BINARY, else beside this test's
/// parent directory (build/tests/<test> -> build/stepflow-sim).
std::string simulator_path();

/// One simulator process: `kind` is "sl1" or "snow", `args` more of its
/// command line. The constructor waits (at most 30 s) until the simulator
/// has written its port and throws when the binary is missing or does not
/// start. The destructor stops it: SIGTERM, then SIGKILL after 5 s.
class sim_process {
public:
  explicit sim_process(const std::string& kind, const std::vector<std::string>& args = {});
  ~sim_process();
  sim_process(const sim_process&) = delete;
  sim_process& operator=(const sim_process&) = delete;

  /// "http://127.0.0.1:<port>".
  const std::string& url() const noexcept { return url_; }
  pid_t pid() const noexcept { return pid_; }

private:
  void stop() noexcept;

  temp_dir dir_;
  pid_t pid_ = -1;
  std::string url_;
};

/// Submits `req` to `client` and waits for the answer; throws when none
/// comes within 60 s.
caf::expected<http_response> fetch(http_client& client, http_request req);

/// GET `path` on the simulator itself (POST `body` when it is not empty), for
/// its stats and failure injection; the answer parsed as JSON. Throws when
/// there is no answer or it is not JSON.
json::value sim_call(http_client& client, const sim_process& sim, const std::string& path,
                     const std::string& body = {});

/// The counter `name` of the simulator's /_stats.
std::int64_t sim_stat(http_client& client, const sim_process& sim, const char* name);

} // namespace stepflow::test
